"""DPoPAuth for httpx2 (the mcp 2.x SDK's HTTP client): the same flow as the httpx plugin, bound to httpx2."""

from __future__ import annotations

import json

import httpx
import httpx2
import pytest

from dpop_middleware import httpx2_auth, httpx_auth
from dpop_middleware.auth_flow import DPoPAuthFlow
from dpop_middleware.client import DPoPKey, NonceCache
from dpop_middleware.core.jose import b64url_decode


def claims(proof: str) -> dict[str, object]:
    return json.loads(b64url_decode(proof.split(".")[1]))  # type: ignore[no-any-return]


class Script:
    """An httpx2 MockTransport handler answering from a list, recording each request's headers."""

    def __init__(self, *answers: httpx2.Response) -> None:
        self.answers = list(answers)
        self.seen: list[httpx2.Headers] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.seen.append(httpx2.Headers(request.headers))
        return self.answers.pop(0)


def challenge(nonce: str) -> httpx2.Response:
    return httpx2.Response(401, headers={"WWW-Authenticate": 'DPoP error="use_dpop_nonce"', "DPoP-Nonce": nonce})


def test_each_library_gets_its_own_auth_class_with_one_shared_flow() -> None:
    assert issubclass(httpx2_auth.DPoPAuth, httpx2.Auth) and not issubclass(httpx2_auth.DPoPAuth, httpx.Auth)
    assert issubclass(httpx_auth.DPoPAuth, httpx.Auth) and not issubclass(httpx_auth.DPoPAuth, httpx2.Auth)
    # The flow is inherited, not copied: one auth_flow for both libraries.
    assert httpx2_auth.DPoPAuth.auth_flow is DPoPAuthFlow.auth_flow is httpx_auth.DPoPAuth.auth_flow
    # So is the async flow that signs with an out-of-process key (PKCS#11, signer) off the event loop.
    assert httpx2_auth.DPoPAuth.async_auth_flow is DPoPAuthFlow.async_auth_flow is httpx_auth.DPoPAuth.async_auth_flow
    # httpx2 refuses the other library's Auth: why the binding exists.
    with pytest.raises(TypeError):
        httpx2.Client(auth=httpx_auth.DPoPAuth(DPoPKey.generate(), "tok"))  # type: ignore[arg-type]


async def test_async_client_signs_and_answers_a_nonce_challenge_once() -> None:
    script = Script(challenge("n1"), httpx2.Response(200, headers={"DPoP-Nonce": "n2"}), httpx2.Response(200))

    async def handler(request: httpx2.Request) -> httpx2.Response:
        return script(request)

    key = DPoPKey.generate("ES256")
    nonces = NonceCache()
    auth = httpx2_auth.DPoPAuth(key, "tok", nonces=nonces)
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler), auth=auth) as client:
        assert (await client.post("https://mcp.test/mcp", content=b"{}")).status_code == 200
        assert (await client.post("https://mcp.test/mcp", content=b"{}")).status_code == 200
    assert len(script.seen) == 3
    first, retried, next_one = (claims(headers["dpop"]) for headers in script.seen)
    assert all(headers["authorization"] == "DPoP tok" for headers in script.seen)
    assert "nonce" not in first and retried["nonce"] == "n1" and next_one["nonce"] == "n2"
    assert first["jti"] != retried["jti"] and first["htm"] == "POST" and first["htu"] == "https://mcp.test/mcp"
    assert "ath" in first
    assert nonces.get("https://mcp.test/other") == "n2"  # shared memory, per origin


def test_a_second_challenge_is_not_retried_and_token_mode_reads_the_400_body() -> None:
    script = Script(challenge("n1"), challenge("n2"))
    with httpx2.Client(transport=httpx2.MockTransport(script)) as client:
        assert client.get("https://mcp.test/a", auth=httpx2_auth.DPoPAuth(DPoPKey.generate(), "tok")).status_code == 401
        assert len(script.seen) == 2
        as_challenge = httpx2.Response(400, headers={"DPoP-Nonce": "n3"}, json={"error": "use_dpop_nonce"})
        script.answers = [as_challenge, httpx2.Response(200)]
        token_mode = httpx2_auth.DPoPAuth(DPoPKey.generate())
        assert client.post("https://as.test/token", auth=token_mode, data={"a": "b"}).status_code == 200
    token_request = script.seen[-1]
    assert "authorization" not in token_request and claims(token_request["dpop"])["nonce"] == "n3"
    assert "ath" not in claims(token_request["dpop"])


def test_repr_names_no_token() -> None:
    auth = httpx2_auth.DPoPAuth(DPoPKey.generate(), "secret-token-value")
    assert "secret-token-value" not in repr(auth) and repr(auth).startswith("DPoPAuth(")
