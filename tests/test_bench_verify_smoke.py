"""bench/verify.py must keep running (its figures are not checked here: timing lives in bench/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_verify_benchmark_smoke() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "verify.py"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for alg in ("ES256", "EdDSA", "RS256", "PS256"):
        assert f"| {alg} | known key |" in result.stdout
    assert "full verify, token reused 10x" in result.stdout
