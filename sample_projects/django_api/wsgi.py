"""WSGI entry point: ``gunicorn sample_projects.django_api.wsgi:application``."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sample_projects.django_api.settings")

application = get_wsgi_application()
