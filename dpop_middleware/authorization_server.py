"""DPoP for authorization servers: check the proof at the token endpoint, get the ``jkt`` to bind.

::

    from dpop_middleware import RequestInfo
    from dpop_middleware.authorization_server import TokenEndpointVerifier

    token_endpoint = TokenEndpointVerifier("https://as.example/token", nonce_policy="always",
                                           nonce_keyring={"k1": secret})   # any VerifierConfig option

    def token(request):                         # your framework's view
        result = token_endpoint.authenticate(RequestInfo("POST", url, headers), dpop_jkt=code.dpop_jkt)
        if result.rejection is not None:         # 400 invalid_dpop_proof / use_dpop_nonce (+ DPoP-Nonce)
            return respond(result.rejection)     # status, headers, JSON body: copy them verbatim
        claims["cnf"] = {"jkt": result.jkt}      # bind the access token (RFC 9449 §6)
        return respond_json({..., "token_type": "DPoP"}, headers=result.response_headers)

The proof rules are the resource server's own (:func:`~dpop_middleware.core.proof.verify_proof`
without ``ath``), with the same replay store port and nonce keyring. At the authorization endpoint,
check a ``dpop_jkt`` parameter with :func:`validate_dpop_jkt` and store it with the code; pass it as
``dpop_jkt=`` when the code is redeemed (RFC 9449 §10).

``verify``/``averify`` drive one flow, synchronously or on the event loop (the second awaits an
async replay store); ``authenticate``/``aauthenticate`` never raise a
:class:`~dpop_middleware.DPoPError`: they return the rendered rejection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from .core.challenge import ErrorResponse
from .core.config import VerifierConfig, policy_config
from .core.errors import DPoPError
from .core.nonce import NonceKeyring, NoncePolicy, nonce_headers
from .core.proof import VerifiedProof
from .core.request import RequestInfo
from .core.token_endpoint import (
    InvalidGrantError,
    check_dpop_jkt,
    check_token_request,
    render_token_error,
    validate_dpop_jkt,
)
from .flow import Flow, check_fresh, replay_call, run_async, run_sync, store_failure
from .ports import AsyncReplayStore, ReplayStore
from .stores.memory import MemoryReplayStore

__all__ = [
    "DPoPBinding",
    "InvalidGrantError",
    "TokenEndpointResult",
    "TokenEndpointVerifier",
    "check_dpop_jkt",
    "validate_dpop_jkt",
]

logger = logging.getLogger("dpop_middleware")

Header = tuple[str, str]


@dataclass(frozen=True, slots=True)
class DPoPBinding:
    """A token request's verified proof: bind the issued token to :attr:`jkt`."""

    jkt: str
    proof: VerifiedProof
    response_headers: tuple[Header, ...] = ()  # a fresh ``DPoP-Nonce`` for the success response

    @property
    def cnf(self) -> dict[str, str]:
        """The ``cnf`` claim (RFC 9449 §6.1) for a JWT access token, or an introspection response."""
        return {"jkt": self.jkt}


@dataclass(frozen=True, slots=True)
class TokenEndpointResult:
    """What :meth:`TokenEndpointVerifier.authenticate` returns.

    ``rejection`` set: send it as the response and issue nothing. Otherwise ``binding`` is the proof
    (``None``: no proof and none required, so a Bearer token may be issued) and ``response_headers``
    go on the token response.
    """

    binding: DPoPBinding | None
    rejection: ErrorResponse | None = None
    response_headers: tuple[Header, ...] = ()

    @property
    def jkt(self) -> str | None:
        return self.binding.jkt if self.binding is not None else None


