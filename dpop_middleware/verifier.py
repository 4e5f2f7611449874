"""The orchestrator: :class:`DPoPVerifier` runs the pure checks and the two ports in the agreed order.

The steps are written once, as flows (:mod:`dpop_middleware.flow`); ``verify``/``averify`` and
``authenticate``/``aauthenticate`` only drive them, synchronously or on the event loop.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from .core.binding import DPoPPrincipal, bind_token, require_scopes, token_facts
from .core.challenge import ErrorResponse, render_error
from .core.config import Mode, VerifierConfig, policy_config
from .core.errors import (
    AuthenticationRequired,
    DPoPError,
    InvalidTokenError,
    ServiceUnavailableError,
    TokenValidationUnavailable,
)
from .core.frozen import positional_constructor
from .core.htu import HTUError, normalize_htu
from .core.nonce import NonceKeyring, NoncePolicy, nonce_headers
from .core.proof import access_token_hash, verify_proof
from .core.request import RequestInfo, extract_credentials
from .core.resource_metadata import PublishedMetadata, ResourceMetadata, publish
from .core.step_up import StepUp, require_authentication
from .flow import Flow, PortCall, check_fresh, port_failure, replay_call, run_async, run_sync, store_failure
from .ports import AsyncReplayStore, AsyncTokenValidator, ReplayStore, TokenValidator
from .stores.memory import MemoryReplayStore
from .token_cache import TokenCache

__all__ = [
    "AuthResult",
    "DPoPVerifier",
    "Outcome",
    "OutcomeName",
    "RouteChecks",
    "hidden_mark_rejection",
    "unverified_rejection",
]

if TYPE_CHECKING:
    from typing_extensions import Unpack

logger = logging.getLogger("dpop_middleware")

Claims = Mapping[str, Any]
Header = tuple[str, str]
#: What happened to a request (:attr:`Outcome.outcome`, :attr:`AuthResult.outcome`).
OutcomeName = Literal["accepted", "anonymous", "rejected", "reported"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one request, as given to the ``on_outcome`` metrics hook.

    ``outcome`` is ``accepted``, ``anonymous`` (optional route, no credentials), ``rejected`` or
    ``reported`` (``report_only``: would have been rejected); ``reason`` is the stable reason code.
    """

    outcome: str
    reason: str
    status: int
    scheme: str | None


@dataclass(frozen=True, slots=True)
class AuthResult:
    """What the verifier decided about one request: what adapters act on.

    If ``rejection`` is set, the adapter returns it as the response and stops. Otherwise it attaches
    ``principal`` and adds ``response_headers`` to the eventual response. ``outcome`` says why there
    is no principal when there is none: ``anonymous`` (an optional route, no credentials) or
    ``reported`` (``report_only``: the request would have been rejected); else it is ``accepted``
    or ``rejected``, as reported to ``on_outcome``.
    """

    principal: DPoPPrincipal | None
    rejection: ErrorResponse | None = None
    response_headers: tuple[Header, ...] = ()
    outcome: OutcomeName = "accepted"


_new_result = positional_constructor(AuthResult)  # an accepted request's, on the hot path


def _validator_call(validator: Any) -> Callable[[str], PortCall]:
    """How to ask ``validator`` (an object with ``validate``/``avalidate``, or a callable) about a token."""
    sync_fn = getattr(validator, "validate", None)
    async_fn = getattr(validator, "avalidate", None)
    if sync_fn is not None and inspect.iscoroutinefunction(sync_fn):
        sync_fn, async_fn = None, async_fn or sync_fn
    if sync_fn is None and async_fn is None and callable(validator):
        if inspect.iscoroutinefunction(validator) or inspect.iscoroutinefunction(type(validator).__call__):
            async_fn = validator
        else:
            sync_fn = validator
    asynchronous = async_fn or sync_fn
    if asynchronous is None:
        raise TypeError("token_validator must have validate()/avalidate() or be a callable")
    return lambda token: (sync_fn, asynchronous, (token,))


