"""The MCP sample: a tool server on the ``mcp`` SDK behind DPoP (:mod:`.app`) and an agent (:mod:`.agent`)."""

from .app import create_app, create_server

__all__ = ["create_app", "create_server"]
