"""The MCP sample app in process (Starlette's TestClient, issuer in process): its settings, the
resource it names in its metadata, and the scope its tools need."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest
from starlette.testclient import TestClient

from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import dpop_headers
from sample_projects.common import SampleSettings
from sample_projects.issuer.inprocess import InProcessIssuer
from sample_projects.mcp_server import create_app

WELL_KNOWN = "/.well-known/oauth-protected-resource"
LIST_TOOLS = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def client_for(issuer: InProcessIssuer, env: Mapping[str, str]) -> TestClient:
    settings = SampleSettings.from_env({"PORT": "8004", **env}, default_port=8004)
    return TestClient(create_app(settings, validator=issuer.validator(settings)), base_url="http://127.0.0.1:8004")


@pytest.fixture
def client(issuer: InProcessIssuer) -> Iterator[TestClient]:
    with client_for(issuer, {}) as client:
        yield client


def test_the_resource_is_the_mcp_endpoint_by_default(client: TestClient) -> None:
    # Not at the host-level URL (the resource is the endpoint, not the host): there, just a protected path.
    assert client.get(WELL_KNOWN).status_code == 401
    document = client.get(f"{WELL_KNOWN}/mcp").json()
    assert document["resource"] == "http://127.0.0.1:8004/mcp"
    assert document["authorization_servers"] == ["http://127.0.0.1:9000"]


def test_public_url_and_dpop_resource_name_the_resource(issuer: InProcessIssuer) -> None:
    with client_for(issuer, {"DPOP_PUBLIC_URL": "https://tools.example.com"}) as client:
        assert client.get(f"{WELL_KNOWN}/mcp").json()["resource"] == "https://tools.example.com/mcp"
    with client_for(issuer, {"DPOP_RESOURCE": "https://tools.example.com/agents"}) as client:
        assert client.get(f"{WELL_KNOWN}/agents").json()["resource"] == "https://tools.example.com/agents"


def test_metadata_can_be_switched_off(issuer: InProcessIssuer) -> None:
    with client_for(issuer, {"DPOP_RESOURCE_METADATA": "false"}) as client:
        challenge = client.post("/mcp", json=LIST_TOOLS, headers=MCP_HEADERS)
        assert challenge.status_code == 401 and "resource_metadata" not in challenge.headers["www-authenticate"]
        assert client.get(f"{WELL_KNOWN}/mcp").status_code == 401  # just another protected path


def test_a_bad_setting_stops_the_server_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="DPOP_RESOURCE"):
        SampleSettings.from_env({"DPOP_RESOURCE": "ftp://tools.example.com/mcp"}, default_port=8004)


def test_tools_need_the_read_scope(client: TestClient, issuer: InProcessIssuer) -> None:
    key = DPoPKey.generate("ES256")
    url = "http://127.0.0.1:8004/mcp"
    served = client.post(
        "/mcp",
        json=LIST_TOOLS,
        headers={**MCP_HEADERS, **dpop_headers(key, "POST", url, issuer.token(key, "notes:read"))},
    )
    assert served.status_code == 200 and {t["name"] for t in served.json()["result"]["tools"]} == {"add", "whoami"}
    write_only = issuer.token(key, "notes:write")
    refused = client.post(
        "/mcp", json=LIST_TOOLS, headers={**MCP_HEADERS, **dpop_headers(key, "POST", url, write_only)}
    )
    assert refused.status_code == 403 and 'error="insufficient_scope"' in refused.headers["www-authenticate"]


def test_a_host_outside_the_allowed_hosts_is_refused(client: TestClient, issuer: InProcessIssuer) -> None:
    key = DPoPKey.generate("ES256")
    other = "http://other-tools.example/mcp"
    refused = client.post(
        other, json=LIST_TOOLS, headers={**MCP_HEADERS, **dpop_headers(key, "POST", other, issuer.token(key))}
    )
    assert refused.status_code == 400 and 'error="invalid_request"' in refused.headers["www-authenticate"]
