"""One verification flow per side, driven sync and async (issue 20 item 1), and explicit results (item 5).

The resource server (``DPoPVerifier``) and the token endpoint (``TokenEndpointVerifier``) share the
replay-store step; every store behaviour must give the same answer on both sides and under both
drivers. Before the flow, the token endpoint's sync ``verify()`` with an asyncio store answered
400 ``replayed`` (and leaked a never-awaited coroutine) where the resource server answered 503.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
import secrets
import textwrap
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from core_support import Env, make_env
from fakes import FakeReplayStore

from dpop_middleware import DPoPError, DPoPVerifier, NonceKeyring, RequestInfo
from dpop_middleware.authorization_server import TokenEndpointVerifier
from dpop_middleware.core.config import VerifierConfig
from dpop_middleware.flow import AsyncPortInSyncCall, run_async, run_sync
from dpop_middleware.verifier import Outcome

TOKEN_URL = "https://as.example.com/token"


def _resource_side(env: Env, store: FakeReplayStore) -> Callable[[], Any]:
    verifier = env.verifier(replay_store=store)
    token = env.token()
    request = env.request(token, env.proof(token))
    return lambda: (verifier.verification(request), verifier.authentication(request))


def _token_side(env: Env, store: FakeReplayStore) -> Callable[[], Any]:
    verifier = TokenEndpointVerifier(TOKEN_URL, replay_store=store, clock=env.clock)
    proof = env.key.sign(env.header(), {"jti": secrets.token_urlsafe(12), "htm": "POST", "htu": TOKEN_URL, "iat": int(env.clock.now)})
    request = RequestInfo("POST", TOKEN_URL, [("DPoP", proof)])
    return lambda: (verifier.verification(request), verifier.authentication(request))


SIDES = {"resource": _resource_side, "token_endpoint": _token_side}
#: (store mode, store is asyncio, driver) -> the reason every side must give; "replayed" sends the
#: same request to a working store a second time.
STORE_TABLE = [
    ("ok", False, "sync", "ok"),
    ("ok", False, "async", "ok"),
    ("ok", True, "async", "ok"),
    ("ok", True, "sync", "replay_store_misconfigured"),
    ("replayed", False, "sync", "replayed"),
    ("replayed", True, "async", "replayed"),
    ("odd", False, "sync", "replayed"),
    ("down", False, "sync", "replay_store_unavailable"),
    ("error", False, "sync", "replay_store_unavailable"),
    ("error", True, "async", "replay_store_unavailable"),
]


def _drive(flow: Any, driver: str) -> Any:
    return run_sync(flow) if driver == "sync" else asyncio.run(run_async(flow))


@pytest.mark.parametrize("side", sorted(SIDES))
@pytest.mark.parametrize(("behaviour", "asynchronous", "driver", "reason"), STORE_TABLE)
def test_every_store_answer_means_the_same_on_both_sides(
    side: str, behaviour: str, asynchronous: bool, driver: str, reason: str
) -> None:
    store = FakeReplayStore("ok" if behaviour == "replayed" else behaviour, asynchronous=asynchronous)  # type: ignore[arg-type]
    flows = SIDES[side](make_env(), store)
    if behaviour == "replayed":
        _drive(flows()[0], driver)  # the first time: accepted
    verification, authentication = flows()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a never-awaited coroutine would be a RuntimeWarning
        try:
            _drive(verification, driver)
            got = "ok"
        except DPoPError as exc:
            got = exc.reason
        assert got == reason
        if reason != "ok":
            # The never-raising flavour renders the same error: 503 for the store; a replay is the
            # side's invalid_dpop_proof (a 401 challenge at a resource, a 400 JSON body at a token endpoint).
            if behaviour == "ok":
                store.seen.clear()  # the same proof again must not turn into a replay here
            verification, authentication = flows()
            result = _drive(authentication, driver)
            assert result.rejection is not None and result.rejection.error.reason == reason
            replay_status = 401 if side == "resource" else 400
            assert result.rejection.status == (replay_status if reason == "replayed" else 503)


def test_async_only_validator_driven_synchronously_is_a_503_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    env = make_env()

    async def avalidate(token: str) -> Any:
        return {}

    verifier = DPoPVerifier(avalidate, clock=env.clock)
    token = env.token()
    with caplog.at_level(logging.ERROR, logger="dpop_middleware"):
        result = verifier.authenticate(env.request(token, env.proof(token)))
    assert result.rejection is not None and result.rejection.status == 503
    assert result.rejection.error.reason == "token_validator_misconfigured"
    assert "averify()/aauthenticate()" in caplog.text


def test_sync_driver_closes_an_awaitable_it_cannot_await() -> None:
    closed: list[bool] = []

    class Pending:
        def __await__(self) -> Any:
            yield None

        def close(self) -> None:
            closed.append(True)

    def flow() -> Any:
        try:
            yield (Pending, Pending, ())
        except AsyncPortInSyncCall:
            return "refused"
        return "accepted"

    assert run_sync(flow()) == "refused"
    assert closed == [True]


def test_flows_and_drivers_are_the_only_entry_points() -> None:
    # The mirrored bodies are gone: each public pair is a one-line driver of one flow.
    for cls, names in ((DPoPVerifier, ("verify", "authenticate")), (TokenEndpointVerifier, ("verify", "authenticate"))):
        for name in names:
            sync_src = inspect.getsource(getattr(cls, name))
            async_src = inspect.getsource(getattr(cls, "a" + name))
            assert "run_sync(" in sync_src and "run_async(" in async_src, (cls, name)
            for source in (sync_src, async_src):
                assert len(_statements(source)) == 1, (cls, name)  # return run_...(self.<flow>(...))


def _statements(source: str) -> list[ast.stmt]:
    """The statements of one method's body, its docstring left out."""
    function = ast.parse(textwrap.dedent(source)).body[0]
    assert isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
    body = function.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return body


