"""Test harness: configure Django once (without breaking other test modules) and drive its clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import django
from adapter_cases import Response
from django.apps import apps
from django.conf import settings
from django.test import AsyncClient, Client
from django.test.utils import override_settings

from dpop_middleware import DPoPVerifier

from . import settings as project_settings


def ensure_django() -> None:
    """Configure settings from the test project unless someone already did; set up the app registry."""
    if not settings.configured:
        values = {name: getattr(project_settings, name) for name in dir(project_settings) if name.isupper()}
        settings.configure(**values)
    if not apps.ready:
        django.setup()


# What every in-process test overrides, so it works whoever configured Django first.
BASE = {
    "ROOT_URLCONF": "django_app.urls",
    "ALLOWED_HOSTS": project_settings.ALLOWED_HOSTS,
    "REST_FRAMEWORK": project_settings.REST_FRAMEWORK,
    "USE_X_FORWARDED_HOST": False,
    "SECURE_PROXY_SSL_HEADER": None,
    "FORCE_SCRIPT_NAME": None,
}


@contextmanager
def django_settings(dpop: Mapping[str, Any], *, middleware: bool = True, **extra: Any) -> Iterator[None]:
    ensure_django()
    values = dict(BASE, DPOP=dict(dpop), MIDDLEWARE=list(project_settings.MIDDLEWARE) if middleware else [])
    values.update(extra)
    with override_settings(**values):
        yield


def meta_headers(headers: list[tuple[str, str]]) -> dict[str, str]:
    """Headers as the test client's extra WSGI environ; repeated fields comma-joined, as WSGI servers do."""
    meta: dict[str, str] = {}
    for name, value in headers:
        key = "HTTP_" + name.upper().replace("-", "_")
        meta[key] = f"{meta[key]},{value}" if key in meta else value
    return meta


def to_case_response(response: Any) -> Response:
    out: dict[str, list[str]] = {}
    for name, value in response.headers.items():
        out.setdefault(name.lower(), []).append(value)
    body = None
    if response.get("Content-Type", "").startswith("application/json"):
        body = json.loads(response.content)
    return Response(response.status_code, out, body)


class DjangoDriver:
    """The adapter_cases driver: the test project through django.test.Client (or AsyncClient)."""

    base_url = "http://testserver"

    def __init__(
        self, path_prefix: str = "", *, script_name: str = "", middleware: bool = True, use_async: bool = False
    ) -> None:
        self.path_prefix = path_prefix  # where the routes live in the URLconf ("/drf" for the DRF views)
        self.script_name = script_name  # the mount point (SCRIPT_NAME)
        self.base_url = "http://testserver" + script_name + path_prefix
        self.middleware = middleware
        self.use_async = use_async
        self._stack: list[Any] = []

    def build(self, verifier: DPoPVerifier) -> None:
        self.close()
        ctx = django_settings({"VERIFIER": verifier}, middleware=self.middleware)
        ctx.__enter__()
        self._stack.append(ctx)

    def close(self) -> None:
        while self._stack:
            self._stack.pop().__exit__(None, None, None)

    def request(self, method: str, path: str, headers: list[tuple[str, str]]) -> Response:
        if self.use_async:
            return asyncio.run(self.arequest(method, path, headers))
        # The mount prefix is SCRIPT_NAME, as a WSGI server sets it; PATH_INFO is below it.
        client = Client(SCRIPT_NAME=self.script_name) if self.script_name else Client()
        response = client.generic(method, self.path_prefix + path, **meta_headers(headers))
        return to_case_response(response)

    async def arequest(self, method: str, path: str, headers: list[tuple[str, str]]) -> Response:
        extra = {key[5:].replace("_", "-").lower(): value for key, value in meta_headers(headers).items()}
        response = await AsyncClient().generic(method, self.path_prefix + path, headers=extra)
        return to_case_response(response)
