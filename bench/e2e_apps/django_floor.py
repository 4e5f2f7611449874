"""The ``floor`` variant's Django middleware: the raw signature check only (see ``floor.py``).

Also the ``hook`` variant's: a middleware shaped like ``DPoPMiddleware`` (with ``process_view``) that
does nothing, what Django charges for such a middleware.

Sync and async capable like ``dpop_middleware.django.DPoPMiddleware``, so neither server pays a
thread hop for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
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


class HookMiddleware:
    """Sync and async capable, with a ``process_view``, like ``DPoPMiddleware``; does nothing."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        # As DPoPMiddleware does: a coroutine process_view under ASGI, so Django adds no thread hop.
        self.process_view: Callable[..., Any] = self._process_view
        if self.async_mode:
            markcoroutinefunction(self)
            self.process_view = self._aprocess_view

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> Any:
        return await self.get_response(request)

    def _process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: Any) -> None:
        return None

    async def _aprocess_view(self, request: HttpRequest, view: Any, args: Any, kwargs: Any) -> None:
        return None
