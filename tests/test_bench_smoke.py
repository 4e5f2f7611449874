"""The benchmark harness in smoke mode, so it cannot rot: every part runs, nothing about timing is asserted."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import zlib
from dataclasses import asdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

import chart  # noqa: E402
import e2e  # noqa: E402
import layers  # noqa: E402
import loadgen  # noqa: E402
import run_all  # noqa: E402


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_run_all_smoke_writes_report_and_chart(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "run_all.py"), "--smoke", "--out", str(tmp_path)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = (tmp_path / "performance.md").read_text(encoding="utf-8")
    for heading in (
        "## Machine",
        "## Method",
        "## Core",
        "## End to end, per adapter",
        "## In process: what the layer adds, part by part",
        "## Memory",
        "## DPoP at the edge: the forward-auth gateway",
        "## What the remaining cost is",
    ):
        assert heading in report
    assert "Smoke run" in report and "FAILED" not in report
    # Every adapter under every server, with both proof algorithms, in all four variants.
    servers = (("Starlette", "uvicorn"), ("FastAPI", "uvicorn"), ("Flask", "gunicorn"), ("Django", "gunicorn"),
               ("Django", "uvicorn"))  # fmt: skip
    for alg in ("ES256", "RS256"):
        for adapter, server in servers:
            for variant in ("none", "floor", "memory", "redis"):
                assert f"| {adapter} | {server} | {alg} | {variant} |" in report
    assert "bytes per live entry" in report
    # The in-process split, one row per adapter, and its reading in the cost paragraph.
    for label in ("Starlette", "FastAPI", "Flask", "Django (WSGI)"):
        added, plain = r"\+-?\d+\.\d", r"-?\d+\.\d"
        cells = r" \| ".join([plain, added, added, added, plain, plain, plain, plain, plain])  # every column measured
        assert re.search(rf"^\| {re.escape(label)} \| {cells} \|$", report, re.MULTILINE), label
    assert "In process, with no server in the way" in report
    # The second run, with redis-server on the load generator's core, repeats three adapters' Redis rows.
    for adapter, server, times in (("Starlette", "uvicorn", 2), ("Flask", "gunicorn", 2), ("Django", "gunicorn", 2),
                                   ("FastAPI", "uvicorn", 1)):  # fmt: skip
        assert report.count(f"| {adapter} | {server} | ES256 | redis |") == times
    assert re.search(r"stolen by the hypervisor .* during each part: core verify \d+\.\d%, end to end \d", report)
    width, height = _png_size((tmp_path / "performance.png").read_bytes())
    assert width > 200 and height > 200


def test_e2e_with_the_installed_load_generator(tmp_path: Path) -> None:
    # wrk when the machine has it (its Lua script is then exercised), else the Python generator.
    generator = "wrk" if loadgen.wrk_available() else "python"
    out = tmp_path / "e2e.json"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "e2e.py"),
            "--smoke",
            "--loadgen",
            generator,
            "--only",
            "starlette",
            "--variants",
            "none,floor,memory",
            "--json",
            str(out),
        ],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(out.read_text())
    assert data["meta"]["loadgen"] == generator
    rows = data["rows"]
    assert [r["variant"] for r in rows] == ["none", "floor", "memory"]
    for row in rows:
        assert row["failure"] is None
        assert row["responses"] > 0 and row["errors"] == 0
        assert row["cpu_us_per_req"] > 0


def test_a_server_without_the_layer_is_not_reported_as_protected(tmp_path: Path) -> None:
    # The sanity check must catch a "protected" case whose server does not actually verify anything.
    spec = e2e.ServerSpec("starlette", "Starlette", "uvicorn", "e2e_apps.starlette_app:app", (("BENCH_MODE", "none"),))
    settings = e2e.Settings(
        seconds=1, connections=2, loadgen="python", processes=1, max_requests=10, workdir=tmp_path, smoke=True
    )
    row = e2e.run_case(settings, e2e.Client(), spec, "memory")
    assert row.failure is not None and "401" in row.failure
    assert row.responses == 0


def _row(server: str, variant: str, rps: float, cpu: float, **extra: object) -> e2e.Row:
    spec = next(s for s in e2e.SERVERS if s.key == server)
    row = e2e.Row(server, spec.adapter, spec.server, variant, rps=rps, cpu_us_per_req=cpu, responses=1000)
    for name, value in extra.items():
        setattr(row, name, value)
    return row


def test_target_checks() -> None:
    rows = [
        _row("starlette", "none", 1000, 200),
        _row("starlette", "memory", 700, 400),
        _row("starlette", "redis", 600, 490, redis_commands=1008, redis_commands_per_req=1.008, in_flight=8),
        _row("flask", "none", 1000, 400),
        _row("flask", "memory", 700, 600),
        _row("flask", "redis", 600, 660, redis_commands=1020, redis_commands_per_req=1.02, in_flight=8),
    ]
    rows.append(_row("starlette", "floor", 660, 330))
    measured = {c["check"]: c["measured"] for c in e2e.checks(rows)}
    assert measured["Starlette/uvicorn, ES256: the floor (raw signature check only) req/s vs unprotected"] == "66%"
    assert measured["Starlette/uvicorn, ES256: protected req/s vs the floor"] == "106%"
    checks = {c["check"]: c["ok"] for c in e2e.checks(rows)}
    assert checks["Starlette/uvicorn, ES256: protected req/s vs unprotected"] is True  # 70% >= 65%
    assert checks["Starlette/uvicorn, ES256: Redis store server CPU/req vs memory store"] is False  # +22.5% > +20%
    assert checks["Starlette/uvicorn, ES256: Redis commands (round trips) per request"] is True  # in-flight allowance
    assert checks["Flask/gunicorn, ES256: protected req/s vs unprotected"] is False  # 70% < 75%
    assert checks["Flask/gunicorn, ES256: Redis store server CPU/req vs memory store"] is True  # +10%
    assert checks["Flask/gunicorn, ES256: Redis commands (round trips) per request"] is False  # 20 extra commands
    table = e2e.markdown([*rows, e2e.Row("django-wsgi", "Django", "gunicorn", "none", failure="boom")], smoke=False)
    assert "MISSED" in table and "FAILED: boom" in table
    # A missed target says whether the same run's floor (one raw verify, nothing else) misses it too.
    flask_target = "Flask/gunicorn, ES256: protected req/s vs unprotected"
    floors = {c["check"]: c.get("floor_below_target") for c in e2e.checks(rows)}
    assert floors["Starlette/uvicorn, ES256: protected req/s vs unprotected"] is False  # 66% >= 65%
    assert floors[flask_target] is None  # no floor row for Flask
    flask = next(c for c in e2e.checks([*rows, _row("flask", "floor", 720, 560)]) if c["check"] == flask_target)
    assert flask["ok"] is False and flask["floor_below_target"] is True  # 72% < 75%
    assert e2e.verdict(flask, smoke=False) == "MISSED: the floor is below it too"
    flask = next(c for c in e2e.checks([*rows, _row("flask", "floor", 800, 500)]) if c["check"] == flask_target)
    assert e2e.verdict(flask, smoke=False) == "MISSED"  # the floor (80%) would allow it: ours to close
    assert e2e.verdict(flask, smoke=True) == "smoke run: no claim"


def test_builtin_png_writer(tmp_path: Path) -> None:
    panel = chart.Panel("Requests/s: test (1 worker)", ["A/B", "C"], ["x", "y"], [[10.0, None], [5.5, 0.0]])
    path = tmp_path / "c.png"
    chart.png_bar_charts(path, [panel, panel], width=300, panel_height=150)
    data = path.read_bytes()
    width, height = _png_size(data)
    assert (width, height) == (300, 320)
    # The one IDAT chunk inflates to one filter byte plus RGB pixels per row.
    idat_len = struct.unpack(">I", data[33:37])[0]
    assert data[37:41] == b"IDAT"
    raw = zlib.decompress(data[41 : 41 + idat_len])
    assert len(raw) == height * (1 + 3 * width)
    assert data.endswith(b"IEND\xaeB`\x82")


def test_percentile_and_process_cpu() -> None:
    assert loadgen.percentile([], 50) == 0.0
    values = [float(i) for i in range(1, 101)]
    assert loadgen.percentile(values, 50) == 50.0
    assert loadgen.percentile(values, 99) == 99.0
    assert e2e.group_cpu_seconds(__import__("os").getpgrp()) > 0


def test_median_round_is_a_real_round_and_failures_win() -> None:
    rounds = [_row("flask", "memory", rps, cpu) for rps, cpu in ((900, 610), (1000, 600), (700, 700))]
    assert e2e.median_row(rounds) is rounds[0]
    failed = _row("flask", "memory", 0, 0, failure="boom")
    assert e2e.median_row([*rounds, failed]) is failed


def test_paired_ratios_follow_the_rounds() -> None:
    # A slow spell halves every variant in round 2: the paired ratios do not move, while the
    # medians of the separate variants would pair a fast round with a slow one.
    def rounds(variant: str, rps: list[float], cpu: list[float]) -> list[e2e.Row]:
        return [_row("flask", variant, r, c) for r, c in zip(rps, cpu, strict=True)]

    runs = {
        "none": rounds("none", [1000, 500, 1100], [400, 800, 380]),
        "floor": rounds("floor", [800, 400, 880], [500, 1000, 470]),
        "memory": rounds("memory", [700, 350, 770], [600, 1200, 560]),
        "redis": rounds("redis", [650, 325, 700], [660, 1320, 620]),
    }
    rows = {v: e2e.median_row(r) for v, r in runs.items()}
    e2e.pair(rows, runs)
    assert rows["memory"].rps_vs_none == 0.7
    assert rows["floor"].rps_vs_none == 0.8
    assert rows["memory"].rps_vs_floor == 0.875
    assert rows["redis"].cpu_vs_memory is not None and abs(rows["redis"].cpu_vs_memory - 0.1) < 0.01
    measured = {c["check"]: c["measured"] for c in e2e.checks(list(rows.values()))}
    assert measured["Flask/gunicorn, ES256: protected req/s vs unprotected"] == "70%"
    assert measured["Flask/gunicorn, ES256: Redis store server CPU/req vs memory store"] == "+10%"
    # CPU µs added over each earlier variant, round by round: the slow round's doubled figures
    # (memory - none = 400 there, 200 and 180 elsewhere) do not pull the median.
    assert rows["memory"].cpu_us_over == {"none": 200, "floor": 100}
    assert rows["redis"].cpu_us_over == {"none": 260, "floor": 160, "memory": 60}
    assert rows["none"].cpu_us_over == {}
    report = run_all.cost_table({"rows": [asdict(r) for r in rows.values()], "checks": []})
    assert "| Flask/gunicorn | ES256 | +200 | +100 | +100 |" in report[2]
    # A failed round leaves no paired figure: the checks fall back to the reported rows.
    runs["memory"][1].failure = "boom"
    rows = {v: e2e.median_row(r) for v, r in runs.items()}
    e2e.pair(rows, runs)
    assert rows["memory"].failure == "boom" and rows["redis"].cpu_vs_memory is None


def test_redis_server_runs_on_the_core_asked_for() -> None:
    # Where redis-server runs changes a sync worker's figures (the module docstring of e2e.py says why),
    # so the option must really move it.
    cores = os.sched_getaffinity(0)
    can_pin = loadgen.pinned(["true"], loadgen.SERVER_CPUS) != ["true"]  # the harness's own rule
    for core, expected in (("server", {0}), ("client", cores - {0})):
        with e2e.redis_process(core) as (_, pid):
            assert os.sched_getaffinity(pid) == (expected if can_pin else cores)


def test_stolen_share_is_a_share_of_the_ticks_in_between() -> None:
    now = run_all.cpu_ticks()
    assert now is not None and 0 <= now[0] <= now[1]
    # Since boot: every tick counted, the stolen ones a part of them.
    since_boot = run_all.stolen_share((0, 0))
    assert since_boot is not None and 0.0 <= since_boot <= 1.0
    assert since_boot == pytest.approx(now[0] / now[1], abs=0.01)
    assert run_all.stolen_share(None) is None
    assert run_all.stolen_share((0, 10**18)) is None  # no tick has passed since "before"


def test_layer_split_adds_up() -> None:
    # What is left is the layer without its signature, less the verifier's and the adapter's shares.
    row = {"adapter": "flask", "label": "Flask", "none": 50.0, "floor": 120.0, "hook": 52.0, "protected": 150.0,
           "nosig": 80.0, "adapter_only": 57.0, "nosig_core_in_request_us": 18.0,
           "nosig_core_tight_loop_us": 11.0}  # fmt: skip
    assert layers.table([row])[-1] == "| Flask | 50.0 | +70.0 | +100.0 | +30.0 | 18.0 | 11.0 | 2.0 | 5.0 | 5.0 |"
    sentence = run_all.layers_sentence({"rows": [row]})
    assert (
        "Flask 30 µs (the verifier 18, 11 in a tight loop; the framework's price for an empty hook in its place 2; "
        "our adapter's code 5; the rest 5)"
    ) in sentence
    assert run_all.layers_sentence(None) == ""


@pytest.mark.parametrize("adapter", ["starlette", "django"])
def test_layer_diagnostics_do_what_they_say(adapter: str) -> None:
    def child(variant: str) -> dict[str, object]:
        done = subprocess.run(
            [sys.executable, str(BENCH / "layers.py"), "--child", adapter, variant, "--requests", "20", "--rounds", "1"],
            check=True, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    nosig = child("nosig")  # every request goes through the verifier, timed, then the tight loop
    assert nosig["verifier_calls"] == 20 and "core_in_request_us" in nosig and "core_tight_loop_us" in nosig
    memoized = child("adapter_only")  # the verifier ran during warm-up only
    assert memoized["verifier_calls"] == 0 and "core_in_request_us" not in memoized
