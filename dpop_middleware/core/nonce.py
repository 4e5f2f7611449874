"""Stateless server nonces (RFC 9449 §8, §9) authenticated with HMAC-SHA256.

A nonce is ``<kid>.<step>.<mac>``: the id of the keyring key that made it, a time step number and a
truncated HMAC over both. Any instance that holds the keyring can check any other instance's nonce
without shared storage. A nonce minted in step ``s`` is accepted during steps ``s - 1 .. s + 1`` (the
``s - 1`` side absorbs small clock differences between instances), so it lives between one and two
steps. Servers hand out the current step's nonce on every successful response whose proof carried an
older one, so a client that keeps the latest ``DPoP-Nonce`` never meets a ``use_dpop_nonce``
round trip after its first.

Rotate keys by adding a new key first in the keyring (it signs), keeping the old one (it still
verifies) until its nonces have expired, then dropping it. Across instances, without downtime: first
give every instance the new secret *second* (all verify it, none signs with it yet), then swap it to
the front everywhere, then drop the old one after a nonce lifetime. :meth:`NonceKeyring.from_secrets`
names each key after its secret, so every instance agrees on the ids whatever the order.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .jose import b64url_encode

__all__ = ["NonceCheck", "NonceKeyring", "NoncePolicy", "nonce_headers"]


def nonce_headers(nonce: str | None) -> tuple[tuple[str, str], ...]:
    """The ``DPoP-Nonce`` response header (RFC 9449 §8) for ``nonce``: one field, or none."""
    return (("DPoP-Nonce", nonce),) if nonce is not None else ()


_KID = re.compile(r"[A-Za-z0-9_-]{1,16}")
_MAC_BYTES = 16  # 128-bit tag: forging is out of reach, and the nonce stays short


class NoncePolicy(str, enum.Enum):
    """When the server demands a nonce in the proof."""

    OFF = "off"  #: never; nonce claims are ignored
    ALWAYS = "always"  #: every proof must carry a valid nonce
    UNSAFE_METHODS = "unsafe_methods"  #: only proofs for POST, PUT, PATCH, DELETE (and other non-safe methods)
    HEAL_IAT = "heal_iat"  #: only when ``iat`` is outside the window; the nonce's time then stands in for it


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


@dataclass(frozen=True, slots=True)
class NonceCheck:
    """Outcome of checking a presented nonce."""

    valid: bool
    reason: str  # "ok", "nonce_missing", "nonce_invalid", "nonce_stale"
    current: bool = False  # minted in the current step: no need to hand out a fresh one
    expires_at: float = 0.0  # when the nonce stops being accepted (for the replay-entry TTL)


class NonceKeyring:
    """HMAC keys for minting and checking nonces; the first key signs, all keys verify.

    ``keys`` maps a short key id to a secret of at least 16 bytes. Without keys a random secret is
    made, which is fine for one process but makes instances disagree: configure a shared keyring in
    any multi-instance deployment. ``lifetime`` (seconds) is the longest a nonce is accepted.
    """

    def __init__(self, keys: Mapping[str, bytes | str] | None = None, *, lifetime: float = 300.0) -> None:
        if not keys:
            keys = {"auto": secrets.token_bytes(32)}
        if lifetime < 2:
            raise ValueError("nonce lifetime must be at least 2 seconds")
        self._keys: dict[str, bytes] = {}
        for kid, secret in keys.items():
            # Only text or bytes: bytes(16) would be sixteen zero bytes, a key anyone can guess.
            if isinstance(secret, str):
                raw = secret.encode("utf-8")
            elif isinstance(secret, (bytes, bytearray)):
                raw = bytes(secret)
            else:
                raise ValueError("nonce keys must be str or bytes secrets")
            if not isinstance(kid, str) or _KID.fullmatch(kid) is None:
                raise ValueError("nonce key ids are 1-16 characters of [A-Za-z0-9_-]")
            if len(raw) < 16:
                raise ValueError("nonce keys must be at least 16 bytes")
            self._keys[kid] = raw
        self._signing_kid = next(iter(self._keys))
        self.step_seconds = lifetime / 2
        self.generated = keys.keys() == {"auto"}
        self._lock = threading.Lock()
        self._current: tuple[int, str] = (-1, "")

    @classmethod
    def from_secrets(cls, secrets_: Sequence[str | bytes], *, lifetime: float = 300.0) -> NonceKeyring:
        """A keyring of ``secrets_``, the first signing and all verifying.

        Each key id is derived from its secret (a hash, never the secret), so instances holding the
        same secrets in another order, or only some of them, still agree on which key made a nonce.
        """
        if isinstance(secrets_, (str, bytes)) or not secrets_:
            raise ValueError("give a non-empty list of secrets")
        keys: dict[str, bytes | str] = {}
        for secret in secrets_:
            if not isinstance(secret, (str, bytes)):
                raise ValueError("nonce keys must be str or bytes secrets")
            raw = secret.encode("utf-8") if isinstance(secret, str) else secret
            digest = hashlib.sha256(b"dpop-nonce-key-id|" + raw).digest()
            keys.setdefault("k" + b64url_encode(digest[:9]), secret)
        return cls(keys, lifetime=lifetime)

    def _mac(self, kid: str, step: int) -> str:
        digest = hmac.new(self._keys[kid], f"dpop-nonce|{kid}|{step}".encode(), hashlib.sha256).digest()
        return b64url_encode(digest[:_MAC_BYTES])

    def _step(self, now: float) -> int:
        return int(now // self.step_seconds)

    def issue(self, now: float) -> str:
        """The nonce of the current time step (minted once per step, then reused)."""
        step = self._step(now)
        cached_step, cached = self._current
        if cached_step == step:
            return cached
        nonce = f"{self._signing_kid}.{step}.{self._mac(self._signing_kid, step)}"
        with self._lock:
            self._current = (step, nonce)
        return nonce

    def check(self, nonce: object, now: float) -> NonceCheck:
        """Check a nonce claim value; constant-time on the MAC."""
        if nonce is None:
            return NonceCheck(False, "nonce_missing")
        if not isinstance(nonce, str) or len(nonce) > 64:
            return NonceCheck(False, "nonce_invalid")
        parts = nonce.split(".")
        if len(parts) != 3 or parts[0] not in self._keys or not parts[1].isdigit() or not parts[1].isascii():
            return NonceCheck(False, "nonce_invalid")
        kid, step_text, mac = parts
        step = int(step_text)
        # compare_digest refuses non-ASCII str with TypeError: compare bytes instead.
        if not hmac.compare_digest(mac.encode("utf-8", "replace"), self._mac(kid, step).encode("ascii")):
            return NonceCheck(False, "nonce_invalid")
        current = self._step(now)
        if not current - 1 <= step <= current + 1:
            return NonceCheck(False, "nonce_stale")
        return NonceCheck(True, "ok", current=step >= current, expires_at=(step + 2) * self.step_seconds)
