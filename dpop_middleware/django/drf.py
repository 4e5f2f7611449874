"""Django REST Framework: :class:`DPoPAuthentication`, the :class:`DPoPRequired` permission,
:func:`dpop_exception_handler` and :class:`DPoPNonceMixin`.

Guide: the "Django REST Framework" section of docs/django.md.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import DisallowedHost

from ..core.binding import DPoPPrincipal
from ..core.challenge import ErrorResponse
from ..core.config import Mode, VerifierConfig
from ..core.errors import AuthenticationRequired, DPoPError, ServiceUnavailableError
from ..core.request import RequestInfo, authorization_scheme, extract_credentials
from ..core.step_up import StepUp
from ..verifier import AuthResult, DPoPVerifier
from .conf import Policy, get_state
from .decorators import view_policy
from .middleware import (
    CHECKED,
    OUTCOME,
    PRINCIPAL,
    RESPONSE_HEADERS,
    SCOPES_CHECKED,
    STEP_UP_CHECKED,
    VERIFIED,
    bad_host_rejection,
    is_preflight,
    mark_verified,
)
from .translate import apply_headers, challenge_header, joined_headers, request_info

try:
    from rest_framework import exceptions
    from rest_framework.authentication import BaseAuthentication
    from rest_framework.permissions import BasePermission
except ModuleNotFoundError as exc:  # name the extra to install
    from ..extras import missing_extra

    missing_extra(exc, "rest_framework", "the DRF integration needs Django REST framework", "drf")

__all__ = [
    "DPoPAuthentication",
    "DPoPNonceMixin",
    "DPoPRejected",
    "DPoPRequired",
    "DPoPUser",
    "dpop_exception_handler",
]


class DPoPRejected(exceptions.APIException):  # type: ignore[misc]
    """A rejection decided by the core, carried through DRF's exception handling unchanged."""

    def __init__(self, rejection: ErrorResponse) -> None:
        super().__init__(detail=rejection.error.description, code=rejection.error.error or rejection.error.reason)
        self.rejection = rejection
        self.status_code = rejection.status
        # Read by DRF's default handler, so the challenge survives even without ours.
        self.auth_header = challenge_header(rejection)
        if isinstance(rejection.error, ServiceUnavailableError):
            self.wait = rejection.error.retry_after


class DPoPUser:
    """A user known only by its access token (no database row), like DRF's token users."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, principal: DPoPPrincipal) -> None:
        self.principal = principal
        self.username = principal.subject or principal.client_id or ""
        self.pk = self.id = self.username

    def __str__(self) -> str:
        return self.username

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DPoPUser) and other.username == self.username

    def __hash__(self) -> int:
        return hash(self.username)


def _django_request(request: Any) -> Any:
    return getattr(request, "_request", request)


def _info(request: Any) -> RequestInfo:
    state = get_state()
    try:
        return request_info(_django_request(request), state.proxy)
    except DisallowedHost:
        raise DPoPRejected(bad_host_rejection(state)) from None


def _refuse(result: AuthResult) -> None:
    """Raise the verifier's rejection, if it decided on one (in ``report_only`` it never does)."""
    if result.rejection is not None:
        raise DPoPRejected(result.rejection)


def _ours(info: RequestInfo, config: VerifierConfig, bearer_elsewhere: bool) -> bool:
    if info.header_values("dpop"):
        return True  # a proof is ours to judge, whatever the scheme (Bearer + DPoP is a 400)
    scheme = (authorization_scheme(info) or "").lower()
    if scheme == "bearer":
        # In ``required`` mode a Bearer token may be a DPoP-bound token stripped of its proof: we
        # refuse it rather than let a later Bearer class accept it, unless the project said so.
        certificate = config.certificate_bound_tokens and info.client_cert is not None  # RFC 8705 tokens are Bearer
        return config.bearer_allowed or certificate or not bearer_elsewhere
    if scheme:
        return scheme == "dpop"  # Basic, Token...: another class's
    try:  # no Authorization header: the core decides whether the query carries a token
        extract_credentials(info, config)
    except DPoPError:
        return True
    return False


