"""A controllable fake authorization server on 127.0.0.1, for the remote validator tests.

It serves a JWKS, both discovery documents (RFC 8414 and OpenID) and an RFC 7662 introspection
endpoint from a ``ThreadingHTTPServer`` in a thread. Each test steers it through plain attributes
(keys, status codes, raw bodies, delays, which documents exist) and reads back how often each path
was requested. It can be stopped and started again on the same port to play an outage.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from servers import free_port

from dpop_middleware.client import DPoPKey

Introspect = Callable[[dict[str, str], dict[str, str]], "tuple[int, Any]"]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class AuthzState:
    """Everything a test may change while the server runs (read by the handler on every request)."""

    jwks_status: int = 200
    jwks_body: bytes | None = None  # raw override of the JWKS document
    jwks_headers: dict[str, str] = field(default_factory=lambda: {"Cache-Control": "max-age=300"})
    metadata_docs: set[str] = field(default_factory=lambda: {"oauth", "openid"})
    metadata_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # per doc kind
    delays: dict[str, float] = field(default_factory=dict)  # path -> seconds to stall
    # introspection: the token -> answer map, or a handler replacing the whole endpoint
    introspection: dict[str, Any] = field(default_factory=dict)
    introspection_status: int = 200
    introspection_body: bytes | None = None
    introspect_handler: Introspect | None = None
    clients: dict[str, str] = field(default_factory=lambda: {"rs": "s3cret&:"})
    client_keys: dict[str, DPoPKey] = field(default_factory=dict)  # private_key_jwt clients


class AuthzServer:
    """Start with ``with AuthzServer() as authz:``; ``authz.issuer``, ``authz.jwks_uri`` etc. are URLs."""

    def __init__(self, port: int | None = None, issuer_path: str = "") -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.issuer = self.base + issuer_path
        self.issuer_path = issuer_path
        self.state = AuthzState()
        self.keys: dict[str, DPoPKey] = {}
        self.retired: dict[str, DPoPKey] = {}
        self.counts: Counter[str] = Counter()
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.connections: set[socket.socket] = set()

    # -- URLs --------------------------------------------------------------------------------------

    @property
    def jwks_uri(self) -> str:
        return self.base + "/jwks"

    @property
    def introspection_endpoint(self) -> str:
        return self.base + "/introspect"

    @property
    def oauth_metadata_path(self) -> str:
        return "/.well-known/oauth-authorization-server" + self.issuer_path

    @property
    def openid_metadata_path(self) -> str:
        return self.issuer_path + "/.well-known/openid-configuration"

    # -- keys and tokens ---------------------------------------------------------------------------

    def add_key(self, alg: str = "ES256", kid: str | None = None) -> str:
        kid = kid or secrets.token_hex(4)
        self.keys[kid] = DPoPKey.generate(alg)
        return kid

    def remove_key(self, kid: str) -> None:
        """Unpublish ``kid``; it can still sign (an attacker's or a leaked old key)."""
        self.retired[kid] = self.keys.pop(kid)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [dict(k.public_jwk, kid=kid, use="sig", alg=k.alg) for kid, k in self.keys.items()]}

    def token(
        self,
        jkt: str | None = None,
        *,
        kid: str | None = None,
        key: DPoPKey | None = None,
        typ: str = "at+jwt",
        header: dict[str, Any] | None = None,
        lifetime: float = 300,
        now: float | None = None,
        drop: tuple[str, ...] = (),
        **claims: Any,
    ) -> str:
        """A JWT access token signed with key ``kid`` (default: the first key), bound to ``jkt``."""
        kid = kid if kid is not None else next(iter(self.keys))
        signer = key or self.keys.get(kid) or self.retired[kid]
        issued = int(time.time() if now is None else now)
        body: dict[str, Any] = {
            "iss": self.issuer,
            "aud": "https://api.test",
            "sub": "alice",
            "client_id": "app",
            "iat": issued,
            "exp": int(issued + lifetime),
            "jti": secrets.token_urlsafe(8),
            "scope": "read write",
        }
        if jkt is not None:
            body["cnf"] = {"jkt": jkt}
        body.update(claims)
        for name in drop:
            body.pop(name, None)
        head = {"alg": signer.alg, "typ": typ, "kid": kid}
        head.update(header or {})
        return signer.sign({k: v for k, v in head.items() if v is not None}, body)

    # -- bookkeeping -------------------------------------------------------------------------------

    def count(self, path: str) -> int:
        with self._lock:
            return self.counts[path]

    def record(self, entry: Recorded) -> None:
        with self._lock:
            self.counts[entry.path] += 1
            self.requests.append(entry)

    def stall(self, path: str) -> None:
        delay = self.state.delays.get(path, 0.0)
        if delay:
            self._release.wait(delay)  # cut short when the server stops

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> AuthzServer:
        self._release.clear()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        server.daemon_threads = True
        server.block_on_close = False  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        # Kept-alive connections would otherwise go on being served by their handler threads.
        with self._lock:
            live = list(self.connections)
        for conn in live:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> AuthzServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- endpoint behaviour ------------------------------------------------------------------------

    def metadata(self, kind: str) -> dict[str, Any]:
        doc = {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "introspection_endpoint": self.introspection_endpoint,
            "token_endpoint": self.base + "/token",
        }
        doc.update(self.state.metadata_overrides.get(kind, {}))
        return {k: v for k, v in doc.items() if v is not None}

    def client_authenticated(self, headers: dict[str, str], form: dict[str, str]) -> str | None:
        """The authenticated client id, by whichever method the request used; ``None`` if it fails."""
        auth = headers.get("authorization", "")
        if auth.startswith("Basic "):
            raw = base64.b64decode(auth[6:]).decode()
            client_id, _, secret = raw.partition(":")
            client_id, secret = unquote_plus(client_id), unquote_plus(secret)
            return client_id if self.state.clients.get(client_id) == secret else None
        if "client_secret" in form:
            client_id = form.get("client_id", "")
            return client_id if self.state.clients.get(client_id) == form["client_secret"] else None
        if "client_assertion" in form:
            return self._assertion_client(form)
        return None

    def _assertion_client(self, form: dict[str, str]) -> str | None:
        from dpop_middleware.core.access_token import JWTPolicy, KeySet, parse_access_token, verify_access_token

        client_id = form.get("client_id", "")
        key = self.state.client_keys.get(client_id)
        if key is None or form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return None
        policy = JWTPolicy(client_id, (self.introspection_endpoint,), require_typ=False)
        try:
            parsed = parse_access_token(form["client_assertion"], policy)
            verify_access_token(parsed, KeySet({"keys": [key.public_jwk]}).candidates(None, parsed.spec))
        except Exception:
            return None
        claims = parsed.jws.payload
        ok = claims.get("sub") == client_id and claims.get("iss") == client_id
        ok = ok and claims.get("aud") == self.introspection_endpoint and claims.get("exp", 0) > time.time()
        return client_id if ok else None

    def introspect(self, headers: dict[str, str], form: dict[str, str]) -> tuple[int, Any]:
        if self.state.introspect_handler is not None:
            return self.state.introspect_handler(headers, form)
        if self.client_authenticated(headers, form) is None:
            return 401, {"error": "invalid_client"}
        if self.state.introspection_body is not None:
            return self.state.introspection_status, self.state.introspection_body
        answer = self.state.introspection.get(form.get("token", ""), {"active": False})
        return self.state.introspection_status, answer


