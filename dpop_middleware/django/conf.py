"""The ``DPOP`` setting, read through one object so that ``override_settings`` works.

Everything derived from the setting (the verifier, the proxy settings, the compiled path rules) is
built once, on first use, and thrown away when Django's ``setting_changed`` signal says ``DPOP`` or
``CACHES`` changed. The verifier must be long-lived: it holds the memory replay store, the token
claims cache and the nonce keyring. The keys of ``DPOP`` are documented in :mod:`dpop_middleware.django`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from ..core.client_cert import client_cert_settings_problem
from ..core.origin import ProxySettings
from ..core.resource_metadata import PublishedMetadata
from ..core.routes import MODES, Route, RoutePolicy
from ..route_settings import build_route_policy
from ..settings import (
    ADAPTER_NAMES,
    BUILDER_NAMES,
    CONFIG_NAMES,
    MissingValidatorError,
    SettingsError,
    build_verifier,
    read_settings,
)
from ..stores.memory import MemoryReplayStore
from ..verifier import DPoPVerifier
from .cache_store import DjangoCacheReplayStore

__all__ = [
    "ACCEPTED",
    "POLICIES",
    "DPoPState",
    "MissingTokenValidator",
    "Policy",
    "build_state",
    "get_state",
    "get_verifier",
    "reset",
    "spell",
]

#: Canonical names of the keys of ``DPOP`` this adapter accepts (upper-cased in ``settings.DPOP``).
#: ``ALLOWED_HOSTS`` is not one: Django's own ``ALLOWED_HOSTS`` is checked by ``request.get_host()``.
ACCEPTED = (CONFIG_NAMES | BUILDER_NAMES | ADAPTER_NAMES | {
    "replay_cache_alias", "replay_key_prefix", "drf_user",
}) - {"allowed_hosts"}  # fmt: skip
#: Per-route modes, from strictest to laxest.
POLICIES = MODES
#: How one route is treated (the name this adapter used for :class:`~dpop_middleware.core.routes.Route`).
Policy = Route


def spell(name: str) -> str:
    """A canonical setting name as the user writes it: ``DPOP['MAX_AGE']``."""
    return f"DPOP['{name.upper()}']"


class MissingTokenValidator(ImproperlyConfigured):  # type: ignore[misc]
    """``DPOP`` names no way to validate access tokens."""


@dataclass(frozen=True)
class DPoPState:
    """Everything built from ``settings.DPOP``; rebuilt when the setting changes."""

    verifier: DPoPVerifier
    proxy: ProxySettings
    routes: RoutePolicy  # DEFAULT, *_PATHS, *_PATH_PATTERNS, PATH_SCOPES
    replay_store_kind: str  # "memory", "django-cache" or "custom" (for the system checks)
    drf_user: Callable[[Any], Any] | None
    per_process_allowed: bool = False  # DPOP['ALLOW_PER_PROCESS_STORE']
    metadata: PublishedMetadata | None = None  # DPOP['RESOURCE_METADATA']: the RFC 9728 document

    def policy_for_path(self, path: str) -> Route:
        """The route policy's decision for ``path`` (``request.path_info``): see :class:`RoutePolicy`."""
        return self.routes.decide(path)


def raw_settings() -> Mapping[str, Any]:
    """The ``DPOP`` setting as a mapping (an empty one when unset)."""
    value = getattr(settings, "DPOP", None)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(f"settings.DPOP must be a dict, not {type(value).__name__}")
    return value


def _load(value: str) -> Any:
    return import_string(value)


def _canonical(cfg: Mapping[str, Any]) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for key, value in cfg.items():
        if not isinstance(key, str) or key != key.upper():
            raise ImproperlyConfigured(f"DPOP[{key!r}] is not a setting: the keys of DPOP are upper-case strings")
        if key == "ALLOWED_HOSTS":
            raise ImproperlyConfigured(
                "DPOP['ALLOWED_HOSTS'] is not a setting: Django checks the Host header against the "
                "project's own ALLOWED_HOSTS, which the DPoP adapter uses"
            )
        raw[key.lower()] = value
    return raw


def _store_kind(verifier: DPoPVerifier) -> str:
    store = verifier.replay_store
    if isinstance(store, MemoryReplayStore):
        return "memory"
    return "django-cache" if isinstance(store, DjangoCacheReplayStore) else "custom"


def _build_verifier(values: dict[str, Any]) -> DPoPVerifier:
    if "verifier" not in values and "debug" not in values:
        # Django's DEBUG makes rejections say what was expected and received (never in production).
        values["debug"] = bool(getattr(settings, "DEBUG", False))

    def django_cache() -> DjangoCacheReplayStore:
        return DjangoCacheReplayStore(
            values.get("replay_cache_alias", "default"),
            key_prefix=values.get("replay_key_prefix", DjangoCacheReplayStore.default_prefix),
            allow_multiple_processes=bool(values.get("allow_per_process_store", False)),
            setting=spell("replay_store"),
        )

    return build_verifier(
        values,
        spell=spell,
        load=_load,
        stores={"django-cache": django_cache},
        store_names=("replay_cache_alias", "replay_key_prefix"),
    )


def build_state(cfg: Mapping[str, Any]) -> DPoPState:
    """Validate ``cfg`` (the ``DPOP`` dict) and build everything from it; raise ImproperlyConfigured.

    Every key is type-checked by :func:`dpop_middleware.settings.read_settings`; the message names
    the key (``DPOP['MAX_AGE']``), the expected type and, for choices, the valid values.
    """
    try:
        values = read_settings(_canonical(cfg), spell=spell, accepted=ACCEPTED)
        proxy = ProxySettings.create(
            values.get("trusted_proxies"), values.get("public_url"), values.get("trusted_headers"),
            client_cert_header=values.get("client_cert_header"), client_cert_format=values.get("client_cert_format"),
        )  # fmt: skip
        verifier = _build_verifier(values)
        routes = build_route_policy(values, spell=spell, legacy=True)
        drf_user = _load(values["drf_user"]) if isinstance(values.get("drf_user"), str) else values.get("drf_user")
    except MissingValidatorError as exc:
        raise MissingTokenValidator(str(exc)) from exc
    except SettingsError as exc:
        raise ImproperlyConfigured(str(exc)) from exc
    except ImportError as exc:
        raise ImproperlyConfigured(f"{spell('drf_user')}: cannot import {values.get('drf_user')!r}: {exc}") from exc
    except ValueError as exc:  # ProxySettings: combinations the table cannot see
        raise ImproperlyConfigured(f"DPOP: {exc}") from exc
    problem = client_cert_settings_problem(verifier.config.certificate_bound_tokens, proxy.client_cert_header)
    if problem is not None:
        raise ImproperlyConfigured(f"{spell('client_cert_header')}: {problem}")
    if drf_user is not None and not callable(drf_user):
        raise ImproperlyConfigured(f"{spell('drf_user')} must be callable, not {type(drf_user).__name__}")
    allowed = bool(values.get("allow_per_process_store", False))
    metadata = verifier.published_metadata(routes.path_scopes)
    return DPoPState(verifier, proxy, routes, _store_kind(verifier), drf_user, allowed, metadata)


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
    if setting in ("DPOP", "CACHES", "DEBUG"):
        reset()


setting_changed.connect(_on_setting_changed, dispatch_uid="dpop_middleware.django.conf")
