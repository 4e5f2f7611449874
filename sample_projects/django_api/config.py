"""The ``DPOP`` Django setting, built from :class:`~sample_projects.common.SampleSettings`.

Kept apart from ``settings.py`` so that tests (and you) can build it from any environment.
"""

from __future__ import annotations

from typing import Any

from ..common import SampleSettings, dpop_values, proxy_values, replay_store

__all__ = ["dpop_setting"]


def dpop_setting(settings: SampleSettings, *, validator: Any = None) -> dict[str, Any]:
    """``settings.DPOP`` for these settings; ``validator`` replaces the remote JWKS one (tests)."""
    # The library builds the validator (JWKS_URI or discovery) and the nonce keyring from these, as
    # from any project's DPOP setting.
    return {
        **{name.upper(): value for name, value in dpop_values(settings, validator=validator).items()},
        # Built here so that its messages name the environment variable, DPOP_REPLAY_STORE.
        "REPLAY_STORE": replay_store(settings),
        "PUBLIC_URL": settings.public_url,
        # Secure by default: every view needs DPoP unless marked @dpop_exempt (the health check).
        "DEFAULT": "required",
        **{name.upper(): value for name, value in proxy_values(settings).items()},
    }
