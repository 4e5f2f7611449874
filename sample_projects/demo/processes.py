"""Start the sample servers as child processes on free loopback ports, and stop every one of them.

Each server runs in its own process group (POSIX), so stopping it also stops any worker it forked
(gunicorn). Stopping is SIGTERM, then SIGKILL after a grace period: nothing outlives the demo.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

__all__ = ["ROOT", "Server", "ServerGroup", "free_port"]

#: The directory holding ``sample_projects``: children import the samples from there.
ROOT = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """One running sample: ``python -m <module>`` with ``PORT`` and its settings in the environment."""

    name: str
    module: str
    port: int
    env: Mapping[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _child_env(extra: Mapping[str, str]) -> dict[str, str]:
    # The demo decides every DPoP setting itself: settings left in the user's shell must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DPOP_") and k not in ("PORT", "HOST")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class ServerGroup:
    """The servers of one demo run; use as a context manager so that they are always stopped."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.servers: list[Server] = []

    def start(self, name: str, module: str, env: Mapping[str, str]) -> Server:
        """Start ``python -m module`` on a free port; it is not ready yet (see :meth:`wait_ready`)."""
        port = free_port()
        server = Server(name, module, port, dict(env), self.log_dir / f"{name}.log")
        self.servers.append(server)  # before starting: whatever happens next, stop() will see it
        with open(server.log_path, "wb") as log:
            server.process = subprocess.Popen(
                [sys.executable, "-m", module],
                env=_child_env({**env, "PORT": str(port), "HOST": "127.0.0.1"}),
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=os.name == "posix",
            )
        return server

    def wait_ready(self, timeout: float) -> None:
        """Wait until every server answers ``GET /healthz`` with 200; raise if one dies or is late."""
        deadline = time.monotonic() + timeout
        pending = list(self.servers)
        with httpx.Client(timeout=1.0) as http:
            while pending:
                for server in list(pending):
                    process = server.process
                    if process is not None and process.poll() is not None:
                        raise RuntimeError(f"{server.name} exited with code {process.returncode}")
                    with contextlib.suppress(httpx.HTTPError):
                        if http.get(f"{server.url}/healthz").status_code == 200:
                            pending.remove(server)
                if pending and time.monotonic() > deadline:
                    names = ", ".join(s.name for s in pending)
                    raise TimeoutError(f"not ready after {timeout:.0f}s: {names}")
                if pending:
                    time.sleep(0.1)

    def stop(self, grace: float = 5.0) -> None:
        """Stop every server this group started, by pid (its process group on POSIX)."""
        for server in self.servers:
            _signal(server.process, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for server in self.servers:
            process = server.process
            if process is None:
                continue
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(process, signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=grace)

    def all_stopped(self) -> bool:
        """Whether every process this group started has exited."""
        return all(s.process is None or s.process.poll() is not None for s in self.servers)

    def __enter__(self) -> ServerGroup:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _signal(process: subprocess.Popen[bytes] | None, sig: int) -> None:
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.name == "posix":
            # The group too: gunicorn's worker must not be orphaned if its arbiter is killed.
            os.killpg(process.pid, sig)
        elif process.poll() is None:
            process.terminate()
