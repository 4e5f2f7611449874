"""Helpers for the real-server tests: which servers to run, raw HTTP, a Redis we can stop, a load loop."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from servers import free_port, running

from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import TestIssuer, dpop_headers


@dataclass(frozen=True)
class AppSpec:
    """A multi-worker server running one app module: ``kind`` is ``wsgi`` (gunicorn) or ``asgi`` (uvicorn)."""

    name: str
    kind: str
    app: str  # "module:attribute", importable with the repo root and tests/ on PYTHONPATH
    workers: int = 2

    def argv(self, port: int) -> list[str]:
        if self.kind == "wsgi":
            return [
                sys.executable, "-m", "gunicorn", "-k", "sync", "-w", str(self.workers),
                "-b", f"127.0.0.1:{port}", "--graceful-timeout", "2", "--log-level", "warning", self.app,
            ]  # fmt: skip
        return [
            sys.executable, "-m", "uvicorn", self.app, "--workers", str(self.workers),
            "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--timeout-graceful-shutdown", "2",
        ]  # fmt: skip


# The apps every multi-worker test runs against: the real adapters (Django's own multi-worker test
# lives in test_django_servers.py).
APPS = [
    AppSpec("flask-gunicorn", "wsgi", "concurrency_apps.wsgi_app:app"),
    AppSpec("starlette-uvicorn", "asgi", "concurrency_apps.asgi_app:app"),
]
APP_IDS = [spec.name for spec in APPS]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    started: float = 0.0
    ended: float = 0.0

    @property
    def pid(self) -> str:
        return self.headers.get("x-worker-pid", "")


def _read(conn: http.client.HTTPConnection, started: float) -> Reply:
    resp = conn.getresponse()
    body = resp.read()
    headers = {k.lower(): v for k, v in resp.getheaders()}
    return Reply(resp.status, headers, body, started, time.monotonic())


def send(port: int, path: str, headers: Mapping[str, str], method: str = "GET", timeout: float = 20.0) -> Reply:
    """One request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        started = time.monotonic()
        conn.request(method, path, headers={**headers, "Connection": "close"})
        return _read(conn, started)
    finally:
        conn.close()


def _fire(conns: list[http.client.HTTPConnection], path: str, headers: Mapping[str, str]) -> list[Reply]:
    """Send the request on every connection at once (threads released by one barrier)."""
    barrier = threading.Barrier(len(conns))
    replies: list[Reply | BaseException] = [RuntimeError("no reply")] * len(conns)

    def one(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            started = time.monotonic()
            conns[i].request("GET", path, headers={**headers, "Connection": "close"})
            replies[i] = _read(conns[i], started)
        except BaseException as exc:
            replies[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(conns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for conn in conns:
        conn.close()
    for reply in replies:
        if isinstance(reply, BaseException):
            raise reply
    return [r for r in replies if isinstance(r, Reply)]


def _open_and_ask(port: int) -> tuple[http.client.HTTPConnection, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/health")
    resp = conn.getresponse()
    resp.read()
    return conn, None if resp.will_close else (resp.getheader("x-worker-pid") or "")


def _pinned(port: int, workers: int, per_worker: int) -> list[http.client.HTTPConnection] | None:
    """Keep-alive connections, ``per_worker`` to each worker, or ``None`` if the server closes them.

    An asyncio server accepts a burst of connections in whichever worker is awake, so fresh
    connections fired together rarely reach two workers. Asking ``/health`` on each connection
    first tells which worker owns it; connections are opened in concurrent bursts (an idle worker
    only wins an accept while the others are busy) until every worker owns enough of them.
    """
    owned: dict[str, list[http.client.HTTPConnection]] = {}
    spare: list[http.client.HTTPConnection] = []
    try:
        with ThreadPoolExecutor(max_workers=4 * workers) as pool:
            for _ in range(40):
                for conn, pid in pool.map(lambda _: _open_and_ask(port), range(4 * workers)):
                    if pid is None:
                        conn.close()
                        return None
                    mine = owned.setdefault(pid, [])
                    (mine if len(mine) < per_worker else spare).append(conn)
                if len(owned) == workers and all(len(c) == per_worker for c in owned.values()):
                    return [conn for conns in owned.values() for conn in conns]
        raise TimeoutError(f"could not open {per_worker} connections to each of {workers} workers")
    except BaseException:
        spare.extend(conn for conns in owned.values() for conn in conns)
        raise
    finally:
        for conn in spare:
            conn.close()


def fire_to_every_worker(port: int, path: str, headers: Mapping[str, str], workers: int, per_worker: int) -> list[Reply]:
    """Send the same request ``workers * per_worker`` times at the same instant, to every worker.

    With keep-alive (uvicorn) each worker is sent ``per_worker`` copies on connections it owns.
    A server that closes every connection (gunicorn sync workers) serves one connection per worker
    at a time, so fresh connections opened together are spread over the workers by the kernel.
    """
    conns = _pinned(port, workers, per_worker)
    if conns is None:
        conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(workers * per_worker)]
        for conn in conns:
            conn.connect()
    return _fire(conns, path, headers)


def redis_argv(port: int) -> list[str]:
    return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


@contextlib.contextmanager
def redis_process(port: int | None = None) -> Iterator[tuple[int, int]]:
    """A throw-away redis-server; yields ``(port, pid)`` so a test can pause or stop it."""
    port = port or free_port()
    with running(redis_argv(port), port) as proc:
        try:
            yield port, proc.pid
        finally:
            # A paused server would ignore the stop signal until continued.
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)


@contextlib.contextmanager
def app_server(spec: AppSpec, env: Mapping[str, str]) -> Iterator[int]:
    """Run ``spec`` on a free port; yield once every worker has answered ``/health``.

    Waiting for each worker (not just the first) matters: a test that starts while the second
    worker is still importing the app would only ever talk to one process.
    """
    port = free_port()
    with running(spec.argv(port), port, env=dict(env), timeout=30):
        deadline = time.monotonic() + 30
        pids: set[str] = set()
        while len(pids) < spec.workers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(pids)} of {spec.workers} workers answered")
            with contextlib.suppress(OSError):
                reply = send(port, "/health", {}, timeout=5)
                if reply.status == 200:
                    pids.add(reply.pid)
            time.sleep(0.01)
        yield port


@dataclass
class Load:
    """Background load: ``threads`` clients each sending fresh valid proofs until stopped."""

    port: int
    issuer: TestIssuer
    threads: int = 2
    pause: float = 0.005
    replies: list[Reply] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]

    def _run(self) -> None:
        key = DPoPKey.generate()
        token = self.issuer.token(key.jkt)
        url = f"http://127.0.0.1:{self.port}/protected"
        while not self._stop.is_set():
            try:
                reply = send(self.port, "/protected", dpop_headers(key, "GET", url, token), timeout=15)
            except BaseException as exc:
                with self._lock:
                    self.errors.append(exc)
                return
            with self._lock:
                self.replies.append(reply)
            time.sleep(self.pause)

    def __enter__(self) -> Load:
        for t in self._workers:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=30)

    def snapshot(self) -> list[Reply]:
        with self._lock:
            return list(self.replies)

    def wait_for(self, predicate: str, count: int, since: float, timeout: float = 20.0) -> None:
        """Wait until ``count`` replies started after ``since`` match ``predicate`` ("any" or a status)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.errors:
                raise self.errors[0]
            got = [r for r in self.snapshot() if r.started >= since and (predicate == "any" or str(r.status) == predicate)]
            if len(got) >= count:
                return
            time.sleep(0.02)
        raise TimeoutError(f"fewer than {count} replies matching {predicate} since {since}")
