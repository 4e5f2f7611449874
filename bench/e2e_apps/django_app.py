"""Django entry points: ``wsgi`` for gunicorn, ``asgi`` for uvicorn."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "e2e_apps.django_settings")

if os.environ.get("BENCH_DJANGO_ASYNC") == "1":
    from django.core.asgi import get_asgi_application

    asgi = get_asgi_application()
else:
    from django.core.wsgi import get_wsgi_application

    wsgi = get_wsgi_application()
