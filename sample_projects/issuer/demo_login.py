"""DEMO ONLY: a public browser client, signed in with the authorization code flow and PKCE.

Off unless ``ISSUER_DEMO_LOGIN=on`` (or ``create_app(demo_login=True)``). It adds to the issuer:

* ``GET /authorize``: RFC 6749 §4.1 with PKCE (RFC 7636, ``S256`` only), ``dpop_jkt`` (RFC 9449
  §10) and ``iss`` in the response (RFC 9207). **The "login" approves every request at once as the
  user ``demo-user``: no password, no consent screen.** That is what makes it demo only: anyone who
  can reach the issuer gets tokens for ``demo-user``. A real server authenticates the user here.
* ``POST /token`` with ``grant_type=authorization_code`` for the public client ``browser-demo``: no
  secret (a browser cannot keep one); PKCE proves the caller is the one that started the flow, and
  the DPoP proof, checked by the same :class:`~dpop_middleware.authorization_server.TokenEndpointVerifier`
  as the client credentials grant, binds the token to the browser's key, which must be the key
  ``dpop_jkt`` named at ``/authorize``.
* ``GET /browser/``: the browser sample's static files (``sample_projects/browser/static``) under a
  strict Content-Security-Policy, and ``/browser/config.json`` telling the page where things are.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from dpop_middleware import DPoPError
from dpop_middleware.asgi import request_info
from dpop_middleware.authorization_server import validate_dpop_jkt
from dpop_middleware.core.origin import ProxySettings

from ..browser import STATIC_DIR
from .oauth import NO_STORE, oauth_error, send_rejection

if TYPE_CHECKING:
    from .app import IssuerState

__all__ = ["BROWSER_CLIENT_ID", "DEMO_USER", "STATIC_DIR", "CodeStore", "DemoLogin", "Grant", "PublicClient"]

BROWSER_CLIENT_ID = "browser-demo"
DEMO_USER = "demo-user"

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of a SHA-256 digest, no padding
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1
# The token endpoint compares htu with its advertised URL, so no forwarded header matters.
_DIRECT = ProxySettings.create(None, None)


@dataclass(frozen=True)
class PublicClient:
    """A client without a secret (a single-page app): one exact redirect URI, its scopes."""

    client_id: str
    redirect_uri: str
    scopes: frozenset[str]
    default_scopes: frozenset[str]


@dataclass(frozen=True)
class Grant:
    """What an authorization code stands for until it is redeemed."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    scopes: frozenset[str]
    subject: str
    dpop_jkt: str | None
    expires_at: float


class CodeStore:
    """Pending authorization codes in memory: short-lived, single use, bounded in number."""

    def __init__(self, clock: Callable[[], float] = time.time, lifetime: float = 60.0, capacity: int = 1000) -> None:
        self._codes: dict[str, Grant] = {}
        self._clock = clock
        self.lifetime = lifetime
        self.capacity = capacity

    def issue(self, grant: Grant) -> str | None:
        """A new code for ``grant``, or ``None`` when too many are pending (the caller says so)."""
        now = self._clock()
        for code in [code for code, pending in self._codes.items() if pending.expires_at <= now]:
            del self._codes[code]
        if len(self._codes) >= self.capacity:
            return None
        code = secrets.token_urlsafe(32)
        self._codes[code] = grant
        return code

    def expiry(self) -> float:
        return self._clock() + self.lifetime

    def peek(self, code: str) -> Grant | None:
        """The grant behind ``code`` if it is pending and fresh; the code stays pending."""
        grant = self._codes.get(code)
        if grant is not None and grant.expires_at <= self._clock():
            self._codes.pop(code, None)
            return None
        return grant

    def take(self, code: str) -> Grant | None:
        """Redeem ``code``: only the first caller gets the grant."""
        grant = self._codes.pop(code, None)
        return grant if grant is not None and grant.expires_at > self._clock() else None

    def discard(self, code: str) -> None:
        self._codes.pop(code, None)


