"""End-to-end benchmark: each adapter under its real server on 127.0.0.1, with and without DPoP.

    python bench/e2e.py                      # 5 s per case, wrk when installed, prints Markdown tables
    python bench/e2e.py --smoke              # a few hundred requests per case, no timing claims
    python bench/e2e.py --only flask,starlette --seconds 10 --json out.json

Servers (one worker each, so that on a 2-core machine one core serves and the other drives the load):
Starlette and FastAPI under uvicorn, Flask and Django under gunicorn (sync worker), Django under
uvicorn (ASGI). Each serves ``GET /items`` (a small JSON body) four ways: without the DPoP layer
(``none``); with only the raw signature check of the request's proof in a minimal hook (``floor``:
the cryptographic floor any DPoP layer pays, measured in the same server; ``e2e_apps/floor.py``);
with the adapter and the in-memory replay store (``memory``); and with the adapter and the Redis
store (``redis``, against a throw-away ``redis-server`` on loopback).

``--profile DIR`` samples each server worker with py-spy during its run and writes collapsed stacks
(one file per case) for flame graphs or a quick ``sort | uniq``; the figures of a profiled run are
slower than an unprofiled one.

Every request carries an ``Authorization: DPoP <token>`` and a ``DPoP`` proof header, in all four
variants so the requests are byte-for-byte the same size. The proofs are signed (ES256, four client
keys, each with its own bound access token) just before each run for the exact URL, and every
protected request gets a proof of its own: a proof seen twice would be rejected as a replay, and a
run with any non-2xx answer is reported as invalid instead of as a figure.

Measured per case: successful requests/s, p50/p99 latency (from the load generator), and server
CPU per request: user+system CPU time of every process in the server's process group (gunicorn's
master and worker, or uvicorn), read from ``/proc/<pid>/stat`` before and after the run. For the
Redis variant the ``redis-server`` CPU and its command count (``INFO commandstats``) per request are
reported too. Each server is started in its own session and stopped by pid when its case ends.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(BENCH)]

from e2e_apps.common import BODY, ENV_AUDIENCE, ENV_ISSUER, ENV_JWKS, ENV_MODE, ENV_STORE, PATH  # noqa: E402
from loadgen import LoadResult, run_python, run_wrk, wrk_available  # noqa: E402
from servers import free_port, running  # noqa: E402

from dpop_middleware.client import DPoPKey  # noqa: E402
from dpop_middleware.testing import TestIssuer  # noqa: E402

VARIANTS = ("none", "floor", "memory", "redis")
#: The app's mode per variant (``e2e_apps.common.mode``).
_MODES = {"none": "none", "floor": "floor", "memory": "protected", "redis": "protected"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ServerSpec:
    """One adapter under one real server."""

    key: str
    adapter: str
    server: str  # "uvicorn" or "gunicorn"
    app: str  # "module:attribute" with bench/ on PYTHONPATH
    env: tuple[tuple[str, str], ...] = ()
    rps_target: float | None = None  # protected (memory store) req/s over unprotected req/s, at least

    def argv(self, port: int) -> list[str]:
        if self.server == "gunicorn":
            return [
                sys.executable, "-m", "gunicorn", "-k", "sync", "-w", "1", "-b", f"127.0.0.1:{port}",
                "--log-level", "warning", "--graceful-timeout", "2", self.app,
            ]  # fmt: skip
        return [
            sys.executable, "-m", "uvicorn", self.app, "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning", "--no-access-log", "--timeout-graceful-shutdown", "2",
        ]  # fmt: skip


SERVERS = (
    ServerSpec("starlette", "Starlette", "uvicorn", "e2e_apps.starlette_app:app", rps_target=0.65),
    ServerSpec("fastapi", "FastAPI", "uvicorn", "e2e_apps.fastapi_app:app"),
    ServerSpec("flask", "Flask", "gunicorn", "e2e_apps.flask_app:app", rps_target=0.75),
    ServerSpec("django-wsgi", "Django", "gunicorn", "e2e_apps.django_app:wsgi", rps_target=0.75),
    ServerSpec("django-asgi", "Django", "uvicorn", "e2e_apps.django_app:asgi", (("BENCH_DJANGO_ASYNC", "1"),)),
)
#: Redis store: at most this much more server CPU per request than the memory store.
REDIS_CPU_TARGET = 0.15
#: ... and at most this many Redis commands (round trips) per request.
REDIS_COMMANDS_TARGET = 1.0


class CaseError(RuntimeError):
    """A case that could not be measured (server misbehaved, sanity check failed)."""


@dataclass
class Row:
    """One measured case."""

    server: str
    adapter: str
    runner: str
    variant: str
    generator: str = ""
    responses: int = 0
    errors: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cpu_us_per_req: float = 0.0
    redis_cpu_us_per_req: float | None = None
    redis_commands_per_req: float | None = None
    redis_commands: int | None = None
    in_flight: int = 0  # requests the load generator may leave unanswered when it stops
    failure: str | None = None


@dataclass
class Settings:
    seconds: int
    connections: int
    loadgen: str  # "wrk" or "python"
    processes: int
    max_requests: int | None
    workdir: Path
    smoke: bool
    redis_port: int | None = None
    redis_pid: int | None = None
    unprotected_rps: dict[str, float] = field(default_factory=dict)
    profile_dir: Path | None = None


# -- measuring -------------------------------------------------------------------------------------


def group_cpu_seconds(pgid: int) -> float:
    """User+system CPU seconds of every live process in process group ``pgid`` (and its reaped children)."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii") as fh:
                stat = fh.read()
        except OSError:  # the process went away meanwhile
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid:
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / CLK_TCK


