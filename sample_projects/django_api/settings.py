"""Django settings of the sample API; the DPoP part comes from environment variables
(:mod:`sample_projects.common`), the Django part from ``DJANGO_*`` variables."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from ..common import SampleSettings
from .config import dpop_setting

SAMPLE = SampleSettings.from_env(default_port=8001)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-sample-only-change-me")
DEBUG = False
ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1 localhost testserver").split() if h]
if SAMPLE.public_url:
    ALLOWED_HOSTS.append(urlsplit(SAMPLE.public_url).hostname or "")
ROOT_URLCONF = "sample_projects.django_api.urls"
WSGI_APPLICATION = "sample_projects.django_api.wsgi.application"
INSTALLED_APPS = ["dpop_middleware.django"]  # its system checks
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "dpop_middleware.django.DPoPMiddleware",
]
DATABASES: dict[str, dict[str, str]] = {}  # tokens carry the identity: no user table needed
USE_TZ = True
APPEND_SLASH = False

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["dpop_middleware.django.drf.DPoPAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["dpop_middleware.django.drf.DPoPRequired"],
    "EXCEPTION_HANDLER": "dpop_middleware.django.drf.dpop_exception_handler",
    "UNAUTHENTICATED_USER": None,  # no django.contrib.auth in this project
}

DPOP = dpop_setting(SAMPLE)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"dpop_middleware": {"handlers": ["console"], "level": os.environ.get("DPOP_LOG_LEVEL", "WARNING")}},
}
