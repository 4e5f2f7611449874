"""Issue 19 §1.1: a proof healed by a nonce (``heal_iat``) is remembered as long as it can pass.

A client whose clock runs ahead sends a proof with a future ``iat``; a valid nonce vouches for it
now. Later, once the same ``iat`` enters the normal window, the proof passes on ``iat`` alone: the
replay entry written on first use must still be there then, whatever the nonce's own expiry.
"""

from __future__ import annotations

from typing import Any

from core_support import make_env
from fakes import NOW, TestClock

from dpop_middleware import DPoPError, MemoryReplayStore, NonceKeyring

LIFETIME = 300.0  # nonce lifetime: steps of 150 s, a nonce lives 150-300 s
MAX_AGE, SKEW = 60.0, 10.0
# One second before a step ends: the nonce handed out now expires 151 s later, well before
# a proof with iat = now + 200 leaves the normal window (now + 270).
START = NOW + 149.0
AHEAD = 200.0


def _outcome(call: Any) -> str:
    try:
        call()
    except DPoPError as exc:
        return exc.reason
    return "accepted"


def _setup() -> tuple[TestClock, Any, Any, Any, str, str]:
    env = make_env()
    clock = env.clock
    clock.now = START
    keyring = NonceKeyring({"k1": b"0123456789abcdef0123"}, lifetime=LIFETIME)
    options = {"nonce_policy": "heal_iat", "nonce_keyring": keyring, "max_age": MAX_AGE, "clock_skew": SKEW}
    shared = env.verifier(replay_store=MemoryReplayStore(clock=clock), **options)

    def fresh() -> Any:  # the same policy with an empty store: would the proof pass on its own?
        return env.verifier(replay_store=MemoryReplayStore(clock=clock), **options)

    token = env.token(exp=int(START) + 3600)
    nonce = keyring.issue(clock.now)
    proof = env.proof(token, iat=int(START + AHEAD), nonce=nonce)
    return clock, shared, fresh, env.request(token, proof), token, nonce


def test_heal_iat_replay_refused_at_every_moment_the_proof_passes_on_iat() -> None:
    clock, shared, fresh, request, _, _ = _setup()
    assert _outcome(lambda: shared.verify(request)) == "accepted"  # healed by the nonce

    passes_on_its_own = []
    for second in range(1, 400):
        clock.now = START + second
        if _outcome(lambda: fresh().verify(request)) != "accepted":
            continue
        passes_on_its_own.append(second)
        assert _outcome(lambda: shared.verify(request)) == "replayed", f"replay accepted {second}s after first use"
    # The proof really does pass again on iat alone, after its nonce has expired (151 s) and
    # until iat + max_age + skew (270 s): the entry had to outlive all of that.
    assert passes_on_its_own[-1] == int(AHEAD + MAX_AGE + SKEW)
    assert any(s > 151 for s in passes_on_its_own)


def test_heal_iat_refuses_iat_further_ahead_than_the_nonce_lifetime() -> None:
    env = make_env()
    env.clock.now = START
    keyring = NonceKeyring({"k1": b"0123456789abcdef0123"}, lifetime=LIFETIME)
    verifier = env.verifier(nonce_policy="heal_iat", nonce_keyring=keyring, max_age=MAX_AGE, clock_skew=SKEW)
    token = env.token(exp=int(START) + 3600)
    nonce = keyring.issue(env.clock.now)
    far = env.request(token, env.proof(token, iat=int(START + LIFETIME) + 2, nonce=nonce))
    assert _outcome(lambda: verifier.verify(far)) == "iat_in_future"
    near = env.request(token, env.proof(token, iat=int(START + LIFETIME) - 2, nonce=nonce))
    assert _outcome(lambda: verifier.verify(near)) == "accepted"


def test_heal_iat_iat_beyond_the_cap_is_refused_without_asking_for_a_nonce() -> None:
    env = make_env()
    keyring = NonceKeyring({"k1": b"0123456789abcdef0123"}, lifetime=LIFETIME)
    verifier = env.verifier(nonce_policy="heal_iat", nonce_keyring=keyring)
    token = env.token()
    far = env.request(token, env.proof(token, iat=int(env.clock.now + LIFETIME) + 2))
    assert _outcome(lambda: verifier.verify(far)) == "iat_in_future"  # a nonce could not help
