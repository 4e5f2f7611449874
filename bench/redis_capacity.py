"""What one replay entry costs Redis, and how many ``SET`` a second one shard sustains: the inputs of
the capacity table in ``docs/operations.md``.

    python bench/redis_capacity.py                   # memory per entry (a few seconds)
    python bench/redis_capacity.py --benchmark       # plus a short redis-benchmark run (~10 s)
    python bench/redis_capacity.py --wait            # plus the cost of wait_replicas=1 (master + replica)

Starts a throw-away ``redis-server`` on a free loopback port, writes entries through
:class:`~dpop_middleware.stores.redis.RedisReplayStore` exactly as the verifier does (default
prefix, 16-byte digest keys, a TTL), then reports ``MEMORY USAGE`` of one real key and the growth of
``used_memory`` per entry over ``--entries`` of them (which also counts the expiry table and the
hash table's buckets, so it is the figure to plan with).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import redis  # noqa: E402
from concurrency_apps.support import redis_process  # noqa: E402
from redis_topologies import sentinel_group  # noqa: E402

from dpop_middleware.stores.redis import DEFAULT_PREFIX, RedisReplayStore  # noqa: E402


def measure(entries: int, benchmark: bool) -> dict[str, object]:
    with redis_process() as (port, _):
        raw = redis.Redis(port=port, socket_timeout=10)
        store = RedisReplayStore(f"redis://127.0.0.1:{port}/0")
        key = os.urandom(16)
        store.add_if_absent(key, 300)
        one_key = raw.memory_usage(DEFAULT_PREFIX + key, samples=0)
        before = int(raw.info("memory")["used_memory"])
        pipe = raw.pipeline(transaction=False)
        for _ in range(entries):  # the store's own command, sent in bulk to fill quickly
            pipe.set(DEFAULT_PREFIX + os.urandom(16), b"1", nx=True, px=300_000)
            if len(pipe) >= 1000:
                pipe.execute()
        pipe.execute()
        after = int(raw.info("memory")["used_memory"])
        figures: dict[str, object] = {
            "redis_server": raw.info("server")["redis_version"],
            "memory_usage_one_key_bytes": one_key,
            "entries_written": entries,
            "used_memory_growth_per_entry_bytes": round((after - before) / entries, 1),
            "dbsize": raw.dbsize(),
        }
        if benchmark:
            out = subprocess.run(
                ["redis-benchmark", "-p", str(port), "-n", "200000", "-t", "set", "-P", "1", "-c", "50", "-q"],
                capture_output=True, text=True, check=True, timeout=120,
            ).stdout  # fmt: skip
            match = re.search(r"SET: ([\d.]+) requests per second", out.replace("\r", "\n"))
            figures["redis_benchmark_set_per_second"] = float(match.group(1)) if match else out.strip()[-200:]
            figures["redis_benchmark_command"] = "redis-benchmark -n 200000 -t set -P 1 -c 50 -q"
        store.close()
        raw.close()
    return figures


def wait_cost(requests: int = 3000) -> dict[str, object]:
    """Wall time per ``add_if_absent`` without and with ``wait_replicas=1``, one master and one replica."""
    figures: dict[str, object] = {"wait_requests": requests}
    with tempfile.TemporaryDirectory() as tmp, sentinel_group(Path(tmp), sentinels=0) as pair:
        url = f"redis://127.0.0.1:{pair.master}/0"
        for label, options in (("no_wait", {}), ("wait_replicas_1", {"wait_replicas": 1, "wait_timeout_ms": 100})):
            store = RedisReplayStore(url, timeout=2, **options)  # type: ignore[arg-type]
            store.add_if_absent(os.urandom(16), 300)  # connect first
            started = time.perf_counter()
            cpu = time.process_time()
            for _ in range(requests):
                store.add_if_absent(os.urandom(16), 300)
            figures[f"{label}_wall_us_per_request"] = round((time.perf_counter() - started) / requests * 1e6, 1)
            figures[f"{label}_client_cpu_us_per_request"] = round((time.process_time() - cpu) / requests * 1e6, 1)
            store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--benchmark", action="store_true", help="also run a short redis-benchmark of SET")
    parser.add_argument("--wait", action="store_true", help="also time wait_replicas=1 against a master and a replica")
    args = parser.parse_args()
    figures = measure(args.entries, args.benchmark)
    if args.wait:
        figures.update(wait_cost())
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
