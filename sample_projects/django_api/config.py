"""The ``DPOP`` Django setting, built from :class:`~sample_projects.common.SampleSettings`.

Kept apart from ``settings.py`` so that tests (and you) can build it from any environment.
"""

from __future__ import annotations

from typing import Any

from ..common import SampleSettings, nonce_options, replay_store, token_validator

__all__ = ["dpop_setting"]


def dpop_setting(settings: SampleSettings, *, validator: Any = None) -> dict[str, Any]:
    """``settings.DPOP`` for these settings; ``validator`` replaces the remote JWKS one (tests)."""
    return {
        "TOKEN_VALIDATOR": validator if validator is not None else token_validator(settings),
        # A replay store object works as well as "memory" / "django-cache": Redis here when configured.
        "REPLAY_STORE": replay_store(settings),
        "PUBLIC_URL": settings.public_url,
        # Secure by default: every view needs DPoP unless marked @dpop_exempt (the health check).
        "DEFAULT": "required",
        **{name.upper(): value for name, value in nonce_options(settings).items()},
    }
