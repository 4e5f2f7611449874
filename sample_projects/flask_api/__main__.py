"""``python -m sample_projects.flask_api``: serve the Flask sample with gunicorn (``PORT``, default 8002)."""

from ..common import SampleSettings
from ..serve import serve_wsgi
from .app import create_app


def main() -> None:
    settings = SampleSettings.from_env(default_port=8002)
    serve_wsgi(create_app(settings), settings.host, settings.port)


if __name__ == "__main__":
    main()
