"""RFC 9728 on the real sample servers: the sample issuer and the Django, Flask and FastAPI sample APIs
started as processes on 127.0.0.1 (their environment contract has the metadata on by default). Each
API answers its document, names it in its 401 challenges, refuses other methods on it, and a client
that knows nothing but the API's URL finds the issuer and gets a token that works."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import requests

from dpop_middleware.client import DPoPKey
from dpop_middleware.httpx_auth import DPoPAuth, discover, fetch_token
from dpop_middleware.requests_auth import discover as requests_discover
from sample_projects.common import DEFAULT_AUDIENCE
from sample_projects.demo.processes import ServerGroup
from sample_projects.demo.runner import APIS

API_NAMES = [name for name, _, _ in APIS]
WELL_KNOWN = "/.well-known/oauth-protected-resource"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    log_dir: Path = tmp_path_factory.mktemp("sample-metadata-logs")
    with ServerGroup(log_dir) as group:
        issuer = group.start("issuer", "sample_projects.issuer", {"DPOP_AUDIENCE": DEFAULT_AUDIENCE})
        common = {"DPOP_ISSUER": issuer.url, "DPOP_AUDIENCE": DEFAULT_AUDIENCE}
        urls = {"issuer": issuer.url}
        for name, module, env in APIS:
            extra = {k: v.format(issuer=issuer.url) for k, v in env.items()}
            urls[name] = group.start(name, module, {**common, **extra}).url
        group.wait_ready(60)
        yield urls


@pytest.mark.parametrize("api", API_NAMES)
def test_each_sample_serves_its_document_and_names_it_in_challenges(servers: dict[str, str], api: str) -> None:
    base = servers[api]
    with httpx.Client(timeout=10) as http:
        document = http.get(base + WELL_KNOWN)
        assert document.status_code == 200, document.text
        assert document.headers["content-type"].startswith("application/json")
        assert document.headers["cache-control"] == "public, max-age=3600"
        body = document.json()
        assert body["resource"] == base
        assert body["authorization_servers"] == [servers["issuer"]]
        assert body["dpop_bound_access_tokens_required"] is True
        assert body["bearer_methods_supported"] == ["header"]
        assert body["resource_name"] == "dpop-middleware sample API"
        refused = http.post(base + WELL_KNOWN)
        assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
        challenge = http.get(base + "/api/me")
        assert challenge.status_code == 401
        assert f'resource_metadata="{base}{WELL_KNOWN}"' in challenge.headers["www-authenticate"]


@pytest.mark.parametrize("api", API_NAMES)
def test_a_client_starting_from_the_api_url_finds_the_issuer_and_gets_in(servers: dict[str, str], api: str) -> None:
    found = discover(servers[api])
    assert found.issuer == servers["issuer"]
    assert found.resource_metadata_url == servers[api] + WELL_KNOWN
    assert found.token_endpoint is not None
    assert requests_discover(servers[api]).token_endpoint == found.token_endpoint
    key = DPoPKey.generate()
    token = fetch_token(
        found.token_endpoint, key, client_id="demo-client", client_secret="demo-secret", scope="notes:read"
    )
    with httpx.Client(auth=DPoPAuth(key, token.access_token), timeout=10) as http:
        me = http.get(servers[api] + "/api/me")
        assert me.status_code == 200, me.text
        assert me.json()["jkt"] == key.jkt


def test_discovery_refuses_a_sample_named_as_another_resource(servers: dict[str, str]) -> None:
    from dpop_middleware.discovery import DiscoveryError

    # The document says resource = the API's base URL; a client that meant a deeper path must not
    # take it for its own (RFC 9728 §3.3).
    with pytest.raises(DiscoveryError) as caught:
        requests_discover(servers["flask"] + "/api/me", session=requests.Session())
    assert caught.value.reason == "resource_mismatch"
