"""Server nonces (design.md §4): the four policies, stale and forged nonces, rotation, fresh hand-out."""

from __future__ import annotations

import pytest
from core_support import Env, make_env

from dpop_middleware import InvalidDPoPProofError, NonceKeyring, UseDPoPNonceError

KEYS = {"k2": b"second-key-0123456789", "k1": b"first-key-0123456789"}


@pytest.fixture
def env() -> Env:
    return make_env(nonce_keyring=NonceKeyring(KEYS, lifetime=120))


def nonce_challenge(env: Env, policy: str, *, method: str = "GET", **claims: object) -> UseDPoPNonceError:
    token = env.token()
    with pytest.raises(UseDPoPNonceError) as caught:
        env.verifier(nonce_policy=policy).verify(env.request(token, env.proof(token, htm=method, **claims), method=method))
    return caught.value


def test_always_requires_a_nonce_then_accepts_it(env: Env) -> None:
    error = nonce_challenge(env, "always")
    assert error.reason == "nonce_missing"
    response = env.verifier().render(error)
    assert [v for k, v in response.headers if k == "DPoP-Nonce"] == [error.nonce]
    assert 'error="use_dpop_nonce"' in dict(response.headers)["WWW-Authenticate"]
    token = env.token()
    principal = env.verifier(nonce_policy="always").verify(env.request(token, env.proof(token, nonce=error.nonce)))
    assert principal.next_nonce is None  # the nonce is current: nothing new to hand out


def test_forged_nonce(env: Env) -> None:
    good = NonceKeyring(KEYS, lifetime=120).issue(env.clock.now)
    kid, step, mac = good.split(".")
    forged = f"{kid}.{step}.{'A' * len(mac)}"
    assert nonce_challenge(env, "always", nonce=forged).reason == "nonce_invalid"
    other_ring = NonceKeyring({"k2": b"attacker-key-0123456789"}, lifetime=120).issue(env.clock.now)
    assert nonce_challenge(env, "always", nonce=other_ring).reason == "nonce_invalid"
    assert nonce_challenge(env, "always", nonce=["not", "a", "string"]).reason == "nonce_invalid"
    assert nonce_challenge(env, "always", nonce="x" * 500).reason == "nonce_invalid"


def test_stale_nonce(env: Env) -> None:
    old = NonceKeyring(KEYS, lifetime=120).issue(env.clock.now - 240)
    assert nonce_challenge(env, "always", nonce=old).reason == "nonce_stale"


def test_nonce_from_previous_step_accepted_and_refreshed(env: Env) -> None:
    ring = NonceKeyring(KEYS, lifetime=120)
    previous = ring.issue(env.clock.now - 60)
    token = env.token()
    principal = env.verifier(nonce_policy="always").verify(env.request(token, env.proof(token, nonce=previous)))
    assert principal.next_nonce == ring.issue(env.clock.now)
    assert principal.next_nonce != previous


def test_rotation_old_key_still_verifies() -> None:
    old_ring = NonceKeyring({"k1": b"first-key-0123456789"}, lifetime=120)
    new_ring = NonceKeyring(KEYS, lifetime=120)
    nonce = old_ring.issue(1000.0)
    assert new_ring.check(nonce, 1000.0).valid
    assert new_ring.issue(1000.0).startswith("k2.")
    dropped = NonceKeyring({"k2": KEYS["k2"]}, lifetime=120)
    assert not dropped.check(nonce, 1000.0).valid


def test_unsafe_methods_policy(env: Env) -> None:
    token = env.token()
    principal = env.verifier(nonce_policy="unsafe_methods").verify(env.request(token, env.proof(token)))
    assert principal.next_nonce is not None  # handed out ahead of the next unsafe request
    assert nonce_challenge(env, "unsafe_methods", method="POST").reason == "nonce_missing"
    token = env.token()
    env.verifier(nonce_policy="unsafe_methods").verify(
        env.request(token, env.proof(token, htm="POST", nonce=principal.next_nonce), method="POST")
    )


def test_heal_iat_policy(env: Env) -> None:
    # In-window iat: no nonce needed.
    token = env.token()
    env.verifier(nonce_policy="heal_iat").verify(env.request(token, env.proof(token)))
    # A client with a badly skewed clock gets a nonce instead of a hard failure...
    skewed = env.clock.now - 3 * 3600
    error = nonce_challenge(env, "heal_iat", iat=skewed)
    assert error.reason == "nonce_missing"
    # ...and with it, the proof is accepted although iat is far outside the window.
    token = env.token()
    request = env.request(token, env.proof(token, iat=skewed, nonce=error.nonce))
    verifier = env.verifier(nonce_policy="heal_iat")
    verifier.verify(request)
    # Replay protection then covers the nonce's whole lifetime, not just the iat window.
    env.clock.now += 100
    with pytest.raises(InvalidDPoPProofError) as caught:
        verifier.verify(request)
    assert caught.value.reason == "replayed"


def test_off_policy_ignores_nonce_and_checks_iat(env: Env) -> None:
    token = env.token()
    env.verifier().verify(env.request(token, env.proof(token, nonce="whatever")))
    token = env.token()
    with pytest.raises(InvalidDPoPProofError):
        env.verifier().verify(env.request(token, env.proof(token, iat=env.clock.now - 3600, nonce="whatever")))


def test_always_still_checks_iat(env: Env) -> None:
    nonce = NonceKeyring(KEYS, lifetime=120).issue(env.clock.now)
    token = env.token()
    with pytest.raises(InvalidDPoPProofError) as caught:
        env.verifier(nonce_policy="always").verify(env.request(token, env.proof(token, nonce=nonce, iat=env.clock.now - 3600)))
    assert caught.value.reason == "iat_too_old"


def test_success_response_carries_fresh_nonce(env: Env) -> None:
    token = env.token()
    result = env.verifier(nonce_policy="unsafe_methods").authenticate(env.request(token, env.proof(token)))
    assert [k for k, _ in result.response_headers] == ["DPoP-Nonce"]


def test_keyring_validation() -> None:
    with pytest.raises(ValueError):
        NonceKeyring({"k": b"short"})
    with pytest.raises(ValueError):
        NonceKeyring({"bad kid!": b"0123456789abcdef"})
    assert NonceKeyring().generated


def test_keyring_given_as_a_mapping_in_settings() -> None:
    env = make_env(nonce_keyring={"k2": KEYS["k2"], "k1": KEYS["k1"]})
    error = nonce_challenge(env, "always")
    assert error.nonce.startswith("k2.")
