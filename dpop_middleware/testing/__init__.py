"""Test helpers for users of dpop-middleware (and for our own tests).

:class:`TestIssuer` plays the authorization server: it holds a signing key, publishes a JWKS and
mints RFC 9068 access tokens bound to a client key (point your app at it with
:meth:`TestIssuer.flask_config`, :meth:`TestIssuer.django_settings` or :meth:`TestIssuer.validator`).
:func:`dpop_headers` builds the two request headers for a protected call, and
:class:`DPoPTestClient` wraps a framework's test client (Django, Flask/werkzeug, Starlette/httpx)
so that every request is signed, nonce challenges included. The pytest plugin
(``dpop_middleware.testing.plugin``) wraps these in fixtures.
"""

from __future__ import annotations

import functools
import importlib
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from ..client import DPoPKey, NonceCache, nonce_to_retry
from ..tokens.jwt import JWTAccessTokenValidator

__all__ = ["DPoPTestClient", "TestIssuer", "dpop_headers"]


class TestIssuer:
    """An in-process authorization server for tests: JWKS plus bound JWT access tokens."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        issuer: str = "https://issuer.test",
        audience: str = "https://api.test",
        *,
        alg: str = "ES256",
        clock: Callable[[], float] = time.time,
        signing_key: DPoPKey | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.clock = clock
        # A given key lets several processes (a test and the server it starts) share one issuer.
        self.signing_key = signing_key if signing_key is not None else DPoPKey.generate(alg)
        self.kid = self.signing_key.jkt[:12]

    @property
    def jwks(self) -> dict[str, Any]:
        jwk = dict(self.signing_key.public_jwk, kid=self.kid, use="sig", alg=self.signing_key.alg)
        return {"keys": [jwk]}

    def token(
        self,
        jkt: str | None,
        *,
        scope: str | Iterable[str] = "read",
        subject: str = "alice",
        client_id: str = "test-client",
        lifetime: float = 300,
        typ: str = "at+jwt",
        **claims: Any,
    ) -> str:
        """A signed access token bound to ``jkt`` (``None``: an unbound Bearer token)."""
        now = int(self.clock())
        body: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "client_id": client_id,
            "iat": now,
            "exp": int(now + lifetime),
            "jti": secrets.token_urlsafe(12),
            "scope": scope if isinstance(scope, str) else " ".join(scope),
        }
        if jkt is not None:
            body["cnf"] = {"jkt": jkt}
        body.update(claims)
        header = {"alg": self.signing_key.alg, "typ": typ, "kid": self.kid}
        return self.signing_key.sign(header, body)

    def validator(self, **options: Any) -> JWTAccessTokenValidator:
        """A validator that trusts this issuer's JWKS."""
        options.setdefault("clock", self.clock)
        return JWTAccessTokenValidator(issuer=self.issuer, audience=self.audience, jwks=self.jwks, **options)

    def flask_config(self, **extra: Any) -> dict[str, Any]:
        """``app.config`` keys that make :class:`dpop_middleware.flask.DPoP` trust this issuer."""
        return {"DPOP_ISSUER": self.issuer, "DPOP_AUDIENCE": self.audience, "DPOP_JWKS": self.jwks, **extra}

    def django_settings(self, **extra: Any) -> dict[str, Any]:
        """A ``settings.DPOP`` dict (use with ``override_settings(DPOP=...)``) trusting this issuer."""
        return {"ISSUER": self.issuer, "AUDIENCE": self.audience, "JWKS": self.jwks, **extra}


def dpop_headers(
    key: DPoPKey, method: str, url: str, token: str, *, nonce: str | None = None, **proof_options: Any
) -> dict[str, str]:
    """``Authorization`` and ``DPoP`` headers for one request to ``method url``."""
    proof = key.proof(method, url, access_token=token, nonce=nonce, **proof_options)
    return {"Authorization": f"DPoP {token}", "DPoP": proof}


_METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


def _client_kind(client: Any) -> str:
    """``httpx`` or ``httpx2`` (Starlette's TestClient: built on httpx2 when it is installed, e.g. by
    the ``mcp`` SDK), ``django`` (django.test.Client, DRF's APIClient) or ``werkzeug`` (Flask)."""
    for library in ("httpx", "httpx2"):
        try:
            module = importlib.import_module(library)
        except ImportError:  # both are optional
            continue
        if isinstance(client, module.Client):
            return library
    if hasattr(client, "generic") and type(client).__module__.startswith(("django", "rest_framework")):
        return "django"
    if hasattr(client, "open") and hasattr(client, "application"):
        return "werkzeug"
    if hasattr(client, "generic"):  # a project's own subclass of django.test.Client
        return "django"
    raise TypeError(f"unsupported test client {type(client).__name__}: use Django's, Flask's or Starlette's")


