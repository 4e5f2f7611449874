"""Settings of the test project.

Real servers (gunicorn, uvicorn) use this module as ``DJANGO_SETTINGS_MODULE``, with the ``DPOP``
setting passed as JSON in the environment variable ``DPOP_TEST_CONFIG``. In-process tests copy these
values into ``settings.configure()`` (see ``harness.py``) and override ``DPOP`` per test.
"""

import json
import os

SECRET_KEY = "django-insecure-test-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost", "api.example.com", "public.example.com"]
ROOT_URLCONF = "django_app.urls"
INSTALLED_APPS = ["dpop_middleware.django"]
MIDDLEWARE = ["dpop_middleware.django.DPoPMiddleware"]
USE_TZ = True
DATABASES: dict[str, dict[str, str]] = {}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "dpop-tests"}}
if os.environ.get("DJANGO_TEST_REDIS_URL"):  # a shared replay cache for multi-worker servers
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["DJANGO_TEST_REDIS_URL"],
        }
    }
REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": ["dpop_middleware.django.drf.DPoPAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["dpop_middleware.django.drf.DPoPRequired"],
    "EXCEPTION_HANDLER": "dpop_middleware.django.drf.dpop_exception_handler",
    # No django.contrib.auth in this project: anonymous requests get user None.
    "UNAUTHENTICATED_USER": None,
}
LOGGING_CONFIG = None
DPOP = json.loads(os.environ.get("DPOP_TEST_CONFIG", "{}"))
