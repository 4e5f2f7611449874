"""The Redis-vs-memory benchmark runs end to end and shows one Redis round trip per request."""

from __future__ import annotations

import json
import subprocess
import sys

from servers import ROOT


def test_bench_smoke_shows_at_most_one_round_trip_per_request() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "replay_store.py"), "--smoke", "--json"],
        capture_output=True,
        check=False,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    table, rows_json = out.stdout.rstrip().rsplit("\n", 1)
    assert "round trips per request (<= 1: OK)" in table
    memory, redis_row = json.loads(rows_json)
    assert memory["store"] == "memory" and redis_row["store"] == "redis"
    assert memory["accepted"] == memory["requests"] and redis_row["accepted"] == redis_row["requests"]
    assert memory["redis_commands"] == 0
    assert redis_row["set_commands"] == redis_row["requests"]  # exactly one SET NX PX each
    assert redis_row["commands_per_request"] <= 1
