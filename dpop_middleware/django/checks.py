"""System checks for ``settings.DPOP`` (``manage.py check``; run at every ``runserver``/``migrate``).

======================== ===============================================================
``dpop_middleware.E001`` ``DPOP`` is invalid (unknown key, bad value, import failure)
``dpop_middleware.E002`` no token validator configured
``dpop_middleware.E003`` ``REPLAY_STORE: "django-cache"`` names a cache alias not in ``CACHES``
``dpop_middleware.E004`` the replay cache is a ``DummyCache``: no replay protection at all
``dpop_middleware.E005`` ``DPoPMiddleware`` is not in ``MIDDLEWARE`` (nor DRF's ``DPoPAuthentication``
                         in ``DEFAULT_AUTHENTICATION_CLASSES``): decorated views would refuse every
                         request with 503
``dpop_middleware.W001`` memory replay store with ``DEBUG = False`` (per process: it refuses to
                         serve under several workers unless ``ALLOW_PER_PROCESS_STORE``)
``dpop_middleware.W002`` replay cache is ``LocMemCache`` (per process: the same)
``dpop_middleware.W003`` replay cache is ``FileBasedCache`` (``add`` not atomic across processes)
``dpop_middleware.W004`` nonces on, but no shared ``NONCE_KEYRING``
``dpop_middleware.W005`` ``MODE = "report_only"`` with ``DEBUG = False``: nothing is enforced
``dpop_middleware.W006`` ``CsrfViewMiddleware`` comes before ``DPoPMiddleware``: DPoP requests to
                         undecorated views are CSRF-checked (403) although their proof verified
``dpop_middleware.W007`` ``EXEMPT_PATHS``/``OPTIONAL_PATHS``/``REQUIRED_PATHS`` hold regular
                         expressions (deprecated: they take path prefixes; regexes go to the
                         ``*_PATH_PATTERNS`` settings)
======================== ===============================================================

Production servers run several worker processes (gunicorn, uvicorn ``--workers``); a per-process
replay store would let a proof be replayed against another worker, so it refuses to serve there
(503 ``replay_store_per_process``), hence W001/W002. The checks never raise: any bad value is an
E-level message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from ..core.config import Mode
from ..core.nonce import NoncePolicy
from ..route_settings import legacy_regexes
from ..settings import SETTINGS
from .conf import MissingTokenValidator, build_state, raw_settings, spell
from .decorators import MIDDLEWARE_PATH, view_policy

_DRF_AUTHENTICATION = "dpop_middleware.django.drf.DPoPAuthentication"
_CSRF_MIDDLEWARE = "django.middleware.csrf.CsrfViewMiddleware"

__all__ = ["check_dpop_settings"]

_PER_PROCESS_HINT = (
    'Use REPLAY_STORE "django-cache" on a shared cache (Redis, memcached) or the Redis replay store; '
    "under several worker processes this store refuses every request (503) unless "
    "DPOP['ALLOW_PER_PROCESS_STORE'] = True."
)


def _cache_checks(cfg: Mapping[str, Any]) -> list[CheckMessage]:
    alias = cfg.get("REPLAY_CACHE_ALIAS", "default")
    caches: Any = getattr(settings, "CACHES", {})
    if not isinstance(caches, Mapping):
        return [Error("CACHES must be a dict.", id="dpop_middleware.E003")]
    if alias not in caches:
        return [
            Error(
                f"DPOP replay cache alias {alias!r} is not defined in CACHES.",
                hint="Set DPOP['REPLAY_CACHE_ALIAS'] to one of: " + ", ".join(sorted(caches)),
                id="dpop_middleware.E003",
            )
        ]
    entry = caches[alias]
    if not isinstance(entry, Mapping):
        return [Error(f"CACHES[{alias!r}] must be a dict with a BACKEND.", id="dpop_middleware.E003")]
    backend = str(entry.get("BACKEND", ""))
    if backend.endswith(".DummyCache"):
        return [
            Error(
                f"DPOP replay cache {alias!r} is a DummyCache: every proof would be accepted again.",
                hint="Use a real cache backend (Redis, memcached).",
                id="dpop_middleware.E004",
            )
        ]
    if backend.endswith(".LocMemCache"):
        return [
            Warning(
                f"DPOP replay cache {alias!r} is a LocMemCache, which is per process: under several "
                "worker processes the replay store refuses every request (503 replay_store_per_process).",
                hint=_PER_PROCESS_HINT,
                id="dpop_middleware.W002",
            )
        ]
    if backend.endswith(".FileBasedCache"):
        return [
            Warning(
                f"DPOP replay cache {alias!r} is a FileBasedCache, whose add() is not atomic across "
                "processes: two workers may both accept the same proof.",
                hint="Use the Redis or memcached cache backend.",
                id="dpop_middleware.W003",
            )
        ]
    return []


def _names(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [item for item in value if isinstance(item, str)]
    return []


def _plain_marked_views() -> list[str]:
    """Views in the URLconf marked required/optional that are not DRF views (those need the middleware)."""
    from django.urls import URLPattern, URLResolver, get_resolver

    found: list[str] = []

    def walk(patterns: Any, depth: int) -> None:
        for entry in patterns if depth < 20 else ():
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, depth + 1)
            elif isinstance(entry, URLPattern):
                callback = entry.callback
                cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
                if hasattr(cls, "perform_authentication"):
                    continue  # a DRF view: DPoPAuthentication checks it
                policy = view_policy(callback)
                if policy is not None and policy.mode != "exempt":
                    found.append(getattr(callback, "__qualname__", repr(callback)))

    try:
        walk(get_resolver().url_patterns, 0)
    except Exception:  # noqa: BLE001 - a broken URLconf is Django's own check's to report
        return []
    return found


def _wiring_checks() -> list[CheckMessage]:
    """The middleware (or DRF's authentication) must be installed; CSRF must come after it."""
    middleware = _names(getattr(settings, "MIDDLEWARE", None))
    rest = getattr(settings, "REST_FRAMEWORK", None)
    drf = _names(rest.get("DEFAULT_AUTHENTICATION_CLASSES")) if isinstance(rest, Mapping) else []
    messages: list[CheckMessage] = []
    if MIDDLEWARE_PATH not in middleware and "dpop_middleware.django.middleware.DPoPMiddleware" not in middleware:
        # DRF's DPoPAuthentication alone serves DRF views; plain Django views need the middleware.
        plain = _plain_marked_views() if _DRF_AUTHENTICATION in drf else ["every view"]
        if plain:
            messages.append(
                Error(
                    "DPoPMiddleware is not in MIDDLEWARE: nothing verifies DPoP requests, and views marked "
                    f"@dpop_required/@dpop_optional refuse every request with 503 ({', '.join(plain[:5])}).",
                    hint=f'Add "{MIDDLEWARE_PATH}" to MIDDLEWARE (before CsrfViewMiddleware).',
                    id="dpop_middleware.E005",
                )
            )
        return messages
    ours = next(i for i, path in enumerate(middleware) if path.endswith("DPoPMiddleware"))
    if _CSRF_MIDDLEWARE in middleware[:ours]:
        messages.append(
            Warning(
                "CsrfViewMiddleware comes before DPoPMiddleware in MIDDLEWARE: DPoP requests to views "
                "without @dpop_required/@dpop_optional are CSRF-checked before their proof is verified.",
                hint="Move DPoPMiddleware before CsrfViewMiddleware.",
                id="dpop_middleware.W006",
            )
        )
    return messages


def check_dpop_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Validate ``settings.DPOP`` and warn about setups that weaken replay or nonce protection.

    Never raises: a check that crashed would hide every other message behind a traceback.
    """
    try:
        return _wiring_checks() + _settings_checks()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return [Error(f"DPOP could not be checked: {type(exc).__name__}: {exc}", id="dpop_middleware.E001")]


def _settings_checks() -> list[CheckMessage]:
    try:
        cfg = raw_settings()
        state = build_state(cfg)
    except Exception as exc:  # noqa: BLE001 - any failure to build is a configuration error
        missing_validator = isinstance(exc, MissingTokenValidator)
        text = str(exc) if isinstance(exc, ImproperlyConfigured) else f"DPOP: {type(exc).__name__}: {exc}"
        return [
            Error(
                text,
                hint="See the settings table in docs/django.md.",
                id="dpop_middleware.E002" if missing_validator else "dpop_middleware.E001",
            )
        ]
    messages: list[CheckMessage] = []
    config = state.verifier.config
    allowed = state.per_process_allowed
    if state.replay_store_kind == "memory" and not settings.DEBUG and not allowed:
        messages.append(
            Warning(
                "DPOP uses the in-memory replay store with DEBUG = False: it is per process, so under "
                "several worker processes it refuses every request (503 replay_store_per_process).",
                hint=_PER_PROCESS_HINT,
                id="dpop_middleware.W001",
            )
        )
    if state.replay_store_kind == "django-cache":
        messages.extend(
            message for message in _cache_checks(cfg) if not (allowed and message.id == "dpop_middleware.W002")
        )
    if config.nonce_policy is not NoncePolicy.OFF and config.nonce_keyring.generated:
        messages.append(
            Warning(
                "DPOP nonces are on but no NONCE_KEYRING is configured: each process makes its own key "
                "and rejects the nonces of the others.",
                hint='Set DPOP["NONCE_KEYRING"] = {"k1": <secret of 16+ bytes>} on every instance.',
                id="dpop_middleware.W004",
            )
        )
    messages.extend(_legacy_path_checks(cfg))
    if config.mode is Mode.REPORT_ONLY and not settings.DEBUG:
        messages.append(
            Warning(
                'DPOP MODE is "report_only": failures are logged but every request is let through.',
                hint='Switch to "required" once the logs show no rejections.',
                id="dpop_middleware.W005",
            )
        )
    return messages


def _legacy_path_checks(cfg: Mapping[str, Any]) -> list[CheckMessage]:
    """W007: regexes in the ``*_PATHS`` settings, still read as regexes for one release."""
    names = ("required_paths", "optional_paths", "exempt_paths")
    values = {name: SETTINGS[name].coerce(cfg[name.upper()]) for name in names if cfg.get(name.upper()) is not None}
    messages: list[CheckMessage] = []
    for name, found in legacy_regexes(values).items():
        shown = ", ".join(repr(getattr(regex, "pattern", regex)) for regex in found[:3])
        messages.append(
            Warning(
                f"{spell(name)} holds regular expressions ({shown}): this setting now takes path prefixes "
                "matched by whole segments ('/health' covers '/health/db', not '/healthz'); regexes are still "
                "read as before for one release.",
                hint=f"Move them to {spell(name.replace('_paths', '_path_patterns'))}, where a regex must match "
                "the whole path (add '.*' to keep a prefix match), or write them as plain paths.",
                id="dpop_middleware.W007",
            )
        )
    return messages


# Registered imperatively: Django's ``register`` decorator is untyped.
register(check_dpop_settings, Tags.security)
