"""``bench/gateway.py --smoke`` runs end to end (so it cannot rot); nothing about timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gateway_servers import need_binary

ROOT = Path(__file__).resolve().parent.parent


def test_gateway_bench_smoke_measures_both_gateways_with_and_without_the_check(tmp_path: Path) -> None:
    need_binary("nginx")
    need_binary("caddy")
    out = tmp_path / "gateway.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gateway.py"), "--smoke", "--requests", "100", "--json", str(out)],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert set(figures) == {"nginx", "caddy"}
    for cases in figures.values():
        assert set(cases) == {"none", "dpop"}
        assert all(case["rps"] > 0 and case["p99_ms"] >= case["p50_ms"] > 0 for case in cases.values())
    assert "| nginx |" in done.stdout and "| caddy |" in done.stdout