def declared_policy(view: Any, path: str) -> tuple[bool, tuple[str, ...], StepUp | None]:
    """Whether a DRF view demands DPoP (``@dpop_required`` or ``dpop_scopes``), and the scopes and
    step-up a principal must meet there: the view's (``@dpop_required(scopes=..., acr_values=...,
    max_age=...)``, ``dpop_scopes``) with those of the path rules added, as ``DPoPMiddleware`` does."""
    mark = view_policy(type(view)) if view is not None else None
    attribute = tuple(getattr(view, "dpop_scopes", ()) or ())
    if mark is not None and mark.exempt and not attribute:  # dpop_scopes still demands (a subclass's)
        return False, (), None
    demanded = bool(attribute) or (mark is not None and mark.required)
    scopes = attribute or (mark.scopes if mark is not None else ())
    own = Policy("required" if demanded else "optional", scopes, mark.step_up if mark is not None else None)
    route = own.adding(get_state().policy_for_path(path))
    return demanded, route.scopes, route.step_up


def _check_demands(
    request: Any, verifier: DPoPVerifier, principal: DPoPPrincipal, scopes: tuple[str, ...], step_up: StepUp | None
) -> None:
    """The view's scopes and step-up demand, what the verifier has not checked on this request yet."""
    django_request = _django_request(request)
    if scopes and set(scopes) <= set(getattr(django_request, SCOPES_CHECKED, ())):
        scopes = ()
    if step_up is not None and getattr(django_request, STEP_UP_CHECKED, None) == step_up:
        step_up = None
    if scopes or step_up is not None:
        _refuse(verifier.authorize(principal, scopes, _info(request), step_up=step_up))
        if scopes:  # checked (and in report_only reported) once: the permission class must not again
            setattr(django_request, SCOPES_CHECKED, scopes)
        if step_up is not None:
            setattr(django_request, STEP_UP_CHECKED, step_up)


def _reject_once(request: Any, verifier: DPoPVerifier) -> None:
    """Refuse a request without a principal, unless report_only already logged and counted its
    failure (the middleware's, or ours from the authentication class): never a second report."""
    django_request = _django_request(request)
    if getattr(django_request, OUTCOME, None) == "reported":
        return
    result = verifier.reject(AuthenticationRequired(), _info(request))
    setattr(django_request, OUTCOME, result.outcome)
    _refuse(result)


def _view(request: Any) -> Any:
    context = getattr(request, "parser_context", None)
    return context.get("view") if isinstance(context, dict) else None


