"""A signer process: the DPoP private key in another process, reached over a Unix socket.

Run it as the agent's user (or a dedicated one) before the agent starts::

    python -m dpop_middleware.signer --socket /run/agent/dpop.sock --key-file /etc/agent/dpop.pem

and give the agent a :class:`SignerKey`, which holds only the public key::

    key = SignerKey("/run/agent/dpop.sock")
    httpx.Client(auth=DPoPAuth(key, token))

The socket is created with mode ``0600`` (only its owner may connect) and, where the platform
tells, each peer's uid is checked against the signer's own (``SO_PEERCRED``). The signer builds the
proof's claims itself from the ``htm``, ``htu``, ``ath`` and ``nonce`` it is given and chooses
``jti`` and ``iat``: a caller gets DPoP proofs for requests, never arbitrary JWTs, never the key.
The agent sends ``ath`` (the token's hash), never the token.

Protocol: one JSON object per line each way. ``{"op": "key"}`` answers ``{"ok": true, "alg": ...,
"jwk": {...}}``; ``{"op": "proof", "htm": "GET", "htu": "https://...", "ath": ..., "nonce": ...}``
answers ``{"ok": true, "proof": "..."}``; anything else answers ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import socketserver
import stat
import struct
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .client import (
    DPoPKey,
    JWSSigner,
    PublicJWKMixin,
    build_proof,
    origin_of,
    proof_claims,
    token_hash,
    valid_nonce,
)
from .core.jose import b64url_decode
from .core.keys import jwk_thumbprint

__all__ = ["SignerError", "SignerKey", "SignerUnavailableError", "serve"]

MAX_LINE = 8192  # a proof request is a few hundred bytes; anything longer is refused unread
_IDLE_TIMEOUT = 10.0  # a silent connection is dropped: it must not pin a thread
_MAX_CONNECTIONS = 32
_TOKEN_CHARS = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")  # an HTTP method (RFC 9110 token)
_ATH = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url SHA-256, no padding
# scheme://host[:port], then the path, query or fragment, or the end: no user info, no backslash,
# nothing a URL parser could read as another host than the one compared.
_ORIGIN = re.compile(r"(https?|wss?)://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[1-9][0-9]{0,4})?(?=[/?#]|$)")


class SignerError(Exception):
    """The signer refused a request (its ``error`` text) or answered something unusable."""


class SignerUnavailableError(SignerError):
    """The signer process cannot be reached: not running, wrong socket path, or no permission."""


# -- the server --------------------------------------------------------------------------------


def _origin(url: str) -> str | None:
    """The client's :func:`~dpop_middleware.client.origin_of` for a URL whose authority is plain
    ``host[:port]`` (``ws`` counted as ``http``, ``wss`` as ``https``); ``None`` for any other."""
    if _ORIGIN.match(url) is None:
        return None
    try:
        origin = origin_of(url)
    except ValueError:  # a port above 65535
        return None
    return "http" + origin[2:] if origin.startswith("ws") else origin


def _proof_request(signer: JWSSigner, request: Any, origins: frozenset[str] | None = None) -> dict[str, Any]:
    """Check one decoded request and answer it; raises ``ValueError`` with the reply's text.

    ``origins``: the only origins a proof's ``htu`` may name (``None``: any)."""
    if not isinstance(request, dict):
        raise ValueError("a request is a JSON object")
    op = request.get("op")
    if op == "key":
        return {"ok": True, "alg": signer.alg, "jwk": signer.public_jwk}
    if op != "proof":
        raise ValueError('op must be "key" or "proof"')
    htm, htu, ath, nonce = (request.get(name) for name in ("htm", "htu", "ath", "nonce"))
    if not isinstance(htm, str) or not _TOKEN_CHARS.fullmatch(htm):
        raise ValueError("htm must be an HTTP method")
    if (
        not isinstance(htu, str)
        or len(htu) > 4096
        or not htu.startswith(("https://", "http://", "wss://", "ws://"))
        or any(ord(c) < 0x21 or ord(c) > 0x7E for c in htu)
    ):
        raise ValueError("htu must be an absolute http(s) URL of printable ASCII, at most 4096 characters")
    if origins is not None and _origin(htu) not in origins:
        # A compromised agent gets proofs for the APIs it was meant to call, not for any other.
        raise ValueError("htu is not on an origin this signer signs for")
    if ath is not None and (not isinstance(ath, str) or not _ATH.fullmatch(ath)):
        raise ValueError("ath must be the base64url SHA-256 of the access token (43 characters)")
    if nonce is not None and valid_nonce(nonce) != nonce:
        raise ValueError("nonce must be a DPoP-Nonce value (RFC 9449 §8.1)")
    extra = set(request) - {"op", "htm", "htu", "ath", "nonce"}
    if extra:
        raise ValueError("unknown members: " + ", ".join(sorted(str(name)[:32] for name in extra)[:5]))
    claims = proof_claims(htm, htu, ath=ath, nonce=nonce)
    return {"ok": True, "proof": build_proof(signer, claims)}


