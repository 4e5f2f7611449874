"""One table of cases through both verify() and averify(): the twins cannot drift."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from core_support import Env, make_env
from fakes import FakeReplayStore

from dpop_middleware import DPoPError, DPoPVerifier, RequestInfo
from dpop_middleware.client import DPoPKey


def _good(env: Env) -> RequestInfo:
    token = env.token()
    return env.request(token, env.proof(token))


def _replayed(env: Env) -> RequestInfo:
    return _good(env)  # sent twice by the runner


def _stolen(env: Env) -> RequestInfo:
    token = env.token()
    return env.request(token, env.proof(token, key=DPoPKey.generate()))


def _unbound(env: Env) -> RequestInfo:
    token = env.token(None)  # one token for both the header and the proof's ath
    return env.request(token, env.proof(token))


def _old(env: Env) -> RequestInfo:
    token = env.token()
    return env.request(token, env.proof(token, iat=env.clock.now - 999))


# The expected outcome: a rejection's reason code, or "accepted:<scheme>" with the principal's scheme.
CASES: list[tuple[str, Callable[[Env], RequestInfo], str, dict[str, Any]]] = [
    ("good", _good, "accepted:DPoP", {}),
    ("replayed", _replayed, "replayed", {}),
    ("stolen_token", _stolen, "key_binding_mismatch", {}),
    ("unbound", _unbound, "token_not_bound", {}),
    ("missing", lambda e: e.request(None, None), "missing_credentials", {}),
    ("bearer_allowed", lambda e: e.request(e.token(None), None, scheme="Bearer"), "accepted:Bearer", {"mode": "allow_bearer"}),
    ("bearer_bound", lambda e: e.request(e.token(), None, scheme="Bearer"), "bound_token_as_bearer", {"mode": "allow_bearer"}),
    ("nonce", _good, "nonce_missing", {"nonce_policy": "always"}),
    ("old", _old, "iat_too_old", {}),
]


def _outcome(call: Callable[[], Any]) -> str:
    try:
        principal = call()
    except DPoPError as exc:
        return exc.reason
    return f"accepted:{principal.scheme}"


@pytest.mark.parametrize("flavour", ["sync", "async_validator_sync_store", "async_everything"])
@pytest.mark.parametrize(("name", "build", "reason", "options"), CASES, ids=[c[0] for c in CASES])
def test_table(flavour: str, name: str, build: Callable[[Env], RequestInfo], reason: str, options: dict[str, Any]) -> None:
    env = make_env()
    if flavour == "sync":
        verifier = env.verifier(**options)
        run: Callable[[RequestInfo], Any] = verifier.verify
    else:
        validator = env.issuer.validator()

        async def avalidate(token: str) -> Any:
            return validator.validate(token)

        store = FakeReplayStore(asynchronous=True) if flavour == "async_everything" else env.store
        verifier = DPoPVerifier(avalidate, replay_store=store, clock=env.clock, **options)
        run = lambda r: asyncio.run(verifier.averify(r))  # noqa: E731
    request = build(env)
    if name == "replayed":
        assert _outcome(lambda: run(request)) == "accepted:DPoP"  # the first use passes
    assert _outcome(lambda: run(request)) == reason


def test_sync_verify_with_async_only_validator_is_a_configuration_error() -> None:
    env = make_env()

    async def avalidate(token: str) -> Any:
        return {}

    # A wiring error like an asyncio store driven synchronously: 503, never a 500 (issue 20).
    with pytest.raises(DPoPError) as caught:
        DPoPVerifier(avalidate, clock=env.clock).verify(_good(env))
    assert caught.value.status == 503 and caught.value.reason == "token_validator_misconfigured"