class DPoPAuthentication(BaseAuthentication):  # type: ignore[misc]
    """DRF authentication by DPoP-bound access token (RFC 9449).

    In ``MODE = "required"`` every ``Bearer`` token is refused here with the core's challenge,
    so no later authentication class can accept a DPoP-bound token sent without its proof. A project
    that keeps another Bearer authentication *after* this one sets ``bearer_elsewhere = True`` on a
    subclass. Scopes a view declares (``@dpop_required(scopes=...)`` on the class, or
    ``dpop_scopes``) are enforced here, with or without :class:`DPoPRequired`.
    """

    #: Let ``Bearer`` requests pass to the next authentication class in ``required`` mode.
    bearer_elsewhere = False

    def authenticate(self, request: Any) -> tuple[Any, DPoPPrincipal] | None:
        django_request = _django_request(request)
        state = get_state()
        verifier = state.verifier
        setattr(django_request, CHECKED, True)
        if is_preflight(django_request):
            return None
        demanded, scopes, step_up = declared_policy(_view(request), django_request.path_info)
        if getattr(django_request, VERIFIED, False):
            principal = getattr(django_request, PRINCIPAL, None)  # DPoPMiddleware already decided
            if principal is None and verifier.config.mode is not Mode.REPORT_ONLY:
                # On a route the middleware treats as optional, a Bearer token (required mode) or a
                # query token passed as anonymous; credentials we own are judged in full here, so no
                # later class accepts them. Such a request failed before the replay store, so this
                # second look cannot see its own proof as a replay.
                info = _info(request)
                if _ours(info, verifier.config, self.bearer_elsewhere):
                    _refuse(verifier.authenticate(info, required=True))
        else:
            info = _info(request)
            if not _ours(info, verifier.config, self.bearer_elsewhere):
                principal = None
            else:
                # Credentials we own are judged in full: a Bearer token in required mode or a token
                # in the query string meets its challenge instead of passing as anonymous.
                result = verifier.authenticate(info, required=True)
                mark_verified(django_request, result)
                _refuse(result)
                principal = result.principal
        if principal is None:
            if demanded:
                _reject_once(request, verifier)
            return None
        _check_demands(request, verifier, principal, scopes, step_up)
        user = state.drf_user(principal) if state.drf_user is not None else DPoPUser(principal)
        return user, principal

    def authenticate_header(self, request: Any) -> str:
        """The challenge for a request without (acceptable) credentials: ``DPoP algs="..."``."""
        verifier = get_state().verifier
        return challenge_header(verifier.render(AuthenticationRequired())) or "DPoP"


class DPoPRequired(BasePermission):  # type: ignore[misc]
    """Allow only DPoP-authenticated requests holding the view's scopes.

    Scopes come from ``@dpop_required(scopes=...)`` on the view class, or a ``dpop_scopes``
    attribute. A missing principal or scope is rejected with the core's challenge (401/403), never
    a bare 403. In ``report_only`` mode nothing is rejected.
    """

    def has_permission(self, request: Any, view: Any) -> bool:
        verifier = get_state().verifier
        django_request = _django_request(request)
        if not getattr(django_request, CHECKED, False):
            # Neither DPoPMiddleware nor DPoPAuthentication ran: never let the view run unchecked.
            from .decorators import unchecked_rejection

            raise DPoPRejected(
                unchecked_rejection(type(view).__qualname__, view_policy(type(view)) or Policy("required"))
            )
        # A CORS preflight is answered by the CORS layer (or by DPoPMiddleware, empty) before any view;
        # one that reaches a protected DRF view has no principal and is refused like any anonymous one.
        principal = request.auth if isinstance(request.auth, DPoPPrincipal) else None
        _, scopes, step_up = declared_policy(view, django_request.path_info)
        if principal is None:
            _reject_once(request, verifier)  # report_only: goes on, reported once
        else:
            _check_demands(request, verifier, principal, scopes, step_up)
        return True


def dpop_exception_handler(exc: Exception, context: dict[str, Any]) -> Any:
    """DRF exception handler: our rejections verbatim; other errors keep the fresh ``DPoP-Nonce``."""
    # Imported here: DRF imports the authentication classes named in its settings while
    # rest_framework.views is still initialising, so a module-level import would be circular.
    from rest_framework.response import Response
    from rest_framework.views import exception_handler

    request = context.get("request")
    if isinstance(exc, DPoPRejected):
        rejection = exc.rejection
        error = rejection.error
        body = {"error": error.error or error.reason, "error_description": error.description}
        return Response(body, status=rejection.status, headers=joined_headers(rejection.headers))
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed) and str(
        response.get("WWW-Authenticate", "")
    ).startswith("DPoP"):
        response["Cache-Control"] = "no-store"  # RFC 6750 §5.3 / RFC 9449: challenges are not cached
    if request is not None:
        apply_headers(response, getattr(_django_request(request), RESPONSE_HEADERS, ()))
    return response


class DPoPNonceMixin:
    """APIView mixin adding a fresh ``DPoP-Nonce`` to successful responses (without the middleware)."""

    def finalize_response(self, request: Any, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        apply_headers(response, getattr(_django_request(request), RESPONSE_HEADERS, ()))
        return response
