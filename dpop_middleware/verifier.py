"""The orchestrator: :class:`DPoPVerifier` runs the pure checks and the two ports in the agreed order.

``verify`` and ``averify`` are the only mirrored code in the library: the same few lines, one with
``await``. Every decision is made in the pure helpers they call (``dpop_middleware.core``), so the
two cannot drift; one table of test cases runs through both.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .core.binding import DPoPPrincipal, TokenFacts, bind_token, require_scopes, token_facts
from .core.challenge import ErrorResponse, render_error
from .core.config import Mode, VerifierConfig
from .core.errors import (
    AuthenticationRequired,
    DPoPError,
    InvalidDPoPProofError,
    InvalidTokenError,
    ReplayStoreUnavailable,
    ServiceUnavailableError,
    TokenValidationUnavailable,
)
from .core.htu import HTUError, normalize_htu
from .core.jose import numeric_date
from .core.proof import VerifiedProof, access_token_hash, verify_proof
from .core.request import Credentials, RequestInfo, extract_credentials
from .stores.memory import MemoryReplayStore

__all__ = ["AuthResult", "DPoPVerifier", "Outcome", "unverified_rejection"]

logger = logging.getLogger("dpop_middleware")

Claims = Mapping[str, Any]
Header = tuple[str, str]


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
    """The adapter-facing result of :meth:`DPoPVerifier.authenticate`.

    If ``rejection`` is set, the adapter returns it as the response and stops. Otherwise it attaches
    ``principal`` (``None``: anonymous) and adds ``response_headers`` to the eventual response.
    """

    principal: DPoPPrincipal | None
    rejection: ErrorResponse | None = None
    response_headers: tuple[Header, ...] = ()


class _TokenCache:
    """Validated tokens by SHA-256 of the token, each until its ``exp`` (capped).

    A plain dict: a cachetools cache measured ~10 us per lookup in the hot path, a dict ~0.3 us.
    When full, the oldest entry goes (a cache may forget; it only costs a re-validation). Dict
    operations are atomic under the GIL, so readers need no lock.
    """

    def __init__(self, size: int, max_ttl: float) -> None:
        self._size = size
        self._max_ttl = max_ttl
        self._entries: dict[bytes, tuple[float, TokenFacts]] = {}
        self.enabled = size > 0 and max_ttl > 0

    def get(self, token_hash: bytes, now: float) -> TokenFacts | None:
        entry = self._entries.get(token_hash)
        if entry is None or entry[0] <= now:
            return None
        return entry[1]

    def put(self, token_hash: bytes, facts: TokenFacts, now: float) -> None:
        if not self.enabled:
            return
        exp = numeric_date(facts.claims.get("exp"))
        # Without ``exp`` we cannot know when the token dies: keep it only briefly.
        until = now + (self._max_ttl if exp is not None else min(self._max_ttl, 60.0))
        if exp is not None:
            until = min(until, exp)
        if until <= now:
            return
        entries = self._entries
        while len(entries) >= self._size:
            try:
                del entries[next(iter(entries))]
            except (KeyError, RuntimeError, StopIteration):  # another thread got there first
                break
        entries[token_hash] = (until, facts)


def _validator_methods(validator: Any) -> tuple[Callable[[str], Any] | None, Callable[[str], Any] | None]:
    """Find the sync and async entry points of a validator object or plain callable."""
    sync_fn = getattr(validator, "validate", None)
    async_fn = getattr(validator, "avalidate", None)
    if sync_fn is not None and inspect.iscoroutinefunction(sync_fn):
        sync_fn, async_fn = None, async_fn or sync_fn
    if sync_fn is None and async_fn is None and callable(validator):
        if inspect.iscoroutinefunction(validator) or inspect.iscoroutinefunction(type(validator).__call__):
            async_fn = validator
        else:
            sync_fn = validator
    if sync_fn is None and async_fn is None:
        raise TypeError("token_validator must have validate()/avalidate() or be a callable")
    return sync_fn, async_fn


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _check_fresh(added: object) -> None:
    if added is True:
        return
    if inspect.isawaitable(added):  # an asyncio store driven from verify(): a wiring mistake
        close = getattr(added, "close", None)
        if callable(close):
            close()
        logger.error("dpop: an async replay store was called from the sync verify(); use averify()/aauthenticate()")
        raise ReplayStoreUnavailable("replay_store_misconfigured")
    raise InvalidDPoPProofError("replayed", "DPoP proof already used")


def _store_error(exc: Exception) -> DPoPError:
    """A replay store that cannot answer never admits a request: 503."""
    if isinstance(exc, DPoPError):
        return exc
    logger.error("dpop replay store failed: %s", type(exc).__name__, extra={"dpop_reason": "replay_store_unavailable"})
    return ReplayStoreUnavailable()


def _checked_claims(claims: object, scheme: str) -> Claims:
    if not isinstance(claims, Mapping):
        raise InvalidTokenError("token_invalid", "Invalid access token", scheme=scheme)
    return claims


def _as_dpop_error(exc: Exception, scheme: str) -> DPoPError:
    """A validator's own exception never admits a request: it becomes a 503."""
    if isinstance(exc, DPoPError):
        if exc.scheme == "DPoP":  # the default: report it under the scheme the client used
            exc.scheme = scheme
        return exc
    logger.error("dpop token validator raised %s; refusing with 503", type(exc).__name__)
    return TokenValidationUnavailable("token_validator_error")


