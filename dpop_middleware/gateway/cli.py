"""The ``dpop-middleware`` command: ``dpop-middleware gateway [--config FILE] [--host H] [--port P]``.

Host and port default to the samples' ``HOST`` and ``PORT`` variables (127.0.0.1 and 9100). The
process serves one uvicorn worker; several gateway processes share a Redis replay store
(``DPOP_REPLAY_STORE=redis://...``) and a nonce secret (``DPOP_NONCE_SECRET``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..extras import missing_extra
from ..settings import SettingsError

__all__ = ["DEFAULT_PORT", "main"]

DEFAULT_PORT = 9100


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dpop-middleware", description="dpop-middleware tools")
    commands = parser.add_subparsers(dest="command", required=True)
    gateway = commands.add_parser("gateway", help="run the forward-auth verifier for nginx, Caddy, Traefik, Envoy")
    gateway.add_argument("--config", help="TOML file of route policy and settings (see docs/gateway.md)")
    gateway.add_argument("--host", help="address to listen on (default: $HOST, else 127.0.0.1)")
    gateway.add_argument("--port", type=int, help=f"port to listen on (default: $PORT, else {DEFAULT_PORT})")
    gateway.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))
    return parser


def _port(text: str | None) -> int:
    if text is None or not text.strip():
        return DEFAULT_PORT
    if not text.strip().isdigit() or not 0 < int(text) < 65536:
        raise SettingsError("PORT", f"must be a port number between 1 and 65535, not {text!r}")
    return int(text)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), check the configuration, serve until stopped."""
    args = _parser().parse_args(argv)
    try:
        import uvicorn
    except ModuleNotFoundError as exc:
        missing_extra(exc, "uvicorn", "the gateway runs under uvicorn", "gateway")
    from . import create_app

    try:
        host = args.host or os.environ.get("HOST", "").strip() or "127.0.0.1"
        port = args.port if args.port is not None else _port(os.environ.get("PORT"))
        app = create_app(config_path=args.config)
    except SettingsError as exc:
        print(f"dpop-middleware gateway: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=host, port=port, log_level=args.log_level, access_log=False, lifespan="off")
    return 0
