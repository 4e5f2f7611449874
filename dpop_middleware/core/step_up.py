"""Step-up authentication (RFC 9470): a route may demand how, and how recently, the user authenticated.

The token's ``acr`` must be one of the route's ``acr_values``, and its ``auth_time`` no more than
``max_age`` seconds ago; otherwise the answer is 401 ``insufficient_user_authentication`` whose
challenge repeats what is needed (``acr_values``, ``max_age``), so the client can ask the
authorization server for a token that has it. A claim of the wrong JSON type counts as missing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .binding import DPoPPrincipal
from .errors import AuthenticationRequired, InsufficientUserAuthenticationError

__all__ = ["StepUp", "require_authentication", "step_up_demand", "step_up_rule"]

_BAD_ACR = "acr_values must be a space-separated string or a list of acr names"
_BAD_AGE = "max_age must be a non-negative integer of seconds, at most ten years"
# A larger demand is a typo; and its number, rendered on every challenge, stays short.
_MAX_AGE_LIMIT = 10 * 366 * 86400


@dataclass(frozen=True)
class StepUp:
    """What a route demands of the user's authentication: ``acr_values`` (any one of them) and/or
    ``max_age`` (seconds since ``auth_time``). Empty / ``None``: no demand.

    Checked however it is built (``TypeError``/``ValueError``): :meth:`create` also takes one
    space-separated string."""

    acr_values: tuple[str, ...] = ()
    max_age: int | None = None
    #: Two rules over one path ask for ``acr`` values no token can hold at once: always refused.
    unsatisfiable: bool = False

    def __post_init__(self) -> None:
        # A string here would make ``acr in acr_values`` a substring test: "mfa" in "urn:mfa".
        values = self.acr_values
        if not isinstance(values, tuple) or not all(isinstance(v, str) and v and v.split() == [v] for v in values):
            raise TypeError(_BAD_ACR)
        age = self.max_age
        if age is not None and (isinstance(age, bool) or not isinstance(age, int) or not 0 <= age <= _MAX_AGE_LIMIT):
            raise ValueError(_BAD_AGE)

    @classmethod
    def create(cls, acr_values: Iterable[str] | str = (), max_age: int | None = None) -> StepUp:
        """``acr_values`` a space-separated string or a list of names, ``max_age`` an int >= 0."""
        if isinstance(acr_values, str):
            values = acr_values.split()
        elif isinstance(acr_values, Iterable) and not isinstance(acr_values, (bytes, Mapping)):
            values = list(acr_values)
        else:
            raise TypeError(_BAD_ACR)
        return cls(tuple(dict.fromkeys(values)), max_age)

    def __bool__(self) -> bool:
        return bool(self.acr_values) or self.max_age is not None or self.unsatisfiable

    def combined(self, other: StepUp) -> StepUp:
        """Both demands at once (two rules over one path): the ``acr`` values both accept and the
        shorter ``max_age``; :attr:`unsatisfiable` when no ``acr`` value is accepted by both."""
        acr_values = self.acr_values or other.acr_values
        unsatisfiable = self.unsatisfiable or other.unsatisfiable
        if self.acr_values and other.acr_values:
            acr_values = tuple(value for value in self.acr_values if value in other.acr_values)
            if not acr_values:  # the challenge still names what each rule accepts
                acr_values = tuple(dict.fromkeys((*self.acr_values, *other.acr_values)))
                unsatisfiable = True
        ages = [age for age in (self.max_age, other.max_age) if age is not None]
        return StepUp(acr_values, min(ages) if ages else None, unsatisfiable)


def step_up_rule(value: object, what: str) -> StepUp:
    """A path rule's demand: a :class:`StepUp` or ``{"acr_values": ..., "max_age": seconds}`` (one or
    both); ``TypeError``/``ValueError`` name ``what``."""
    if isinstance(value, StepUp):
        demand = value
    elif isinstance(value, Mapping) and set(value) <= {"acr_values", "max_age"}:
        demand = _checked(value.get("acr_values"), value.get("max_age"), what)
    else:
        raise TypeError(f'{what} must be a dict with "acr_values" and/or "max_age"')
    if not demand:
        raise ValueError(f"{what} demands nothing: give acr_values, max_age or both")
    return demand


def step_up_demand(acr_values: Iterable[str] | str | None, max_age: int | None, what: str) -> StepUp | None:
    """A decorator's or dependency's ``acr_values``/``max_age`` as a :class:`StepUp` (``None``: neither
    given); ``TypeError``/``ValueError`` name ``what``, also for ``acr_values`` given but empty."""
    demand = _checked(acr_values, max_age, what)
    if acr_values is not None and not demand.acr_values:  # "" or []: a typo, not "any acr"
        raise ValueError(f"{what}: acr_values is empty (leave it out to demand no acr)")
    return demand or None


def _checked(acr_values: object, max_age: object, what: str) -> StepUp:
    try:
        return StepUp.create(() if acr_values is None else acr_values, max_age)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{what}: {exc}") from None


def require_authentication(
    principal: DPoPPrincipal | None, step_up: StepUp, now: float, *, leeway: float = 0.0
) -> None:
    """Raise :class:`InsufficientUserAuthenticationError` unless ``principal``'s token meets ``step_up``
    (an ``auth_time`` more than ``leeway`` seconds in the future meets no ``max_age``); a request
    without a principal gets :class:`AuthenticationRequired` (no error code, RFC 6750 §3.1)."""
    if not step_up:
        return
    if principal is None:
        raise AuthenticationRequired()
    claims = principal.claims
    acr = claims.get("acr")
    acr_ok = not step_up.unsatisfiable and (
        not step_up.acr_values or (isinstance(acr, str) and acr in step_up.acr_values)
    )
    fresh = step_up.max_age is None or _recent(claims.get("auth_time"), step_up.max_age, now, leeway)
    if not (acr_ok and fresh):
        # Both demands go on the challenge, so one new authentication satisfies the route; on the
        # challenge of the scheme the client used (a Bearer token in allow_bearer mode).
        raise InsufficientUserAuthenticationError(
            step_up.acr_values, step_up.max_age, reason="acr_not_accepted" if not acr_ok else "auth_too_old",
            scheme=principal.scheme,
        )  # fmt: skip


def _recent(auth_time: object, max_age: int, now: float, leeway: float) -> bool:
    if isinstance(auth_time, bool) or not isinstance(auth_time, (int, float)):
        return False
    try:
        age = now - auth_time
    except OverflowError:  # an integer too large for a float: no real time
        return False
    return math.isfinite(age) and -leeway <= age <= max_age
