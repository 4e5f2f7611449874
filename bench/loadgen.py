"""Load generators for ``bench/e2e.py``; both run as processes of their own, bounded in time.

* ``wrk`` (Debian's package) with ``wrk_proofs.lua``: one pre-generated proof per request.
* A Python fallback when ``wrk`` is missing (or ``--loadgen python``): ``processes`` worker processes,
  each with one keep-alive ``http.client`` connection sending requests back to back until its
  deadline or its share of the proofs is used up. Much heavier per request than wrk, so its
  requests/s understate what the server can do; the protected/unprotected *ratios* stay comparable.

The proof file has one request per line: ``<Authorization value>\\t<DPoP value>``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
LUA_SCRIPT = HERE / "wrk_proofs.lua"


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured (latencies in milliseconds)."""

    generator: str
    responses: int  # 2xx responses
    errors: int  # non-2xx responses, socket errors and timeouts
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        """Successful requests per second."""
        return self.responses / self.seconds if self.seconds > 0 else 0.0


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


#: CPU sets: the server under test gets a core of its own, the load generator and Redis share the
#: rest. Without this the scheduler moves the server between cores as the others wake up, and a run's
#: figures depend on where it landed more than on the code under test.
SERVER_CPUS, CLIENT_CPUS = "0", "1-"


def pinned(argv: list[str], cpus: str) -> list[str]:
    """``argv`` run on ``cpus`` (``taskset`` syntax; ``N-`` is N to the last core) when the machine has
    at least two cores and ``taskset``; else ``argv`` as it is."""
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else {0}
    if len(cores) < 2 or shutil.which("taskset") is None:
        return argv
    if cpus.endswith("-"):
        cpus = f"{cpus}{max(cores)}"
    return ["taskset", "-c", cpus, *argv]


def run_wrk(port: int, path: str, proof_file: Path, *, seconds: int, connections: int, threads: int = 1) -> LoadResult:
    """Run ``wrk`` for ``seconds`` against ``http://127.0.0.1:port`` sending the proofs of ``proof_file``."""
    threads = max(1, min(threads, connections))
    argv = pinned([
        "wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "5s",
        "-s", str(LUA_SCRIPT), f"http://127.0.0.1:{port}", "--", str(proof_file), str(threads), path,
    ], CLIENT_CPUS)  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    socket_errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
    return LoadResult(
        generator="wrk",
        responses=data["requests"] - data["status"],
        errors=data["status"] + socket_errors,
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(pct / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


def run_python(
    port: int, path: str, proof_file: Path, *, seconds: float, processes: int, max_requests: int | None = None
) -> LoadResult:
    """The fallback: ``processes`` worker processes sharing the proofs, each one keep-alive connection."""
    argv_base = [sys.executable, str(Path(__file__).resolve()), "worker", "--port", str(port), "--path", path,
                 "--file", str(proof_file), "--of", str(processes), "--seconds", str(seconds)]  # fmt: skip
    if max_requests is not None:
        per_worker = -(-max_requests // processes)
        argv_base += ["--max", str(per_worker)]
    procs = [
        subprocess.Popen(pinned([*argv_base, "--index", str(i)], CLIENT_CPUS), stdout=subprocess.PIPE, text=True)
        for i in range(processes)
    ]
    results = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=seconds + 60)
            if proc.returncode != 0:
                raise RuntimeError(f"load worker failed with {proc.returncode}")
            results.append(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    latencies = sorted(ms for r in results for ms in r["latencies_ms"])
    return LoadResult(
        generator=f"python x{processes}",
        responses=sum(r["ok"] for r in results),
        errors=sum(r["errors"] for r in results),
        seconds=max(r["elapsed"] for r in results),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
    )


def _worker(args: argparse.Namespace) -> None:
    """One load process: its share of the proof file, sent back to back on one connection."""
    mine: list[tuple[str, str]] = []
    with open(args.file, encoding="ascii") as fh:
        for i, line in enumerate(fh):
            if i % args.of == args.index:
                auth, proof = line.rstrip("\n").split("\t")
                mine.append((auth, proof))
    if args.max is not None:
        mine = mine[: args.max]
    conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=10)
    latencies: list[float] = []
    ok = errors = 0
    started = time.perf_counter()
    deadline = started + args.seconds
    for auth, proof in mine:
        if time.perf_counter() >= deadline:
            break
        t0 = time.perf_counter()
        try:
            conn.request("GET", args.path, headers={"Authorization": auth, "DPoP": proof})
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()  # http.client reconnects on the next request
            continue
        latencies.append((time.perf_counter() - t0) * 1000)
        if 200 <= resp.status < 300:
            ok += 1
        else:
            errors += 1
    elapsed = time.perf_counter() - started
    conn.close()
    json.dump({"ok": ok, "errors": errors, "elapsed": elapsed, "latencies_ms": latencies}, sys.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="one load process (used by run_python)")
    worker.add_argument("--port", type=int, required=True)
    worker.add_argument("--path", required=True)
    worker.add_argument("--file", required=True)
    worker.add_argument("--index", type=int, required=True)
    worker.add_argument("--of", type=int, required=True)
    worker.add_argument("--seconds", type=float, required=True)
    worker.add_argument("--max", type=int, default=None)
    args = parser.parse_args()
    _worker(args)


if __name__ == "__main__":
    main()