def _peer_uid(connection: socket.socket) -> int | None:
    if not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class _Handler(socketserver.StreamRequestHandler):
    server: _SignerServer
    timeout = _IDLE_TIMEOUT

    def handle(self) -> None:
        if not self.server.slots.acquire(blocking=False):
            self._reply({"ok": False, "error": "busy"})
            return
        try:
            uid = _peer_uid(self.connection)
            if uid is not None and uid not in self.server.allowed_uids:
                self._reply({"ok": False, "error": "peer not allowed"})
                return
            self._serve_lines()
        except (OSError, TimeoutError):
            return  # the peer went away or stayed silent: nothing to answer
        finally:
            self.server.slots.release()

    def _serve_lines(self) -> None:
        while True:
            line = self.rfile.readline(MAX_LINE + 1)
            if not line:
                return
            if len(line) > MAX_LINE or not line.endswith(b"\n"):
                # Too long (or cut off): answer once and hang up instead of reading the rest.
                self._reply({"ok": False, "error": f"request longer than {MAX_LINE} bytes"})
                return
            try:
                reply = _proof_request(self.server.signer, json.loads(line), self.server.allowed_origins)
            except RecursionError:
                reply = {"ok": False, "error": "too deep"}
            except (json.JSONDecodeError, UnicodeDecodeError):
                reply = {"ok": False, "error": "not JSON"}
            except ValueError as exc:  # our own checks' messages (and Python's int-size limit)
                reply = {"ok": False, "error": str(exc)[:200]}
            except Exception as exc:  # a signing failure: say so, keep serving  # noqa: BLE001
                reply = {"ok": False, "error": f"signing failed: {type(exc).__name__}"}
            self._reply(reply)

    def _reply(self, reply: dict[str, Any]) -> None:
        self.wfile.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")
        self.wfile.flush()


class _SignerServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(
        self, path: str, signer: JWSSigner, allowed_uids: set[int], allowed_origins: frozenset[str] | None
    ) -> None:
        self.signer = signer
        self.allowed_uids = allowed_uids
        self.allowed_origins = allowed_origins
        self.slots = threading.BoundedSemaphore(_MAX_CONNECTIONS)
        # umask, not chmod after bind: there is no moment at which the socket is open to others.
        previous = os.umask(0o177)
        try:
            super().__init__(path, _Handler)
        finally:
            os.umask(previous)