def _handler_for(authz: AuthzServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def setup(self) -> None:
            super().setup()
            with authz._lock:
                authz.connections.add(self.connection)

        def finish(self) -> None:
            with authz._lock:
                authz.connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            with contextlib.suppress(OSError):  # the client gave up (timeout tests)
                self.wfile.write(data)

        def _record(self, form: dict[str, str]) -> dict[str, str]:
            headers = {k.lower(): v for k, v in self.headers.items()}
            authz.record(Recorded(self.command, self.path, headers, form))
            authz.stall(self.path)
            return headers

        def do_GET(self) -> None:
            self._record({})
            state = authz.state
            if self.path == "/jwks":
                body = state.jwks_body if state.jwks_body is not None else authz.jwks()
                self._send(state.jwks_status, body, state.jwks_headers)
            elif self.path == authz.oauth_metadata_path and "oauth" in state.metadata_docs:
                self._send(200, authz.metadata("oauth"))
            elif self.path == authz.openid_metadata_path and "openid" in state.metadata_docs:
                self._send(200, authz.metadata("openid"))
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            form = dict(parse_qsl(raw, keep_blank_values=True))
            headers = self._record(form)
            if self.path != "/introspect":
                self._send(404, {"error": "not_found"})
                return
            if headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
                self._send(400, {"error": "invalid_request"})
                return
            status, body = authz.introspect(headers, form)
            self._send(status, body)

    return Handler
