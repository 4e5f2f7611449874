"""Per-view DPoP policy: ``@dpop_required(scopes=...)``, ``@dpop_optional``, ``@dpop_exempt``.

The decorators only *mark* the view (an attribute, the view itself is returned unchanged, so sync
and async views stay what they are); :class:`~dpop_middleware.django.DPoPMiddleware` reads the mark
in ``process_view``. A mark on a view decides the mode over the route policy of ``settings.DPOP``
(docs/routes.md); the scopes and step-up its path rules demand still apply.

They work on function views and on class-based views (decorate the class, or the result of
``as_view()``: Django and DRF copy the class onto the view function as ``view_class``)::

    @dpop_required(scopes=["orders:write"])
    def create_order(request): ...

    @dpop_exempt
    class HealthView(View): ...

``method_decorator(dpop_required(...), name="dispatch")`` does **not** work: the middleware sees
the view function before ``dispatch`` runs. Decorate the class instead.

``@dpop_required`` and ``@dpop_optional`` also *guard* the view, so that a decorator is never the
one thing standing between a request and a view while doing nothing:

* a request that ``DPoPMiddleware`` (or DRF's ``DPoPAuthentication``) never saw, because the
  middleware is missing from ``MIDDLEWARE``, is refused with 503 and one ERROR log naming the fix;
  the view never runs (system check ``dpop_middleware.E005`` says so at start-up);
* a CORS preflight (let through untouched by the middleware) is answered with an empty 200: the
  view, which counts on a principal, never runs for it;
* CSRF: the view is ``csrf_exempt`` for ``CsrfViewMiddleware`` (which may run before ours), and the
  guard applies the same CSRF check itself unless the request's DPoP proof was verified.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

from ..core.challenge import ErrorResponse
from ..core.routes import RouteDemands, mark_hidden, required_route
from ..verifier import hidden_mark_rejection, unverified_rejection
from .conf import Policy

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["dpop_exempt", "dpop_optional", "dpop_required", "view_marks", "view_policy"]

ATTRIBUTE = "dpop_policy"
GUARDED = "_dpop_guarded"

V = TypeVar("V")

logger = logging.getLogger("dpop_middleware")

MIDDLEWARE_PATH = "dpop_middleware.django.DPoPMiddleware"


def unchecked_rejection(view_name: str, policy: Policy) -> ErrorResponse:
    """503 for a request the verifier never saw: a server wiring error, never served (logged)."""
    return unverified_rejection(
        "middleware_missing",
        f"view {view_name} is marked @dpop_{policy.mode}, but no DPoP check ran for this request: add "
        f"{MIDDLEWARE_PATH} to MIDDLEWARE (or DPoPAuthentication to DRF's authentication classes for DRF views)",
    )


def unchecked_response(view_name: str, policy: Policy) -> HttpResponse:
    """:func:`unchecked_rejection` as a Django response."""
    return _as_response(unchecked_rejection(view_name, policy))


def _as_response(rejection: ErrorResponse) -> HttpResponse:
    return HttpResponse(
        rejection.body, status=rejection.status, content_type=rejection.content_type, headers=dict(rejection.headers)
    )


def _csrf_middleware() -> type[Any] | None:
    """The ``CsrfViewMiddleware`` (sub)class in ``MIDDLEWARE``, if the project uses one."""
    middleware = getattr(settings, "MIDDLEWARE", None) or ()
    return _csrf_class(tuple(path for path in middleware if isinstance(path, str)))


@functools.lru_cache(maxsize=8)
def _csrf_class(middleware: tuple[str, ...]) -> type[Any] | None:
    # Cached by the MIDDLEWARE value: override_settings gives another key, not a stale answer.
    from django.middleware.csrf import CsrfViewMiddleware

    for path in middleware:
        try:
            cls = import_string(path)
        except ImportError:
            continue
        if isinstance(cls, type) and issubclass(cls, CsrfViewMiddleware):
            return cls
    return None


def _refusal(request: HttpRequest, view: Any, name: str, policy: Policy, call: tuple[Any, Any]) -> HttpResponse | None:
    """Why the guarded view must not run for ``request`` (a response), or ``None``."""
    from .middleware import APPLIED, CHECKED, CSRF_SKIP, MARKS_SEEN, is_preflight

    if not getattr(request, CHECKED, False):
        return unchecked_response(name, policy)
    if mark_hidden(policy, getattr(request, APPLIED, None), getattr(request, MARKS_SEEN, ())):
        # The middleware never saw this mark (a decorator above it hid it) and applied less.
        return _as_response(hidden_mark_rejection(name, f"@dpop_{policy.mode}"))
    if is_preflight(request):
        return HttpResponse(status=200)
    if not getattr(request, CSRF_SKIP, False) and not getattr(view, "csrf_exempt", False):
        csrf = _csrf_middleware()
        if csrf is not None:
            # Our csrf_exempt mark only deferred the decision to here, where the proof is known.
            check = csrf(lambda _request: None)
            check.process_request(request)
            response: HttpResponse | None = check.process_view(request, view, *call)
            return response
    return None


def _guard_function(view: Callable[..., Any], policy: Policy) -> Callable[..., Any]:
    name = getattr(view, "__qualname__", repr(view))
    if iscoroutinefunction(view):

        async def guarded_async(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            refusal = _refusal(request, view, name, _current(guarded, policy), (args, kwargs))
            if refusal is not None:
                return refusal
            return await view(request, *args, **kwargs)

        guarded: Callable[..., Any] = functools.wraps(view)(guarded_async)
    else:

        def guarded_sync(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            refusal = _refusal(request, view, name, _current(guarded, policy), (args, kwargs))
            if refusal is not None:
                return refusal
            return view(request, *args, **kwargs)

        guarded = functools.wraps(view)(guarded_sync)
    guarded.csrf_exempt = True  # type: ignore[attr-defined]
    return guarded


def _current(marked: object, policy: Policy) -> Policy:
    """The mark ``marked`` carries now: marking a view again, or a subclass, supersedes the mark its
    guard was made for (and is what the middleware applies)."""
    mark = getattr(marked, ATTRIBUTE, None)
    return mark if isinstance(mark, Policy) else policy


def _guard_class(cls: type[Any], policy: Policy) -> None:
    if cls.__dict__.get(GUARDED) == policy:
        return
    setattr(cls, GUARDED, policy)
    if hasattr(cls, "perform_authentication"):  # DRF APIView: its own authentication may verify
        initial = cls.initial

        def guarded_initial(self: Any, request: Any, *args: Any, **kwargs: Any) -> None:
            initial(self, request, *args, **kwargs)
            from .drf import DPoPRejected
            from .middleware import CHECKED

            if not getattr(getattr(request, "_request", request), CHECKED, False):
                raise DPoPRejected(unchecked_rejection(cls.__qualname__, policy))

        cls.initial = functools.wraps(initial)(guarded_initial)
        return
    dispatch = getattr(cls, "dispatch", None)
    if dispatch is None:
        return

    def guarded_dispatch(self: Any, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        refusal = _refusal(request, dispatch, cls.__qualname__, _current(type(self), policy), (args, kwargs))
        if refusal is None:
            return dispatch(self, request, *args, **kwargs)
        if getattr(self, "view_is_async", False):

            async def refuse() -> HttpResponse:
                return refusal

            return refuse()
        return refusal

    wrapped = functools.wraps(dispatch)(guarded_dispatch)
    wrapped.csrf_exempt = True  # type: ignore[attr-defined]  # as_view() copies it onto the view
    cls.dispatch = wrapped


def _mark(view: V, policy: Policy) -> V:
    if isinstance(view, str) or not callable(view):
        raise TypeError("decorate a view; pass scopes by keyword: @dpop_required(scopes=[...])")
    setattr(view, ATTRIBUTE, policy)
    if policy.mode == "exempt":
        return view
    if isinstance(view, type):
        _guard_class(view, policy)
        return view
    if getattr(view, GUARDED, False):
        return view
    guarded = _guard_function(view, policy)
    setattr(guarded, ATTRIBUTE, policy)
    setattr(guarded, GUARDED, True)
    return guarded  # type: ignore[return-value]


@overload
def dpop_required(view: V, /) -> V: ...


@overload
def dpop_required(**demands: Unpack[RouteDemands]) -> Callable[[V], V]: ...


def dpop_required(view: Any = None, /, **demands: Unpack[RouteDemands]) -> Any:
    """Require a valid DPoP request (and every scope in ``scopes``) for this view.

    Usable bare (``@dpop_required``) or with arguments (``@dpop_required(scopes="write")``).
    ``scopes`` is an iterable or a space-separated string; a request lacking one gets 403
    ``insufficient_scope`` with the challenge. ``acr_values`` (any one of them) and ``max_age``
    (seconds since the user authenticated) demand a step-up (RFC 9470): a token whose ``acr`` or
    ``auth_time`` falls short gets 401 ``insufficient_user_authentication``.
    """
    policy = required_route("dpop_required", demands)
    if view is not None:
        return _mark(view, policy)
    return lambda v: _mark(v, policy)


def dpop_optional(view: V) -> V:
    """Authenticate when credentials are sent (bad ones are still rejected); else anonymous."""
    return _mark(view, Policy("optional"))


def dpop_exempt(view: V) -> V:
    """Never check DPoP on this view (health checks, public pages); ``request.dpop`` stays ``None``."""
    return _mark(view, Policy("exempt"))


def view_policy(view: Any) -> Policy | None:
    """The policy marked on ``view`` or on its class-based view, if any."""
    marks = view_marks(view)
    return marks[0] if marks else None


def view_marks(view: Any) -> tuple[Policy, ...]:
    """Every policy marked on ``view`` and on its class-based view (Django's ``view_class``, a DRF
    ViewSet's ``cls``), the one that applies first."""
    owner = getattr(view, "view_class", None) or getattr(view, "cls", None)
    found = (getattr(view, ATTRIBUTE, None), getattr(owner, ATTRIBUTE, None) if isinstance(owner, type) else None)
    return tuple(mark for mark in found if isinstance(mark, Policy))
