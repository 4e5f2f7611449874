"""Issue 19 §1.4: a copy of the config never sees headers memoized under another policy.

The proof-header memo skips the algorithm allowlist and the RSA size floor for a header seen
before, so it is only sound per policy. ``dataclasses.replace`` (and ``copy.copy``) used to carry
the same dict over to a stricter config; the memo is now one ``lru_cache`` keyed by the policy too.
"""

from __future__ import annotations

import copy
import dataclasses

from core_support import make_env

from dpop_middleware import DPoPError, DPoPVerifier
from dpop_middleware.client import DPoPKey
from dpop_middleware.core.config import VerifierConfig


def _outcome(verifier: DPoPVerifier, env: object, key: DPoPKey) -> str:
    token = env.issuer.token(key.jkt)  # type: ignore[attr-defined]
    request = env.request(token, env.proof(token, key=key))  # type: ignore[attr-defined]
    try:
        verifier.verify(request)
    except DPoPError as exc:
        return exc.reason
    return "accepted"


def test_replace_with_stricter_algorithms_does_not_reuse_accepted_headers() -> None:
    env = make_env()
    broad = VerifierConfig()
    assert _outcome(env.verifier(config=broad), env, env.key) == "accepted"  # ES256 header memoized
    strict = dataclasses.replace(broad, algorithms=("PS256",))
    assert _outcome(env.verifier(config=strict), env, env.key) == "alg_not_allowed"


def test_replace_with_higher_rsa_floor_does_not_reuse_accepted_headers() -> None:
    env = make_env()
    key = DPoPKey.generate("PS256")  # 2048 bits
    broad = VerifierConfig()
    assert _outcome(env.verifier(config=broad), env, key) == "accepted"
    strict = dataclasses.replace(broad, min_rsa_bits=3072)
    assert _outcome(env.verifier(config=strict), env, key) == "jwk_rsa_too_small"


def test_copy_then_replace_does_not_reuse_accepted_headers() -> None:
    env = make_env()
    broad = VerifierConfig()
    assert _outcome(env.verifier(config=broad), env, env.key) == "accepted"
    copied = copy.copy(broad)
    assert _outcome(env.verifier(config=copied), env, env.key) == "accepted"  # same policy: same answer
    strict = dataclasses.replace(copied, algorithms=("EdDSA",))
    assert _outcome(env.verifier(config=strict), env, env.key) == "alg_not_allowed"


def test_the_policy_is_part_of_the_memo_key() -> None:
    env = make_env()
    broad = VerifierConfig()
    assert _outcome(env.verifier(config=broad), env, env.key) == "accepted"
    strict = VerifierConfig(algorithms=["PS256"])  # a list, as a caller might pass it: keyed as a tuple
    assert _outcome(env.verifier(config=strict), env, env.key) == "alg_not_allowed"
    assert _outcome(env.verifier(config=VerifierConfig()), env, env.key) == "accepted"  # same policy: same answer
