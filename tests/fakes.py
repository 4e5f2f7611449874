"""The test doubles the suite shares: one settable clock and one configurable replay store.

Tests import them from here (``from fakes import FakeReplayStore, TestClock``) or take the
``clock`` / ``fake_store`` fixtures from ``conftest.py``. A test that needs a genuinely different
double keeps it local and says why.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

from dpop_middleware import ReplayStoreUnavailable

NOW = 1_800_000_000.0

StoreMode = Literal["ok", "down", "error", "odd"]


class TestClock:
    """A settable clock for verifiers, stores, issuers and validators under test (call it for the time)."""

    __test__ = False  # a helper, not a test class, wherever a test module imports it

    def __init__(self, now: float = NOW) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeReplayStore:
    """A replay store whose answer a test chooses, recording every ``(key, ttl)`` it is asked about.

    ``mode``:

    * ``"ok"``    - a working store: ``True`` the first time a key is seen, ``False`` after (a replay);
    * ``"down"``  - raises :class:`ReplayStoreUnavailable`, as a store that knows it is unreachable;
    * ``"error"`` - raises ``ConnectionError``, as a third-party store whose client fails unexpectedly;
    * ``"odd"``   - answers ``"yes"``: anything but ``True`` is not a fresh proof.

    With ``asynchronous=True``, ``add_if_absent`` is a coroutine function (like the asyncio Redis
    store) that yields to the event loop once before answering.
    """

    def __init__(self, mode: StoreMode = "ok", *, asynchronous: bool = False) -> None:
        self.mode = mode
        self.calls: list[tuple[bytes, float]] = []
        self.seen: set[bytes] = set()
        # An instance attribute, so that the verifier sees a coroutine function exactly when asked to.
        self.add_if_absent: Callable[[bytes, float], object] = self._add_async if asynchronous else self._add

    def _add(self, key: bytes, ttl: float) -> object:
        self.calls.append((key, ttl))
        if self.mode == "down":
            raise ReplayStoreUnavailable()
        if self.mode == "error":
            raise ConnectionError("replay store went away")
        if self.mode == "odd":
            return "yes"
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    async def _add_async(self, key: bytes, ttl: float) -> object:
        await asyncio.sleep(0)
        return self._add(key, ttl)


class JSONServer:
    """Real HTTP on 127.0.0.1 serving fixed JSON documents by path (404 otherwise), recording each GET.

    Use as a context manager; ``base`` is ``http://127.0.0.1:<port>``. ``documents`` may be filled
    after start-up (an issuer's metadata names the server's own URL).
    """

    def __init__(self) -> None:
        self.documents: dict[str, object] = {}
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits.append(self.path)
                document = server.documents.get(self.path)
                body = json.dumps(document).encode()
                self.send_response(200 if document is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._http.server_address[1]}"

    def __enter__(self) -> JSONServer:
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
