"""The verifier's policy, frozen and validated once at start-up."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .keys import ALGORITHMS, DEFAULT_ALGORITHMS
from .nonce import NonceKeyring, NoncePolicy

__all__ = ["Mode", "VerifierConfig", "policy_config"]


class Mode(str, enum.Enum):
    """How strictly the verifier enforces DPoP (design.md §5: incremental rollout)."""

    REQUIRED = "required"  #: only DPoP-bound tokens with valid proofs
    ALLOW_BEARER = "allow_bearer"  #: unbound tokens may still use Bearer; bound ones never
    REPORT_ONLY = "report_only"  #: check and log everything, reject nothing


@dataclass(frozen=True)
class VerifierConfig:
    """Every tunable of :class:`~dpop_middleware.DPoPVerifier`, with safe defaults.

    Times are in seconds. ``max_age`` is how old a proof's ``iat`` may be; ``clock_skew`` is the
    leeway on both sides of the window. Replay entries live ``max_age + 2 * clock_skew``, the whole
    span in which a proof is acceptable.
    """

    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    mode: Mode = Mode.REQUIRED
    max_age: float = 60.0
    clock_skew: float = 10.0
    max_proof_bytes: int = 8192
    max_token_bytes: int = 16384
    max_jti_length: int = 256
    min_rsa_bits: int = 2048
    nonce_policy: NoncePolicy = NoncePolicy.OFF
    nonce_keyring: NonceKeyring = field(default_factory=NonceKeyring)
    token_cache_size: int = 10_000
    token_cache_max_ttl: float = 3600.0
    #: Rejections say what was expected and received (htu, htm, iat offset). Development only:
    #: the details help a caller probe the deployment, so production responses never carry them.
    debug: bool = False
    #: Accept RFC 8705 certificate-bound tokens (``cnf`` ``x5t#S256``), also over ``Bearer``, when
    #: the request presents the matching client certificate. Off: such a token is always refused.
    certificate_bound_tokens: bool = False

    def __post_init__(self) -> None:
        unknown = [alg for alg in self.algorithms if alg not in ALGORITHMS]
        if unknown or not self.algorithms:
            raise ValueError(f"unsupported DPoP algorithms {unknown!r}; choose from {sorted(ALGORITHMS)}")
        for name in ("max_age", "clock_skew", "token_cache_max_ttl"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.max_proof_bytes < 256 or self.max_token_bytes < 16 or self.max_jti_length < 1:
            raise ValueError("size limits are too small to be useful")
        if self.min_rsa_bits < 2048:
            raise ValueError("RSA keys below 2048 bits are not accepted (RFC 8725 §3.5)")
        if isinstance(self.nonce_keyring, Mapping):  # {kid: secret}, as settings files give it
            object.__setattr__(self, "nonce_keyring", NonceKeyring(self.nonce_keyring))
        object.__setattr__(self, "algorithms", tuple(self.algorithms))  # part of the proof-header memo's key
        object.__setattr__(self, "mode", Mode(self.mode))
        object.__setattr__(self, "nonce_policy", NoncePolicy(self.nonce_policy))

    @property
    def replay_ttl(self) -> float:
        """How long a seen proof must be remembered: its whole acceptance window."""
        return self.max_age + 2 * self.clock_skew

    @property
    def bearer_allowed(self) -> bool:
        return self.mode is not Mode.REQUIRED

    @property
    def bearer_challenged(self) -> bool:
        """Whether challenges offer ``Bearer``: unbound tokens allowed, or certificate-bound ones (RFC 8705 §3)."""
        return self.bearer_allowed or self.certificate_bound_tokens


def policy_config(config: VerifierConfig | None, **options: Any) -> VerifierConfig:
    """``config``, or a :class:`VerifierConfig` built from the ``options`` given (``None``: not given).

    The verifiers take either a ready config or its fields as keywords, never both: a keyword next
    to ``config=`` would silently lose to it.
    """
    given = {name: value for name, value in options.items() if value is not None}
    if config is not None:
        if given:
            raise TypeError(f"pass either config= or option keywords, not both (got {', '.join(sorted(given))})")
        return config
    if isinstance(given.get("algorithms"), str):
        raise TypeError("algorithms must be a sequence of names, e.g. ('ES256', 'RS256'), not a string")
    if "algorithms" in given:
        given["algorithms"] = tuple(given["algorithms"])
    return VerifierConfig(**given)
