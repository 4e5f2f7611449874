"""The client plugins against real servers on 127.0.0.1, with nonces demanded on every request.

Two deployments, each with its own token endpoint (:class:`TokenEndpointVerifier`) and a protected
``/api/me`` behind the library's adapter, both with ``nonce_policy="always"``:

* Starlette + ``DPoPMiddleware`` under uvicorn (``--factory test_client_servers:starlette_app``);
* Flask + the ``DPoP`` extension under gunicorn with two workers sharing one nonce keyring
  (``test_client_servers:flask_app()``).

The factories below are what the server processes import; the issuer's signing key reaches them
through the environment. Every client (httpx sync, httpx async, requests) must: get a token with a
proof (answering the token endpoint's 400 nonce challenge), call the API (answering its 401 nonce
challenge), then keep using the latest nonce so that later calls need no retry.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote

import httpx
import pytest
import requests
from servers import free_port, python_argv, running

from dpop_middleware import MemoryReplayStore
from dpop_middleware.authorization_server import TokenEndpointVerifier
from dpop_middleware.client import DPoPKey, NonceCache, TokenRequestError, origin_of
from dpop_middleware.core.jose import b64url_decode
from dpop_middleware.core.origin import ProxySettings
from dpop_middleware.httpx_auth import DPoPAuth, afetch_token, fetch_token
from dpop_middleware.requests_auth import DPoPAuth as RequestsDPoPAuth
from dpop_middleware.testing import TestIssuer

CLIENT_ID, CLIENT_SECRET = "app", "s3cret:/?"  # the secret needs form-encoding in Basic auth
NONCE_SECRET = "client-tests-nonce-key-0123456789"


# -- the server side (imported by the server processes) ---------------------------------------


def _issuer() -> TestIssuer:
    key = DPoPKey.from_pem(os.environ["DPOP_TEST_SIGNING_PEM"])
    return TestIssuer(os.environ["DPOP_TEST_ISSUER"], os.environ["DPOP_TEST_AUDIENCE"], signing_key=key)


def _token_endpoint() -> TokenEndpointVerifier:
    return TokenEndpointVerifier(
        os.environ["DPOP_TEST_BASE"] + "/token",
        nonce_policy="always",
        nonce_keyring={"k1": NONCE_SECRET},
        # These tests are about the clients' nonce handling, not replay races: each gunicorn worker
        # may keep its own proofs (a real multi-worker deployment needs a shared store).
        replay_store=MemoryReplayStore(allow_multiple_processes=True),
    )


def _client_ok(authorization: str | None) -> bool:
    if not authorization or not authorization.startswith("Basic "):
        return False
    user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
    return (unquote(user), unquote(password)) == (CLIENT_ID, CLIENT_SECRET)


def _token_body(issuer: TestIssuer, jkt: str, scope: str) -> dict[str, Any]:
    return {"access_token": issuer.token(jkt, scope=scope), "token_type": "DPoP", "expires_in": 300, "scope": scope}


def _me(principal: Any, method: str) -> dict[str, Any]:
    return {"sub": principal.subject, "jkt": principal.jkt, "htu": principal.htu, "htm": principal.htm, "m": method}


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from dpop_middleware import DPoPVerifier, NonceKeyring
    from dpop_middleware.asgi import request_info
    from dpop_middleware.starlette import DPoPMiddleware, get_principal

    issuer = _issuer()
    token_endpoint = _token_endpoint()
    proxies = ProxySettings.create()

    async def token(request: Request) -> Response:
        if not _client_ok(request.headers.get("authorization")):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        result = await token_endpoint.aauthenticate(request_info(request.scope, proxies))
        if result.rejection is not None:
            rejection = result.rejection
            return Response(rejection.body, rejection.status, dict(rejection.headers), rejection.content_type)
        assert result.jkt is not None
        # Parsed by hand: Starlette's form() needs python-multipart, which is not installed.
        form = parse_qs((await request.body()).decode())
        body = _token_body(issuer, result.jkt, form.get("scope", ["read"])[0])
        return JSONResponse(body, headers={"Cache-Control": "no-store", **dict(result.response_headers)})

    async def me(request: Request) -> Response:
        return JSONResponse(_me(get_principal(request), request.method))

    keyring = NonceKeyring({"k1": NONCE_SECRET})
    verifier = DPoPVerifier(issuer.validator(), nonce_policy="always", nonce_keyring=keyring)
    app = Starlette(routes=[Route("/token", token, methods=["POST"]), Route("/api/me", me, methods=["GET", "POST"])])
    return DPoPMiddleware(app, verifier=verifier, exempt_paths=["/token"])


def flask_app() -> Any:
    from flask import Flask, Response, jsonify, request

    from dpop_middleware.flask import DPoP, current_dpop
    from dpop_middleware.wsgi import request_info_from_environ

    issuer = _issuer()
    token_endpoint = _token_endpoint()
    proxies = ProxySettings.create()
    app = Flask(__name__)
    app.config.update(
        DPOP_ISSUER=issuer.issuer,
        DPOP_AUDIENCE=issuer.audience,
        DPOP_JWKS=issuer.jwks,
        DPOP_NONCE_POLICY="always",
        DPOP_NONCE_KEYRING={"k1": NONCE_SECRET},
        DPOP_ALLOW_PER_PROCESS_STORE=True,  # see _token_endpoint
    )
    dpop = DPoP(app)

    @app.post("/token")
    @dpop.exempt
    def token() -> Any:
        if not _client_ok(request.headers.get("Authorization")):
            return jsonify(error="invalid_client"), 401
        result = token_endpoint.authenticate(request_info_from_environ(request.environ, proxies))
        if result.rejection is not None:
            rejection = result.rejection
            return Response(rejection.body, rejection.status, list(rejection.headers), content_type="application/json")
        assert result.jkt is not None
        body = _token_body(issuer, result.jkt, request.form.get("scope", "read"))
        return jsonify(body), 200, {"Cache-Control": "no-store", **dict(result.response_headers)}

    @app.route("/api/me", methods=["GET", "POST"])
    @dpop.required
    def me() -> Any:
        return jsonify(_me(current_dpop._get_current_object(), request.method))

    return app


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def issuer() -> TestIssuer:
    return TestIssuer("https://issuer.test", "https://api.test")


def _env(issuer: TestIssuer, base: str) -> dict[str, str]:
    return {
        "DPOP_TEST_SIGNING_PEM": issuer.signing_key.private_pem().decode(),
        "DPOP_TEST_ISSUER": issuer.issuer,
        "DPOP_TEST_AUDIENCE": issuer.audience,
        "DPOP_TEST_BASE": base,
    }


@pytest.fixture(scope="module", params=["starlette-uvicorn", "flask-gunicorn"])
def server(request: pytest.FixtureRequest, issuer: TestIssuer) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    if request.param == "starlette-uvicorn":
        argv = python_argv(
            "-m", "uvicorn", "--factory", "test_client_servers:starlette_app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning",
        )  # fmt: skip
    else:
        argv = python_argv(
            "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "--log-level", "warning",
            "test_client_servers:flask_app()",
        )  # fmt: skip
    with running(argv, port, env=_env(issuer, base)):
        yield base


class Recorder:
    """Counts the responses httpx sees, including the ones an auth flow retries."""

    def __init__(self) -> None:
        self.statuses: list[int] = []

    def __call__(self, response: httpx.Response) -> None:
        self.statuses.append(response.status_code)

    async def record(self, response: httpx.Response) -> None:
        self(response)


# -- the tests --------------------------------------------------------------------------------


def test_httpx_sync_story(server: str) -> None:
    key = DPoPKey.generate("ES256")
    nonces = NonceCache()
    recorder = Recorder()
    with httpx.Client(event_hooks={"response": [recorder]}, timeout=10) as client:
        token = fetch_token(
            server + "/token", key, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scope="read",
            nonces=nonces, client=client,
        )  # fmt: skip
        assert token.token_type == "DPoP" and token.scope == "read" and token.expires_in == 300
        assert recorder.statuses == [400, 200]  # the token endpoint's nonce challenge, answered once
        assert token.access_token not in repr(token)

        auth = DPoPAuth(key, token.access_token, nonces=nonces)
        recorder.statuses.clear()
        first = client.get(server + "/api/me?x=1#frag", auth=auth)
        assert first.status_code == 200, first.text
        # Nonces are remembered per origin: the token endpoint's (same origin, same keyring) is the
        # one the first API call already carries, so the API does not challenge.
        body = first.json()
        assert body == {"sub": "alice", "jkt": key.jkt, "htu": server + "/api/me", "htm": "GET", "m": "GET"}
        # Later calls reuse the remembered nonce: no more challenges.
        for method in ("GET", "POST", "POST"):
            resp = client.request(method, server + "/api/me", auth=auth, content=b'{"a": 1}')
            assert resp.status_code == 200 and resp.json()["htm"] == method
        assert 401 not in recorder.statuses
        assert nonces.get(server) is not None


def test_httpx_sync_retries_the_resource_challenge(server: str, issuer: TestIssuer) -> None:
    key = DPoPKey.generate("EdDSA")
    recorder = Recorder()
    auth = DPoPAuth(key, issuer.token(key.jkt))  # a fresh nonce memory: the API must challenge once
    with httpx.Client(event_hooks={"response": [recorder]}, timeout=10) as client:
        resp = client.post(server + "/api/me", auth=auth, json={"hello": "world"})
        assert resp.status_code == 200, resp.text
        assert recorder.statuses == [401, 200]
        assert resp.json()["jkt"] == key.jkt
        assert auth.nonces.get(server + "/anything") is not None


async def test_httpx_async_story(server: str) -> None:
    key = DPoPKey.generate("PS256")
    nonces = NonceCache()
    recorder = Recorder()
    async with httpx.AsyncClient(event_hooks={"response": [recorder.record]}, timeout=10) as client:
        token = await afetch_token(
            server + "/token", key, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, nonces=nonces, client=client
        )
        auth = DPoPAuth(key, token.access_token, nonces=nonces)
        for _ in range(2):
            resp = await client.get(server + "/api/me", auth=auth)
            assert resp.status_code == 200, resp.text
            assert resp.json()["jkt"] == key.jkt
    assert recorder.statuses == [400, 200, 200, 200]
    # Without a client of its own, afetch_token makes one.
    fresh = await afetch_token(server + "/token", key, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    assert fresh.token_type == "DPoP"


def test_requests_story(server: str, issuer: TestIssuer) -> None:
    key = DPoPKey.generate("RS256")
    nonces = NonceCache()
    with requests.Session() as session:
        # A token request through the requests plugin: no token, so no ath and no Authorization of
        # ours; the client authentication header is left alone.
        basic = "Basic " + base64.b64encode(b"app:s3cret%3A%2F%3F").decode()
        resp = session.post(
            server + "/token", data={"grant_type": "client_credentials", "scope": "read write"},
            auth=RequestsDPoPAuth(key, nonces=nonces), headers={"Authorization": basic}, timeout=10,
        )  # fmt: skip
        assert resp.status_code == 200, resp.text
        assert [r.status_code for r in resp.history] == [400]  # the token endpoint's nonce challenge
        assert resp.json()["token_type"] == "DPoP"
        token = resp.json()["access_token"]

        session.auth = RequestsDPoPAuth(key, token, nonces=NonceCache())
        first = session.get(server + "/api/me", params={"q": "1"}, timeout=10)
        assert first.status_code == 200, first.text
        assert [r.status_code for r in first.history] == [401]  # challenged once, retried once
        assert first.json()["htu"] == server + "/api/me"
        second = session.post(server + "/api/me", json={"a": 1}, timeout=10)
        assert second.status_code == 200 and second.history == []
        assert second.json() == {"sub": "alice", "jkt": key.jkt, "htu": server + "/api/me", "htm": "POST", "m": "POST"}


def test_requests_does_not_retry_twice_or_without_a_nonce_challenge(server: str, issuer: TestIssuer) -> None:
    key = DPoPKey.generate()
    other = DPoPKey.generate()
    # A token bound to another key: the first answer is the nonce challenge, the retry's is invalid_token.
    resp = requests.get(server + "/api/me", auth=RequestsDPoPAuth(key, issuer.token(other.jkt)), timeout=10)
    assert resp.status_code == 401
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    assert [r.status_code for r in resp.history] == [401]


def test_fetch_token_errors(server: str) -> None:
    key = DPoPKey.generate()
    with pytest.raises(TokenRequestError) as info:
        fetch_token(server + "/token", key, client_id=CLIENT_ID, client_secret="wrong")
    assert info.value.status == 401 and info.value.error == "invalid_client"
    with pytest.raises(ValueError, match="client_id"):
        fetch_token(server + "/token", key, client_secret="x")


def test_the_proof_sent_has_the_rfc_shape(server: str, issuer: TestIssuer) -> None:
    """The proof on the wire: header {typ, alg, jwk} and claims {jti, htm, htu, iat, ath[, nonce]}."""
    seen: list[dict[str, str]] = []  # header copies: httpx retries with the same Request object
    key = DPoPKey.generate()
    token = issuer.token(key.jkt)
    with httpx.Client(event_hooks={"request": [lambda r: seen.append(dict(r.headers))]}, timeout=10) as client:
        assert client.get(server + "/api/me?a=b", auth=DPoPAuth(key, token)).status_code == 200
    assert len(seen) == 2  # challenged for a nonce, then retried
    decoded = []
    for sent in seen:
        assert sent["authorization"] == f"DPoP {token}"
        head, claims, _ = sent["dpop"].split(".")
        decoded.append((json.loads(b64url_decode(head)), json.loads(b64url_decode(claims))))
    for header, payload in decoded:
        assert header == {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk}
        assert payload["htu"] == server + "/api/me" and payload["htm"] == "GET"
    assert set(decoded[0][1]) == {"jti", "htm", "htu", "iat", "ath"}
    assert set(decoded[1][1]) == {"jti", "htm", "htu", "iat", "ath", "nonce"}
    assert decoded[0][1]["jti"] != decoded[1][1]["jti"]  # the retry is a new proof, not a replay
    assert origin_of(server + "/api/me") == server
