"""A one-view Django project: settings and URLconf in one module (``DJANGO_SETTINGS_MODULE``).

No database, no contrib apps, no middleware but ours (and none at all when unprotected), so the
difference between the two runs is the DPoP layer alone.
"""

from __future__ import annotations

import os

from django.http import HttpRequest, JsonResponse
from django.urls import path

from e2e_apps.common import BODY, PATH, floor, hook, issuer_settings, protected

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "e2e_apps.django_settings"
INSTALLED_APPS: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
LOGGING_CONFIG = None
MIDDLEWARE: list[str] = []

if protected():
    _issuer, _audience, _jwks = issuer_settings()
    MIDDLEWARE = ["dpop_middleware.django.DPoPMiddleware"]
    DPOP = {
        "ISSUER": _issuer,
        "AUDIENCE": _audience,
        "JWKS": _jwks,
        # A dotted path to a ready store object: memory, or Redis (sync client under WSGI, asyncio under ASGI).
        "REPLAY_STORE": "e2e_apps.django_store.store",
    }
elif floor():
    MIDDLEWARE = ["e2e_apps.django_floor.floor_middleware"]
elif hook():
    MIDDLEWARE = ["e2e_apps.django_floor.HookMiddleware"]


def items(request: HttpRequest) -> JsonResponse:
    return JsonResponse(BODY)


async def aitems(request: HttpRequest) -> JsonResponse:
    return JsonResponse(BODY)


# Under ASGI the view is async, as a Django-on-ASGI project would write it: a sync view there costs a
# thread hop per request (with or without DPoP) that would hide the middleware's own cost.
_ASYNC = os.environ.get("BENCH_DJANGO_ASYNC") == "1"
urlpatterns = [path(PATH.lstrip("/"), aitems if _ASYNC else items)]
