"""``python -m sample_projects.demo``: the issuer and three APIs, a client, and a table of what happened.

1. Start the sample issuer and the Django, Flask and FastAPI APIs as separate processes on free
   127.0.0.1 ports (uvicorn for ASGI, gunicorn for WSGI), with the embedded defaults: in-memory
   replay stores, no external service. Django finds the issuer's keys by RFC 8414 discovery, Flask
   is given ``DPOP_JWKS_URI``, FastAPI demands a nonce on every request (``DPOP_NONCE=always``),
   the two others on unsafe methods only.
2. Run the story of :mod:`.story` against each API.
3. Print the table; exit 0 only if every step behaved as expected (1 otherwise, 130 on Ctrl-C).

Every server is stopped on the way out, whatever happened (failure, Ctrl-C, SIGTERM, time-out).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TextIO

import httpx

from ..common import DEFAULT_AUDIENCE
from .processes import ServerGroup
from .story import Row, TokenClient, run_story

__all__ = ["APIS", "format_table", "main"]

#: (name, module, extra environment) of each API the story runs against.
APIS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("django", "sample_projects.django_api", {"DPOP_NONCE": "unsafe_methods"}),
    ("flask", "sample_projects.flask_api", {"DPOP_NONCE": "unsafe_methods", "DPOP_JWKS_URI": "{issuer}/jwks"}),
    ("fastapi", "sample_projects.fastapi_api", {"DPOP_NONCE": "always"}),
)

_COLUMNS = ("STEP", "API", "EXPECTED", "GOT", "OK")


def format_table(rows: Sequence[Row]) -> str:
    """The rows as a plain-text table with aligned columns."""
    cells = [_COLUMNS] + [(r.step, r.api, r.expected, r.got, "ok" if r.ok else "FAIL") for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


class _Stopped(Exception):
    """SIGTERM or the overall time limit: unwind so that every server is stopped."""


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise _Stopped(signal.Signals(signum).name)


def _run(group: ServerGroup, out: TextIO, startup_timeout: float) -> list[Row]:
    issuer = group.start("issuer", "sample_projects.issuer", {"DPOP_AUDIENCE": DEFAULT_AUDIENCE})
    issuer_url = issuer.url
    common = {"DPOP_ISSUER": issuer_url, "DPOP_AUDIENCE": DEFAULT_AUDIENCE, "DPOP_REPLAY_STORE": "memory"}
    # The issuer names itself after its own port (the default DPOP_ISSUER is http://127.0.0.1:<PORT>).
    apis = [
        (name, group.start(name, module, {**common, **{k: v.format(issuer=issuer_url) for k, v in env.items()}}))
        for name, module, env in APIS
    ]
    started = time.monotonic()
    group.wait_ready(startup_timeout)
    print(f"started in {time.monotonic() - started:.1f}s:", file=out)
    for server in group.servers:
        pid = server.process.pid if server.process is not None else "?"
        print(f"  {server.name:8} {server.url}  (pid {pid}, python -m {server.module})", file=out)
    print(file=out)
    rows: list[Row] = []
    tokens = TokenClient(f"{issuer_url}/token")
    with httpx.Client(timeout=10.0) as http:
        for name, server in apis:
            rows.extend(run_story(http, name, server.url, tokens))
    return rows


def _stop_uninterrupted(group: ServerGroup) -> None:
    """Stop every server; a second Ctrl-C, SIGTERM or the time limit must not cut this short."""
    if hasattr(signal, "SIGALRM"):
        signal.alarm(0)
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        group.stop()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _hold(group: ServerGroup, out: TextIO) -> None:
    """Keep the servers up for manual exploration until Ctrl-C (or SIGTERM)."""
    if hasattr(signal, "SIGALRM"):
        signal.alarm(0)  # the time limit is for the story, not for the user's exploration
    # We promise that Ctrl-C stops the servers, even when started from a shell without job control
    # (its background jobs start with SIGINT ignored, and Python then never raises KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        print("servers still running (--keep-running); press Ctrl-C to stop them:", file=out)
        for server in group.servers:
            print(f"  {server.name:8} {server.url}", file=out)
        out.flush()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print(file=out)


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout) -> int:
    """Run the demo; return the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m sample_projects.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds (120)")
    parser.add_argument("--startup-timeout", type=float, default=45.0, help="wait this long for the servers (45)")
    parser.add_argument("--keep-running", action="store_true", help="after the story, keep the servers up until Ctrl-C")
    args = parser.parse_args(argv)

    previous = signal.signal(signal.SIGTERM, _on_signal)
    if hasattr(signal, "SIGALRM"):
        signal.signal(signal.SIGALRM, _on_signal)
        signal.alarm(max(1, int(args.timeout)))
    rows: list[Row] = []
    failure: str | None = None
    interrupted = False
    with tempfile.TemporaryDirectory(prefix="dpop-demo-") as log_dir:
        group = ServerGroup(Path(log_dir))
        try:
            rows = _run(group, out, args.startup_timeout)
            print(format_table(rows), file=out)
            print(file=out)
            if args.keep_running:
                _hold(group, out)
        except KeyboardInterrupt:
            interrupted = True
        except (_Stopped, RuntimeError, TimeoutError, OSError, httpx.HTTPError) as exc:
            failure = f"{type(exc).__name__}: {exc}"
        finally:
            _stop_uninterrupted(group)
            signal.signal(signal.SIGTERM, previous)
        if interrupted:
            print("\ninterrupted: every server was stopped", file=out)
            return 130
        if not group.all_stopped():
            failure = failure or "a server did not stop"
        if failure is None and not all(row.ok for row in rows):
            failure = f"{sum(not row.ok for row in rows)} step(s) did not behave"
        if failure is not None:
            print(f"DEMO FAILED: {failure}", file=out)
            for server in group.servers:
                tail = server.log_tail()
                if tail:
                    print(f"--- last lines of {server.name}'s log ---\n{tail}", file=out)
            return 1
    print(f"all {len(rows)} steps behaved as expected; every server stopped", file=out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
