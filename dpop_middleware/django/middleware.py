"""``DPoPMiddleware``: DPoP for every Django view, sync (WSGI) or async (ASGI) alike."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse

from ..core.challenge import ErrorResponse
from ..core.errors import InvalidRequestError
from ..core.resource_metadata import WELL_KNOWN_PATH
from ..core.routes import route_of
from ..core.step_up import StepUp
from ..flow import Flow, run_async, run_sync
from ..verifier import AuthResult
from ..wsgi_environ import is_cors_preflight_environ
from .conf import DPoPState, Policy, get_state, raw_settings
from .decorators import view_marks
from .translate import apply_headers, request_info, to_response

__all__ = ["DPoPMiddleware", "policy_for"]

logger = logging.getLogger("dpop_middleware")

# Where the principal goes, and the private attributes other parts of the adapter (DRF) read.
PRINCIPAL = "dpop"
VERIFIED = "_dpop_verified"  # set once the request went through the verifier (never verify twice)
CHECKED = "_dpop_checked"  # set once DPoPMiddleware (or DRF's DPoPAuthentication) decided about it
SCOPES_CHECKED = "_dpop_scopes_checked"  # the scopes the verifier already demanded
STEP_UP_CHECKED = "_dpop_step_up_checked"  # the step-up demand (RFC 9470) it already checked
APPLIED = "_dpop_route"  # the Route the middleware applied (a guarded view checks it covers its mark)
MARKS_SEEN = "_dpop_marks_seen"  # the marks it found on the view (and chose among)
OUTCOME = "_dpop_outcome"  # the verifier's outcome: "reported" must not be reported again
RESPONSE_HEADERS = "_dpop_response_headers"
# Django's own flag, read by CsrfViewMiddleware and DRF's CSRF check: set only after a proof verified.
CSRF_SKIP = "_dont_enforce_csrf_checks"

View = Callable[..., Any]


def policy_for(state: DPoPState, request: HttpRequest, view: View | None) -> Policy:
    """The view's mark (with the path rules' scopes and step-up added), else the path rules, else
    ``DPOP["DEFAULT"]``."""
    return _route(state, request, view_marks(view) if view is not None else ())


def _route(state: DPoPState, request: HttpRequest, marks: tuple[Policy, ...]) -> Policy:
    by_path = state.policy_for_path(request.path_info)
    return route_of(marks, by_path)


def is_preflight(request: HttpRequest) -> bool:
    """A CORS preflight (:func:`dpop_middleware.core.request.is_cors_preflight`): never challenged."""
    return is_cors_preflight_environ(request.META)


def preflight_response() -> HttpResponse:
    """The answer to a CORS preflight that reached a protected view: empty, and the view never runs.

    A CORS layer (django-cors-headers) answers preflights before any view; one that gets this far
    has no CORS answer, and must not read what the view would return.
    """
    return HttpResponse(status=200, content_type="text/plain")


def mark_verified(
    request: HttpRequest, result: AuthResult, scopes: tuple[str, ...] = (), step_up: StepUp | None = None
) -> None:
    """Record the verifier's decision on ``request`` (shared with DRF's ``DPoPAuthentication``)."""
    setattr(request, VERIFIED, True)
    setattr(request, CHECKED, True)
    setattr(request, RESPONSE_HEADERS, result.response_headers)
    setattr(request, OUTCOME, result.outcome)
    if result.rejection is None:
        setattr(request, PRINCIPAL, result.principal)
        setattr(request, SCOPES_CHECKED, scopes)
        setattr(request, STEP_UP_CHECKED, step_up)
        principal = result.principal
        if principal is not None and principal.scheme == "DPoP" and principal.jkt and not request.COOKIES:
            # A verified proof cannot be forged cross-site (a browser never attaches one, and it is
            # signed for this method and URL), so CSRF protection has nothing left to protect, but
            # only for a request without cookies: a cross-site page may attach its *own* key and
            # proof to a request that also carries the victim's session cookie. Never set for a
            # Bearer token, report_only's missing principal or a mere DPoP header.
            setattr(request, CSRF_SKIP, True)


def metadata_response(request: HttpRequest) -> HttpResponse | None:
    """The RFC 9728 document (``DPOP['RESOURCE_METADATA']``) when ``request`` asks for it, before any
    URL resolution or DPoP check; ``None`` for every other request. ``request.path`` is matched: the
    path from the host on, script prefix included."""
    # The path first: one string test per request, the settings only for the well-known URL.
    if not request.path.startswith(WELL_KNOWN_PATH) or not raw_settings():
        return None
    metadata = get_state().metadata
    if metadata is None or not metadata.serves(request.path):
        return None
    answer = metadata.answer(request.method or "GET")
    response = HttpResponse(answer.body, status=answer.status)
    for name, value in answer.headers:
        response[name] = value
    return response


def bad_host_rejection(state: DPoPState) -> ErrorResponse:
    """The answer to a Host Django refuses (``DisallowedHost``), for the middleware and DRF alike.

    Django would answer a bare 400 (even in report_only mode); we owe the client a challenge, and
    the operator a log line and an outcome.
    """
    return state.verifier.refuse(InvalidRequestError("invalid_host", "Invalid Host header"))


class DPoPMiddleware:
    """Verifies DPoP requests before the view runs; configured by ``settings.DPOP``.

    Put it in ``MIDDLEWARE`` after ``SecurityMiddleware`` (and after ``CorsMiddleware``), and before
    ``CsrfViewMiddleware``: a request whose proof verified is exempt from CSRF checks (see
    ``docs/django.md``); ``@dpop_required``/``@dpop_optional`` views work in either order. Under
    ASGI it runs natively async, calling ``DPoPVerifier.aauthenticate`` on the event loop; under
    WSGI, ``authenticate``. The work happens in ``process_view`` so that per-view decorators are
    known. ``request.dpop`` is the :class:`~dpop_middleware.DPoPPrincipal` or ``None`` (anonymous,
    exempt or unmatched route, CORS preflight).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        if raw_settings():
            # Django builds the middleware when the server loads the application (gunicorn: at
            # worker boot), so a bad DPOP fails there even without our app in INSTALLED_APPS.
            get_state()
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        # Django adapts process_view to the handler's mode; giving it a coroutine function in async
        # mode keeps verification on the event loop (no sync_to_async thread hop).
        self.process_view: Callable[..., Any]
        if self.async_mode:
            markcoroutinefunction(self)
            self.process_view = self._aprocess_view
        else:
            self.process_view = self._process_view

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        setattr(request, PRINCIPAL, None)
        metadata = metadata_response(request)
        if metadata is not None:
            return metadata
        response = self.get_response(request)
        self._finish(request, response)
        return response

    async def __acall__(self, request: HttpRequest) -> Any:
        setattr(request, PRINCIPAL, None)
        metadata = metadata_response(request)
        if metadata is not None:
            return metadata
        response = await self.get_response(request)
        self._finish(request, response)
        return response

    def _view_flow(self, request: HttpRequest, view: View) -> Flow[HttpResponse | None]:
        setattr(request, CHECKED, True)
        state = get_state()
        marks = view_marks(view)
        policy = _route(state, request, marks)
        setattr(request, MARKS_SEEN, marks)
        setattr(request, APPLIED, policy)
        if policy.mode == "exempt":
            return None
        if is_preflight(request):
            return preflight_response()
        try:
            info = request_info(request, state.proxy)
        except DisallowedHost:
            return to_response(bad_host_rejection(state))
        result = yield from state.verifier.authentication(
            info, required=policy.required, scopes=policy.scopes, step_up=policy.step_up
        )
        mark_verified(request, result, policy.scopes, policy.step_up)
        return to_response(result.rejection) if result.rejection is not None else None

    def _process_view(self, request: HttpRequest, view: View, args: Any, kwargs: Any) -> HttpResponse | None:
        return run_sync(self._view_flow(request, view))

    async def _aprocess_view(self, request: HttpRequest, view: View, args: Any, kwargs: Any) -> HttpResponse | None:
        return await run_async(self._view_flow(request, view))

    @staticmethod
    def _finish(request: HttpRequest, response: Any) -> None:
        # Fresh nonces recorded by us or by DRF's DPoPAuthentication go out on any response.
        headers = getattr(request, RESPONSE_HEADERS, ())
        if headers:
            apply_headers(response, headers)