def _default_base_url(client: Any, kind: str) -> str:
    if kind == "django":
        return "http://testserver"  # Django's RequestFactory default SERVER_NAME
    app = getattr(client, "application", None)
    config: Mapping[str, Any] = getattr(app, "config", None) or {}
    server_name = config.get("SERVER_NAME")
    scheme = config.get("PREFERRED_URL_SCHEME", "http")
    return f"{scheme}://{server_name}" if server_name else "http://localhost"


def _response_facts(response: Any) -> tuple[int, list[str], str | None]:
    """Status, ``WWW-Authenticate`` values and ``DPoP-Nonce`` of a Django or werkzeug response."""
    headers = response.headers
    getlist = getattr(headers, "getlist", None)
    challenges = list(getlist("WWW-Authenticate")) if getlist else [v for v in [headers.get("WWW-Authenticate")] if v]
    return int(response.status_code), challenges, headers.get("DPoP-Nonce")


class DPoPTestClient:
    """A framework test client that signs every request with DPoP.

    Wraps ``django.test.Client`` (and DRF's ``APIClient``), Flask's ``app.test_client()`` (any
    werkzeug test client) or Starlette's ``TestClient``: ``get``/``post``/``put``/``patch``/
    ``delete``/``head``/``options`` and ``request(method, path, ...)`` take the wrapped client's own
    arguments and add ``Authorization: DPoP <token>`` and a fresh proof for ``base_url + path``. A
    ``use_dpop_nonce`` challenge is answered once, and the latest ``DPoP-Nonce`` is reused, like the
    real clients do. ``base_url`` is what the app sees as its own URL (Django ``http://testserver``,
    Flask ``http://localhost`` or ``SERVER_NAME``; Starlette's is the TestClient's own). Set
    ``token`` (or ``key``) to switch identity; :attr:`client` is the unwrapped client.
    """

    __test__ = False

    def __init__(
        self, client: Any, key: DPoPKey, token: str, *, base_url: str | None = None, nonces: NonceCache | None = None
    ) -> None:
        self.client = client
        self.key = key
        self.token = token
        self.nonces = nonces if nonces is not None else NonceCache()
        self.kind = _client_kind(client)
        self.base_url = (base_url or _default_base_url(client, self.kind)).rstrip("/")

    def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        """Send ``method path`` through the wrapped client, signed; the wrapped client's response."""
        method = method.upper()
        if self.kind in ("httpx", "httpx2"):
            # The same DPoP flow, bound to the client's own library (httpx2 refuses an httpx.Auth).
            plugin = importlib.import_module(f"dpop_middleware.{self.kind}_auth")
            auth = plugin.DPoPAuth(self.key, self.token, nonces=self.nonces)
            return self.client.request(method, path, *args, auth=auth, **kwargs)
        url = self._url(path, kwargs)
        response = self._send(method, path, url, None, args=args, kwargs=kwargs)
        status, challenges, nonce = _response_facts(response)
        if nonce is not None:
            self.nonces.remember(url, nonce)
        retry = nonce_to_retry(status, challenges, nonce)
        if retry is not None:
            response = self._send(method, path, url, retry, args=args, kwargs=kwargs)
            later = _response_facts(response)[2]
            if later is not None:
                self.nonces.remember(url, later)
        return response

    def _url(self, path: str, kwargs: Mapping[str, Any]) -> str:
        if urlsplit(path).scheme:
            return path
        base = self.base_url
        if self.kind == "django" and kwargs.get("secure") and base.startswith("http://"):
            base = "https://" + base[len("http://") :]
        if self.kind == "werkzeug" and kwargs.get("base_url"):
            base = str(kwargs["base_url"]).rstrip("/")
        return base + (path if path.startswith("/") else "/" + path)

    def _send(
        self, method: str, path: str, url: str, nonce: str | None, *, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        headers = dict(kwargs.get("headers") or {})
        headers.update(dpop_headers(self.key, method, url, self.token, nonce=nonce or self.nonces.get(url)))
        call = {**kwargs, "headers": headers}
        if self.kind == "django":
            if method.lower() in _METHODS:
                return getattr(self.client, method.lower())(path, *args, **call)
            return self.client.generic(method, path, *args, **call)
        return self.client.open(path, *args, method=method, **call)

    # The verbs of the framework's own test client, each one ``request`` with its method.
    get = functools.partialmethod(request, "GET")
    post = functools.partialmethod(request, "POST")
    put = functools.partialmethod(request, "PUT")
    patch = functools.partialmethod(request, "PATCH")
    delete = functools.partialmethod(request, "DELETE")
    head = functools.partialmethod(request, "HEAD")
    options = functools.partialmethod(request, "OPTIONS")

    def __repr__(self) -> str:
        return f"DPoPTestClient({self.kind}, base_url={self.base_url!r}, key={self.key!r})"
