"""``python -m sample_projects.django_api``: serve the Django sample with gunicorn (``PORT``, default 8001)."""

import os

from ..common import SampleSettings
from ..serve import serve_wsgi


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sample_projects.django_api.settings")
    settings = SampleSettings.from_env(default_port=8001)
    from .wsgi import application

    serve_wsgi(application, settings.host, settings.port)


if __name__ == "__main__":
    main()
