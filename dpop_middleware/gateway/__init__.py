"""DPoP at the edge: a forward-auth verifier for nginx, Caddy, Traefik and Envoy (``docs/gateway.md``).

Run it with ``dpop-middleware gateway --config gateway.toml`` (or ``python -m dpop_middleware.gateway``);
:func:`create_app` builds the same ASGI app for your own server.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .app import IDENTITY_HEADERS, GatewayApp, identity_headers
from .config import GatewayConfig, load_config
from .original import STYLES

__all__ = ["IDENTITY_HEADERS", "STYLES", "GatewayApp", "GatewayConfig", "create_app", "identity_headers", "load_config"]


def create_app(environ: Mapping[str, str] | None = None, config_path: str | Path | None = None) -> GatewayApp:
    """The gateway app configured by ``environ`` (default ``os.environ``) and the TOML file at ``config_path``."""
    return GatewayApp(load_config(environ, config_path))
