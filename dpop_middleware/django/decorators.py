"""Per-view DPoP policy: ``@dpop_required(scopes=...)``, ``@dpop_optional``, ``@dpop_exempt``.

The decorators only *mark* the view (an attribute, the view itself is returned unchanged, so sync
and async views stay what they are); :class:`~dpop_middleware.django.DPoPMiddleware` reads the mark
in ``process_view``. A mark on a view beats the path rules of ``settings.DPOP``, which beat
``DPOP["DEFAULT"]``.

They work on function views and on class-based views (decorate the class, or the result of
``as_view()``: Django and DRF copy the class onto the view function as ``view_class``)::

    @dpop_required(scopes=["orders:write"])
    def create_order(request): ...

    @dpop_exempt
    class HealthView(View): ...

``method_decorator(dpop_required(...), name="dispatch")`` does **not** work: the middleware sees
the view function before ``dispatch`` runs. Decorate the class instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar, overload

from .conf import Policy

__all__ = ["dpop_exempt", "dpop_optional", "dpop_required", "view_policy"]

ATTRIBUTE = "dpop_policy"

V = TypeVar("V")


def _mark(view: V, policy: Policy) -> V:
    setattr(view, ATTRIBUTE, policy)
    return view


def _scopes(scopes: Iterable[str] | str | None) -> tuple[str, ...]:
    if scopes is None:
        return ()
    if isinstance(scopes, str):
        return tuple(scopes.split())
    return tuple(scopes)


@overload
def dpop_required(view: V, /) -> V: ...


@overload
def dpop_required(*, scopes: Iterable[str] | str | None = None) -> Callable[[V], V]: ...


def dpop_required(view: Any = None, /, *, scopes: Iterable[str] | str | None = None) -> Any:
    """Require a valid DPoP request (and every scope in ``scopes``) for this view.

    Usable bare (``@dpop_required``) or with arguments (``@dpop_required(scopes="write")``).
    ``scopes`` is an iterable or a space-separated string; a request lacking one gets 403
    ``insufficient_scope`` with the challenge.
    """
    policy = Policy("required", _scopes(scopes))
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
    policy = getattr(view, ATTRIBUTE, None)
    if policy is None:
        policy = getattr(getattr(view, "view_class", None), ATTRIBUTE, None)
    return policy if isinstance(policy, Policy) else None
