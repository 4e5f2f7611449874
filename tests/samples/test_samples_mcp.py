"""The MCP story end to end: the sample issuer and the MCP tool server under uvicorn, the agent on the
real ``mcp`` SDK client (httpx2) with our DPoP auth.

The agent starts from the server's URL only (RFC 9728 metadata leads it to the issuer), lists and
calls tools; a token copied out of a trace is refused without its key; a recorded request sent
again is refused as a replay; a server demanding nonces is answered without the agent noticing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import httpx2
import pytest
from servers import free_port, python_argv, running

from dpop_middleware.client import DPoPKey, proof_headers
from sample_projects.mcp_server.agent import AgentRun, run_agent

#: Headers a recorded request is sent again without: the transport sets them itself.
TRANSPORT_HEADERS = {"content-length", "host", "connection", "accept-encoding"}


@dataclass
class Recorded:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Trace:
    """What an observability hook on the agent's HTTP client sees: every request and response."""

    requests: list[Recorded] = field(default_factory=list)
    responses: list[tuple[int, str]] = field(default_factory=list)  # (status, WWW-Authenticate)

    async def on_request(self, request: httpx2.Request) -> None:
        headers = {name.lower(): value for name, value in request.headers.items()}
        self.requests.append(Recorded(request.method, str(request.url), headers, request.content))

    async def on_response(self, response: httpx2.Response) -> None:
        self.responses.append((response.status_code, response.headers.get("www-authenticate", "")))

    @property
    def hooks(self) -> dict[str, list[Any]]:
        return {"request": [self.on_request], "response": [self.on_response]}

    def tool_list_request(self) -> Recorded:
        """The recorded POST that listed the tools (the SDK's own request: headers and JSON-RPC body)."""
        for recorded in self.requests:
            if recorded.method == "POST" and json.loads(recorded.body).get("method") == "tools/list":
                return recorded
        raise AssertionError("the agent sent no tools/list request")


@dataclass(frozen=True)
class Servers:
    issuer: str
    mcp: str  # the MCP endpoint of the server without nonces
    mcp_nonce: str  # the MCP endpoint of the server with DPOP_NONCE=always


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    logs = tmp_path_factory.mktemp("mcp-logs")
    issuer_port, plain_port, nonce_port = free_port(), free_port(), free_port()
    issuer = f"http://127.0.0.1:{issuer_port}"

    def start(module: str, port: int, name: str, **env: str) -> Any:
        env = {"DPOP_ISSUER": issuer, "HOST": "127.0.0.1", "PORT": str(port), **env}
        # Each from its own directory: the replay store's process guard groups processes by parent,
        # directory and command line, and would take two servers of one module for sibling workers (503).
        cwd = logs / name
        cwd.mkdir()
        return running(python_argv("-m", module), port, env=env, cwd=cwd, log_path=logs / f"{name}.log")

    with (
        start("sample_projects.issuer", issuer_port, "issuer"),
        start("sample_projects.mcp_server", plain_port, "mcp"),
        start("sample_projects.mcp_server", nonce_port, "mcp-nonce", DPOP_NONCE="always"),
    ):
        yield Servers(issuer, f"http://127.0.0.1:{plain_port}/mcp", f"http://127.0.0.1:{nonce_port}/mcp")


@pytest.fixture(scope="module")
def key() -> DPoPKey:
    return DPoPKey.generate("ES256")


@pytest.fixture(scope="module")
def story(servers: Servers, key: DPoPKey) -> tuple[AgentRun, Trace]:
    """One run of the agent against the server without nonces, with its trace (shared by the module)."""
    trace = Trace()
    run = asyncio.run(run_agent(servers.mcp, key=key, event_hooks=trace.hooks))
    return run, trace


def resend(recorded: Recorded, **replace: str | None) -> httpx.Response:
    """Send a recorded request again with plain httpx, some headers replaced (``None``: removed)."""
    headers = {k: v for k, v in recorded.headers.items() if k not in TRANSPORT_HEADERS}
    for name, value in replace.items():
        headers.pop(name.lower(), None)
        if value is not None:
            headers[name.lower()] = value
    return httpx.post(recorded.url, headers=headers, content=recorded.body, timeout=10)