class TokenEndpointVerifier:
    """Verifies the DPoP proof of token requests. Thread-safe; build one per token endpoint.

    ``endpoint_url``: the token endpoint's public URL, compared with ``htu`` (default: the request's
    own URL, as the adapter rebuilt it). ``require_dpop``: refuse token requests without a proof
    (default); with ``False`` such requests pass with ``binding=None``. ``replay_store`` defaults to
    a :class:`~dpop_middleware.stores.MemoryReplayStore`; share one (Redis, Django cache) between
    instances, and share the ``nonce_keyring`` too (a :class:`~dpop_middleware.NonceKeyring` or a
    ``{kid: secret}`` dict). The proof policy is a :class:`~dpop_middleware.VerifierConfig`, given as
    ``config=`` or as the keywords that concern a token endpoint (not both).
    """

    def __init__(
        self,
        endpoint_url: str | None = None,
        *,
        require_dpop: bool = True,
        replay_store: ReplayStore | AsyncReplayStore | None = None,
        config: VerifierConfig | None = None,
        clock: Callable[[], float] = time.time,
        algorithms: Iterable[str] | None = None,
        max_age: float | None = None,
        clock_skew: float | None = None,
        max_proof_bytes: int | None = None,
        max_jti_length: int | None = None,
        min_rsa_bits: int | None = None,
        nonce_policy: NoncePolicy | str | None = None,
        nonce_keyring: NonceKeyring | Mapping[str, str | bytes] | None = None,
        debug: bool | None = None,
    ) -> None:
        self.config = policy_config(
            config,
            algorithms=algorithms,
            max_age=max_age,
            clock_skew=clock_skew,
            max_proof_bytes=max_proof_bytes,
            max_jti_length=max_jti_length,
            min_rsa_bits=min_rsa_bits,
            nonce_policy=nonce_policy,
            nonce_keyring=nonce_keyring,
            debug=debug,
        )
        self.endpoint_url = endpoint_url
        self.require_dpop = require_dpop
        if replay_store is None:
            replay_store = MemoryReplayStore(setting="TokenEndpointVerifier(replay_store=...)")
        self.replay_store = replay_store
        self._clock = clock

    # -- the flows, each written once and driven by run_sync / run_async ----------------------

    def verification(self, request: RequestInfo, *, dpop_jkt: str | None = None) -> Flow[DPoPBinding | None]:
        """The token request's checks as a flow: the binding (``None``: no proof, none required) or an error."""
        proof = check_token_request(
            request, config=self.config, now=self._clock(), endpoint_url=self.endpoint_url, dpop_jkt=dpop_jkt,
            required=self.require_dpop,
        )  # fmt: skip
        if proof is None:
            return None
        try:
            added = yield replay_call(self.replay_store, proof)
        except Exception as exc:  # noqa: BLE001 - any failure here must fail closed
            raise store_failure(exc) from None
        check_fresh(added)
        return DPoPBinding(proof.key.jkt, proof, nonce_headers(proof.next_nonce))

    def authentication(self, request: RequestInfo, *, dpop_jkt: str | None = None) -> Flow[TokenEndpointResult]:
        """:meth:`verification` with any error rendered as the token endpoint's response."""
        try:
            binding = yield from self.verification(request, dpop_jkt=dpop_jkt)
        except DPoPError as exc:
            return self._failed(exc)
        return TokenEndpointResult(binding, None, binding.response_headers if binding is not None else ())

    def verify(self, request: RequestInfo, *, dpop_jkt: str | None = None) -> DPoPBinding | None:
        """Check the token request's proof (and ``dpop_jkt``); raise a :class:`DPoPError` if bad."""
        return run_sync(self.verification(request, dpop_jkt=dpop_jkt))

    async def averify(self, request: RequestInfo, *, dpop_jkt: str | None = None) -> DPoPBinding | None:
        """:meth:`verify` on the event loop (awaits an async replay store)."""
        return await run_async(self.verification(request, dpop_jkt=dpop_jkt))

    def authenticate(self, request: RequestInfo, *, dpop_jkt: str | None = None) -> TokenEndpointResult:
        """:meth:`verify`, with any error rendered as the token endpoint's response."""
        return run_sync(self.authentication(request, dpop_jkt=dpop_jkt))

    async def aauthenticate(self, request: RequestInfo, *, dpop_jkt: str | None = None) -> TokenEndpointResult:
        """:meth:`authenticate` on the event loop."""
        return await run_async(self.authentication(request, dpop_jkt=dpop_jkt))

    def render(self, error: DPoPError) -> ErrorResponse:
        """The token endpoint response for ``error`` (400 JSON, or 503)."""
        return render_token_error(error)

    def _failed(self, exc: DPoPError) -> TokenEndpointResult:
        details = " ".join(f"{k}={v!r}" for k, v in exc.diagnostics.items())
        level = logging.WARNING if exc.status >= 500 else logging.INFO
        logger.log(
            level, "dpop token endpoint rejected: %s %s", exc.reason, details,
            extra={"dpop_reason": exc.reason, "dpop_outcome": "rejected"},
        )  # fmt: skip
        return TokenEndpointResult(None, self.render(exc))
