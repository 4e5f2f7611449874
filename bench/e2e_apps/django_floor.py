"""The ``floor`` variant's Django middleware: the raw signature check only (see ``floor.py``).

Sync and async capable like ``dpop_middleware.django.DPoPMiddleware``, so neither server pays a
thread hop for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware

from .floor import signature_ok


@sync_and_async_middleware
def floor_middleware(get_response: Callable[[HttpRequest], Any]) -> Callable[[HttpRequest], Any]:
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> HttpResponse:
            if not signature_ok(request.headers.get("DPoP")):
                return HttpResponse("bad proof", status=401)
            response: Awaitable[HttpResponse] = get_response(request)
            return await response

        return async_middleware

    def middleware(request: HttpRequest) -> HttpResponse:
        if not signature_ok(request.headers.get("DPoP")):
            return HttpResponse("bad proof", status=401)
        result: HttpResponse = get_response(request)
        return result

    return middleware