def unverified_rejection(reason: str, fix: str) -> ErrorResponse:
    """The 503 for a request that reached a protected view although no DPoP check ran for it.

    A server wiring error (a decorator without the middleware or extension), never the client's:
    it is refused, never served, and ``fix`` (what the operator must do) is logged at ERROR.
    """
    logger.error("dpop: %s; the request is refused with 503", fix, extra={"dpop_reason": reason})
    return render_error(ServiceUnavailableError(reason, "DPoP authentication is not configured"), (), False)


class DPoPVerifier:
    """Verifies DPoP-bound (and, if allowed, Bearer) requests. Thread-safe; build one per app.

    ``token_validator`` turns an access token into claims: any object with ``validate(token)``
    and/or ``async avalidate(token)``, or a plain (async) callable. ``replay_store`` defaults to a
    :class:`~dpop_middleware.stores.MemoryReplayStore`. Options are those of
    :class:`~dpop_middleware.core.config.VerifierConfig`, given either as ``config=`` or as keywords.
    ``on_outcome`` is called once per request with an :class:`Outcome` (metrics).
    """

    def __init__(
        self,
        token_validator: Any,
        *,
        replay_store: Any = None,
        config: VerifierConfig | None = None,
        clock: Callable[[], float] = time.time,
        on_outcome: Callable[[Outcome], None] | None = None,
        **options: Any,
    ) -> None:
        if config is not None and options:
            raise TypeError("pass either config= or option keywords, not both")
        self.config = config or VerifierConfig(**options)
        self._validate_sync, self._validate_async = _validator_methods(token_validator)
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
        self._token_cache = _TokenCache(self.config.token_cache_size, max_ttl)
        self._on_outcome = on_outcome
        self.algs = self.config.algorithms
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

    # -- the mirrored pair -------------------------------------------------------------------

    def verify(self, request: RequestInfo) -> DPoPPrincipal:
        """Verify a request; return its principal or raise a :class:`DPoPError`."""
        now = self._clock()
        credentials, token_hash, proof = self._begin(request, now)
        facts = self._token_cache.get(token_hash, now)
        if facts is None:
            validate = self._sync_validator()
            try:
                raw = validate(credentials.token)
            except Exception as exc:  # noqa: BLE001 - any failure here must fail closed
                raise _as_dpop_error(exc, credentials.scheme) from None
            facts = self._validated(raw, credentials.scheme, token_hash, now)
        principal = bind_token(credentials.scheme, facts, proof)
        if proof is not None:
            try:
                added = self.replay_store.add_if_absent(proof.replay_key, proof.replay_ttl)
            except Exception as exc:  # noqa: BLE001 - any failure here must fail closed
                raise _store_error(exc) from None
            if added is not True:
                _check_fresh(added)
        return principal

    async def averify(self, request: RequestInfo) -> DPoPPrincipal:
        """Asyncio twin of :meth:`verify`: the same steps, awaiting async validators and stores."""
        now = self._clock()
        credentials, token_hash, proof = self._begin(request, now)
        facts = self._token_cache.get(token_hash, now)
        if facts is None:
            validate = self._async_validator()
            try:
                raw = await _maybe_await(validate(credentials.token))
            except Exception as exc:  # noqa: BLE001 - any failure here must fail closed
                raise _as_dpop_error(exc, credentials.scheme) from None
            facts = self._validated(raw, credentials.scheme, token_hash, now)
        principal = bind_token(credentials.scheme, facts, proof)
        if proof is not None:
            try:
                added = self.replay_store.add_if_absent(proof.replay_key, proof.replay_ttl)
                if added.__class__ is not bool:  # an asyncio store (a sync one answers at once)
                    added = await _maybe_await(added)
            except Exception as exc:  # noqa: BLE001 - any failure here must fail closed
                raise _store_error(exc) from None
            if added is not True:
                _check_fresh(added)
        return principal

    def authenticate(self, request: RequestInfo, *, required: bool = True, scopes: tuple[str, ...] = ()) -> AuthResult:
        """Verify, check the route's ``scopes`` and apply the mode: what adapters call.

        ``required=False``: a request without credentials passes as anonymous (credentials that
        are sent must still be valid). Never raises :class:`DPoPError`; reports one outcome.
        """
        try:
            principal = self.verify(request)
            if scopes:
                require_scopes(principal, scopes)
        except DPoPError as exc:
            return self._failed(exc, request, required)
        return self._succeeded(principal, request)

    async def aauthenticate(
        self, request: RequestInfo, *, required: bool = True, scopes: tuple[str, ...] = ()
    ) -> AuthResult:
        """Asyncio twin of :meth:`authenticate`."""
        try:
            principal = await self.averify(request)
            if scopes:
                require_scopes(principal, scopes)
        except DPoPError as exc:
            return self._failed(exc, request, required)
        return self._succeeded(principal, request)

    # -- shared, synchronous steps -----------------------------------------------------------

    def _begin(self, request: RequestInfo, now: float) -> tuple[Credentials, bytes, VerifiedProof | None]:
        credentials = extract_credentials(request, self.config)
        if credentials is None:
            raise AuthenticationRequired()
        token_hash = access_token_hash(credentials.token)
        proof = None
        if credentials.proof is not None:
            proof = verify_proof(
                credentials.proof,
                method=request.method,
                url=request.url,
                token_hash=token_hash,
                now=now,
                config=self.config,
            )
        return credentials, token_hash, proof

    def _sync_validator(self) -> Callable[[str], Any]:
        if self._validate_sync is None:
            raise TypeError("this token validator is async-only: use averify()/aauthenticate()")
        return self._validate_sync

    def _async_validator(self) -> Callable[[str], Any]:
        validate = self._validate_async or self._validate_sync
        if validate is None:  # pragma: no cover - _validator_methods guarantees one of the two
            raise TypeError("no token validator")
        return validate

    def _validated(self, claims: object, scheme: str, token_hash: bytes, now: float) -> TokenFacts:
        facts = token_facts(_checked_claims(claims, scheme))
        self._token_cache.put(token_hash, facts, now)
        return facts

    def render(self, error: DPoPError, *, debug: bool | None = None) -> ErrorResponse:
        """The response for ``error`` under this verifier's algorithms and mode (no logging).

        ``debug`` overrides the configured one (an adapter that follows its framework's debug flag).
        """
        return render_error(
            error, self.algs, self.config.bearer_allowed, debug=self.config.debug if debug is None else debug
        )

    def reject(self, error: DPoPError, request: RequestInfo | None = None) -> ErrorResponse | None:
        """Log, count and render a rejection an adapter found itself (e.g. an unusable URL).

        ``None`` in ``report_only`` mode: the request goes on. Reports one outcome, like
        :meth:`authenticate`.
        """
        return self._failed(error, request, required=True).rejection

    def authorize(
        self, principal: DPoPPrincipal | None, scopes: tuple[str, ...], request: RequestInfo | None = None
    ) -> ErrorResponse | None:
        """Check route scopes; the rejection to send, or ``None`` (also in ``report_only``)."""
        try:
            require_scopes(principal, scopes)
        except DPoPError as exc:
            result = self._failed(exc, request, required=True)
            return result.rejection
        return None

    def _failed(self, exc: DPoPError, request: RequestInfo | None, required: bool) -> AuthResult:
        if isinstance(exc, AuthenticationRequired) and not required:
            self._emit("anonymous", exc.reason, 200, None)
            return AuthResult(None)
        report_only = self.config.mode is Mode.REPORT_ONLY
        outcome = "reported" if report_only else "rejected"
        self._log(exc, request, outcome)
        self._emit(outcome, exc.reason, exc.status, exc.scheme)
        if report_only:
            return AuthResult(None)
        return AuthResult(None, self.render(exc))

    def _succeeded(self, principal: DPoPPrincipal, request: RequestInfo) -> AuthResult:
        if principal.scheme == "Bearer" and self.config.mode is Mode.REPORT_ONLY:
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
        else:
            self._emit("accepted", "ok", 200, principal.scheme)
        headers: tuple[Header, ...] = ()
        if principal.next_nonce is not None:
            headers = (("DPoP-Nonce", principal.next_nonce),)
        return AuthResult(principal, None, headers)

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