# -- explicit results: anonymous, reported and rejected are different values --------------------


def _outcomes(env: Env, **options: Any) -> tuple[DPoPVerifier, list[Outcome]]:
    seen: list[Outcome] = []
    return env.verifier(on_outcome=seen.append, **options), seen


def test_anonymous_and_report_only_results_differ() -> None:
    env = make_env()
    anonymous = env.verifier().authenticate(env.request(None, None), required=False)
    reported = env.verifier(mode="report_only").authenticate(env.request(None, None))
    assert anonymous.principal is None and anonymous.rejection is None and anonymous.outcome == "anonymous"
    assert reported.principal is None and reported.rejection is None and reported.outcome == "reported"
    token = env.token()
    accepted = env.verifier().authenticate(env.request(token, env.proof(token)))
    assert accepted.outcome == "accepted" and accepted.principal is not None


def test_reject_never_answers_none() -> None:
    from dpop_middleware.core.errors import InvalidRequestError

    env = make_env()
    verifier, seen = _outcomes(env)
    rejected = verifier.reject(InvalidRequestError("bad_request_url"))
    assert rejected.outcome == "rejected" and rejected.rejection is not None and rejected.rejection.status == 400
    lenient, seen_lenient = _outcomes(env, mode="report_only")
    reported = lenient.reject(InvalidRequestError("bad_request_url"))
    assert reported is not None and reported.outcome == "reported" and reported.rejection is None
    assert [o.outcome for o in seen] == ["rejected"] and [o.outcome for o in seen_lenient] == ["reported"]


def test_authorize_result_says_which() -> None:
    env = make_env()
    token = env.token(scope="read")
    verifier, seen = _outcomes(env)
    principal = verifier.verify(env.request(token, env.proof(token)))
    assert verifier.authorize(principal, ("read",)).outcome == "accepted"
    refused = verifier.authorize(principal, ("write",))
    assert refused.outcome == "rejected" and refused.rejection is not None and refused.rejection.status == 403
    assert [o.reason for o in seen] == ["insufficient_scope"]


# -- explicit, typed keyword parameters ---------------------------------------------------------


@pytest.mark.parametrize("cls", [DPoPVerifier, TokenEndpointVerifier])
def test_options_are_named_parameters_not_a_catch_all(cls: type) -> None:
    parameters = inspect.signature(cls).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for name in ("algorithms", "max_age", "clock_skew", "nonce_policy", "nonce_keyring", "debug"):
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters[name].annotation != "Any"


def test_misspelt_option_is_a_type_error() -> None:
    env = make_env()
    with pytest.raises(TypeError, match="max_ag"):
        DPoPVerifier(env.issuer.validator(), max_ag=30)  # type: ignore[call-arg]


@pytest.mark.parametrize("cls", [DPoPVerifier, TokenEndpointVerifier])
def test_config_and_keywords_together_name_the_keywords(cls: type) -> None:
    env = make_env()
    first = (env.issuer.validator(),) if cls is DPoPVerifier else (TOKEN_URL,)
    with pytest.raises(TypeError, match="max_age"):
        cls(*first, config=VerifierConfig(), max_age=5)


@pytest.mark.parametrize("cls", [DPoPVerifier, TokenEndpointVerifier])
def test_nonce_keyring_mapping_is_coerced_once_for_both_sides(cls: type) -> None:
    env = make_env()
    first = (env.issuer.validator(),) if cls is DPoPVerifier else (TOKEN_URL,)
    verifier = cls(*first, nonce_keyring={"k1": "a" * 32}, nonce_policy="always")
    assert isinstance(verifier.config.nonce_keyring, NonceKeyring)
    assert not verifier.config.nonce_keyring.generated


def test_algorithms_as_a_string_is_refused_with_an_example() -> None:
    env = make_env()
    with pytest.raises(TypeError, match="sequence of names"):
        DPoPVerifier(env.issuer.validator(), algorithms="ES256")  # type: ignore[arg-type]


# -- one request, one report: require_principal after a report_only failure ----------------------


@pytest.mark.parametrize("layer", ["middleware", "backend"])
def test_require_principal_reports_a_report_only_failure_once(issuer: Any, layer: str) -> None:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from dpop_middleware.starlette import (
        DPoPAuthBackend,
        DPoPAuthenticationMiddleware,
        DPoPMiddleware,
        require_principal,
    )

    async def whoami(request: Request) -> Response:
        return JSONResponse({"sub": require_principal(request).subject})

    seen: list[Outcome] = []
    verifier = DPoPVerifier(issuer.validator(), mode="report_only", on_outcome=seen.append)
    middleware = (
        Middleware(DPoPMiddleware, verifier=verifier, allowed_hosts=["testserver"])
        if layer == "middleware"
        else Middleware(
            DPoPAuthenticationMiddleware, backend=DPoPAuthBackend(verifier, allowed_hosts=["testserver"])
        )
    )
    app = Starlette(routes=[Route("/me", whoami)], middleware=[middleware])
    with TestClient(app) as client:
        assert client.get("/me").status_code == 401  # still refused: the endpoint needs a principal
    assert [(o.outcome, o.reason) for o in seen] == [("reported", "missing_credentials")]


def test_refuse_answers_even_in_report_only_and_reports_once() -> None:
    from dpop_middleware.core.errors import InvalidRequestError

    env = make_env()
    verifier, seen = _outcomes(env, mode="report_only")
    response = verifier.refuse(InvalidRequestError("invalid_host", "Invalid Host header"))
    assert response.status == 400 and response.error.reason == "invalid_host"
    assert [(o.outcome, o.reason) for o in seen] == [("reported", "invalid_host")]
