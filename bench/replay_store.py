"""Per-request cost of the Redis replay store against the in-memory one, same server, same load.

    python bench/replay_store.py                 # 2000 requests per store, 8 client threads
    python bench/replay_store.py --smoke         # a few hundred requests (what the test suite runs)
    python bench/replay_store.py --server gunicorn --requests 5000 --json

In one run it starts a throw-away redis-server, then the same app (``concurrency_apps``: a bare
ASGI app under uvicorn, or WSGI under gunicorn, one worker) once with each store, and drives each
with the same bounded load generator, a separate Python process that signs every proof before the
clock starts. Redis's own ``INFO commandstats`` before and after each run gives the number of
commands the store sent per request: one ``SET NX PX``, so at most one network round trip.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from concurrency_apps.config import app_env  # noqa: E402
from concurrency_apps.support import APPS, AppSpec, app_server, redis_process  # noqa: E402
from e2e import SETUP_COMMANDS  # noqa: E402

from dpop_middleware.client import DPoPKey  # noqa: E402
from dpop_middleware.testing import TestIssuer  # noqa: E402

# -- the load generator (its own process) ------------------------------------------------------


def _load_main() -> None:
    """Read a job from stdin, sign every proof, then send them; print a JSON summary."""
    job = json.load(sys.stdin)
    key = DPoPKey.from_pem(job["pem"], "ES256")
    url, token, port = job["url"], job["token"], job["port"]
    proofs = [key.proof("GET", url, access_token=token) for _ in range(job["requests"])]
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    lock = threading.Lock()
    cursor = iter(range(len(proofs)))

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        codes: list[int] = []
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                break
            started = time.perf_counter()
            conn.request("GET", "/protected", headers={"Authorization": f"DPoP {token}", "DPoP": proofs[i]})
            resp = conn.getresponse()
            resp.read()
            mine.append(time.perf_counter() - started)
            codes.append(resp.status)
        conn.close()
        with lock:
            latencies.extend(mine)
            for code in codes:
                statuses[code] = statuses.get(code, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(job["concurrency"])]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    json.dump({"statuses": statuses, "elapsed": elapsed, "latencies": latencies}, sys.stdout)


def _run_load(port: int, issuer: TestIssuer, requests: int, concurrency: int) -> dict[str, Any]:
    key = DPoPKey.generate()
    job = {
        "pem": key.private_pem().decode(),
        "token": issuer.token(key.jkt, lifetime=3600),
        "url": f"http://127.0.0.1:{port}/protected",
        "port": port,
        "requests": requests,
        "concurrency": concurrency,
    }
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    out = subprocess.run(
        [sys.executable, __file__, "--load-generator"],
        input=json.dumps(job).encode(),
        capture_output=True,
        check=True,
        timeout=600,
        env=env,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


# -- the orchestrator ---------------------------------------------------------------------------


@dataclass
class Row:
    store: str
    requests: int
    accepted: int
    rps: float
    mean_ms: float
    p50_ms: float
    p99_ms: float
    redis_commands: int
    set_commands: int

    @property
    def commands_per_request(self) -> float:
        return self.redis_commands / self.requests


def _commandstats(monitor: Any) -> dict[str, int]:
    # One long-lived connection for every snapshot, so its own setup is never inside a delta.
    stats = monitor.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    # Neither our own INFO calls nor the handshake of a connection the store opens mid-run (when
    # the load reaches a concurrency the warm-up did not) are per-request traffic.
    return {
        k: v - before.get(k, 0)
        for k, v in after.items()
        if v != before.get(k, 0) and not f"cmdstat_{k}".startswith(SETUP_COMMANDS)
    }


@contextlib.contextmanager
def _server(spec: AppSpec, issuer: TestIssuer, store: str) -> Iterator[int]:
    with app_server(spec, app_env(issuer, store, timeout=1.0)) as port:
        yield port


def _measure(spec: AppSpec, issuer: TestIssuer, name: str, store: str, monitor: Any, args: argparse.Namespace) -> Row:
    with _server(spec, issuer, store) as port:
        # Warm up with the same concurrency: imports, JIT-free caches, and the Redis pool's
        # connections (their one-time setup commands are not per-request cost).
        _run_load(port, issuer, max(args.concurrency * 5, 20), args.concurrency)
        before = _commandstats(monitor)
        result = _run_load(port, issuer, args.requests, args.concurrency)
        commands = _delta(before, _commandstats(monitor))
    latencies = sorted(result["latencies"])
    return Row(
        store=name,
        requests=args.requests,
        accepted=int(result["statuses"].get("200", 0)),
        rps=args.requests / result["elapsed"],
        mean_ms=statistics.fmean(latencies) * 1000,
        p50_ms=latencies[len(latencies) // 2] * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        redis_commands=sum(commands.values()),
        set_commands=commands.get("set", 0),
    )


def _table(rows: list[Row], spec: AppSpec, args: argparse.Namespace) -> str:
    head = (
        f"{'store':<8} {'requests':>8} {'200s':>6} {'req/s':>8} {'mean ms':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'redis cmds/req':>15}"
    )
    lines = [
        f"server: {spec.name} (1 worker), {args.concurrency} client connections, {args.requests} requests per store",
        head,
        "-" * len(head),
    ]
    lines += [
        f"{r.store:<8} {r.requests:>8} {r.accepted:>6} {r.rps:>8.0f} {r.mean_ms:>8.2f} {r.p50_ms:>7.2f} "
        f"{r.p99_ms:>7.2f} {r.commands_per_request:>15.2f}"
        for r in rows
    ]
    memory, redis_row = rows
    lines.append(
        f"redis store adds {redis_row.mean_ms - memory.mean_ms:+.2f} ms per request (mean) and "
        f"{redis_row.commands_per_request:.2f} round trips per request "
        f"({'<= 1: OK' if redis_row.commands_per_request <= 1 else '> 1: TOO MANY'})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per store")
    parser.add_argument("--concurrency", type=int, default=8, help="client connections")
    parser.add_argument("--server", choices=["uvicorn", "gunicorn"], default="uvicorn")
    parser.add_argument("--smoke", action="store_true", help="a quick run of a few hundred requests")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON after the table")
    parser.add_argument("--load-generator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.load_generator:
        _load_main()
        return 0
    if args.smoke:
        args.requests, args.concurrency = 200, 4
    kind = "asgi" if args.server == "uvicorn" else "wsgi"
    base = next(spec for spec in APPS if spec.kind == kind)
    spec = AppSpec(base.name, base.kind, base.app, workers=1)
    issuer = TestIssuer()
    import redis

    with redis_process() as (redis_port, _), contextlib.closing(redis.Redis(port=redis_port)) as monitor:
        rows = [
            _measure(spec, issuer, "memory", "memory", monitor, args),
            _measure(spec, issuer, "redis", f"redis://127.0.0.1:{redis_port}/0", monitor, args),
        ]
    print(_table(rows, spec, args))
    if args.json:
        print(json.dumps([dict(asdict(r), commands_per_request=r.commands_per_request) for r in rows]))
    memory, redis_row = rows
    all_accepted = all(r.accepted == r.requests for r in rows)
    return 0 if all_accepted and redis_row.commands_per_request <= 1 and memory.redis_commands == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
