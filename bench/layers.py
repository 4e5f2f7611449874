"""Where a protected request's time goes, per adapter, in process: no server, no sockets, no load generator.

    python bench/layers.py                  # every adapter, prints a Markdown table
    python bench/layers.py --smoke          # a few requests per case, no timing claims (CI)
    python bench/layers.py --only flask,django --json out.json

``bench/e2e.py`` measures each adapter under its real server, where the kernel's network path and the
server's own parsing add noise of their own. This part calls the same benchmark apps
(``bench/e2e_apps``) directly, as their server would (a WSGI ``environ`` or an ASGI ``scope``, one
after the other in one loop), and splits what the DPoP layer adds into its parts:

* ``none`` / ``floor`` / ``protected``: the app bare, with the raw signature check only, with the
  DPoP layer (memory replay store);
* ``hook``: an empty hook of the framework's where ours sits (a pure ASGI middleware, a FastAPI
  dependency declaring what ``DPoPBearer`` declares, a Flask ``before_request``, a Django middleware
  with ``process_view``): what the framework charges for any such hook, not ours to save;
* ``no signature``: the DPoP layer with the signature call replaced by a no-op (a diagnostic, as in
  ``bench/verify.py``'s "own work alone"); the time spent inside the verifier's ``authenticate`` /
  ``aauthenticate`` is summed too, and the same calls are then timed again in a tight loop of their own;
* ``adapter_only``: the verifier's answer memoized after the first request, so only the adapter's
  translation of the request and its framework hooks run.

Every request carries a distinct, freshly signed ES256 proof (4 client keys, each with its own bound
JWT access token). Each variant runs in a fresh process (the apps read their configuration from the
environment at import), ``--rounds`` rounds each keeping its fastest round, and the whole set of
variants is repeated ``--repeat`` times in turn; a figure is the median of those. What is left when
the core's time and the adapter's are taken from the layer's is the framework's own code running
slower after ours: the two share the CPU's caches and branch predictors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from verify import signature_skipped  # noqa: E402

ADAPTERS = {  # key: (label, kind, import of the app)
    "starlette": ("Starlette", "asgi", "e2e_apps.starlette_app:app"),
    "fastapi": ("FastAPI", "asgi", "e2e_apps.fastapi_app:app"),
    "flask": ("Flask", "wsgi", "e2e_apps.flask_app:app"),
    "django": ("Django (WSGI)", "wsgi", "e2e_apps.django_app:wsgi"),
}
VARIANTS = ("none", "floor", "hook", "protected", "nosig", "adapter_only")
HOST = "127.0.0.1:8000"
URL = f"http://{HOST}/items"


# -- child: one adapter, one variant, in a fresh process ----------------------------------------------


class _CoreTimer:
    """Wraps ``DPoPVerifier.authentication`` (the flow every adapter drives, sync or async): sums the
    time from its first step to its result, ports included, and keeps the verifier."""

    def __init__(self, memoize: bool) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.verifier: Any = None
        self._memoize = memoize
        self._answer: Any = None

    def install(self, stack: contextlib.ExitStack) -> None:
        from dpop_middleware.verifier import DPoPVerifier

        original = DPoPVerifier.authentication
        timer = self

        def authentication(verifier: Any, request: Any, **kwargs: Any) -> Any:
            if timer._answer is not None:
                return timer._answer
            # One request at a time here, so the flow's wall time (an awaited store included) is its own.
            start = time.perf_counter()
            result = yield from original(verifier, request, **kwargs)
            timer._record(verifier, start, result)
            return result

        stack.enter_context(mock.patch.object(DPoPVerifier, "authentication", authentication))

    def _record(self, verifier: Any, start: float, result: Any) -> None:
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.verifier = verifier
        if self._memoize:
            self._answer = result

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0


def _load(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(__import__(module, fromlist=[name]), name)


def child(adapter: str, variant: str, per_round: int, rounds: int) -> dict[str, Any]:
    """Time ``rounds`` rounds of ``per_round`` requests through one app; the fastest round counts."""
    from dpop_middleware.client import DPoPKey
    from dpop_middleware.core.request import RequestInfo
    from dpop_middleware.testing import TestIssuer

    issuer = TestIssuer(audience=f"http://{HOST}")
    mode = {"none": "none", "floor": "floor", "hook": "hook"}.get(variant, "protected")
    os.environ.update(BENCH_MODE=mode, BENCH_STORE="memory", BENCH_ISSUER=issuer.issuer,
                      BENCH_AUDIENCE=issuer.audience, BENCH_JWKS=json.dumps(issuer.jwks))  # fmt: skip
    keys = [DPoPKey.generate("ES256") for _ in range(4)]
    tokens = [issuer.token(k.jkt) for k in keys]

    def credentials(i: int) -> tuple[str, str]:
        key, token = keys[i % len(keys)], tokens[i % len(keys)]
        return f"DPoP {token}", key.proof("GET", URL, access_token=token)

    _, kind, spec = ADAPTERS[adapter]
    with contextlib.ExitStack() as stack:
        if variant == "nosig":
            stack.enter_context(signature_skipped())
        timer = _CoreTimer(memoize=variant == "adapter_only")
        if variant in ("nosig", "adapter_only"):  # the protected variant runs untouched
            timer.install(stack)
        app = _load(spec)
        run, make = (_wsgi_runner if kind == "wsgi" else _asgi_runner)(app, credentials)
        run([make(i) for i in range(50)])  # warm-up: imports, caches, the first verifier
        best = float("inf")
        core_best = None
        for _ in range(rounds):
            requests = [make(i) for i in range(per_round)]
            timer.reset()
            seconds = run(requests)
            if seconds < best:
                best = seconds
                core_best = timer.seconds / timer.calls if timer.calls else None
        out: dict[str, Any] = {
            "adapter": adapter,
            "variant": variant,
            "us_per_req": best / per_round * 1e6,
            "verifier_calls": timer.calls,  # in the last round: 0 once memoized
        }
        if variant == "nosig" and core_best is not None:
            out["core_in_request_us"] = core_best * 1e6
            # The same verifier calls again, back to back with nothing in between.
            verifier = timer.verifier

            def info(i: int) -> Any:
                authorization, proof = credentials(i)
                return RequestInfo("GET", URL, [("authorization", authorization), ("dpop", proof)])

            out["core_tight_loop_us"] = _tight_loop(verifier, kind, info, per_round, rounds)
    return out


def _tight_loop(verifier: Any, kind: str, info: Callable[[int], Any], per_round: int, rounds: int) -> float:
    loop = asyncio.new_event_loop()

    async def run_async(requests: list[Any]) -> float:
        start = time.perf_counter()
        for request in requests:
            await verifier.aauthenticate(request)
        return time.perf_counter() - start

    def run_sync(requests: list[Any]) -> float:
        start = time.perf_counter()
        for request in requests:
            verifier.authenticate(request)
        return time.perf_counter() - start

    best = float("inf")
    for _ in range(rounds):
        requests = [info(i) for i in range(per_round)]
        seconds = run_sync(requests) if kind == "wsgi" else loop.run_until_complete(run_async(requests))
        best = min(best, seconds)
    loop.close()
    return best / per_round * 1e6


def _wsgi_runner(app: Any, credentials: Callable[[int], tuple[str, str]]) -> tuple[Any, Any]:
    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        if not status.startswith("200"):
            raise SystemExit(f"unexpected {status} {headers}")

    def make(i: int) -> dict[str, Any]:
        authorization, proof = credentials(i)
        host, port = HOST.split(":")
        return {
            "REQUEST_METHOD": "GET", "PATH_INFO": "/items", "SCRIPT_NAME": "", "QUERY_STRING": "",
            "RAW_URI": "/items", "SERVER_NAME": host, "SERVER_PORT": port, "HTTP_HOST": HOST,
            "REMOTE_ADDR": "127.0.0.1", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
            "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
            "HTTP_AUTHORIZATION": authorization, "HTTP_DPOP": proof,
        }  # fmt: skip

    def run(environs: list[dict[str, Any]]) -> float:
        start = time.perf_counter()
        for environ in environs:
            body = app(environ, start_response)
            for _ in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        return time.perf_counter() - start

    return run, make


def _asgi_runner(app: Any, credentials: Callable[[int], tuple[str, str]]) -> tuple[Any, Any]:
    loop = asyncio.new_event_loop()

    def make(i: int) -> dict[str, Any]:
        authorization, proof = credentials(i)
        return {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": "/items", "raw_path": b"/items", "query_string": b"", "root_path": "",
            "headers": [(b"host", HOST.encode()), (b"authorization", authorization.encode()),
                        (b"dpop", proof.encode())],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {},
        }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise SystemExit(f"unexpected {message['status']}")

    async def serve(scopes: list[dict[str, Any]]) -> float:
        start = time.perf_counter()
        for scope in scopes:
            await app(scope, receive, send)
        return time.perf_counter() - start

    return (lambda scopes: loop.run_until_complete(serve(scopes))), make


# -- parent: every adapter and variant, each in a process of its own -----------------------------------


def measure(adapters: list[str], per_round: int, rounds: int, repeat: int) -> list[dict[str, Any]]:
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _ in range(repeat):
        for adapter in adapters:
            for variant in VARIANTS:
                command = [sys.executable, str(Path(__file__).resolve()), "--child", adapter, variant,
                           "--requests", str(per_round), "--rounds", str(rounds)]  # fmt: skip
                done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
                if done.returncode != 0:
                    raise SystemExit(f"{adapter}/{variant} failed:\n{done.stdout}{done.stderr}")
                results.setdefault((adapter, variant), []).append(json.loads(done.stdout.strip().splitlines()[-1]))
    rows = []
    for adapter in adapters:
        row: dict[str, Any] = {"adapter": adapter, "label": ADAPTERS[adapter][0]}
        for variant in VARIANTS:
            runs = results[(adapter, variant)]
            row[variant] = statistics.median(r["us_per_req"] for r in runs)
            for extra in ("core_in_request_us", "core_tight_loop_us"):
                values = [r[extra] for r in runs if extra in r]
                if values:
                    row[f"{variant}_{extra}"] = statistics.median(values)
        rows.append(row)
    return rows


def split(row: dict[str, Any]) -> dict[str, float | None]:
    """What the layer (signature skipped) adds over the bare app, in its parts, µs per request.

    ``layer`` = ``verifier`` + ``hook`` + ``adapter`` + ``left``; ``verifier`` and ``left`` are
    ``None`` when the in-request timing is missing.
    """
    base = row["none"]
    layer = row["nosig"] - base
    verifier = row.get("nosig_core_in_request_us")
    hook = row["hook"] - base
    adapter = row["adapter_only"] - row["hook"]
    return {
        "layer": layer,
        "verifier": verifier,
        "tight_loop": row.get("nosig_core_tight_loop_us"),
        "hook": hook,
        "adapter": adapter,
        "left": None if verifier is None else layer - verifier - hook - adapter,
    }


def table(rows: list[dict[str, Any]]) -> list[str]:
    """The split as a Markdown table, µs per request; the last four columns add up to the fifth."""
    lines = [
        "| adapter | framework alone µs/req | raw signature check adds | DPoP layer adds | DPoP layer, signature "
        "skipped, adds | of which: the verifier | (the same verifier calls in a tight loop) | an empty framework "
        "hook in its place | our adapter's code | left: the framework's own code slowed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        base, parts = r["none"], split(r)
        lines.append(
            f"| {r['label']} | {base:.1f} | +{r['floor'] - base:.1f} | +{r['protected'] - base:.1f} "
            f"| +{parts['layer']:.1f} | {_num(parts['verifier'])} | {_num(parts['tight_loop'])} "
            f"| {parts['hook']:.1f} | {parts['adapter']:.1f} | {_num(parts['left'])} |"
        )
    return lines


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few requests per case, no timing claims")
    parser.add_argument("--only", default=",".join(ADAPTERS), help="comma-separated: " + ", ".join(ADAPTERS))
    parser.add_argument("--requests", type=int, default=3000, help="requests per round (default 3000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per process, the fastest counts (default 5)")
    parser.add_argument("--repeat", type=int, default=3, help="passes over every variant; medians (default 3)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument("--child", nargs=2, metavar=("ADAPTER", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.requests, args.rounds)))
        return 0
    adapters = [a for a in args.only.split(",") if a]
    unknown = [a for a in adapters if a not in ADAPTERS]
    if unknown:
        parser.error(f"unknown adapters {unknown}")
    per_round, rounds, repeat = (30, 1, 1) if args.smoke else (args.requests, args.rounds, args.repeat)
    rows = measure(adapters, per_round, rounds, repeat)
    print("\n".join(table(rows)))
    if args.smoke:
        print("\nsmoke run: figures are not meaningful")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "meta": {"requests": per_round, "rounds": rounds,
                                                                "repeat": repeat}}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
