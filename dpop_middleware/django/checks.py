"""System checks for ``settings.DPOP`` (``manage.py check``; run at every ``runserver``/``migrate``).

======================== ===============================================================
``dpop_middleware.E001`` ``DPOP`` is invalid (unknown key, bad value, import failure)
``dpop_middleware.E002`` no token validator configured
``dpop_middleware.E003`` ``REPLAY_STORE: "django-cache"`` names a cache alias not in ``CACHES``
``dpop_middleware.E004`` the replay cache is a ``DummyCache``: no replay protection at all
``dpop_middleware.W001`` memory replay store with ``DEBUG = False`` (per process)
``dpop_middleware.W002`` replay cache is ``LocMemCache`` (per process)
``dpop_middleware.W003`` replay cache is ``FileBasedCache`` (``add`` not atomic across processes)
``dpop_middleware.W004`` nonces on, but no shared ``NONCE_KEYRING``
``dpop_middleware.W005`` ``MODE = "report_only"`` with ``DEBUG = False``: nothing is enforced
======================== ===============================================================

Production servers run several worker processes (gunicorn, uvicorn ``--workers``); a per-process
replay store lets a proof be replayed against another worker, hence W001/W002.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from ..core.config import Mode
from ..core.nonce import NoncePolicy
from .conf import MissingTokenValidator, build_state, raw_settings

__all__ = ["check_dpop_settings"]

_PER_PROCESS_HINT = (
    'Use REPLAY_STORE "django-cache" on a shared cache (Redis, memcached) or the Redis replay store, '
    "unless this server runs exactly one worker process."
)


def _cache_checks(cfg: Mapping[str, Any]) -> list[CheckMessage]:
    alias = cfg.get("REPLAY_CACHE_ALIAS", "default")
    caches: Mapping[str, Any] = getattr(settings, "CACHES", {})
    if alias not in caches:
        return [
            Error(
                f"DPOP replay cache alias {alias!r} is not defined in CACHES.",
                hint="Set DPOP['REPLAY_CACHE_ALIAS'] to one of: " + ", ".join(sorted(caches)),
                id="dpop_middleware.E003",
            )
        ]
    backend = str(caches[alias].get("BACKEND", ""))
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
                f"DPOP replay cache {alias!r} is a LocMemCache, which is per process: with several "
                "workers a DPoP proof can be replayed against another worker.",
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


def check_dpop_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Validate ``settings.DPOP`` and warn about setups that weaken replay or nonce protection."""
    try:
        cfg = raw_settings()
        state = build_state(cfg)
    except ImproperlyConfigured as exc:
        missing_validator = isinstance(exc, MissingTokenValidator)
        return [
            Error(
                str(exc),
                hint="See the settings reference in the docstring of dpop_middleware.django.",
                id="dpop_middleware.E002" if missing_validator else "dpop_middleware.E001",
            )
        ]
    messages: list[CheckMessage] = []
    config = state.verifier.config
    if state.replay_store_kind == "memory" and not settings.DEBUG:
        messages.append(
            Warning(
                "DPOP uses the in-memory replay store with DEBUG = False: it is per process, so with "
                "several workers a DPoP proof can be replayed against another worker.",
                hint=_PER_PROCESS_HINT,
                id="dpop_middleware.W001",
            )
        )
    if state.replay_store_kind == "django-cache":
        messages.extend(_cache_checks(cfg))
    if config.nonce_policy is not NoncePolicy.OFF and config.nonce_keyring.generated:
        messages.append(
            Warning(
                "DPOP nonces are on but no NONCE_KEYRING is configured: each process makes its own key "
                "and rejects the nonces of the others.",
                hint='Set DPOP["NONCE_KEYRING"] = {"k1": <secret of 16+ bytes>} on every instance.',
                id="dpop_middleware.W004",
            )
        )
    if config.mode is Mode.REPORT_ONLY and not settings.DEBUG:
        messages.append(
            Warning(
                'DPOP MODE is "report_only": failures are logged but every request is let through.',
                hint='Switch to "required" once the logs show no rejections.',
                id="dpop_middleware.W005",
            )
        )
    return messages


# Registered imperatively: Django's ``register`` decorator is untyped.
register(check_dpop_settings, Tags.security)
