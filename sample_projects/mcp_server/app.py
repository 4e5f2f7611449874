"""The MCP sample tool server: the ``mcp`` SDK's Streamable HTTP app inside :class:`DPoPMiddleware`.

Tools: ``add`` (two integers) and ``whoami`` (who the DPoP-bound token names, and its key's
thumbprint). Every HTTP request to ``/mcp`` must carry an access token from the sample issuer,
bound to the caller's key (``Authorization: DPoP``) with a fresh proof (``DPoP``) and the scope
``notes:read``; anything else is answered by the middleware (401/400/403 with the DPoP challenge)
before the SDK sees it.

RFC 9728: the middleware also serves the protected resource metadata at
``/.well-known/oauth-protected-resource/mcp`` (the resource is the MCP endpoint's URL, as the MCP
authorization spec asks) and names it in every challenge, which is how an MCP client that only
knows the server's URL finds the authorization server.

The SDK runs stateless with JSON responses: each request stands alone (no SSE stream held open), so
every one of them is checked by the middleware with its own proof.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from starlette.requests import Request

from dpop_middleware.starlette import DPoPMiddleware, get_principal

from ..common import DEFAULT_PORTS, SampleSettings, build_verifier, identity

__all__ = ["MCP_PATH", "create_app", "create_server", "resource_settings"]

#: Where the SDK serves Streamable HTTP.
MCP_PATH = "/mcp"
#: The scope a token needs to use the tools.
TOOLS_SCOPE = "notes:read"
#: The hosts this sample answers for (its proofs' ``htu`` must name one of them).
DEFAULT_ALLOWED_HOSTS = ("127.0.0.1", "localhost")


def create_server() -> MCPServer:
    """The MCP server and its tools (no transport, no authentication: :func:`create_app` adds both)."""
    server = MCPServer("dpop-sample-tools", instructions="Sample tools behind DPoP-bound tokens.")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def whoami(ctx: Context) -> dict[str, Any]:
        """Who the caller's access token names, and the thumbprint of the key it is bound to."""
        request = ctx.request_context.request
        principal = get_principal(request) if isinstance(request, Request) else None
        if principal is None:  # cannot happen behind the middleware; fail closed if it ever does
            raise ValueError("no authenticated caller")
        return identity(principal)

    return server


# -- RFC 9728 metadata: the one piece that names the resource -----------------------------------
def resource_settings(settings: SampleSettings) -> SampleSettings:
    """``settings`` with the MCP endpoint's URL as the RFC 9728 resource (unless ``DPOP_RESOURCE``
    names one): the metadata is then served at ``/.well-known/oauth-protected-resource/mcp``."""
    if settings.resource is not None or not settings.resource_metadata:
        return settings
    base = settings.public_url or f"http://127.0.0.1:{settings.port}"
    return dataclasses.replace(settings, resource=base.rstrip("/") + MCP_PATH)


def create_app(
    settings: SampleSettings | None = None,
    *,
    validator: Any = None,
    allowed_hosts: Sequence[str] = DEFAULT_ALLOWED_HOSTS,
) -> DPoPMiddleware:
    """The ASGI app. Without ``settings``, read the environment (``PORT`` default 8004);
    ``validator`` replaces the remote token validator (tests)."""
    if settings is None:
        settings = SampleSettings.from_env(default_port=DEFAULT_PORTS["mcp_server"])
    settings = resource_settings(settings)
    verifier = build_verifier(settings, validator=validator, asynchronous=True)
    # The SDK's own DNS-rebinding guard stays on (it checks Host and Origin on loopback).
    inner = create_server().streamable_http_app(
        streamable_http_path=MCP_PATH, stateless_http=True, json_response=True, host=settings.host
    )
    # Outermost: every request (and the metadata document) goes through the DPoP check first; the
    # lifespan scope (the SDK's session manager) passes through untouched.
    return DPoPMiddleware(
        inner,
        verifier=verifier,
        public_url=settings.public_url,
        allowed_hosts=list(allowed_hosts),
        path_scopes={MCP_PATH: TOOLS_SCOPE},
    )