def token_of(recorded: Recorded) -> str:
    scheme, _, token = recorded.headers["authorization"].partition(" ")
    assert scheme == "DPoP" and token
    return token


def assert_refused(response: httpx.Response, error: str | None) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("DPoP ") and "resource_metadata=" in challenge
    if error is not None:
        assert f'error="{error}"' in challenge
    assert "result" not in response.json()  # the SDK never answered: no JSON-RPC result


def test_metadata_names_the_issuer_and_requires_dpop(servers: Servers) -> None:
    challenge = httpx.get(servers.mcp, timeout=10)
    assert challenge.status_code == 401
    url = f"{servers.mcp.removesuffix('/mcp')}/.well-known/oauth-protected-resource/mcp"
    assert f'resource_metadata="{url}"' in challenge.headers["www-authenticate"]
    document = httpx.get(url, timeout=10).json()
    assert document["resource"] == servers.mcp
    assert document["authorization_servers"] == [servers.issuer]
    assert document["dpop_bound_access_tokens_required"] is True
    assert document["scopes_supported"] == ["notes:read"]


def test_agent_discovers_the_issuer_lists_and_calls_tools(
    servers: Servers, key: DPoPKey, story: tuple[AgentRun, Trace]
) -> None:
    run, trace = story
    assert (run.issuer, run.token_endpoint) == (servers.issuer, f"{servers.issuer}/token")
    assert run.tools == ["add", "whoami"]
    assert run.sum == 42
    assert run.whoami == {
        "sub": "demo-client",
        "client_id": "demo-client",
        "jkt": key.jkt,
        "scopes": ["notes:read"],
        "scheme": "DPoP",
    }
    # Every MCP request carried a DPoP-bound token and its own proof; nothing was refused.
    assert trace.requests and all(r.headers["authorization"].startswith("DPoP ") for r in trace.requests)
    proofs = [r.headers["dpop"] for r in trace.requests]
    assert len(set(proofs)) == len(proofs)
    assert all(status == 200 for status, _ in trace.responses)


def test_a_token_copied_from_a_trace_is_refused_without_its_key(key: DPoPKey, story: tuple[AgentRun, Trace]) -> None:
    recorded = story[1].tool_list_request()
    token = token_of(recorded)
    # With the agent's key and a fresh proof the same request is served: the token itself is good.
    fresh = proof_headers(key, "POST", recorded.url, token)
    served = resend(recorded, authorization=fresh["Authorization"], dpop=fresh["DPoP"])
    assert served.status_code == 200 and [t["name"] for t in served.json()["result"]["tools"]] == ["add", "whoami"]
    # As a Bearer token: refused (the server takes DPoP-bound tokens only).
    assert_refused(resend(recorded, authorization=f"Bearer {token}", dpop=None), None)
    # With the DPoP scheme but no proof: refused.
    assert_refused(resend(recorded, dpop=None), "invalid_dpop_proof")
    # With a proof from the thief's own key: the token is bound to another key.
    thief = proof_headers(DPoPKey.generate("ES256"), "POST", recorded.url, token)
    assert_refused(resend(recorded, authorization=thief["Authorization"], dpop=thief["DPoP"]), "invalid_token")


def test_a_replayed_request_is_refused(story: tuple[AgentRun, Trace]) -> None:
    recorded = story[1].tool_list_request()  # already served once, to the agent
    assert_refused(resend(recorded), "invalid_dpop_proof")


def test_a_nonce_challenge_is_answered_transparently(servers: Servers, key: DPoPKey) -> None:
    trace = Trace()
    run = asyncio.run(run_agent(servers.mcp_nonce, key=key, event_hooks=trace.hooks))
    assert (run.tools, run.sum, run.whoami["jkt"]) == (["add", "whoami"], 42, key.jkt)
    challenges = [status for status, challenge in trace.responses if 'error="use_dpop_nonce"' in challenge]
    # Challenged once (the first request), answered by the auth's retry; later proofs carry the latest nonce.
    assert challenges == [401]
    assert trace.responses[0][0] == 401 and all(status == 200 for status, _ in trace.responses[1:])
    assert len(trace.requests) == len(trace.responses)