def _checked_claims(claims: object, scheme: str) -> Claims:
    if not isinstance(claims, Mapping):
        raise InvalidTokenError("token_invalid", "Invalid access token", scheme=scheme)
    return claims


def _as_dpop_error(exc: Exception, scheme: str) -> DPoPError:
    """A validator's own exception never admits a request: it becomes a 503."""
    if isinstance(exc, DPoPError) and exc.scheme == "DPoP":  # the default: report it under the client's scheme
        exc.scheme = scheme
    return port_failure(
        exc, "token validator", TokenValidationUnavailable,
        misconfigured="token_validator_misconfigured", failed="token_validator_error",
    )  # fmt: skip


def unverified_rejection(reason: str, fix: str) -> ErrorResponse:
    """The 503 for a request that reached a protected view although no DPoP check ran for it.

    A server wiring error (a decorator without the middleware or extension), never the client's:
    it is refused, never served, and ``fix`` (what the operator must do) is logged at ERROR.
    """
    logger.error("dpop: %s; the request is refused with 503", fix, extra={"dpop_reason": reason})
    return render_error(ServiceUnavailableError(reason, "DPoP authentication is not configured"), (), False)


class RouteChecks(TypedDict, total=False):
    """What :meth:`DPoPVerifier.authenticate` checks of a route besides the proof and the token:
    ``required`` (default ``True``; ``False`` lets a request without credentials pass as anonymous),
    ``scopes`` the principal must all hold, ``step_up`` (RFC 9470) it must meet."""

    required: bool
    scopes: tuple[str, ...]
    step_up: StepUp | None


def hidden_mark_rejection(view_name: str, decorator: str) -> ErrorResponse:
    """The 503 for a decorated view reached by a request checked under a weaker policy than its mark:
    a decorator above ours that does not copy attributes hid the mark from the middleware or hook."""
    return unverified_rejection(
        "mark_not_seen",
        f"view {view_name} is decorated with {decorator}, but the DPoP layer checked this request under "
        "a weaker policy: a decorator above it that does not use functools.wraps hides the mark; put the "
        "DPoP decorator outermost, or use functools.wraps in the other decorator",
    )


