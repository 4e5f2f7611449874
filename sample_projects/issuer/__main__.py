"""``python -m sample_projects.issuer``: serve the sample issuer with uvicorn (``PORT``, default 9000)."""

from ..serve import serve_asgi
from .app import create_app, issuer_settings


def main() -> None:
    settings = issuer_settings()
    serve_asgi(create_app(settings), settings.host, settings.port)


if __name__ == "__main__":
    main()
