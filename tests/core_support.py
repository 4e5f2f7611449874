"""Shared helpers for the core tests: a ready verifier around a test issuer, on a settable clock."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from fakes import TestClock

from dpop_middleware import DPoPVerifier, MemoryReplayStore, RequestInfo
from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import TestIssuer

URL = "https://api.example.com/v1/items"

def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def ath(token: str) -> str:
    return b64(hashlib.sha256(token.encode()).digest())


@dataclass
class Env:
    clock: TestClock
    issuer: TestIssuer
    key: DPoPKey
    store: MemoryReplayStore
    options: dict[str, Any] = field(default_factory=dict)

    def verifier(self, **options: Any) -> DPoPVerifier:
        merged = {**self.options, **options}
        validator = merged.pop("token_validator", None) or self.issuer.validator()
        store = merged.pop("replay_store", self.store)
        return DPoPVerifier(validator, replay_store=store, clock=self.clock, **merged)

    def token(self, jkt: str | None = "default", **claims: Any) -> str:
        return self.issuer.token(self.key.jkt if jkt == "default" else jkt, **claims)

    def claims(self, token: str | None, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"jti": secrets.token_urlsafe(16), "htm": "GET", "htu": URL, "iat": int(self.clock.now)}
        if token is not None:
            body["ath"] = ath(token)
        body.update(overrides)
        return {k: v for k, v in body.items() if v is not _DROP}

    def header(self, key: DPoPKey | None = None, **overrides: Any) -> dict[str, Any]:
        k = key or self.key
        head: dict[str, Any] = {"typ": "dpop+jwt", "alg": k.alg, "jwk": dict(k.public_jwk)}
        head.update(overrides)
        return {name: v for name, v in head.items() if v is not _DROP}

    def proof(self, token: str | None, *, key: DPoPKey | None = None, header: dict[str, Any] | None = None, **claims: Any) -> str:
        k = key or self.key
        return k.sign(header if header is not None else self.header(k), self.claims(token, **claims))

    def request(self, token: str | None, proof: str | None, *, method: str = "GET", url: str = URL, scheme: str = "DPoP") -> RequestInfo:
        headers: list[tuple[str, str]] = []
        if token is not None:
            headers.append(("Authorization", f"{scheme} {token}"))
        if proof is not None:
            headers.append(("DPoP", proof))
        return RequestInfo(method, url, headers)


_DROP = object()
DROP: Any = _DROP


def make_env(**options: Any) -> Env:
    clock = TestClock()
    issuer = TestIssuer(clock=clock)
    return Env(clock, issuer, DPoPKey.generate("ES256"), MemoryReplayStore(clock=clock), options)


def raw_jws(header: Any, claims: Any, signature: bytes = b"\x00" * 64) -> str:
    """A compact JWS with arbitrary (possibly invalid) JSON text in its segments."""
    h = header if isinstance(header, str) else json.dumps(header)
    c = claims if isinstance(claims, str) else json.dumps(claims)
    return f"{b64(h)}.{b64(c)}.{b64(signature)}"
