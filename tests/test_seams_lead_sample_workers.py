"""Each sample under its multi-worker command with its default (in-memory) replay store.

16 threads send the same proof at the same instant, round after round: two successes would be a
replay accepted. The per-process store's guard must refuse instead (503), once the workers have met.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dpop_middleware.client import DPoPKey
from sample_projects.demo.processes import ROOT, ServerGroup, free_port
from sample_projects.demo.story import DPoPSession, TokenClient

THREADS = 16
ROUNDS = 6

COMMANDS = {
    "django": ["-m", "gunicorn", "-w", "4", "sample_projects.django_api.wsgi:application"],
    "flask": ["-m", "gunicorn", "-w", "4", "sample_projects.flask_api.app:create_app()"],
    "fastapi": ["-m", "uvicorn", "--workers", "4", "--factory", "sample_projects.fastapi_api.app:create_app"],
}


@pytest.fixture(scope="module")
def issuer_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with ServerGroup(tmp_path_factory.mktemp("issuer")) as group:
        server = group.start("issuer", "sample_projects.issuer", {})
        group.wait_ready(30)
        yield server.url


def _serve(name: str, port: int, issuer: str, log: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, *COMMANDS[name]]
    argv += ["-b", f"127.0.0.1:{port}"] if "gunicorn" in argv else ["--host", "127.0.0.1", "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPOP_")}
    env.update(DPOP_ISSUER=issuer, PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="sample_projects.django_api.settings")
    with open(log, "wb") as out:
        return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                time.sleep(1.0)  # let the other workers finish importing the app too
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def _race(url: str, headers: dict[str, str]) -> list[int]:
    barrier = threading.Barrier(THREADS)
    statuses: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        with httpx.Client(timeout=20) as http:
            barrier.wait()
            status = http.get(url, headers=headers).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=one) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return statuses


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_sample_under_several_workers_never_accepts_a_proof_twice(name: str, issuer_url: str, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / f"{name}.log"
    process = _serve(name, port, issuer_url, log)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, process)
        key = DPoPKey.generate("ES256")
        with httpx.Client(timeout=10) as http:
            session = DPoPSession(http, key)
            token = TokenClient(f"{issuer_url}/token").request(session, "notes:read notes:write").response.json()
        all_statuses: list[int] = []
        for _ in range(ROUNDS):
            proof = key.proof("GET", f"{base}/api/me", access_token=token["access_token"])
            statuses = _race(f"{base}/api/me", {"Authorization": f"DPoP {token['access_token']}", "DPoP": proof})
            assert len(statuses) == THREADS
            assert statuses.count(200) <= 1, statuses  # never the same proof twice
            assert set(statuses) <= {200, 401, 503}, statuses
            all_statuses.extend(statuses)
            time.sleep(0.3)
        assert 503 in all_statuses  # the workers met, and the store refused to serve
    finally:
        os.killpg(process.pid, 15)
        process.wait(10)
    # One ERROR per worker that refused, naming the setting to change.
    text = log.read_text(errors="replace")
    assert "the in-memory replay store is per process" in text, text[-2000:]
    assert "Set DPOP_REPLAY_STORE to a shared store" in text, text[-2000:]
