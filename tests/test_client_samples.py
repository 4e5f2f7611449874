"""The client library against all three sample APIs over real HTTP, nonce retries included.

Starts the sample issuer and the Django, Flask and FastAPI sample APIs as real servers on
127.0.0.1 (the demo's own launcher and settings: FastAPI demands a nonce on every request, the two
others on unsafe methods), then talks to each with ``dpop_middleware.httpx_auth`` (sync and async)
and ``dpop_middleware.requests_auth``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests

from dpop_middleware.client import DPoPKey, NonceCache
from dpop_middleware.httpx_auth import DPoPAuth, fetch_token
from dpop_middleware.requests_auth import DPoPAuth as RequestsDPoPAuth
from sample_projects.common import DEFAULT_AUDIENCE
from sample_projects.demo.processes import ServerGroup
from sample_projects.demo.runner import APIS

API_NAMES = [name for name, _, _ in APIS]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    log_dir: Path = tmp_path_factory.mktemp("sample-logs")
    with ServerGroup(log_dir) as group:
        issuer = group.start("issuer", "sample_projects.issuer", {"DPOP_AUDIENCE": DEFAULT_AUDIENCE})
        common = {"DPOP_ISSUER": issuer.url, "DPOP_AUDIENCE": DEFAULT_AUDIENCE, "DPOP_REPLAY_STORE": "memory"}
        urls = {"issuer": issuer.url}
        for name, module, env in APIS:
            extra = {k: v.format(issuer=issuer.url) for k, v in env.items()}
            urls[name] = group.start(name, module, {**common, **extra}).url
        group.wait_ready(60)
        yield urls


def _token(servers: dict[str, str], key: DPoPKey, scope: str = "notes:read notes:write") -> str:
    response = fetch_token(
        f"{servers['issuer']}/token", key, client_id="demo-client", client_secret="demo-secret", scope=scope
    )
    assert response.token_type == "DPoP"
    return response.access_token


@pytest.mark.parametrize("api", API_NAMES)
def test_httpx_sync_with_nonce_retry(servers: dict[str, str], api: str) -> None:
    key = DPoPKey.generate()
    auth = DPoPAuth(key, _token(servers, key))
    seen: list[int] = []
    with httpx.Client(auth=auth, timeout=10, event_hooks={"response": [lambda r: seen.append(r.status_code)]}) as http:
        me = http.get(f"{servers[api]}/api/me")
        assert me.status_code == 200, me.text
        assert me.json()["jkt"] == key.jkt
        note = http.post(f"{servers[api]}/api/notes", json={"text": "hello"})
        assert note.status_code == 201, note.text
    # Every API demands a nonce on POST: the first POST was answered 401 use_dpop_nonce, then retried,
    # unless a nonce handed out on an earlier response was already remembered.
    assert seen.count(201) == 1
    assert auth.nonces.get(servers[api]) is not None


@pytest.mark.parametrize("api", API_NAMES)
def test_httpx_async(servers: dict[str, str], api: str) -> None:
    key = DPoPKey.generate("EdDSA")
    token = _token(servers, key)

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(auth=DPoPAuth(key, token), timeout=10) as http:
            await http.get(f"{servers[api]}/api/me")
            return await http.post(f"{servers[api]}/api/notes", json={"text": "async"})

    assert asyncio.run(go()).status_code == 201


@pytest.mark.parametrize("api", API_NAMES)
def test_requests_with_nonce_retry(servers: dict[str, str], api: str) -> None:
    key = DPoPKey.generate()
    nonces = NonceCache()
    auth = RequestsDPoPAuth(key, _token(servers, key), nonces=nonces)
    response = requests.post(f"{servers[api]}/api/notes", json={"text": "requests"}, auth=auth, timeout=10)
    assert response.status_code == 201, response.text
    # No nonce was known before this first request: the client answered the challenge once.
    assert [r.status_code for r in response.history] == [401]
    assert nonces.get(servers[api]) is not None


@pytest.mark.parametrize("api", API_NAMES)
def test_stolen_token_with_the_client_library(servers: dict[str, str], api: str) -> None:
    owner, thief = DPoPKey.generate(), DPoPKey.generate()
    token = _token(servers, owner)
    response = httpx.get(f"{servers[api]}/api/me", auth=DPoPAuth(thief, token), timeout=10)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