def serve(
    path: str,
    signer: JWSSigner,
    *,
    allowed_uids: set[int] | None = None,
    allowed_origins: Iterable[str] | None = None,
) -> _SignerServer:
    """Bind the signer's socket at ``path`` (mode 0600) and return the server; call ``serve_forever``.

    ``path`` must not exist (a leftover socket is removed; any other file is an error). Peers are
    checked against ``allowed_uids`` (default: this process's uid) where ``SO_PEERCRED`` exists.
    ``allowed_origins`` (``scheme://host[:port]``): the only origins proofs are signed for
    (default: any); ``ValueError`` names one that is not an origin.
    """
    if isinstance(allowed_origins, str):  # one origin, not its characters
        allowed_origins = [allowed_origins]
    origins = None if allowed_origins is None else frozenset(_allowed_origin(o) for o in allowed_origins)
    target = Path(path)
    if target.exists() or target.is_symlink():
        if not stat.S_ISSOCK(target.lstat().st_mode):
            raise ValueError(f"{path} exists and is not a socket; refusing to replace it")
        target.unlink()
    uids = allowed_uids if allowed_uids is not None else {os.getuid()}
    return _SignerServer(path, signer, uids, origins)


def _allowed_origin(text: str) -> str:
    origin = _origin(text) if isinstance(text, str) else None
    if origin is None or _ORIGIN.fullmatch(text.rstrip("/")) is None:
        raise ValueError(f"allowed origin {text!r}: expected scheme://host[:port] (http, https, ws or wss), no path")
    return origin


