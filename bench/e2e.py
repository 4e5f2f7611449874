"""End-to-end benchmark: each adapter under its real server on 127.0.0.1, with and without DPoP.

    python bench/e2e.py                      # 5 rounds of 2 s per case, wrk when installed, Markdown tables
    python bench/e2e.py --smoke              # a few hundred requests per case, no timing claims
    python bench/e2e.py --only flask,starlette --seconds 10 --json out.json
    python bench/e2e.py --algs ES256,RS256   # every case once per proof algorithm

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
variants so the requests are byte-for-byte the same size. The proofs are signed (ES256 unless
``--algs`` says otherwise; four client keys, each with its own bound access token) just before each
run for the exact URL, and every
protected request gets a proof of its own: a proof seen twice would be rejected as a replay, and a
run with any non-2xx answer is reported as invalid instead of as a figure.

The four servers of an adapter are started once and measured in turn, ``--repeat`` rounds of
``--seconds`` each (none, floor, memory, redis, none, floor, ...); a row is its variant's median
round and each ratio the median of the per-round ratios. The server runs pinned to core 0 and the
load generator to the other cores (``loadgen.pinned``), so that none of them moves the server's
process around mid-run.

``--redis-core`` says where ``redis-server`` runs: on the server's core (``server``, the default) or
on the load generator's (``client``). On a virtual machine a sync worker pays for waking a Redis
that sleeps on the other CPU; ``bench/README.md`` ("Where Redis runs") has the trace and figures.

Measured per run: successful requests/s, p50/p99 latency (from the load generator), and server
CPU per request: user+system CPU time of every process in the server's process group (gunicorn's
master and worker, or uvicorn), read from ``/proc/<pid>/stat`` before and after the run. For the
Redis variant the ``redis-server`` CPU and its command count (``INFO commandstats``) per request are
reported too. Each server is started in its own session and stopped by pid when its adapter's
rounds end.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(BENCH)]

from concurrency_apps.support import redis_argv  # noqa: E402
from e2e_apps.common import BODY, ENV_AUDIENCE, ENV_ISSUER, ENV_JWKS, ENV_MODE, ENV_STORE, PATH  # noqa: E402
from loadgen import CLIENT_CPUS, SERVER_CPUS, LoadResult, pinned, run_python, run_wrk, wrk_available  # noqa: E402
from servers import free_port, running  # noqa: E402

from dpop_middleware.client import DPoPKey  # noqa: E402
from dpop_middleware.testing import TestIssuer  # noqa: E402

VARIANTS = ("none", "floor", "memory", "redis")
#: Proof algorithms the benchmark can sign with (and ``e2e_apps/floor.py`` can check).
ALGS = ("ES256", "EdDSA", "RS256", "PS256")
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
        """The server's command line, pinned to the server's core (``loadgen.pinned``)."""
        return pinned(self._argv(port), SERVER_CPUS)

    def _argv(self, port: int) -> list[str]:
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
#: Redis store: at most this much more server CPU per request than the memory store (issue 24: +20%).
REDIS_CPU_TARGET = 0.20
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
    alg: str = "ES256"  # of the proofs
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
    # Paired figures: the median over rounds of this round's value against the same round's other
    # variant (measured seconds apart), steadier on a shared machine than a ratio of two medians.
    rps_vs_none: float | None = None
    rps_vs_floor: float | None = None
    cpu_vs_memory: float | None = None  # server CPU per request over the memory store's, minus 1
    # Server CPU µs per request above each variant measured before it in the same rounds (paired).
    cpu_us_over: dict[str, float] = field(default_factory=dict)


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
    best_rps: dict[tuple[str, str], float] = field(default_factory=dict)  # by (alg, server)
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
SETUP_COMMANDS = ("cmdstat_info", "cmdstat_client|", "cmdstat_hello", "cmdstat_select", "cmdstat_auth")


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
    return sum(int(v["calls"]) for k, v in stats.items() if not k.startswith(SETUP_COMMANDS))


# -- requests --------------------------------------------------------------------------------------


class Client:
    """The benchmark's client side: four keys for ``alg``, each with its own bound access token."""

    def __init__(self, alg: str = "ES256", issuer: TestIssuer | None = None) -> None:
        self.alg = alg
        self.issuer = issuer or TestIssuer(issuer="https://issuer.bench", audience="https://api.bench")
        self.keys = [DPoPKey.generate(alg) for _ in range(4)]
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

    def lines(self, url: str, start: int, stop: int) -> str:
        """Proof file lines ``start..stop`` (see ``loadgen``) for ``GET url``."""
        out = []
        for i in range(start, stop):
            h = self.headers(url, i)
            out.append(f"{h['Authorization']}\t{h['DPoP']}\n")
        return "".join(out)

    def write_proofs(self, url: str, count: int, path: Path) -> None:
        """``count`` distinct proofs for ``GET url``, fresh ``iat``: sign them right before the run.

        RSA signing is slow (~0.4 ms a proof): big batches are signed on every core, in forked
        processes that inherit this client (its keys never leave the machine's memory).
        """
        cores = len(os.sched_getaffinity(0))
        if count < 4000 or cores < 2 or "fork" not in multiprocessing.get_all_start_methods():
            chunks = [self.lines(url, 0, count)]
        else:
            _SIGNER["client"] = self
            step = -(-count // cores)
            with multiprocessing.get_context("fork").Pool(cores) as pool:
                chunks = pool.map(_sign_lines, [(url, i, min(count, i + step)) for i in range(0, count, step)])
        with open(path, "w", encoding="ascii") as fh:
            fh.writelines(chunks)


_SIGNER: dict[str, Client] = {}  # the client a forked signing process inherits


def _sign_lines(job: tuple[str, int, int]) -> str:
    return _SIGNER["client"].lines(*job)


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


def _proofs_needed(settings: Settings, client: Client, spec: ServerSpec, variant: str) -> int:
    if settings.max_requests is not None:
        return settings.max_requests + 50
    if variant in ("none", "floor"):
        return 2000  # reused in a loop: neither the bare app nor the signature-only check looks for replays
    # Enough for the run at 1.5x the best rate this server has shown (protected is slower, but a busy
    # machine can slow the other runs down); running out would show as rejected replays, i.e. a failed case.
    rps = max(2000.0, settings.best_rps.get((client.alg, spec.key)) or 6000.0)
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


@dataclass
class Server:
    """One variant's server, started once and measured round after round."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path


def _env(settings: Settings, client: Client, spec: ServerSpec, variant: str) -> dict[str, str]:
    store = "memory" if variant != "redis" else f"redis://127.0.0.1:{settings.redis_port}/0"
    return {
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(BENCH)]),
        ENV_MODE: _MODES[variant],
        ENV_STORE: store,
        **client.env(),
        **dict(spec.env),
    }


@contextlib.contextmanager
def serving(settings: Settings, client: Client, spec: ServerSpec, variant: str) -> Iterator[Server]:
    """Start one variant's server, prove it measures what it claims, warm it up; stop it by pid at the end."""
    port = free_port()
    log = settings.workdir / f"{client.alg}-{spec.key}-{variant}.log"
    with running(spec.argv(port), port, env=_env(settings, client, spec, variant), timeout=60, log_path=log) as proc:
        sanity_check(port, client, variant)
        yield Server(proc, port, log)


def measure(settings: Settings, client: Client, spec: ServerSpec, variant: str, server: Server) -> Row:
    """One measured run against a running server: sign proofs, drive the load, read the CPU counters."""
    row = Row(spec.key, spec.adapter, spec.server, variant, client.alg)
    proof_file = settings.workdir / f"{client.alg}-{spec.key}-{variant}.proofs"
    try:
        client.write_proofs(
            f"http://127.0.0.1:{server.port}{PATH}", _proofs_needed(settings, client, spec, variant), proof_file
        )
        redis_port, redis_pid = settings.redis_port or 0, settings.redis_pid or 0
        redis_on = variant == "redis" and redis_port > 0 and redis_pid > 0
        cpu0 = group_cpu_seconds(server.proc.pid)
        if redis_on:
            rcpu0, rcmd0 = group_cpu_seconds(redis_pid), redis_commands(redis_port)
        with _profiled(settings, server.proc.pid, f"{client.alg}-{spec.key}-{variant}"):
            result = _load(settings, server.port, proof_file)
        cpu1 = group_cpu_seconds(server.proc.pid)
        if redis_on:
            rcpu1, rcmd1 = group_cpu_seconds(redis_pid), redis_commands(redis_port)
        if server.proc.poll() is not None:
            raise CaseError(f"server exited during the run ({server.proc.returncode})")
    except (CaseError, RuntimeError, TimeoutError, OSError, ValueError, subprocess.SubprocessError) as exc:
        row.failure = f"{type(exc).__name__}: {exc} (server log: {server.log})"
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
    if not row.failure:
        seen = settings.best_rps
        seen[(client.alg, spec.key)] = max(seen.get((client.alg, spec.key), 0.0), row.rps)
    return row


_SERVER_ERRORS = (CaseError, RuntimeError, TimeoutError, OSError, ValueError, subprocess.SubprocessError)


def _unserved(settings: Settings, client: Client, spec: ServerSpec, variant: str, exc: Exception) -> Row:
    """The row of a case whose server could not be started or failed its sanity check."""
    log = settings.workdir / f"{client.alg}-{spec.key}-{variant}.log"
    failure = f"{type(exc).__name__}: {exc} (server log: {log})"
    return Row(spec.key, spec.adapter, spec.server, variant, client.alg, failure=failure)


def run_case(settings: Settings, client: Client, spec: ServerSpec, variant: str) -> Row:
    """Start the server, check it, measure one run, stop it."""
    try:
        with serving(settings, client, spec, variant) as server:
            return measure(settings, client, spec, variant, server)
    except _SERVER_ERRORS as exc:
        return _unserved(settings, client, spec, variant, exc)


def run_adapter(settings: Settings, client: Client, spec: ServerSpec, variants: list[str], rounds: int) -> list[Row]:
    """Every variant of one adapter, each on a server of its own started once, measured in turn round
    after round (none, floor, memory, redis, none, floor, ...): a slow spell of a shared machine then
    hits one round of every variant, not every round of one. Each case reports its median round."""
    runs: dict[str, list[Row]] = {}
    with contextlib.ExitStack() as stack:
        servers: dict[str, Server] = {}
        for variant in variants:
            try:
                servers[variant] = stack.enter_context(serving(settings, client, spec, variant))
            except _SERVER_ERRORS as exc:
                runs[variant] = [_unserved(settings, client, spec, variant, exc)]
        for _ in range(rounds):
            for variant, server in servers.items():
                row = measure(settings, client, spec, variant, server)
                note = row.failure or ""
                print(f"# {client.alg:6} {spec.key:12} {variant:7} {row.rps:9,.0f} req/s  {note}", file=sys.stderr)
                runs.setdefault(variant, []).append(row)
    rows = {v: median_row(runs[v]) for v in variants if v in runs}
    pair(rows, runs)
    return list(rows.values())


def _rps_ratio(mine: Row, theirs: Row) -> float:
    return mine.rps / theirs.rps if theirs.rps else 0.0


def _cpu_excess(mine: Row, theirs: Row) -> float:
    return mine.cpu_us_per_req / theirs.cpu_us_per_req - 1 if theirs.cpu_us_per_req else 0.0


def _cpu_added(mine: Row, theirs: Row) -> float:
    return mine.cpu_us_per_req - theirs.cpu_us_per_req


def _paired(mine: list[Row], theirs: list[Row], value: Callable[[Row, Row], float]) -> float | None:
    if not mine or len(mine) != len(theirs) or any(r.failure for r in (*mine, *theirs)):
        return None
    return statistics.median(value(a, b) for a, b in zip(mine, theirs, strict=True))


def pair(rows: dict[str, Row], runs: dict[str, list[Row]]) -> None:
    """Set the paired ratios of each reported row from the rounds of its case and of its yardstick."""
    for variant, row in rows.items():
        if row.failure:
            continue
        mine = runs[variant]
        if variant != "none" and "none" in runs:
            row.rps_vs_none = _paired(mine, runs["none"], _rps_ratio)
        if variant in ("memory", "redis") and "floor" in runs:
            row.rps_vs_floor = _paired(mine, runs["floor"], _rps_ratio)
        if variant == "redis" and "memory" in runs:
            row.cpu_vs_memory = _paired(mine, runs["memory"], _cpu_excess)
        for yardstick in VARIANTS[: VARIANTS.index(variant)]:
            if yardstick in runs and (added := _paired(mine, runs[yardstick], _cpu_added)) is not None:
                row.cpu_us_over[yardstick] = added


REDIS_CORES = {"server": SERVER_CPUS, "client": CLIENT_CPUS}


@contextlib.contextmanager
def redis_process(core: str = "server") -> Iterator[tuple[int, int]]:
    """A throw-away redis-server (no persistence) on loopback, pinned to the server's core or the load
    generator's (``REDIS_CORES``; see the module docstring): yields (port, pid)."""
    port = free_port()
    with running(pinned(redis_argv(port), REDIS_CORES[core]), port) as proc:
        yield port, proc.pid


def median_row(rows: list[Row]) -> Row:
    """The round with the median req/s (a real measurement, its CPU and latency with it); a case with
    any failed round is reported as failed."""
    failed = [r for r in rows if r.failure]
    if failed:
        return failed[0]
    return sorted(rows, key=lambda r: r.rps)[len(rows) // 2]


# -- report ----------------------------------------------------------------------------------------


def _find(rows: list[Row], key: str, variant: str, alg: str) -> Row | None:
    return next(
        (r for r in rows if r.server == key and r.variant == variant and r.alg == alg and not r.failure), None
    )


def _ratio(paired: float | None, mine: float, theirs: float) -> float:
    """The paired ratio when the rows come from interleaved rounds, else the ratio of the two rows."""
    if paired is not None:
        return paired
    return mine / theirs if theirs else 0.0


def case_label(adapter: str, runner: str, alg: str) -> str:
    """How the checks name one adapter under one server with one proof algorithm."""
    return f"{adapter}/{runner}, {alg}"


def checks(rows: list[Row]) -> list[dict[str, Any]]:
    """The targets of the performance issue, measured against this run's rows, per proof algorithm."""
    out: list[dict[str, Any]] = []
    algs = [a for a in ALGS if any(r.alg == a for r in rows)]
    for alg, spec in ((a, s) for a in algs for s in SERVERS):
        none, floor, memory, redis_row = (_find(rows, spec.key, v, alg) for v in VARIANTS)
        label = case_label(spec.adapter, spec.server, alg)
        floor_ratio = _ratio(floor.rps_vs_none, floor.rps, none.rps) if none and floor else None
        if floor_ratio is not None:
            out.append({"check": f"{label}: the floor (raw signature check only) req/s vs unprotected",
                        "measured": f"{floor_ratio:.0%}", "target": "(the best any DPoP layer can do)",
                        "ok": None})  # fmt: skip
        if floor and memory:
            ratio = _ratio(memory.rps_vs_floor, memory.rps, floor.rps)
            out.append({"check": f"{label}: protected req/s vs the floor", "measured": f"{ratio:.0%}",
                        "target": "(none set)", "ok": None})  # fmt: skip
        if none and memory:
            ratio = _ratio(memory.rps_vs_none, memory.rps, none.rps)
            target = spec.rps_target
            check = {"check": f"{label}: protected req/s vs unprotected", "measured": f"{ratio:.0%}",
                     "target": f">= {target:.0%}" if target else "(none set)",
                     "ok": None if target is None else ratio >= target}  # fmt: skip
            if target is not None and floor_ratio is not None:
                # The floor is one raw verify in an empty hook: below the target, no DPoP layer can meet it.
                check["floor_below_target"] = floor_ratio < target
            out.append(check)
        if memory and redis_row and memory.cpu_us_per_req:
            extra = redis_row.cpu_vs_memory
            if extra is None:
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
        "| adapter | server | proofs | variant | req/s | vs none | p50 ms | p99 ms | server CPU µs/req "
        "| redis CPU µs/req |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.failure:
            lines.append(
                f"| {row.adapter} | {row.runner} | {row.alg} | {row.variant} | FAILED: {row.failure} | | | | | |"
            )
            continue
        none = _find(rows, row.server, "none", row.alg)
        vs = f"{_ratio(row.rps_vs_none, row.rps, none.rps):.0%}" if none and none.rps else ""
        redis_cpu = "" if row.redis_cpu_us_per_req is None else f"{row.redis_cpu_us_per_req:.0f}"
        lines.append(
            f"| {row.adapter} | {row.runner} | {row.alg} | {row.variant} | {row.rps:,.0f} | {vs} | {row.p50_ms:.2f} | "
            f"{row.p99_ms:.2f} | {row.cpu_us_per_req:.0f} | {redis_cpu} |"
        )
    lines += ["", "| check | measured | target | verdict |", "|---|---:|---|---|"]
    for check in checks(rows):
        lines.append(f"| {check['check']} | {check['measured']} | {check['target']} | {verdict(check, smoke)} |")
    return "\n".join(lines)


def verdict(check: dict[str, Any], smoke: bool) -> str:
    """``ok``, ``MISSED`` (saying so when the same run's floor is below the target too), or nothing."""
    if smoke:
        return "smoke run: no claim"
    if check["ok"] is None:
        return ""
    if check["ok"]:
        return "ok"
    return "MISSED: the floor is below it too" if check.get("floor_below_target") else "MISSED"


# -- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few hundred requests per case, no timing claims")
    parser.add_argument("--seconds", type=int, default=2, help="duration of each measured run (default 2)")
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
    parser.add_argument(
        "--algs", default="ES256", help=f"comma-separated proof algorithms, from {','.join(ALGS)} (default ES256)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and checks to this file")
    parser.add_argument(
        "--repeat", type=int, default=5, help="rounds of every case; each case reports its median round (default 5)"
    )
    parser.add_argument(
        "--redis-core",
        choices=sorted(REDIS_CORES),
        default="server",
        help="pin redis-server to the server's core (default) or to the load generator's; see above",
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
    algs = [a for a in args.algs.split(",") if a]
    if unknown or not set(variants) <= set(VARIANTS) or not algs or not set(algs) <= set(ALGS):
        print(f"unknown server, variant or algorithm: {sorted(unknown) or variants + algs}", file=sys.stderr)
        return 2
    specs = [s for s in SERVERS if not wanted or s.key in wanted]
    issuer = TestIssuer(issuer="https://issuer.bench", audience="https://api.bench")
    clients = [Client(alg, issuer) for alg in algs]
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
            settings.redis_port, settings.redis_pid = stack.enter_context(redis_process(args.redis_core))
        ordered = [v for v in VARIANTS if v in variants]
        for client in clients:
            for spec in specs:
                rows += run_adapter(settings, client, spec, ordered, repeat)
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
        "max_requests": max_requests, "workers": 1, "smoke": args.smoke, "algs": algs,
        "redis_core": args.redis_core,
    }  # fmt: skip
    print(markdown(rows, args.smoke))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows], "checks": checks(rows)},
                                        indent=1))  # fmt: skip
    return 1 if any(r.failure for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
