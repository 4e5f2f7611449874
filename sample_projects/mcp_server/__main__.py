"""``python -m sample_projects.mcp_server``: serve the MCP sample with uvicorn (``PORT``, default 8004)."""

from ..common import DEFAULT_PORTS, SampleSettings
from ..serve import serve_asgi
from .app import create_app


def main() -> None:
    settings = SampleSettings.from_env(default_port=DEFAULT_PORTS["mcp_server"])
    serve_asgi(create_app(settings), settings.host, settings.port)


if __name__ == "__main__":
    main()