def _load_key(args: argparse.Namespace) -> JWSSigner:
    if args.key_file:
        return DPoPKey.from_pem(Path(args.key_file).read_bytes(), alg=args.alg)
    if args.pkcs11_module:
        from .pkcs11_key import PKCS11Key

        pin = os.environ.get(args.pin_env)
        if pin is None:
            raise SystemExit(f"dpop signer: the PKCS#11 PIN is read from ${args.pin_env}, which is not set")
        return PKCS11Key.open(args.pkcs11_module, token_label=args.token_label, pin=pin, label=args.key_label)
    return DPoPKey.generate(args.alg or "ES256")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dpop_middleware.signer``: serve proofs on a Unix socket until stopped."""
    parser = argparse.ArgumentParser(prog="dpop-signer", description="Sign DPoP proofs for a local agent.")
    parser.add_argument("--socket", required=True, help="path of the Unix socket to create (mode 0600)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--key-file", help="PEM private key (default: a new key for this run only)")
    source.add_argument("--pkcs11-module", help="PKCS#11 module: sign with a key inside a token")
    parser.add_argument("--alg", help="algorithm for --key-file or a new key (default: from the key / ES256)")
    parser.add_argument("--token-label", default="dpop", help="PKCS#11 token label")
    parser.add_argument("--key-label", default="dpop", help="PKCS#11 key label")
    parser.add_argument("--pin-env", default="DPOP_PKCS11_PIN", help="environment variable holding the PIN")
    parser.add_argument("--allow-uid", type=int, action="append", help="uid allowed to connect (repeatable)")
    parser.add_argument(
        "--allowed-origin",
        action="append",
        metavar="ORIGIN",
        help="scheme://host[:port] proofs may be signed for (repeatable; default: any)",
    )
    args = parser.parse_args(argv)
    try:  # before the key is loaded (a token login): a typo fails at once
        for origin in args.allowed_origin or ():
            _allowed_origin(origin)
    except ValueError as exc:
        parser.exit(2, f"dpop signer: --allowed-origin: {exc}\n")
    try:
        signer = _load_key(args)
    except Exception as exc:  # noqa: BLE001 - a file, a PEM or a token error: say which, no traceback
        parser.exit(2, f"dpop signer: cannot load the key: {type(exc).__name__}: {exc}\n")
    try:
        server = serve(
            args.socket,
            signer,
            allowed_uids=set(args.allow_uid) if args.allow_uid else None,
            allowed_origins=args.allowed_origin,
        )
    except (OSError, ValueError) as exc:  # a path too long for a socket, no such directory, not a socket
        parser.exit(2, f"dpop signer: cannot listen on {args.socket}: {exc}\n")
    if args.allowed_origin is None:
        print("dpop signer: no --allowed-origin: proofs are signed for any URL the agent asks for", file=sys.stderr)
    # The one line a supervisor (or a test) waits for: the socket is ready and which key it serves.
    print(json.dumps({"ready": args.socket, "jkt": signer.jkt}), flush=True)
    signal.signal(signal.SIGTERM, _interrupt)  # a supervisor's stop removes the socket too
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        with contextlib.suppress(OSError):
            os.unlink(args.socket)
    return 0


# -- the client --------------------------------------------------------------------------------


class SignerKey(PublicJWKMixin):
    """A DPoP key whose private half lives in a signer process: satisfies ``ProofKey``.

    Construction asks the signer for its public key (so a missing signer fails at start-up with
    :class:`SignerUnavailableError`); every proof is checked to carry that key and the claims asked
    for before it is used.
    """

    __slots__ = ("alg", "jkt", "path", "public_jwk", "timeout")

    def __init__(self, path: str, *, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        reply = self._call({"op": "key"})
        alg, jwk = reply.get("alg"), reply.get("jwk")
        if not isinstance(alg, str) or not isinstance(jwk, dict) or not all(isinstance(v, str) for v in jwk.values()):
            raise SignerError("the signer's key reply is malformed")
        self.alg = alg
        self.public_jwk: dict[str, str] = jwk
        self.jkt = jwk_thumbprint(jwk)

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(self.timeout)
                conn.connect(self.path)
                # A signer that refuses at once ("busy", "peer not allowed") answers and hangs up,
                # possibly before the request is written: read its answer all the same.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    conn.sendall(json.dumps(request, separators=(",", ":")).encode() + b"\n")
                with conn.makefile("rb") as stream:
                    line = stream.readline(1 << 16)
        except OSError as exc:  # FileNotFoundError, ConnectionRefusedError, PermissionError, timeouts
            raise SignerUnavailableError(
                f"the DPoP signer at {self.path} is not reachable ({type(exc).__name__}); is it running?"
            ) from None
        if not line:
            raise SignerUnavailableError(f"the DPoP signer at {self.path} closed the connection without answering")
        try:
            reply = json.loads(line)
        except ValueError:
            raise SignerError("the DPoP signer answered something that is not JSON") from None
        if not isinstance(reply, dict):
            raise SignerError("the DPoP signer answered something that is not a JSON object")
        if reply.get("ok") is not True:
            raise SignerError(f"the DPoP signer refused: {str(reply.get('error'))[:200]}")
        return reply

    def proof(self, method: str, url: str, *, access_token: str | None = None, nonce: str | None = None) -> str:
        """A fresh proof signed by the signer; only the token's hash leaves this process."""
        htu = url.split("#", 1)[0].split("?", 1)[0]
        ath = token_hash(access_token) if access_token is not None else None
        proof = self._call({"op": "proof", "htm": method, "htu": htu, "ath": ath, "nonce": nonce}).get("proof")
        if not isinstance(proof, str) or not self._fits(proof, method, htu, ath, nonce):
            raise SignerError("the DPoP signer returned a proof for another key or request")
        return proof

    def _fits(self, proof: str, htm: str, htu: str, ath: str | None, nonce: str | None) -> bool:
        """Fail closed if the proof names another key or other claims than asked for."""
        parts = proof.split(".")
        if len(parts) != 3:
            return False
        try:
            header, claims = (json.loads(b64url_decode(part)) for part in parts[:2])
        except ValueError:
            return False
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return False
        return (
            header.get("jwk") == self.public_jwk
            and header.get("alg") == self.alg
            and (claims.get("htm"), claims.get("htu"), claims.get("ath"), claims.get("nonce")) == (htm, htu, ath, nonce)
        )

    def __repr__(self) -> str:
        return f"SignerKey(path={self.path!r}, alg={self.alg!r}, jkt={self.jkt!r})"


if __name__ == "__main__":
    sys.exit(main())
