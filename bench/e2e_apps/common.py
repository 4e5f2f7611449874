"""Configuration shared by the benchmark apps, read from the environment set by ``bench/e2e.py``."""

from __future__ import annotations

import json
import os
from typing import Any

from dpop_middleware import DPoPVerifier, JWTAccessTokenValidator, MemoryReplayStore

# "none" (no DPoP layer at all), "floor" (raw signature check only), "hook" (a framework hook in the place of
# ours that does nothing: what the framework charges for any hook; bench/layers.py only) or "protected"
ENV_MODE = "BENCH_MODE"
ENV_STORE = "BENCH_STORE"  # "memory" or a redis:// URL
ENV_ISSUER = "BENCH_ISSUER"
ENV_AUDIENCE = "BENCH_AUDIENCE"
ENV_JWKS = "BENCH_JWKS"  # JSON

PATH = "/items"
#: The response body every app sends: small JSON, the same with and without DPoP.
BODY = {"items": [1, 2, 3]}


def mode() -> str:
    """``none``, ``floor`` (see ``floor.py``), ``hook`` (an empty hook) or ``protected`` (the DPoP layer)."""
    value = os.environ.get(ENV_MODE, "none")
    if value not in ("none", "floor", "hook", "protected"):
        raise ValueError(f"{ENV_MODE} must be 'none', 'floor', 'hook' or 'protected', not {value!r}")
    return value


def protected() -> bool:
    """Whether this server runs with the DPoP layer."""
    return mode() == "protected"


def floor() -> bool:
    """Whether this server runs the raw signature check only (the cryptographic floor)."""
    return mode() == "floor"


def hook() -> bool:
    """Whether this server runs an empty framework hook where the DPoP layer would be."""
    return mode() == "hook"


def issuer_settings() -> tuple[str, str, dict[str, Any]]:
    """Issuer, audience and JWKS of the benchmark's token issuer."""
    return os.environ[ENV_ISSUER], os.environ[ENV_AUDIENCE], json.loads(os.environ[ENV_JWKS])


def replay_store(*, asynchronous: bool) -> Any:
    """The replay store named by ``BENCH_STORE``; a Redis URL gets the sync or asyncio client."""
    spec = os.environ.get(ENV_STORE, "memory")
    if spec == "memory":
        return MemoryReplayStore()
    from dpop_middleware.stores.redis import AsyncRedisReplayStore, RedisReplayStore

    return AsyncRedisReplayStore(spec) if asynchronous else RedisReplayStore(spec)


def verifier(*, asynchronous: bool) -> DPoPVerifier:
    """A verifier as an application would build it: JWT access tokens against a static JWKS."""
    issuer, audience, jwks = issuer_settings()
    validator = JWTAccessTokenValidator(issuer=issuer, audience=audience, jwks=jwks)
    return DPoPVerifier(validator, replay_store=replay_store(asynchronous=asynchronous))
