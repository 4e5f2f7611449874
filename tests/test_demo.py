"""``python -m sample_projects.demo``: real servers, the whole story, exit status, and clean-up."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sample_projects.demo.processes import ROOT, ServerGroup
from sample_projects.demo.runner import format_table
from sample_projects.demo.story import Row

STEPS = (
    "token with a DPoP proof",
    "GET /api/me",
    "same proof replayed",
    "stolen token, other key",
    "token sent as Bearer",
    "nonce challenge answered",
    "POST /api/notes w/o scope",
    "GET /healthz, no token",
)
APIS = ("django", "flask", "fastapi")


def demo_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["DPOP_NONCE"] = "garbage"  # settings from the caller's shell must not leak into the demo
    return env


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too; only the demo could reap it, and the demo has exited.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def table_rows(output: str) -> list[list[str]]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("STEP"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def test_demo_runs_every_step_against_every_api_and_stops_everything() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sample_projects.demo", "--timeout", "90"],
        cwd=ROOT,
        env=demo_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = table_rows(result.stdout)
    assert [(row[0], row[1]) for row in rows] == [(step, api) for api in APIS for step in STEPS]
    assert all(row[-1] == "ok" for row in rows)
    assert "all 24 steps behaved as expected; every server stopped" in result.stdout
    by_step = {(row[0], row[1]): row for row in rows}
    assert by_step[("same proof replayed", "flask")][3] == "401 invalid_dpop_proof"
    assert by_step[("nonce challenge answered", "django")][3] == "401 use_dpop_nonce, then 201"
    assert "(after nonce)" in by_step[("GET /api/me", "fastapi")][3]  # DPOP_NONCE=always there
    pids = [int(pid) for pid in re.findall(r"\(pid (\d+),", result.stdout)]
    assert len(pids) == 4
    assert not any(alive(pid) for pid in pids)


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 0), (signal.SIGTERM, 1)])
def test_ctrl_c_or_sigterm_stops_every_server(sig: signal.Signals, status: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sample_projects.demo", "--keep-running", "--timeout", "90"],
        cwd=ROOT,
        env=demo_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:
            seen.append(line)
            if "press Ctrl-C" in line:
                break
        else:
            pytest.fail("the demo never reached --keep-running: " + "".join(seen))
        pids = [int(pid) for pid in re.findall(r"\(pid (\d+),", "".join(seen))]
        assert len(pids) == 4 and all(alive(pid) for pid in pids)
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=30)  # bounded: a demo that ignores the signal fails the test
        # Ctrl-C only ends the exploration (the story had passed); SIGTERM is a failure.
        assert proc.returncode == status, rest
        assert ("every server stopped" in rest) if status == 0 else ("DEMO FAILED" in rest)
        assert not any(alive(pid) for pid in pids)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_server_that_dies_is_reported_and_the_others_stopped(tmp_path: Path) -> None:
    with ServerGroup(tmp_path) as group:
        healthy = group.start("issuer", "sample_projects.issuer", {})
        broken = group.start("broken", "sample_projects.no_such_module", {})
        with pytest.raises(RuntimeError, match="broken exited"):
            group.wait_ready(timeout=30)
    assert group.all_stopped()
    assert healthy.process is not None and healthy.process.returncode is not None
    assert "No module named" in broken.log_tail()


def test_table_format() -> None:
    rows = [Row("a step", "flask", "200", "200", True), Row("another step", "django", "401", "500", False)]
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["STEP", "API", "EXPECTED", "GOT", "OK"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split()[-1] == "ok" and lines[3].split()[-1] == "FAIL"
    # Columns line up: every value starts where its header does.
    assert lines[3].index("django") == lines[0].index("API")
