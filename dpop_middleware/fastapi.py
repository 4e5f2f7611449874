"""FastAPI: the :class:`DPoPBearer` security dependency (listed in OpenAPI), its
:class:`DPoPHTTPException` and :func:`dpop_exception_handler`, which sends rejections verbatim.

Guide: docs/starlette-fastapi.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

try:
    from fastapi import HTTPException, Request, Response
    from fastapi.openapi.models import HTTPBase as HTTPBaseModel
    from fastapi.security import SecurityScopes
    from fastapi.security.base import SecurityBase
except ModuleNotFoundError as exc:  # name the extra to install
    from .extras import missing_extra

    missing_extra(exc, "fastapi", "the FastAPI adapter needs FastAPI", "fastapi")

from .adapter_options import proxy_settings
from .asgi import OUTCOME_KEY, PRINCIPAL_KEY, REQUEST_INFO_KEY, VERIFIER_KEY, authenticate_scope
from .core.binding import DPoPPrincipal
from .core.challenge import ErrorResponse
from .core.request import RequestInfo
from .core.routes import required_route
from .starlette import DPoPHTTPError, _folded, app_debug, configured, error_response
from .verifier import DPoPVerifier

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .adapter_options import ProxyOptions

__all__ = ["DPoPBearer", "DPoPHTTPException", "dpop_exception_handler"]


class DPoPHTTPException(HTTPException):
    """An ``HTTPException`` for a DPoP rejection; ``rejection`` is the core's exact response."""

    def __init__(self, rejection: ErrorResponse) -> None:
        detail = json.loads(rejection.body)  # the core's body, so that {"detail": ...} carries the same
        super().__init__(status_code=rejection.status, detail=detail, headers=_folded(rejection.headers))
        self.rejection = rejection


async def dpop_exception_handler(request: Request, exc: Exception) -> Response:
    """Exception handler sending a :class:`DPoPHTTPException` verbatim (every header field apart).

    ``app.add_exception_handler(DPoPHTTPException, dpop_exception_handler)``; it also sends
    :class:`dpop_middleware.starlette.DPoPHTTPError` verbatim (register it for that class too);
    any other exception reaching it is re-raised.
    """
    if not isinstance(exc, (DPoPHTTPException, DPoPHTTPError)):
        raise exc
    return error_response(exc.rejection)


class DPoPBearer(SecurityBase):
    """FastAPI dependency authenticating a request with a DPoP-bound access token.

    Returns the :class:`~dpop_middleware.core.binding.DPoPPrincipal`. ``scopes`` (and those of
    ``Security(..., scopes=[...])`` anywhere in the dependency chain) must all be granted, else 403.
    ``acr_values`` (any one of them) and ``max_age`` (seconds since the user authenticated) demand a
    step-up (RFC 9470): a token that falls short gets 401 ``insufficient_user_authentication``.
    ``auto_error=False`` makes authentication optional: a request *without* credentials gets
    ``None``, but credentials that are present and bad are still rejected (a client is never silently
    downgraded to anonymous). ``None`` is also what a failed request gets in ``report_only`` mode.
    ``trusted_proxies``/``trusted_headers``/``public_url``: how to rebuild the public URL, as for
    the middleware; ``allowed_hosts`` and ``debug`` likewise. ``verifier`` must be a
    :class:`~dpop_middleware.verifier.DPoPVerifier` (``TypeError`` at construction otherwise). Used
    more than once on a request (or behind ``DPoPMiddleware`` with the same verifier), it verifies
    the proof once and checks each use's scopes (see docs/starlette-fastapi.md).
    """

    def __init__(
        self,
        verifier: DPoPVerifier,
        *,
        scopes: Iterable[str] | str | None = None,
        acr_values: Iterable[str] | str | None = None,
        max_age: int | None = None,
        auto_error: bool = True,
        scheme_name: str | None = None,
        description: str | None = None,
        debug: bool | None = None,
        **proxies: Unpack[ProxyOptions],
    ) -> None:
        self._proxies = proxy_settings("DPoPBearer", proxies)
        self._debug = debug
        self.verifier = configured(verifier, "DPoPBearer", self._proxies, debug)
        route = required_route("DPoPBearer", {"scopes": scopes, "acr_values": acr_values, "max_age": max_age})
        self.scopes, self.step_up = route.scopes, route.step_up
        self.auto_error = auto_error
        self.model = HTTPBaseModel(
            scheme="DPoP",
            description=description or "OAuth 2.0 access token bound to a key with DPoP (RFC 9449); send a DPoP proof.",
        )
        self.scheme_name = scheme_name or type(self).__name__

    async def __call__(
        self, request: Request, response: Response, security_scopes: SecurityScopes
    ) -> DPoPPrincipal | None:
        scope = request.scope
        needed = tuple(dict.fromkeys((*self.scopes, *security_scopes.scopes)))
        earlier = scope.get(PRINCIPAL_KEY)
        if earlier is None and scope.get(VERIFIER_KEY) is self.verifier and scope.get(OUTCOME_KEY) == "reported":
            # report_only: this verifier already reported this request's failure and lets it go on;
            # verifying again would consume its proof twice (a false "replayed") and report twice.
            return None
        if isinstance(earlier, DPoPPrincipal) and scope.get(VERIFIER_KEY) is self.verifier:
            # This verifier already accepted this very request (an outer dependency or the
            # middleware), and whoever ran it owes the response its DPoP-Nonce: only our demands remain.
            if needed or self.step_up is not None:
                info = scope.get(REQUEST_INFO_KEY)
                checked = self.verifier.authorize(
                    earlier, needed, info if isinstance(info, RequestInfo) else None, step_up=self.step_up
                )
                if checked.rejection is not None:
                    raise DPoPHTTPException(checked.rejection)
            return earlier
        # Otherwise nothing was verified yet (no layer, an exempt path, or an anonymous request on
        # an optional one): verifying now consumes no proof twice.
        result = await authenticate_scope(
            self.verifier,
            scope,
            self._proxies,
            required=self.auto_error,
            scopes=needed,
            step_up=self.step_up,
            debug=app_debug(scope, self._debug),
        )
        if result.rejection is not None:
            raise DPoPHTTPException(result.rejection)
        for name, value in result.response_headers:
            response.headers.append(name, value)
        return result.principal