# Sent once per new connection, not per request: the handshake redis-py does, and our own INFO.
_SETUP_COMMANDS = ("cmdstat_info", "cmdstat_client|", "cmdstat_hello", "cmdstat_select", "cmdstat_auth")


def redis_commands(port: int) -> int:
    """Commands Redis has executed so far, connection set-up and our own INFO calls excluded."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        stats: dict[str, Any] = client.info("commandstats")
    except redis.RedisError as exc:
        raise CaseError(f"cannot read Redis command stats: {type(exc).__name__}") from exc
    finally:
        client.close()
    return sum(int(v["calls"]) for k, v in stats.items() if not k.startswith(_SETUP_COMMANDS))


# -- requests --------------------------------------------------------------------------------------


class Client:
    """The benchmark's client side: four ES256 keys, each with its own bound access token."""

    def __init__(self) -> None:
        self.issuer = TestIssuer(issuer="https://issuer.bench", audience="https://api.bench")
        self.keys = [DPoPKey.generate("ES256") for _ in range(4)]
        self.tokens = [self.issuer.token(k.jkt, lifetime=3600) for k in self.keys]

    def env(self) -> dict[str, str]:
        return {
            ENV_ISSUER: self.issuer.issuer,
            ENV_AUDIENCE: self.issuer.audience,
            ENV_JWKS: json.dumps(self.issuer.jwks),
        }

    def headers(self, url: str, i: int) -> dict[str, str]:
        key, token = self.keys[i % len(self.keys)], self.tokens[i % len(self.keys)]
        return {"Authorization": f"DPoP {token}", "DPoP": key.proof("GET", url, access_token=token)}

    def write_proofs(self, url: str, count: int, path: Path) -> None:
        """``count`` distinct proofs for ``GET url``, fresh ``iat``: sign them right before the run."""
        with open(path, "w", encoding="ascii") as fh:
            for i in range(count):
                h = self.headers(url, i)
                fh.write(f"{h['Authorization']}\t{h['DPoP']}\n")


