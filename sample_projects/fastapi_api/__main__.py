"""``python -m sample_projects.fastapi_api``: serve the FastAPI sample with uvicorn (``PORT``, default 8003)."""

from ..common import SampleSettings
from ..serve import serve_asgi
from .app import create_app


def main() -> None:
    settings = SampleSettings.from_env(default_port=8003)
    serve_asgi(create_app(settings), settings.host, settings.port)


if __name__ == "__main__":
    main()