class DPoPVerifier:
    """Verifies DPoP-bound (and, if allowed, Bearer) requests. Thread-safe; build one per app.

    ``token_validator`` turns an access token into claims: any object with ``validate(token)``
    and/or ``async avalidate(token)``, or a plain (async) callable. ``replay_store`` defaults to a
    :class:`~dpop_middleware.stores.MemoryReplayStore`. The policy is a
    :class:`~dpop_middleware.core.config.VerifierConfig`, given as ``config=`` or as its fields'
    keywords (not both); ``on_outcome`` is called once per request with an :class:`Outcome` (metrics).
    """

    def __init__(
        self,
        token_validator: TokenValidator | AsyncTokenValidator | Callable[[str], Any],
        *,
        replay_store: ReplayStore | AsyncReplayStore | None = None,
        config: VerifierConfig | None = None,
        clock: Callable[[], float] = time.time,
        on_outcome: Callable[[Outcome], None] | None = None,
        algorithms: Iterable[str] | None = None,
        mode: Mode | str | None = None,
        max_age: float | None = None,
        clock_skew: float | None = None,
        max_proof_bytes: int | None = None,
        max_token_bytes: int | None = None,
        max_jti_length: int | None = None,
        min_rsa_bits: int | None = None,
        nonce_policy: NoncePolicy | str | None = None,
        nonce_keyring: NonceKeyring | Mapping[str, str | bytes] | None = None,
        token_cache_size: int | None = None,
        token_cache_max_ttl: float | None = None,
        debug: bool | None = None,
        certificate_bound_tokens: bool | None = None,
        profile: str | None = None,
        resource_metadata: ResourceMetadata | None = None,
    ) -> None:
        self.config = policy_config(
            config,
            algorithms=algorithms,
            mode=mode,
            max_age=max_age,
            clock_skew=clock_skew,
            max_proof_bytes=max_proof_bytes,
            max_token_bytes=max_token_bytes,
            max_jti_length=max_jti_length,
            min_rsa_bits=min_rsa_bits,
            nonce_policy=nonce_policy,
            nonce_keyring=nonce_keyring,
            token_cache_size=token_cache_size,
            token_cache_max_ttl=token_cache_max_ttl,
            debug=debug,
            certificate_bound_tokens=certificate_bound_tokens,
            profile=profile,
        )
        if resource_metadata is not None and not isinstance(resource_metadata, ResourceMetadata):
            raise TypeError(f"resource_metadata must be a ResourceMetadata, not {type(resource_metadata).__name__}")
        #: This API's RFC 9728 metadata (``None``: not served); 401 challenges then name its URL.
        self.resource_metadata = resource_metadata
        self._resource_metadata_url = resource_metadata.url if resource_metadata is not None else None
        self._validation = _validator_call(token_validator)
        self.token_validator = token_validator
        if replay_store is None:
            replay_store = MemoryReplayStore(setting="DPoPVerifier(replay_store=...)")
        self.replay_store = replay_store
        self._clock = clock
        # A validator may cap how long its answers stay true (introspection: revocation must bite).
        cap = getattr(token_validator, "result_cache_max_ttl", None)
        max_ttl = self.config.token_cache_max_ttl
        if isinstance(cap, (int, float)) and not isinstance(cap, bool):
            max_ttl = min(max_ttl, float(cap))
        self._token_cache = TokenCache(self.config.token_cache_size, max_ttl)
        self._on_outcome = on_outcome
        self.algs = self.config.algorithms
        #: Whether RFC 8705 certificate-bound tokens are accepted (what RFC 9728 metadata announces as
        #: ``tls_client_certificate_bound_access_tokens``).
        self.certificate_bound_tokens = self.config.certificate_bound_tokens
        if self.config.nonce_keyring.generated and self.config.nonce_policy.value != "off":
            logger.warning(
                "dpop nonces use a random per-process key: instances will reject each other's nonces. "
                "Configure a shared nonce keyring for multi-instance deployments."
            )
        if self.config.mode is Mode.REPORT_ONLY:
            # Said once at start-up: in this mode nothing is refused, so a view that relies on us alone
            # is open, and a view that reads the principal must expect none.
            logger.warning(
                "dpop mode report_only: no request is refused; failures are only logged. Views protected by "
                "DPoP alone are open, and decorated views may receive no principal: keep your existing "
                "authentication in front until you switch to mode 'required' or 'allow_bearer'."
            )

    # -- the flows, each written once and driven by run_sync / run_async ----------------------

    def verification(self, request: RequestInfo) -> Flow[DPoPPrincipal]:
        """The steps of design.md §2 as a flow: the principal, or a :class:`DPoPError` raised."""
        now = self._clock()
        credentials = extract_credentials(request, self.config)
        if credentials is None:
            raise AuthenticationRequired()
        token_hash = access_token_hash(credentials.token)
        proof = None
        if credentials.proof is not None:
            proof = verify_proof(
                credentials.proof, method=request.method, url=request.url, token_hash=token_hash, now=now,
                config=self.config,
            )  # fmt: skip
        facts = self._token_cache.get(token_hash, now)
        if facts is None:
            try:
                claims = yield self._validation(credentials.token)
            except Exception as exc:  # noqa: BLE001 - any failure here must fail closed
                raise _as_dpop_error(exc, credentials.scheme) from None
            facts = token_facts(_checked_claims(claims, credentials.scheme))
            self._token_cache.put(token_hash, facts, now)
        config = self.config
        principal = bind_token(
            credentials.scheme, facts, proof, request.client_cert,
            certificate_bound_tokens=config.certificate_bound_tokens, bearer_allowed=config.bearer_allowed,
        )  # fmt: skip
        if proof is not None:  # last: only a request that passed all else writes the store
            try:
                added = yield replay_call(self.replay_store, proof)
            except Exception as exc:  # noqa: BLE001 - any failure here must fail closed
                raise store_failure(exc) from None
            check_fresh(added)
        return principal

    def authentication(
        self,
        request: RequestInfo,
        *,
        required: bool = True,
        scopes: tuple[str, ...] = (),
        step_up: StepUp | None = None,
    ) -> Flow[AuthResult]:
        """:meth:`verification`, the route's ``scopes`` and ``step_up`` demand, and the mode, as a
        flow that never raises."""
        try:
            principal = yield from self.verification(request)
            if scopes or step_up is not None:
                self._require(principal, scopes, step_up)
        except DPoPError as exc:
            return self._failed(exc, request, required)
        return self._succeeded(principal, request)

    def verify(self, request: RequestInfo) -> DPoPPrincipal:
        """Verify a request; return its principal or raise a :class:`DPoPError`."""
        return run_sync(self.verification(request))

    async def averify(self, request: RequestInfo) -> DPoPPrincipal:
        """:meth:`verify` on the event loop, awaiting async validators and stores."""
        return await run_async(self.verification(request))

    def authenticate(self, request: RequestInfo, **route: Unpack[RouteChecks]) -> AuthResult:
        """Verify, check the route's ``scopes`` and ``step_up`` demand (RFC 9470), and apply the
        mode: what adapters call (:class:`RouteChecks`: ``required``, ``scopes``, ``step_up``).

        ``required=False``: a request without credentials passes as anonymous (credentials that
        are sent must still be valid). Never raises :class:`DPoPError`; reports one outcome.
        """
        return run_sync(self.authentication(request, **route))

    async def aauthenticate(self, request: RequestInfo, **route: Unpack[RouteChecks]) -> AuthResult:
        """:meth:`authenticate` on the event loop."""
        return await run_async(self.authentication(request, **route))

    def render(self, error: DPoPError, *, debug: bool | None = None) -> ErrorResponse:
        """The response for ``error`` under this verifier's algorithms and mode (no logging).

        ``debug`` overrides the configured one (an adapter that follows its framework's debug flag).
        """
        return render_error(
            error, self.algs, self.config.bearer_challenged, debug=self.config.debug if debug is None else debug,
            resource_metadata=self._resource_metadata_url,
        )  # fmt: skip

    def published_metadata(self, path_scopes: Iterable[tuple[str, tuple[str, ...]]] = ()) -> PublishedMetadata | None:
        """The RFC 9728 document adapters serve (``None`` when no ``resource_metadata`` is configured).

        Built from this verifier's algorithms and mode and the route policy's ``path_scopes``
        (``RoutePolicy.path_scopes``): adapters call it once, at start-up.
        """
        metadata = self.resource_metadata
        if metadata is None:
            return None
        if self.config.certificate_bound_tokens and not metadata.tls_client_certificate_bound_access_tokens:
            # What the verifier accepts is what the document says (RFC 8705 §3, RFC 9728 §2).
            metadata = dataclasses.replace(metadata, tls_client_certificate_bound_access_tokens=True)
        return publish(
            metadata, algorithms=self.algs, dpop_required=not self.config.bearer_challenged, path_scopes=path_scopes,
        )  # fmt: skip

    def reject(self, error: DPoPError, request: RequestInfo | None = None) -> AuthResult:
        """Log, count and render a rejection an adapter found itself (e.g. an unusable URL).

        The result's ``rejection`` is the response to send; in ``report_only`` mode there is none
        (``outcome == "reported"``) and the request goes on. Reports one outcome, like :meth:`authenticate`.
        """
        return self._failed(error, request, required=True)

    def refuse(self, error: DPoPError, request: RequestInfo | None = None) -> ErrorResponse:
        """:meth:`reject` for a request that cannot go on even in ``report_only`` (no usable host, no
        principal where one is needed): logged and counted the same way, and always answered."""
        return self.reject(error, request).rejection or self.render(error)

    def authorize(
        self,
        principal: DPoPPrincipal | None,
        scopes: tuple[str, ...],
        request: RequestInfo | None = None,
        *,
        step_up: StepUp | None = None,
    ) -> AuthResult:
        """Check a route's ``scopes`` (and ``step_up`` demand) for a principal already verified: its
        result, like :meth:`reject`'s. A missing principal meets no demand.

        ``outcome`` is ``accepted`` when the principal meets them (nothing is reported then: the
        request was counted when it was verified), ``rejected`` or ``reported`` otherwise.
        """
        try:
            self._require(principal, scopes, step_up)
        except DPoPError as exc:
            return self._failed(exc, request, required=True)
        return AuthResult(principal)

    def step_up(
        self, principal: DPoPPrincipal | None, step_up: StepUp, request: RequestInfo | None = None
    ) -> AuthResult:
        """Check a verified principal against a route's RFC 9470 demand (``acr_values``, ``max_age``).

        :meth:`authorize` without scopes: ``accepted`` when the token's ``acr``/``auth_time`` meet
        it, else the 401 ``insufficient_user_authentication`` whose challenge repeats the demand (or,
        in ``report_only``, only a report).
        """
        return self.authorize(principal, (), request, step_up=step_up)

    def _require(self, principal: DPoPPrincipal | None, scopes: tuple[str, ...], step_up: StepUp | None) -> None:
        """What a route demands of a verified principal, scopes first; raises the :class:`DPoPError`."""
        if scopes or step_up is None:  # no principal holds even no scope
            require_scopes(principal, scopes)
        if step_up is not None:
            require_authentication(principal, step_up, self._clock(), leeway=self.config.clock_skew)

    def _failed(self, exc: DPoPError, request: RequestInfo | None, required: bool) -> AuthResult:
        if isinstance(exc, AuthenticationRequired) and not required:
            self._emit("anonymous", exc.reason, 200, None)
            return AuthResult(None, outcome="anonymous")
        report_only = self.config.mode is Mode.REPORT_ONLY
        outcome: OutcomeName = "reported" if report_only else "rejected"
        self._log(exc, request, outcome)
        self._emit(outcome, exc.reason, exc.status, exc.scheme)
        if report_only:
            return AuthResult(None, outcome="reported")
        return AuthResult(None, self.render(exc), outcome="rejected")

    def _succeeded(self, principal: DPoPPrincipal, request: RequestInfo) -> AuthResult:
        outcome: OutcomeName = "accepted"
        if principal.scheme == "Bearer" and principal.x5t_s256 is None and self.config.mode is Mode.REPORT_ONLY:
            # Worth knowing before switching to ``required``: this client still uses Bearer.
            logger.info(
                "dpop report_only: request would be rejected: bearer_token_used",
                extra={
                    "dpop_reason": "bearer_token_used",
                    "dpop_outcome": "reported",
                    "dpop_status": 401,
                    "dpop_scheme": "Bearer",
                },
            )
            self._emit("reported", "bearer_token_used", 401, "Bearer")
            outcome = "reported"
        else:
            self._emit("accepted", "ok", 200, principal.scheme)
        return _new_result(principal, None, nonce_headers(principal.next_nonce), outcome)

    def _emit(self, outcome: str, reason: str, status: int, scheme: str | None) -> None:
        if self._on_outcome is not None:
            try:
                self._on_outcome(Outcome(outcome, reason, status, scheme))
            except Exception:  # a broken metrics hook must not change the answer
                logger.exception("dpop on_outcome hook failed")

    def _log(self, exc: DPoPError, request: RequestInfo | None, outcome: str) -> None:
        where = ""
        if request is not None:
            try:
                where = f"{request.method[:16]} {normalize_htu(request.url)}"
            except HTUError:
                where = request.method[:16]
        details = " ".join(f"{k}={v!r}" for k, v in exc.diagnostics.items())
        extra = {f"dpop_{k}": v for k, v in exc.diagnostics.items()}
        extra.update(dpop_reason=exc.reason, dpop_status=exc.status, dpop_outcome=outcome, dpop_scheme=exc.scheme)
        level = logging.WARNING if exc.status >= 500 else logging.INFO
        logger.log(level, "dpop %s: %s (%d) %s %s", outcome, exc.reason, exc.status, where, details, extra=extra)