def _get(port: int, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", PATH, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def sanity_check(port: int, client: Client, variant: str) -> None:
    """Prove the case measures what it claims, then warm the server up with 20 good requests."""
    url = f"http://127.0.0.1:{port}{PATH}"
    good = client.headers(url, 0)
    status, _, body = _get(port, good)
    if status != 200 or json.loads(body) != BODY:
        raise CaseError(f"a valid request got {status} {body[:200]!r}")
    if variant == "floor":
        # The yardstick must really verify: a request without a proof, or with a forged one, fails.
        status, _, _ = _get(port, {})
        tail = "BBBBBBBB" if good["DPoP"].endswith("AAAAAAAA") else "AAAAAAAA"
        forged = dict(good, DPoP=good["DPoP"][:-8] + tail)
        status2, _, _ = _get(port, forged)
        if status != 401 or status2 != 401:
            raise CaseError(f"floor: a request without a valid signature got {status}/{status2}, not 401")
    elif variant != "none":
        status, headers, _ = _get(port, {})
        if status != 401 or not headers.get("www-authenticate", "").startswith("DPoP"):
            raise CaseError(f"no credentials: expected a 401 DPoP challenge, got {status}")
        status, _, _ = _get(port, good)
        if status != 401:
            raise CaseError(f"a replayed proof was not rejected ({status}): the replay store is not in the path")
    for i in range(1, 21):
        status, _, _ = _get(port, client.headers(url, i))
        if status != 200:
            raise CaseError(f"warm-up request got {status}")


# -- cases -----------------------------------------------------------------------------------------


def _proofs_needed(settings: Settings, spec: ServerSpec, variant: str) -> int:
    if settings.max_requests is not None:
        return settings.max_requests + 50
    if variant in ("none", "floor"):
        return 2000  # reused in a loop: neither the bare app nor the signature-only check looks for replays
    # Enough for the run at 1.5x the unprotected rate (protected is slower, but a busy machine can slow
    # the unprotected run down); running out would show as rejected replays, i.e. a failed case.
    rps = max(2000.0, settings.unprotected_rps.get(spec.key) or 6000.0)
    return min(400_000, math.ceil(rps * settings.seconds * 1.5) + 1000)


def _load(settings: Settings, port: int, proof_file: Path) -> LoadResult:
    if settings.loadgen == "wrk":
        return run_wrk(port, PATH, proof_file, seconds=settings.seconds, connections=settings.connections)
    return run_python(
        port, PATH, proof_file, seconds=settings.seconds, processes=settings.processes,
        max_requests=settings.max_requests,
    )  # fmt: skip


def _worker_pid(server_pid: int) -> int:
    """The process serving requests: gunicorn's (only) worker, or uvicorn itself."""
    children = Path(f"/proc/{server_pid}/task/{server_pid}/children")
    with contextlib.suppress(OSError):
        pids = [int(p) for p in children.read_text().split()]
        if pids:
            return pids[0]
    return server_pid


@contextlib.contextmanager
def _profiled(settings: Settings, server_pid: int, name: str) -> Iterator[None]:
    """With ``--profile DIR``: sample the worker with py-spy during the run (collapsed stacks)."""
    if settings.profile_dir is None:
        yield
        return
    out = settings.profile_dir / f"{name}.txt"
    spy = subprocess.Popen(
        ["py-spy", "record", "--pid", str(_worker_pid(server_pid)), "--format", "raw", "--rate", "250",
         "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(timeout=20)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


def run_case(settings: Settings, client: Client, spec: ServerSpec, variant: str) -> Row:
    """Start the server, check it, sign proofs, drive the load, read the CPU counters, stop it."""
    row = Row(spec.key, spec.adapter, spec.server, variant)
    store = "memory" if variant != "redis" else f"redis://127.0.0.1:{settings.redis_port}/0"
    env = {
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH)]),
        ENV_MODE: _MODES[variant],
        ENV_STORE: store,
        **client.env(),
        **dict(spec.env),
    }
    port = free_port()
    log = settings.workdir / f"{spec.key}-{variant}.log"
    proof_file = settings.workdir / f"{spec.key}-{variant}.proofs"
    try:
        with running(spec.argv(port), port, env=env, timeout=60, log_path=log) as proc:
            sanity_check(port, client, variant)
            client.write_proofs(f"http://127.0.0.1:{port}{PATH}", _proofs_needed(settings, spec, variant), proof_file)
            redis_port, redis_pid = settings.redis_port or 0, settings.redis_pid or 0
            redis_on = variant == "redis" and redis_port > 0 and redis_pid > 0
            cpu0 = group_cpu_seconds(proc.pid)
            if redis_on:
                rcpu0, rcmd0 = group_cpu_seconds(redis_pid), redis_commands(redis_port)
            with _profiled(settings, proc.pid, f"{spec.key}-{variant}"):
                result = _load(settings, port, proof_file)
            cpu1 = group_cpu_seconds(proc.pid)
            if redis_on:
                rcpu1, rcmd1 = group_cpu_seconds(redis_pid), redis_commands(redis_port)
            if proc.poll() is not None:
                raise CaseError(f"server exited during the run ({proc.returncode})")
    except (CaseError, RuntimeError, TimeoutError, OSError, ValueError, subprocess.SubprocessError) as exc:
        row.failure = f"{type(exc).__name__}: {exc} (server log: {log})"
        return row
    finally:
        with contextlib.suppress(OSError):
            proof_file.unlink()
    total = result.responses + result.errors
    row.generator, row.responses, row.errors = result.generator, result.responses, result.errors
    row.seconds = result.seconds
    row.rps, row.p50_ms, row.p99_ms = result.rps, result.p50_ms, result.p99_ms
    row.cpu_us_per_req = (cpu1 - cpu0) / total * 1e6 if total else 0.0
    if redis_on and total:
        row.redis_cpu_us_per_req = (rcpu1 - rcpu0) / total * 1e6
        row.redis_commands_per_req = (rcmd1 - rcmd0) / total
        row.redis_commands = rcmd1 - rcmd0
        # Requests still in flight when the generator stops reached Redis but are not counted as answered.
        row.in_flight = settings.connections if settings.loadgen == "wrk" else settings.processes
    if result.errors:
        row.failure = f"{result.errors} non-2xx or socket errors (proofs exhausted or server overloaded)"
    if variant == "none" and not row.failure:
        settings.unprotected_rps[spec.key] = row.rps
    return row


