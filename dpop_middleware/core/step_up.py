"""Step-up authentication (RFC 9470): a route may demand how, and how recently, the user authenticated.

The token's ``acr`` must be one of the route's ``acr_values``, and its ``auth_time`` no more than
``max_age`` seconds ago; otherwise the answer is 401 ``insufficient_user_authentication`` whose
challenge repeats what is needed (``acr_values``, ``max_age``), so the client can ask the
authorization server for a token that has it. A claim of the wrong JSON type counts as missing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from .binding import DPoPPrincipal
from .errors import InsufficientUserAuthenticationError

__all__ = ["StepUp", "require_authentication"]


@dataclass(frozen=True)
class StepUp:
    """What a route demands of the user's authentication: ``acr_values`` (any one of them) and/or
    ``max_age`` (seconds since ``auth_time``). Empty / ``None``: no demand."""

    acr_values: tuple[str, ...] = ()
    max_age: int | None = None

    @classmethod
    def create(cls, acr_values: Iterable[str] | str = (), max_age: int | None = None) -> StepUp:
        """Checked: ``acr_values`` a space-separated string or strings without spaces, ``max_age`` an int >= 0."""
        values = tuple(acr_values.split()) if isinstance(acr_values, str) else tuple(acr_values)
        if not all(isinstance(value, str) and value and " " not in value for value in values):
            raise TypeError("acr_values must be a space-separated string or a list of acr names")
        if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0):
            raise ValueError("max_age must be a non-negative integer of seconds")
        return cls(values, max_age)


def require_authentication(principal: DPoPPrincipal | None, step_up: StepUp, now: float) -> None:
    """Raise :class:`InsufficientUserAuthenticationError` unless ``principal``'s token meets ``step_up``."""
    if not step_up.acr_values and step_up.max_age is None:
        return
    claims = principal.claims if principal is not None else {}
    acr = claims.get("acr")
    acr_ok = not step_up.acr_values or (isinstance(acr, str) and acr in step_up.acr_values)
    auth_time = claims.get("auth_time")
    fresh = step_up.max_age is None or (
        isinstance(auth_time, (int, float))
        and not isinstance(auth_time, bool)
        and math.isfinite(auth_time)
        and now - auth_time <= step_up.max_age
    )
    if not (acr_ok and fresh):
        # Both demands go on the challenge, so one new authentication satisfies the route.
        raise InsufficientUserAuthenticationError(
            step_up.acr_values, step_up.max_age, reason="acr_not_accepted" if not acr_ok else "auth_too_old"
        )
