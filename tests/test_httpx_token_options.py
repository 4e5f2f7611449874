"""fetch_token/afetch_token: one TokenRequestOptions for both; a misspelt option fails as a signature would."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from dpop_middleware.client import DPoPKey
from dpop_middleware.httpx_auth import afetch_token, fetch_token

TOKEN = {"access_token": "t", "token_type": "DPoP"}


def _form(request: httpx.Request) -> dict[str, str]:
    return dict(httpx.QueryParams(request.content.decode()))


def test_sync_and_async_send_the_same_request() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=TOKEN)

    options: dict[str, Any] = {"client_id": "app", "client_secret": "s e", "scope": "read", "data": {"x": "1"}}
    key = DPoPKey.generate()
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        fetch_token("https://as.test/token", key, client=client, **options)

    async def go() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            await afetch_token("https://as.test/token", key, client=client, **options)

    asyncio.run(go())
    sync, async_ = seen
    assert _form(sync) == _form(async_) == {"grant_type": "client_credentials", "scope": "read", "x": "1"}
    assert sync.headers["authorization"] == async_.headers["authorization"] == "Basic YXBwOnMlMjBl"


def test_a_misspelt_option_is_refused_not_ignored() -> None:
    with pytest.raises(TypeError, match="scop"):
        fetch_token("https://as.test/token", DPoPKey.generate(), scop="read")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="client_secrett"):
        asyncio.run(afetch_token("https://as.test/token", DPoPKey.generate(), client_secrett="x"))  # type: ignore[call-arg]


def test_client_secret_without_client_id_is_refused() -> None:
    with pytest.raises(ValueError, match="client_id"):
        fetch_token("https://as.test/token", DPoPKey.generate(), client_secret="s")