@contextlib.contextmanager
def redis_process() -> Iterator[tuple[int, int]]:
    """A throw-away redis-server (no persistence) on loopback: yields (port, pid)."""
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with running(argv, port) as proc:
        yield port, proc.pid


def median_row(rows: list[Row]) -> Row:
    """The round with the median req/s (a real measurement, its CPU and latency with it); a case with
    any failed round is reported as failed."""
    failed = [r for r in rows if r.failure]
    if failed:
        return failed[0]
    return sorted(rows, key=lambda r: r.rps)[len(rows) // 2]


# -- report ----------------------------------------------------------------------------------------


def _find(rows: list[Row], key: str, variant: str) -> Row | None:
    return next((r for r in rows if r.server == key and r.variant == variant and not r.failure), None)


def checks(rows: list[Row]) -> list[dict[str, Any]]:
    """The targets of the performance issue, measured against this run's rows."""
    out: list[dict[str, Any]] = []
    for spec in SERVERS:
        none, floor, memory, redis_row = (_find(rows, spec.key, v) for v in VARIANTS)
        label = f"{spec.adapter}/{spec.server}"
        if none and floor:
            ratio = floor.rps / none.rps if none.rps else 0.0
            out.append({"check": f"{label}: the floor (raw signature check only) req/s vs unprotected",
                        "measured": f"{ratio:.0%}", "target": "(the best any DPoP layer can do)",
                        "ok": None})  # fmt: skip
        if floor and memory:
            ratio = memory.rps / floor.rps if floor.rps else 0.0
            out.append({"check": f"{label}: protected req/s vs the floor", "measured": f"{ratio:.0%}",
                        "target": "(none set)", "ok": None})  # fmt: skip
        if none and memory:
            ratio = memory.rps / none.rps if none.rps else 0.0
            target = spec.rps_target
            out.append({"check": f"{label}: protected req/s vs unprotected", "measured": f"{ratio:.0%}",
                        "target": f">= {target:.0%}" if target else "(none set)",
                        "ok": None if target is None else ratio >= target})  # fmt: skip
        if memory and redis_row and memory.cpu_us_per_req:
            extra = redis_row.cpu_us_per_req / memory.cpu_us_per_req - 1
            out.append({"check": f"{label}: Redis store server CPU/req vs memory store", "measured": f"{extra:+.0%}",
                        "target": f"<= +{REDIS_CPU_TARGET:.0%}", "ok": extra <= REDIS_CPU_TARGET})  # fmt: skip
        if redis_row and redis_row.redis_commands is not None:
            cmds = redis_row.redis_commands_per_req or 0.0
            answered = redis_row.responses + redis_row.errors
            ok = redis_row.redis_commands <= REDIS_COMMANDS_TARGET * (answered + redis_row.in_flight)
            out.append({"check": f"{label}: Redis commands (round trips) per request", "measured": f"{cmds:.3f}",
                        "target": f"<= {REDIS_COMMANDS_TARGET:g}", "ok": ok})  # fmt: skip
    return out


def markdown(rows: list[Row], smoke: bool) -> str:
    """The results and the target checks as Markdown tables."""
    lines = [
        "| adapter | server | variant | req/s | vs none | p50 ms | p99 ms | server CPU µs/req | redis CPU µs/req |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.failure:
            lines.append(f"| {row.adapter} | {row.runner} | {row.variant} | FAILED: {row.failure} | | | | | |")
            continue
        none = _find(rows, row.server, "none")
        vs = f"{row.rps / none.rps:.0%}" if none and none.rps else ""
        redis_cpu = "" if row.redis_cpu_us_per_req is None else f"{row.redis_cpu_us_per_req:.0f}"
        lines.append(
            f"| {row.adapter} | {row.runner} | {row.variant} | {row.rps:,.0f} | {vs} | {row.p50_ms:.2f} | "
            f"{row.p99_ms:.2f} | {row.cpu_us_per_req:.0f} | {redis_cpu} |"
        )
    lines += ["", "| check | measured | target | verdict |", "|---|---:|---|---|"]
    for check in checks(rows):
        verdict = "" if check["ok"] is None else ("ok" if check["ok"] else "MISSED")
        if smoke:
            verdict = "smoke run: no claim"
        lines.append(f"| {check['check']} | {check['measured']} | {check['target']} | {verdict} |")
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few hundred requests per case, no timing claims")
    parser.add_argument("--seconds", type=int, default=5, help="duration of each measured run (default 5)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    parser.add_argument(
        "--loadgen",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="auto: wrk when installed (in --smoke: python, to bound the request count)",
    )
    parser.add_argument("--processes", type=int, default=4, help="python load generator processes (default 4)")
    parser.add_argument("--requests", type=int, default=None, help="python generator: stop after this many")
    parser.add_argument("--only", default="", help=f"comma-separated servers: {', '.join(s.key for s in SERVERS)}")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from none,floor,memory,redis")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and checks to this file")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of every case; each case reports its median round (default 1)"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="sample each server worker with py-spy during its run; collapsed stacks into this directory",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    loadgen = args.loadgen
    if loadgen == "auto":
        loadgen = "python" if args.smoke or not wrk_available() else "wrk"
    if loadgen == "wrk" and not wrk_available():
        print("wrk is not installed; use --loadgen python", file=sys.stderr)
        return 2
    max_requests = args.requests
    seconds = args.seconds
    if args.smoke:
        seconds = 1 if loadgen == "wrk" else 10  # the python generator stops at --requests first
        max_requests = max_requests or (300 if loadgen == "python" else None)
    wanted = {s for s in args.only.split(",") if s}
    unknown = wanted - {s.key for s in SERVERS}
    variants = [v for v in args.variants.split(",") if v]
    if unknown or not set(variants) <= set(VARIANTS):
        print(f"unknown server or variant: {sorted(unknown) or variants}", file=sys.stderr)
        return 2
    specs = [s for s in SERVERS if not wanted or s.key in wanted]
    client = Client()
    rows: list[Row] = []
    repeat = 1 if args.smoke else max(1, args.repeat)
    with tempfile.TemporaryDirectory(prefix="dpop-bench-") as tmp, contextlib.ExitStack() as stack:
        settings = Settings(seconds, args.connections, loadgen, args.processes, max_requests, Path(tmp), args.smoke)
        if args.profile is not None:
            if shutil.which("py-spy") is None:
                print("--profile needs py-spy (pip install py-spy)", file=sys.stderr)
                return 2
            args.profile.mkdir(parents=True, exist_ok=True)
            settings.profile_dir = args.profile
        if "redis" in variants:
            settings.redis_port, settings.redis_pid = stack.enter_context(redis_process())
        runs: dict[tuple[str, str], list[Row]] = {}
        for _ in range(repeat):
            # Rounds of every case, one after the other: a slow spell of a shared machine then hits one
            # round of every variant instead of every round of one variant.
            for spec in specs:
                for variant in VARIANTS:
                    if variant in variants:
                        row = run_case(settings, client, spec, variant)
                        note = row.failure or ""
                        print(f"# {spec.key:12} {variant:7} {row.rps:9,.0f} req/s  {note}", file=sys.stderr)
                        runs.setdefault((spec.key, variant), []).append(row)
        rows = [median_row(case_rows) for case_rows in runs.values()]
        if any(r.failure for r in rows):
            # Keep the server logs of failed cases where the user can read them.
            keep = Path(tempfile.mkdtemp(prefix="dpop-bench-logs-"))
            for log in Path(tmp).glob("*.log"):
                log.rename(keep / log.name)
            for row in rows:
                if row.failure:
                    row.failure = row.failure.replace(tmp, str(keep))
    meta = {
        "loadgen": loadgen, "seconds": seconds, "repeat": repeat,
        "connections": args.connections if loadgen == "wrk" else args.processes,
        "max_requests": max_requests, "workers": 1, "smoke": args.smoke,
    }  # fmt: skip
    print(markdown(rows, args.smoke))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows], "checks": checks(rows)},
                                        indent=1))  # fmt: skip
    return 1 if any(r.failure for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
