"""Real servers for tests: start a process on a free loopback port, wait for it, stop it by pid.

Used for uvicorn, gunicorn, redis-server and the fake authorization server. Every process is
bounded in time: it is killed when the ``with`` block ends, whatever happens inside.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from dpop_middleware.testing import TestIssuer

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@contextlib.contextmanager
def running(
    argv: Sequence[str],
    port: int,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 20.0,
    log_path: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` (which must listen on ``port``) for the duration of the block."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "tests"), full_env.get("PYTHONPATH")]))
    full_env.update(env or {})
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        list(argv), env=full_env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_for_port(port, timeout, proc)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if log_path:
            log.close()  # type: ignore[union-attr]


def python_argv(*args: str) -> list[str]:
    return [sys.executable, *args]


def issuer_env(issuer: TestIssuer) -> dict[str, str]:
    """The environment through which the test apps' servers learn to trust ``issuer``'s tokens."""
    return {
        "DPOP_TEST_ISSUER": issuer.issuer,
        "DPOP_TEST_AUDIENCE": issuer.audience,
        "DPOP_TEST_JWKS": json.dumps(issuer.jwks),
    }


@contextlib.contextmanager
def asgi_apps_server(issuer: TestIssuer, *flags: str) -> Iterator[int]:
    """uvicorn serving ``tests/asgi_apps/server.py`` (with extra uvicorn ``flags``); yields its port."""
    port = free_port()
    argv = python_argv(
        "-m", "uvicorn", "asgi_apps.server:app", "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", *flags,
    )  # fmt: skip
    with running(argv, port, env=issuer_env(issuer)):
        yield port


@contextlib.contextmanager
def redis_server(port: int | None = None) -> Iterator[int]:
    """A throw-away redis-server on 127.0.0.1 (no persistence); yields its port."""
    port = port or free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with running(argv, port):
        yield port
