"""Builds the verifier the test apps share, from environment variables set by the test.

``DPOP_TEST_JWKS`` (JSON), ``DPOP_TEST_ISSUER``, ``DPOP_TEST_AUDIENCE``: the test issuer;
``DPOP_TEST_STORE``: ``memory`` or a Redis URL; ``DPOP_TEST_STORE_TIMEOUT``: seconds for the Redis
connect and read timeouts.
"""

from __future__ import annotations

import json
import os
from typing import Any

from dpop_middleware import DPoPVerifier, MemoryReplayStore
from dpop_middleware.testing import TestIssuer

ENV_JWKS = "DPOP_TEST_JWKS"
ENV_ISSUER = "DPOP_TEST_ISSUER"
ENV_AUDIENCE = "DPOP_TEST_AUDIENCE"
ENV_STORE = "DPOP_TEST_STORE"
ENV_TIMEOUT = "DPOP_TEST_STORE_TIMEOUT"

def app_env(issuer: TestIssuer, store: str, timeout: float = 0.3) -> dict[str, str]:
    """The environment a test passes to a server process running one of these apps."""
    return {
        ENV_JWKS: json.dumps(issuer.jwks),
        ENV_ISSUER: issuer.issuer,
        ENV_AUDIENCE: issuer.audience,
        ENV_STORE: store,
        ENV_TIMEOUT: str(timeout),
    }


def _store(asynchronous: bool) -> Any:
    spec = os.environ.get(ENV_STORE, "memory")
    if spec == "memory":
        return MemoryReplayStore(setting="DPOP_TEST_STORE")
    if spec == "memory-per-process":  # the guard switched off: each worker remembers only its own proofs
        return MemoryReplayStore(allow_multiple_processes=True)
    timeout = float(os.environ.get(ENV_TIMEOUT, "0.3"))
    from dpop_middleware.stores.redis import AsyncRedisReplayStore, RedisReplayStore

    cls = AsyncRedisReplayStore if asynchronous else RedisReplayStore
    return cls(spec, connect_timeout=timeout, timeout=timeout)


def build_verifier(*, asynchronous: bool) -> DPoPVerifier:
    from dpop_middleware import JWTAccessTokenValidator

    validator = JWTAccessTokenValidator(
        issuer=os.environ[ENV_ISSUER], audience=os.environ[ENV_AUDIENCE], jwks=os.environ[ENV_JWKS]
    )
    return DPoPVerifier(validator, replay_store=_store(asynchronous))
