"""The verifier's policy, frozen and validated once at start-up."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .keys import ALGORITHMS, DEFAULT_ALGORITHMS
from .nonce import NonceKeyring, NoncePolicy

__all__ = ["FAPI2_ALGORITHMS", "PROFILES", "Mode", "VerifierConfig", "policy_config"]

#: The profiles ``profile=`` names: each is a set of settings applied in one step (docs/fapi2.md).
PROFILES = ("fapi2",)
#: FAPI 2.0 Security Profile §5.4.1 item 1.2: "PS256, ES256, or EdDSA (using the Ed25519 subtype)".
FAPI2_ALGORITHMS: tuple[str, ...] = ("PS256", "ES256", "EdDSA")
#: FAPI 2.0 Security Profile §5.3.2.1 item 13 (and Note 4): JWTs up to 10 s in the future are
#: accepted, more than 60 s refused; a proof's future leeway is ``clock_skew``.
FAPI2_CLOCK_SKEW = (10.0, 60.0)


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
    #: ``"fapi2"``: the FAPI 2.0 Security Profile's resource-server rules (docs/fapi2.md): its
    #: algorithms unless ``algorithms`` is given (then a subset of them), Ed25519 keys only for
    #: EdDSA, mode ``required``, ``clock_skew`` between 10 and 60 s. A contradicting option is a
    #: ``ValueError`` naming both.
    profile: str | None = None

    def __post_init__(self) -> None:
        if self.profile is not None and self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {list(PROFILES)} or None, not {self.profile!r}")
        if self.profile == "fapi2" and self.algorithms is DEFAULT_ALGORITHMS:  # not given: the profile's
            object.__setattr__(self, "algorithms", FAPI2_ALGORITHMS)
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
        if self.profile == "fapi2":
            self._check_fapi2()

    def _check_fapi2(self) -> None:
        """Refuse any option that contradicts the FAPI 2.0 resource-server rules, naming both."""
        outside = [alg for alg in self.algorithms if alg not in FAPI2_ALGORITHMS]
        if outside:
            raise ValueError(
                f"algorithms {outside!r} contradict profile='fapi2', which allows only {list(FAPI2_ALGORITHMS)} "
                "(FAPI 2.0 Security Profile §5.4.1 item 1.2)"
            )
        if self.mode is not Mode.REQUIRED:
            raise ValueError(
                f"mode={self.mode.value!r} contradicts profile='fapi2', which accepts sender-constrained tokens "
                "only, always enforced: mode must be 'required' (FAPI 2.0 Security Profile §5.3.4 item 5)"
            )
        low, high = FAPI2_CLOCK_SKEW
        if not low <= self.clock_skew <= high:
            raise ValueError(
                f"clock_skew={self.clock_skew:g} contradicts profile='fapi2', which needs proofs up to {low:g} s in "
                f"the future accepted and none over {high:g} s: clock_skew must be in [{low:g}, {high:g}] "
                "(FAPI 2.0 Security Profile §5.3.2.1 item 13)"
            )

    @property
    def eddsa_curves(self) -> tuple[str, ...]:
        """The curves an ``EdDSA`` proof key may use: Ed25519 only under ``profile='fapi2'``."""
        return ("Ed25519",) if self.profile == "fapi2" else ("Ed25519", "Ed448")

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
