"""The agent side of the MCP sample: from nothing but the server's URL to a tool call, with DPoP.

1. **Find the authorization server** (RFC 9728): a request without credentials is answered 401
   with ``resource_metadata="<url>"``; that document names the issuer, whose RFC 8414 metadata
   names the token endpoint (:func:`dpop_middleware.httpx_auth.adiscover`).
2. **Get a DPoP-bound token** with the agent's key (:func:`dpop_middleware.httpx_auth.afetch_token`).
3. **Talk MCP** with the SDK's own client over Streamable HTTP, through an ``httpx2.AsyncClient``
   whose auth is :class:`dpop_middleware.httpx2_auth.DPoPAuth`: every request gets a fresh proof,
   a nonce challenge is answered once, transparently.

``python -m sample_projects.mcp_server.agent [URL]`` (default ``http://127.0.0.1:8004/mcp``) runs
it against the sample server and prints what it saw. The client's identity comes from
``AGENT_CLIENT_ID`` / ``AGENT_CLIENT_SECRET`` (default: the sample issuer's ``demo-client``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from dpop_middleware.client import DPoPKey, NonceCache
from dpop_middleware.httpx2_auth import DPoPAuth
from dpop_middleware.httpx_auth import adiscover, afetch_token

__all__ = ["AgentRun", "DEFAULT_URL", "run_agent"]

DEFAULT_URL = "http://127.0.0.1:8004/mcp"

#: httpx2 event hooks ({"request": [...], "response": [...]}), e.g. a tracer that records traffic.
EventHooks = Mapping[str, Sequence[Callable[[Any], Any]]]


@dataclass(frozen=True)
class AgentRun:
    """What one run of the agent saw."""

    issuer: str
    token_endpoint: str
    tools: list[str]
    sum: Any
    whoami: Any


def _structured(result: Any) -> Any:
    """A tool result's structured content (``{"result": x}`` for a plain return value: unwrap it)."""
    if result.is_error:
        raise RuntimeError(f"tool call failed: {result.content}")
    content = result.structured_content
    if isinstance(content, dict) and set(content) == {"result"}:
        return content["result"]
    return content


async def run_agent(
    url: str = DEFAULT_URL,
    *,
    key: DPoPKey | None = None,
    client_id: str = "demo-client",
    client_secret: str = "demo-secret",
    event_hooks: EventHooks | None = None,
    timeout: float = 10.0,
) -> AgentRun:
    """Discover, get a token, list the tools and call ``add`` and ``whoami``; raise if any step fails.

    ``key`` default: a fresh ES256 key (in a real agent: one whose private part the agent cannot
    read, see the key custody docs). ``event_hooks`` go to the MCP traffic's ``httpx2.AsyncClient``.
    """
    key = key or DPoPKey.generate("ES256")
    nonces = NonceCache()  # one per-origin nonce memory for the token endpoint and the MCP server
    found = await adiscover(url, timeout=timeout)
    if found.token_endpoint is None:
        raise RuntimeError(f"the authorization server {found.issuer} names no token endpoint")
    token = await afetch_token(
        found.token_endpoint, key, client_id=client_id, client_secret=client_secret, nonces=nonces, timeout=timeout
    )
    auth = DPoPAuth(key, token.access_token, nonces=nonces)
    hooks = {name: list(funcs) for name, funcs in (event_hooks or {}).items()}
    http = httpx2.AsyncClient(auth=auth, timeout=timeout, event_hooks=hooks)
    async with http, Client(streamable_http_client(url, http_client=http)) as mcp:
        tools = sorted(tool.name for tool in (await mcp.list_tools()).tools)
        total = _structured(await mcp.call_tool("add", {"a": 2, "b": 40}))
        who = _structured(await mcp.call_tool("whoami", {}))
    return AgentRun(found.issuer, found.token_endpoint, tools, total, who)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    url = args[0] if args else DEFAULT_URL
    run = asyncio.run(
        run_agent(
            url,
            client_id=os.environ.get("AGENT_CLIENT_ID", "demo-client"),
            client_secret=os.environ.get("AGENT_CLIENT_SECRET", "demo-secret"),
        )
    )
    print(json.dumps(run.__dict__, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
