"""Memory benchmark: bytes per live replay entry, and a worker's peak RSS after 100,000 proofs.

    python bench/memory.py            # 100,000 entries / proofs
    python bench/memory.py --smoke    # 2,000 of each, no claims
    python bench/memory.py --json out.json

1. ``MemoryReplayStore``: ``tracemalloc`` traces ``N`` distinct ``add_if_absent`` calls with keys shaped
   like the verifier's (16-byte digests) and divides what stays allocated by ``N``. The key objects
   are created inside the traced region and counted: the store keeps them alive, so they are part of
   what an entry costs.
2. Worker peak RSS: a fresh child process plays a worker: it builds a ``DPoPVerifier`` with the
   memory store (default size, 100,000 entries) and verifies ``N`` distinct proofs from 100 client
   keys, each with its own bound access token, then reports ``ru_maxrss``. Proofs are Ed25519 (the
   fastest to sign) and are signed in the child in batches of 1,000, just before they are verified,
   so the proofs themselves never pile up in memory and every ``iat`` is fresh. All ``N`` replay
   entries are still live at the end when the run takes less than the replay window (80 s).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dpop_middleware import DPoPVerifier, MemoryReplayStore, RequestInfo  # noqa: E402
from dpop_middleware.client import DPoPKey  # noqa: E402
from dpop_middleware.testing import TestIssuer  # noqa: E402

ENTRY_TARGET = 300  # bytes per live entry, from the performance issue
URL = "https://api.bench/items"


def bytes_per_entry(count: int) -> dict[str, Any]:
    """Traced bytes that ``count`` distinct live entries keep allocated, per entry."""
    store = MemoryReplayStore(max_entries=count)
    ttl = 80.0
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(count):
        store.add_if_absent(hashlib.sha256(i.to_bytes(8, "big")).digest()[:16], ttl)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    live = len(store)
    return {
        "entries": count,
        "live": live,
        "bytes_per_entry": (after - before) / live,
        "key_bytes": sys.getsizeof(b"k" * 16),
    }


def _rss_kib() -> int:
    with open("/proc/self/statm", encoding="ascii") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() // 1024


def worker(count: int, clients: int, alg: str) -> dict[str, Any]:
    """Run in the child: verify ``count`` distinct proofs like a worker would; report memory."""
    issuer = TestIssuer(issuer="https://issuer.bench", audience="https://api.bench")
    verifier = DPoPVerifier(issuer.validator(), replay_store=MemoryReplayStore())
    keys = [DPoPKey.generate(alg) for _ in range(clients)]
    tokens = [issuer.token(k.jkt, lifetime=3600) for k in keys]
    # Warm up code paths and imports before the baseline, with a separate store so it stays empty.
    warm = DPoPVerifier(issuer.validator(), replay_store=MemoryReplayStore(max_entries=10))
    warm.verify(RequestInfo("GET", URL, [("Authorization", f"DPoP {tokens[0]}"),
                                         ("DPoP", keys[0].proof("GET", URL, access_token=tokens[0]))]))  # fmt: skip
    gc.collect()
    baseline_kib = _rss_kib()
    started = time.monotonic()
    failures = 0
    done = 0
    while done < count:
        batch = []
        for i in range(done, min(count, done + 1000)):
            key, token = keys[i % clients], tokens[i % clients]
            proof = key.proof("GET", URL, access_token=token)
            batch.append(RequestInfo("GET", URL, [("Authorization", f"DPoP {token}"), ("DPoP", proof)]))
        for request in batch:
            result = verifier.authenticate(request)
            failures += result.rejection is not None
        done += len(batch)
        del batch
    elapsed = time.monotonic() - started
    gc.collect()
    # Read the memory figures before asking the store for its size: counting may sweep the store,
    # which is not part of serving requests.
    rss_kib = _rss_kib()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "proofs": count,
        "clients": clients,
        "alg": alg,
        "rejected": failures,
        "live_entries": len(verifier.replay_store),
        "seconds": elapsed,
        "baseline_rss_kib": baseline_kib,
        "rss_kib": rss_kib,
        "peak_rss_kib": peak_kib,
    }


def worker_in_child(count: int, clients: int, alg: str) -> dict[str, Any]:
    """:func:`worker` in a fresh interpreter, so its peak RSS is the worker's alone."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--count", str(count),
            "--clients", str(clients), "--alg", alg]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def markdown(entry: dict[str, Any], rss: dict[str, Any], smoke: bool) -> str:
    per = entry["bytes_per_entry"]
    verdict = "smoke run: no claim" if smoke else ("ok" if per <= ENTRY_TARGET else "MISSED")
    mib = 1024.0
    lines = [
        "| measure | value | target |",
        "|---|---:|---|",
        f"| memory store, bytes per live entry ({entry['live']:,} entries, key included) | {per:.0f} | "
        f"<= {ENTRY_TARGET} {verdict} |",
        f"| worker RSS before any proof (imports, verifier, {rss['clients']} keys) | "
        f"{rss['baseline_rss_kib'] / mib:.1f} MiB | |",
        f"| worker RSS after {rss['proofs']:,} distinct {rss['alg']} proofs ({rss['live_entries']:,} live "
        f"replay entries, {rss['rejected']} rejected) | {rss['rss_kib'] / mib:.1f} MiB | |",
        f"| worker peak RSS (ru_maxrss) | {rss['peak_rss_kib'] / mib:.1f} MiB | |",
        f"| growth over the baseline, per proof | "
        f"{(rss['rss_kib'] - rss['baseline_rss_kib']) * 1024 / max(1, rss['proofs']):.0f} bytes | |",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="2,000 entries and proofs, no claims")
    parser.add_argument("--count", type=int, default=None, help="entries and proofs (default 100,000)")
    parser.add_argument("--clients", type=int, default=100, help="distinct client keys (default 100)")
    parser.add_argument("--alg", default="EdDSA", help="proof algorithm for the worker (default EdDSA)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    count = args.count or (2000 if args.smoke else 100_000)
    if args.child:
        json.dump(worker(count, args.clients, args.alg), sys.stdout)
        return 0
    entry = bytes_per_entry(count)
    rss = worker_in_child(count, args.clients, args.alg)
    print(markdown(entry, rss, args.smoke))
    if args.json:
        args.json.write_text(json.dumps({"entry": entry, "worker": rss, "smoke": args.smoke}, indent=1))
    if rss["rejected"]:
        print(f"{rss['rejected']} proofs were rejected: the figures are not valid", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