def _pkce_matches(verifier: str, challenge: str) -> bool:
    if _VERIFIER.fullmatch(verifier) is None:
        return False
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=")
    return hmac.compare_digest(computed, challenge.encode("ascii"))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class DemoLogin:
    """The demo-only public client flow and the browser sample's pages (see the module docstring)."""

    issuer: str
    client: PublicClient
    api_url: str
    codes: CodeStore = field(default_factory=CodeStore)
    subject: str = DEMO_USER

    @classmethod
    def for_issuer(cls, issuer: str, api_url: str, clock: Callable[[], float] = time.time) -> DemoLogin:
        """The ``browser-demo`` client, redirecting to the browser sample served by this issuer."""
        parts = urlsplit(api_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"BROWSER_API_URL must be an absolute http(s) URL, not {api_url!r}")
        client = PublicClient(
            BROWSER_CLIENT_ID,
            f"{issuer.rstrip('/')}/browser/",
            scopes=frozenset({"notes:read", "notes:write"}),
            default_scopes=frozenset({"notes:read"}),
        )
        return cls(issuer, client, api_url.rstrip("/"), CodeStore(clock))

    # -- metadata and configuration ----------------------------------------------------------------

    def extend_metadata(self, metadata: dict[str, Any]) -> None:
        """Add the authorization endpoint and the public client's grant to the RFC 8414 metadata."""
        metadata["authorization_endpoint"] = f"{self.issuer.rstrip('/')}/authorize"
        metadata["grant_types_supported"] = [*metadata["grant_types_supported"], "authorization_code"]
        metadata["response_types_supported"] = ["code"]
        metadata["code_challenge_methods_supported"] = ["S256"]
        metadata["token_endpoint_auth_methods_supported"] = [*metadata["token_endpoint_auth_methods_supported"], "none"]
        metadata["authorization_response_iss_parameter_supported"] = True

    def config(self) -> dict[str, str]:
        """What the page needs to know (``/browser/config.json``)."""
        base = self.issuer.rstrip("/")
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "client_id": self.client.client_id,
            "redirect_uri": self.client.redirect_uri,
            "scope": " ".join(sorted(self.client.scopes)),
            "api": self.api_url,
        }

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/authorize", self.authorize, methods=["GET"]),
            Route("/browser", self._to_browser, methods=["GET"]),
            Route("/browser/", self._page, methods=["GET"]),
            Route("/browser/config.json", self._config, methods=["GET"]),
            Route("/browser/{name}", self._page, methods=["GET"]),
        ]

    # -- the authorization endpoint ----------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        """Check the request, "log in" ``demo-user`` at once and send the code back to the client."""
        params = request.query_params
        if any(len(params.getlist(name)) > 1 for name in params):
            return _error_page("A parameter is repeated")
        if params.get("client_id") != self.client.client_id or params.get("redirect_uri") != self.client.redirect_uri:
            # RFC 6749 §4.1.2.1: never redirect to a URI that is not the client's registered one.
            return _error_page("Unknown client_id or unregistered redirect_uri")
        state = params.get("state")

        def back(**values: str) -> Response:
            answer = {**values, **({"state": state} if state is not None else {}), "iss": self.issuer}
            location = f"{self.client.redirect_uri}?{urlencode(answer)}"
            return RedirectResponse(location, 303, headers={**NO_STORE, "Referrer-Policy": "no-referrer"})

        if params.get("response_type") != "code":
            return back(error="unsupported_response_type")
        challenge = params.get("code_challenge", "")
        if params.get("code_challenge_method") != "S256" or _CHALLENGE.fullmatch(challenge) is None:
            return back(error="invalid_request", error_description="PKCE with S256 is required")
        raw_scope = params.get("scope", "").split()
        scopes = frozenset(raw_scope) if raw_scope else self.client.default_scopes
        if not scopes <= self.client.scopes:
            return back(error="invalid_scope")
        dpop_jkt = params.get("dpop_jkt")
        if dpop_jkt is not None:
            try:
                validate_dpop_jkt(dpop_jkt)
            except DPoPError:
                return back(error="invalid_request", error_description="Malformed dpop_jkt")
        grant = Grant(
            self.client.client_id,
            self.client.redirect_uri,
            challenge,
            scopes,
            self.subject,  # DEMO ONLY: every request is approved as this user
            dpop_jkt,
            self.codes.expiry(),
        )
        code = self.codes.issue(grant)
        if code is None:
            return back(error="temporarily_unavailable")
        return back(code=code)

    # -- the token endpoint's authorization_code grant ---------------------------------------------

    async def exchange(self, state: IssuerState, request: Request, form: dict[str, str]) -> Response:
        """Redeem a code: the client, the code, PKCE, then the DPoP proof (last), then the token."""
        client_id = form.get("client_id")
        if client_id != self.client.client_id:
            return oauth_error(401, "invalid_client", "Unknown public client")
        code = form.get("code", "")
        grant = self.codes.peek(code)
        if grant is None:
            return oauth_error(400, "invalid_grant", "Unknown, used or expired authorization code")
        if (
            grant.client_id != client_id
            or grant.redirect_uri != form.get("redirect_uri")
            or not _pkce_matches(form.get("code_verifier", ""), grant.code_challenge)
        ):
            self.codes.discard(code)  # a code presented wrongly may have leaked: spend it
            return oauth_error(400, "invalid_grant", "Authorization code does not match this request")
        # The proof comes last, and a refused proof leaves the code pending: the client answers a
        # use_dpop_nonce challenge by sending the same code again with a new proof (RFC 9449 §8).
        result = await state.token_endpoint.aauthenticate(request_info(request.scope, _DIRECT), dpop_jkt=grant.dpop_jkt)
        if result.rejection is not None:
            return send_rejection(result.rejection)
        if result.jkt is None:  # pragma: no cover - require_dpop=True never yields an unbound result
            return oauth_error(400, "invalid_dpop_proof", "DPoP proof missing")
        if self.codes.take(code) is None:  # redeemed by a concurrent request meanwhile
            return oauth_error(400, "invalid_grant", "Unknown, used or expired authorization code")
        body = {
            "access_token": state.issue(grant.subject, grant.client_id, grant.scopes, state.audience, result.jkt),
            "token_type": "DPoP",
            "expires_in": state.token_lifetime,
            "scope": " ".join(sorted(grant.scopes)),
        }
        return JSONResponse(body, headers={**NO_STORE, **dict(result.response_headers)})

    # -- the browser sample's files ----------------------------------------------------------------

    def _security_headers(self) -> dict[str, str]:
        # The page holds a signing key: keep every script but ours out (XSS could use the key while
        # the page is open, even if it can never export it), and talk only to us and the API.
        csp = (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self' {_origin(self.api_url)}; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'"
        )
        return {
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        }

    async def _to_browser(self, request: Request) -> Response:
        return RedirectResponse("/browser/", 308)

    async def _config(self, request: Request) -> Response:
        return JSONResponse(self.config(), headers=self._security_headers())

    async def _page(self, request: Request) -> Response:
        # Only files that are in the directory with a known type: the name cannot hold "/" (the
        # route's converter), and anything else is a 404.
        name = request.path_params.get("name", "index.html")
        path = STATIC_DIR / name
        media_type = _MEDIA_TYPES.get(path.suffix)
        if media_type is None or name.startswith(".") or not path.is_file():
            return PlainTextResponse("Not Found", 404)
        return FileResponse(path, media_type=media_type, headers=self._security_headers())


def _error_page(message: str) -> Response:
    return PlainTextResponse(f"Authorization request refused: {message}", 400, headers=NO_STORE)
