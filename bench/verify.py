"""Core benchmark: our full ``DPoPVerifier.verify()`` vs a raw ``cryptography`` signature verify.

    python bench/verify.py            # full run, prints a Markdown table
    python bench/verify.py --smoke    # a few proofs per case, no timing claims (CI keeps it from rotting)

For each algorithm, the same proofs are checked two ways, interleaved in one process (blocks of 25
requests of each in turn, several rounds):

* ``raw``: ``public_key.verify(signature, signing_input)`` with the key already loaded *and used
  once* (one ``cryptography`` key object per client key, as a server would keep it): the
  cryptographic floor that any DPoP implementation pays. OpenSSL finishes setting a key up on its
  first verify (~7 us for P-256), so a key object that has never verified would flatter us;
* ``ours``: the whole ``verify()``: header parsing, key import (cached), signature, claims, ``htu``,
  ``ath``, token binding (claims already validated and cached), replay store write.

Rows: a returning client's key ("known key"), a key never seen before ("first-seen key", the key
cache cleared), and a stream that reuses each access token for 10 requests with the token
validated on first use, against the same stream with every token validated beforehand (what the
request costs when only the proof has to be checked). Reported: the median over every pair of
adjacent blocks (25 raw requests, then the same 25 through ours) of (ours / raw) per-request time.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from unittest import mock

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from dpop_middleware import DPoPVerifier, MemoryReplayStore, RequestInfo
from dpop_middleware.client import DPoPKey
from dpop_middleware.core import keys as core_keys
from dpop_middleware.core import proof as core_proof
from dpop_middleware.core.jose import b64url_decode
from dpop_middleware.core.keys import _ECDSA, _RSA_PADDING, ALGORITHMS
from dpop_middleware.core.proof import access_token_hash, verify_proof
from dpop_middleware.testing import TestIssuer

URL = "https://api.example.com/v1/items"


@dataclass
class Sample:
    request: RequestInfo
    raw: Callable[[], None]


class RawKeys:
    """One loaded ``cryptography`` public key per client key, warmed by one verify before timing."""

    def __init__(self) -> None:
        self._keys: dict[str, object] = {}

    def get(self, key: DPoPKey) -> object:
        public = self._keys.get(key.jkt)
        if public is None:
            public = self._keys[key.jkt] = key._key.public_key()  # the benchmark may look inside
            raw_verifier(key.alg, public, key.proof("GET", URL))()  # OpenSSL's one-off set-up, untimed
        return public


def raw_verifier(alg: str, public: object, proof: str) -> Callable[[], None]:
    """The cryptographic floor for one proof: decode its signature and check it, key already loaded.

    That is the least any implementation on ``cryptography`` does per proof: base64url-decode the
    signature (and, for ECDSA, re-encode JOSE's raw r||s as DER), then one ``verify`` call.
    """
    spec = ALGORITHMS[alg]
    head, body, sig_b64 = proof.split(".")
    data = f"{head}.{body}".encode()
    if isinstance(public, ec.EllipticCurvePublicKey):
        ec_key = public
        size = spec.ecdsa_size
        algorithm = _ECDSA[alg]

        def ecdsa() -> None:
            sig = b64url_decode(sig_b64)
            der = encode_dss_signature(int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big"))
            ec_key.verify(der, data, algorithm)

        return ecdsa
    if isinstance(public, ed25519.Ed25519PublicKey):
        ed_key = public
        return lambda: ed_key.verify(b64url_decode(sig_b64), data)
    assert isinstance(public, rsa.RSAPublicKey) and spec.hash is not None
    rsa_key = public
    pad = _RSA_PADDING[alg]
    hash_alg = spec.hash
    return lambda: rsa_key.verify(b64url_decode(sig_b64), data, pad, hash_alg)


def make_samples(alg: str, keys: list[DPoPKey], tokens: dict[str, str], count: int, raw_keys: RawKeys) -> list[Sample]:
    samples = []
    for i in range(count):
        key = keys[i % len(keys)]
        token = tokens[key.jkt]
        proof = key.proof("GET", URL, access_token=token)
        request = RequestInfo("GET", URL, [("Authorization", f"DPoP {token}"), ("DPoP", proof)])
        samples.append(Sample(request, raw_verifier(alg, raw_keys.get(key), proof)))
    return samples


def timed(calls: list[Callable[[], object]]) -> float:
    """Seconds to run every call in ``calls`` once, in order."""
    start = time.perf_counter()
    for call in calls:
        call()
    return time.perf_counter() - start


BLOCK = 25  # requests per block: raw and ours alternate every BLOCK requests


def timed_pairs(first: list[Callable[[], object]], second: list[Callable[[], object]]) -> list[tuple[float, float]]:
    """Seconds per call of ``first`` and of ``second``, for each pair of adjacent blocks of ``BLOCK``.

    Alternating every few dozen requests puts both sides in the same slow and fast spells of a
    shared machine, while each block is still long enough to be a loop of its own kind; a median
    over the pairs then also discards the pairs where a preemption hit only one of the two.
    """
    assert len(first) == len(second)
    pairs = []
    for i in range(0, len(first), BLOCK):
        n = len(first[i : i + BLOCK])
        pairs.append((timed(first[i : i + BLOCK]) / n, timed(second[i : i + BLOCK]) / n))
    return pairs


def run_case(
    alg: str, *, rounds: int, per_round: int, distinct_keys: int, first_seen: bool, token_reuse: int = 0
) -> tuple[float, float, float]:
    """Medians over every block pair of every round: (ours, raw) microseconds per request and their ratio."""
    issuer = TestIssuer(audience="https://api.example.com")
    verifier = DPoPVerifier(issuer.validator(), replay_store=MemoryReplayStore(max_entries=10**6))
    pairs: list[tuple[float, float]] = []  # (raw, ours) seconds per request, one per block pair
    raw_keys = RawKeys()
    for _ in range(rounds):
        keys = [DPoPKey.generate(alg) for _ in range(per_round if first_seen else distinct_keys)]
        if token_reuse:
            # A new token every `token_reuse` requests, validated on its first use inside the timed loop.
            samples = []
            for start in range(0, per_round, token_reuse):
                key = keys[start % len(keys)]
                token = issuer.token(key.jkt)
                for _ in range(min(token_reuse, per_round - start)):
                    proof = key.proof("GET", URL, access_token=token)
                    headers = [("Authorization", f"DPoP {token}"), ("DPoP", proof)]
                    raw = raw_verifier(alg, raw_keys.get(key), proof)
                    samples.append(Sample(RequestInfo("GET", URL, headers), raw))
        else:
            tokens = {k.jkt: issuer.token(k.jkt) for k in keys}
            samples = make_samples(alg, keys, tokens, per_round, raw_keys)
            for key in keys:  # each token (and key) used once before: validated and cached
                token = tokens[key.jkt]
                warm = key.proof("GET", URL, access_token=token)
                verifier.verify(RequestInfo("GET", URL, [("Authorization", f"DPoP {token}"), ("DPoP", warm)]))
        if first_seen:  # forget every key and header seen so far (the warm-up requests included)
            core_keys._imported_key.cache_clear()
            core_proof._checked_header.cache_clear()
        ours = [functools.partial(verifier.verify, sample.request) for sample in samples]
        pairs += timed_pairs([sample.raw for sample in samples], ours)
    return (
        statistics.median(o for _, o in pairs) * 1e6,
        statistics.median(r for r, _ in pairs) * 1e6,
        statistics.median(o / r for r, o in pairs),
    )


def proof_only(alg: str, rounds: int, per_round: int) -> float:
    """Median microseconds of the pure proof check alone (no token, no store), for the reuse row."""
    key = DPoPKey.generate(alg)
    config = DPoPVerifier(lambda t: {}).config
    token_hash = access_token_hash("t")
    times = []
    for _ in range(rounds):
        now = time.time()
        calls = [
            functools.partial(
                verify_proof,
                key.proof("GET", URL, access_token="t"),
                method="GET",
                url=URL,
                token_hash=token_hash,
                now=now,
                config=config,
            )
            for _ in range(per_round)
        ]
        t = timed(calls)
        times.append(t / per_round * 1e6)
    return statistics.median(times)


def signature_skipped() -> Any:
    """A context in which the verifier's signature call is a no-op that accepts.

    Diagnostics only (our own work measured alone, here and in ``bench/layers.py``), never a way to run
    the verifier.
    """
    return mock.patch.object(core_proof, "verify_signature", lambda *args: True)


def own_work(alg: str, rounds: int, per_round: int) -> float:
    """Median µs of the whole ``verify()`` with the signature call replaced by a no-op.

    A diagnostic, never a way to run the verifier: it measures our own work alone (warm caches, no
    OpenSSL in between), which the report sets against "ours - raw" to show how much of the
    difference is our code and how much is the two sharing the CPU's caches.
    """
    issuer = TestIssuer(audience="https://api.example.com")
    verifier = DPoPVerifier(issuer.validator(), replay_store=MemoryReplayStore(max_entries=10**6))
    keys = [DPoPKey.generate(alg) for _ in range(10)]
    tokens = {k.jkt: issuer.token(k.jkt) for k in keys}
    raw_keys = RawKeys()
    times = []
    with signature_skipped():
        for sample in make_samples(alg, keys, tokens, len(keys), raw_keys):  # keys and tokens seen once
            verifier.verify(sample.request)
        for _ in range(rounds):
            samples = make_samples(alg, keys, tokens, per_round, raw_keys)
            t = timed([functools.partial(verifier.verify, sample.request) for sample in samples])
            times.append(t / per_round * 1e6)
    return statistics.median(times)


TARGETS = {
    ("known", "ES256"): 1.3,
    ("known", "EdDSA"): 1.3,
    ("first", "ES256"): 1.6,
    ("first", "EdDSA"): 1.6,
    ("known", "RS256"): 2.5,
    ("known", "PS256"): 2.5,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny run, no timing claims")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--algs", default="ES256,EdDSA,RS256,PS256", help="comma-separated (default: all four)")
    args = parser.parse_args()
    rounds, fast_n, slow_n = (1, 20, 5) if args.smoke else (args.rounds, 400, 150)

    rows = []
    failed = []
    for alg in [a for a in args.algs.split(",") if a]:
        n = slow_n if alg[:2] in ("RS", "PS") else fast_n
        for label, first in (("known", False), ("first", True)):
            ours, raw, ratio = run_case(alg, rounds=rounds, per_round=n, distinct_keys=10, first_seen=first)
            target = TARGETS.get((label, alg))
            ok = target is None or ratio <= target
            if not ok:
                failed.append(f"{alg} {label}")
            rows.append((alg, "known key" if label == "known" else "first-seen key", ours, raw, ratio, target, ok))
    es_reuse, _, reuse_vs_raw = run_case(
        "ES256", rounds=rounds, per_round=fast_n, distinct_keys=10, first_seen=False, token_reuse=10
    )
    es_proof = proof_only("ES256", rounds, fast_n)
    es_own = own_work("ES256", rounds, fast_n)
    es_known, known_vs_raw = next(
        ((ours, ratio) for alg, case, ours, _, ratio, *_ in rows if alg == "ES256" and case == "known key"),
        (es_reuse, reuse_vs_raw),
    )

    print("| alg | case | ours µs/req | raw verify µs | ours/raw | target |")
    print("|---|---|---:|---:|---:|---|")
    for alg, case, ours, raw, ratio, target, ok in rows:
        verdict = "" if target is None else f"<= {target} {'ok' if ok else 'MISSED'}"
        print(f"| {alg} | {case} | {ours:.1f} | {raw:.1f} | {ratio:.2f}x | {verdict} |")
    # Both streams are timed against the raw check of their own proofs, interleaved: the ratio of the
    # two ratios cancels a slow spell that hit one stream's run and not the other's.
    reuse_ratio = reuse_vs_raw / known_vs_raw
    print()
    print("| ES256 stream | µs/req | vs tokens already validated |")
    print("|---|---:|---:|")
    print(f"| the proof alone (`verify_proof`, no token, no store) | {es_proof:.1f} | {es_proof / es_known:.2f}x |")
    print(
        f"| full verify with the signature call skipped (our own work alone, diagnostic) | {es_own:.1f} "
        f"| {es_own / es_known:.2f}x |"
    )
    print(f"| full verify, tokens already validated (proof-only cost) | {es_known:.1f} | 1.00x |")
    print(
        f"| full verify, token reused 10x (validated on first use) | {es_reuse:.1f} "
        f"| {reuse_ratio:.2f}x (target <= 1.10x) |"
    )
    if args.smoke:
        print("\nsmoke run: figures are not meaningful")
        return 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
