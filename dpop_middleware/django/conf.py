"""The ``DPOP`` setting, read through one object so that ``override_settings`` works.

Everything derived from the setting (the verifier, the proxy settings, the compiled path rules) is
built once, on first use, and thrown away when Django's ``setting_changed`` signal says ``DPOP`` or
``CACHES`` changed. The verifier must be long-lived: it holds the memory replay store, the token
claims cache and the nonce keyring. The keys of ``DPOP`` are documented in :mod:`dpop_middleware.django`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from ..core.config import VerifierConfig
from ..core.htu import remove_dot_segments
from ..core.nonce import NonceKeyring
from ..core.origin import ProxySettings
from ..stores.memory import MemoryReplayStore
from ..tokens.jwt import JWTAccessTokenValidator
from ..verifier import DPoPVerifier, Outcome
from .cache_store import DjangoCacheReplayStore

__all__ = [
    "ADAPTER_KEYS",
    "POLICIES",
    "DPoPState",
    "MissingTokenValidator",
    "Policy",
    "build_state",
    "get_state",
    "get_verifier",
    "reset",
]

#: Keys of ``DPOP`` handled by the Django adapter itself (the others are VerifierConfig options).
ADAPTER_KEYS = frozenset(
    {
        "VERIFIER",
        "TOKEN_VALIDATOR",
        "ISSUER",
        "AUDIENCE",
        "JWKS",
        "REPLAY_STORE",
        "REPLAY_CACHE_ALIAS",
        "REPLAY_KEY_PREFIX",
        "ON_OUTCOME",
        "TRUSTED_PROXIES",
        "TRUSTED_HEADERS",
        "PUBLIC_URL",
        "DEFAULT",
        "REQUIRED_PATHS",
        "OPTIONAL_PATHS",
        "EXEMPT_PATHS",
        "DRF_USER",
    }
)
#: Upper-case spellings of every :class:`VerifierConfig` field.
VERIFIER_KEYS = frozenset(name.upper() for name in VerifierConfig.__dataclass_fields__)
#: Per-route policies, from strictest to laxest.
POLICIES = ("required", "optional", "exempt")
# Verifier options that only make sense when the adapter builds the verifier itself.
_BUILD_KEYS = (VERIFIER_KEYS | ADAPTER_KEYS) - {
    "VERIFIER", "TRUSTED_PROXIES", "TRUSTED_HEADERS", "PUBLIC_URL", "DEFAULT", "REQUIRED_PATHS", "OPTIONAL_PATHS",
    "EXEMPT_PATHS", "DRF_USER",
}  # fmt: skip


class MissingTokenValidator(ImproperlyConfigured):  # type: ignore[misc]
    """``DPOP`` names no way to validate access tokens."""


@dataclass(frozen=True, slots=True)
class Policy:
    """How one route is treated: ``required``, ``optional`` or ``exempt``, plus the scopes it needs."""

    mode: str
    scopes: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.mode == "required"


@dataclass(frozen=True)
class DPoPState:
    """Everything built from ``settings.DPOP``; rebuilt when the setting changes."""

    verifier: DPoPVerifier
    proxy: ProxySettings
    default: Policy
    path_rules: tuple[tuple[re.Pattern[str], Policy], ...]
    replay_store_kind: str  # "memory", "django-cache" or "custom" (for the system checks)
    drf_user: Callable[[Any], Any] | None

    def policy_for_path(self, path: str) -> Policy:
        """The policy the path rules give ``path`` (``request.path_info``), else the default.

        Django routes the literal path; a path with dot segments is also read normalized (as a
        proxy would), and the stricter of the two policies applies, as for
        :class:`dpop_middleware.core.paths.PathRules`: ``/public/../admin`` is exempt only if
        ``/admin`` is too.
        """
        policy = self._policy_for(path)
        if "/." in path:
            normal = self._policy_for(remove_dot_segments(path))
            if POLICIES.index(normal.mode) < POLICIES.index(policy.mode):
                policy = normal
        return policy

    def _policy_for(self, path: str) -> Policy:
        for pattern, policy in self.path_rules:
            if pattern.match(path):
                return policy
        return self.default


def raw_settings() -> Mapping[str, Any]:
    """The ``DPOP`` setting as a mapping (an empty one when unset)."""
    value = getattr(settings, "DPOP", None)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured("settings.DPOP must be a dict")
    return value


def _load(value: Any) -> Any:
    """A dotted path names an object to import; anything else is used as given."""
    if isinstance(value, str):
        try:
            return import_string(value)
        except ImportError as exc:
            raise ImproperlyConfigured(f"DPOP: cannot import {value!r}: {exc}") from exc
    return value


def _token_validator(cfg: Mapping[str, Any]) -> Any:
    if cfg.get("TOKEN_VALIDATOR") is not None:
        validator = _load(cfg["TOKEN_VALIDATOR"])
        # A dotted path to a class means "instantiate it with no arguments".
        return validator() if isinstance(validator, type) else validator
    missing = [k for k in ("ISSUER", "AUDIENCE", "JWKS") if not cfg.get(k)]
    if missing:
        raise MissingTokenValidator(
            "DPOP needs a token validator: set TOKEN_VALIDATOR, or ISSUER, AUDIENCE and JWKS "
            f"(missing: {', '.join(missing)})"
        )
    return JWTAccessTokenValidator(issuer=cfg["ISSUER"], audience=cfg["AUDIENCE"], jwks=cfg["JWKS"])


def _replay_store(cfg: Mapping[str, Any]) -> tuple[Any, str]:
    store = cfg.get("REPLAY_STORE", "memory")
    if store == "memory":
        return MemoryReplayStore(), "memory"
    if store == "django-cache":
        prefix = cfg.get("REPLAY_KEY_PREFIX", DjangoCacheReplayStore.default_prefix)
        return DjangoCacheReplayStore(cfg.get("REPLAY_CACHE_ALIAS", "default"), key_prefix=prefix), "django-cache"
    store = _load(store)
    return (store() if isinstance(store, type) else store), "custom"


def _verifier_config(cfg: Mapping[str, Any]) -> VerifierConfig:
    options = {key.lower(): value for key, value in cfg.items() if key in VERIFIER_KEYS}
    keyring = options.get("nonce_keyring")
    if isinstance(keyring, Mapping):
        options["nonce_keyring"] = NonceKeyring(keyring)
    try:
        return VerifierConfig.from_mapping(options)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"DPOP: {exc}") from exc


def _patterns(cfg: Mapping[str, Any], key: str) -> list[re.Pattern[str]]:
    value = cfg.get(key) or ()
    if isinstance(value, (str, re.Pattern)):
        value = (value,)
    try:
        return [p if isinstance(p, re.Pattern) else re.compile(p) for p in value]
    except re.error as exc:
        raise ImproperlyConfigured(f"DPOP[{key!r}]: invalid regular expression: {exc}") from exc


def _path_rules(cfg: Mapping[str, Any]) -> tuple[tuple[re.Pattern[str], Policy], ...]:
    # Strictest first: a path matched by both REQUIRED_PATHS and EXEMPT_PATHS stays protected.
    rules: list[tuple[re.Pattern[str], Policy]] = []
    for mode in POLICIES:
        rules.extend((pattern, Policy(mode)) for pattern in _patterns(cfg, f"{mode.upper()}_PATHS"))
    return tuple(rules)


def _build_verifier(cfg: Mapping[str, Any]) -> tuple[DPoPVerifier, str]:
    if cfg.get("VERIFIER") is not None:
        clashing = sorted(k for k in cfg if k in _BUILD_KEYS)
        if clashing:
            raise ImproperlyConfigured(f"DPOP: VERIFIER is given, so {clashing} would be ignored; remove them")
        verifier = _load(cfg["VERIFIER"])
        if not isinstance(verifier, DPoPVerifier):
            raise ImproperlyConfigured("DPOP['VERIFIER'] must be a DPoPVerifier (or a dotted path to one)")
        store = verifier.replay_store
        if isinstance(store, MemoryReplayStore):
            return verifier, "memory"
        return verifier, "django-cache" if isinstance(store, DjangoCacheReplayStore) else "custom"
    config = _verifier_config(cfg)
    validator = _token_validator(cfg)
    store, kind = _replay_store(cfg)
    on_outcome: Callable[[Outcome], None] | None = _load(cfg.get("ON_OUTCOME"))
    return DPoPVerifier(validator, replay_store=store, config=config, on_outcome=on_outcome), kind


def build_state(cfg: Mapping[str, Any]) -> DPoPState:
    """Validate ``cfg`` (the ``DPOP`` dict) and build everything from it; raise ImproperlyConfigured."""
    unknown = sorted(set(cfg) - ADAPTER_KEYS - VERIFIER_KEYS)
    if unknown:
        raise ImproperlyConfigured(f"DPOP: unknown keys {unknown}")
    default = cfg.get("DEFAULT", "required")
    if default not in POLICIES:
        raise ImproperlyConfigured(f"DPOP['DEFAULT'] must be one of {POLICIES}, not {default!r}")
    trusted: Iterable[str] | str | None = cfg.get("TRUSTED_PROXIES")
    headers: Iterable[str] | str | None = cfg.get("TRUSTED_HEADERS")
    try:
        proxy = ProxySettings.create(trusted, cfg.get("PUBLIC_URL"), headers)
    except ValueError as exc:
        raise ImproperlyConfigured(f"DPOP: TRUSTED_PROXIES/TRUSTED_HEADERS/PUBLIC_URL: {exc}") from exc
    verifier, kind = _build_verifier(cfg)
    return DPoPState(verifier, proxy, Policy(default), _path_rules(cfg), kind, _load(cfg.get("DRF_USER")))


_lock = threading.Lock()
_state: DPoPState | None = None


def get_state() -> DPoPState:
    """The state for the current settings, built on first use (thread-safe)."""
    global _state  # noqa: PLW0603 - one process-wide cache, reset by the setting_changed signal
    state = _state
    if state is None:
        with _lock:
            if _state is None:
                _state = build_state(raw_settings())
            state = _state
    return state


def get_verifier() -> DPoPVerifier:
    """The process-wide :class:`DPoPVerifier` built from ``settings.DPOP``."""
    return get_state().verifier


def reset() -> None:
    """Forget the built state; the next request rebuilds it from the current settings."""
    global _state  # noqa: PLW0603
    with _lock:
        _state = None


def _on_setting_changed(*, setting: str, **_kwargs: Any) -> None:
    if setting in ("DPOP", "CACHES"):
        reset()


setting_changed.connect(_on_setting_changed, dispatch_uid="dpop_middleware.django.conf")
