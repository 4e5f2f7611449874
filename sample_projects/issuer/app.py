"""The sample authorization server: client credentials in, DPoP-bound JWT access tokens out.

Endpoints:

* ``POST /token``: RFC 6749 §4.4 client credentials grant, client authenticated with
  ``client_secret_basic``; the request must carry a DPoP proof (RFC 9449 §5), checked by
  :class:`dpop_middleware.authorization_server.TokenEndpointVerifier`. The answer is an RFC 9068
  JWT (``typ: at+jwt``) whose ``cnf.jkt`` is the proof key's thumbprint, with ``token_type: DPoP``.
* Mutual TLS (RFC 8705), behind a proxy that terminates it (``DPOP_TRUSTED_PROXIES``,
  ``DPOP_CLIENT_CERT_HEADER``, ``DPOP_CLIENT_CERT_FORMAT``, as the APIs read them): a client
  registered for ``tls_client_auth`` (:data:`DEMO_CLIENTS`' ``mtls-client``) authenticates with its
  certificate (subject DN) and ``client_id`` in the form; its token's ``cnf`` gets the certificate's
  ``x5t#S256`` (RFC 8705 §3.1), plus ``jkt`` when it also sends a DPoP proof (``token_type`` is
  then ``DPoP``, otherwise ``Bearer``).
* ``GET /jwks``: the public signing key(s).
* ``GET /.well-known/oauth-authorization-server``: RFC 8414 metadata, including
  ``dpop_signing_alg_values_supported``; resource servers find ``jwks_uri`` here.
* Only with ``ISSUER_DEMO_LOGIN=on``: ``GET /authorize`` and the ``authorization_code`` grant for
  the public browser client, plus the browser sample's page (DEMO ONLY: see :mod:`.demo_login`).

Demo grade on purpose: clients are registered in code (:data:`DEMO_CLIENTS`), the signing key is
made at start-up unless ``ISSUER_SIGNING_KEY_FILE`` names a PEM file, and there is no user login,
no refresh token and no revocation (the opt-in demo login approves everyone as ``demo-user``).
What it does, it does by the RFCs.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote_plus, urlsplit

from cryptography import x509
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from dpop_middleware.asgi import request_info
from dpop_middleware.authorization_server import TokenEndpointVerifier
from dpop_middleware.client import DPoPKey
from dpop_middleware.core.errors import DPoPError
from dpop_middleware.core.origin import ProxySettings

from ..common import SampleSettings, token_endpoint_options
from .demo_login import DemoLogin
from .oauth import NO_STORE, oauth_error, read_form, send_rejection

__all__ = ["DEMO_CLIENTS", "Client", "IssuerState", "create_app", "issuer_settings"]

DEFAULT_BROWSER_API_URL = "http://127.0.0.1:8003"  # the FastAPI sample on its default port


@dataclass(frozen=True)
class Client:
    """A registered client: its secret, the scopes it may ask for and those it gets by default."""

    client_id: str
    secret: str
    scopes: frozenset[str]
    default_scopes: frozenset[str]
    audiences: tuple[str, ...] = ()  # RFC 8707 resources it may ask for (besides the default audience)
    #: RFC 8705 §2.1.2 ``tls_client_auth``: the certificate subject DN (RFC 4514) that authenticates it.
    tls_client_auth_subject_dn: str | None = None


#: The clients this issuer knows. Secrets in code are for the demo only: load them from a vault.
DEMO_CLIENTS: tuple[Client, ...] = (
    Client(
        "demo-client",
        "demo-secret",
        scopes=frozenset({"notes:read", "notes:write"}),
        default_scopes=frozenset({"notes:read"}),
    ),
    Client("reader", "reader-secret", scopes=frozenset({"notes:read"}), default_scopes=frozenset({"notes:read"})),
    Client(
        "mtls-client",
        secrets.token_urlsafe(32),  # never told: this client authenticates with its certificate only
        scopes=frozenset({"notes:read", "notes:write"}),
        default_scopes=frozenset({"notes:read"}),
        tls_client_auth_subject_dn="CN=mtls-client",
    ),
)


@dataclass
class IssuerState:
    """Everything the endpoints share; built once by :func:`create_app`."""

    issuer: str
    audience: str
    signing_key: DPoPKey
    clients: Mapping[str, Client]
    token_endpoint: TokenEndpointVerifier
    token_lifetime: int = 300
    clock: Callable[[], float] = time.time
    demo_login: DemoLogin | None = None  # DEMO ONLY: the public browser client (off by default)
    #: How client certificates reach the token endpoint (a trusted mutual-TLS proxy's header).
    proxy: ProxySettings = field(default_factory=ProxySettings)
    kid: str = field(init=False)

    def __post_init__(self) -> None:
        self.kid = self.signing_key.jkt[:16]

    @property
    def token_url(self) -> str:
        return f"{self.issuer.rstrip('/')}/token"

    @property
    def jwks(self) -> dict[str, Any]:
        key = self.signing_key
        return {"keys": [dict(key.public_jwk, kid=self.kid, use="sig", alg=key.alg)]}

    def metadata(self) -> dict[str, Any]:
        base = self.issuer.rstrip("/")
        scopes = sorted({scope for client in self.clients.values() for scope in client.scopes})
        meta: dict[str, Any] = {
            "issuer": self.issuer,
            "token_endpoint": self.token_url,
            "jwks_uri": f"{base}/jwks",
            "grant_types_supported": ["client_credentials"],
            # RFC 8414 requires the member; this server has no authorization endpoint, hence none.
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "scopes_supported": scopes,
            "dpop_signing_alg_values_supported": list(self.token_endpoint.config.algorithms),
        }
        if self.proxy.client_cert_header is not None:  # behind a mutual-TLS proxy (RFC 8705 §2.1, §3.3)
            meta["token_endpoint_auth_methods_supported"].append("tls_client_auth")
            meta["tls_client_certificate_bound_access_tokens"] = True
        if self.demo_login is not None:
            self.demo_login.extend_metadata(meta)
        return meta

    def access_token(
        self, client: Client, scopes: Iterable[str], audience: str, jkt: str | None, x5t: str | None = None
    ) -> str:
        """An RFC 9068 access token for ``client``, bound to the DPoP key ``jkt`` (RFC 9449 §6.1) and/or
        the client certificate ``x5t`` (RFC 8705 §3.1)."""
        # RFC 9068 §2.2: a client acting for itself is the subject.
        return self.issue(client.client_id, client.client_id, scopes, audience, jkt, x5t)

    def issue(
        self,
        subject: str,
        client_id: str,
        scopes: Iterable[str],
        audience: str,
        jkt: str | None,
        x5t: str | None = None,
    ) -> str:
        """An RFC 9068 access token for ``subject`` obtained by ``client_id``, bound to ``jkt`` and/or ``x5t``."""
        cnf = {name: value for name, value in (("jkt", jkt), ("x5t#S256", x5t)) if value is not None}
        now = int(self.clock())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience,
            "client_id": client_id,
            "iat": now,
            "exp": now + self.token_lifetime,
            "jti": secrets.token_urlsafe(16),
            "scope": " ".join(sorted(scopes)),
            "cnf": cnf,
        }
        header = {"typ": "at+jwt", "alg": self.signing_key.alg, "kid": self.kid}
        return self.signing_key.sign(header, claims)


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    """``client_secret_basic`` (RFC 6749 §2.3.1): both parts form-urlencoded, then Basic."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    return unquote_plus(client_id), unquote_plus(secret)


def _authenticate_client(state: IssuerState, request: Request) -> Client | None:
    credentials = _basic_credentials(request)
    if credentials is None:
        return None
    client = state.clients.get(credentials[0])
    # Compare even for an unknown client, so that timing does not reveal which ids exist.
    expected = client.secret if client is not None else secrets.token_urlsafe(16)
    if not hmac.compare_digest(credentials[1].encode(), expected.encode()) or client is None:
        return None
    return client


async def token(request: Request) -> Response:
    """The token endpoint: authenticate the client, check the grant, then the DPoP proof, then issue."""
    state: IssuerState = request.app.state.issuer
    if state.demo_login is not None and _basic_credentials(request) is None:
        # DEMO ONLY: a public client has no credentials; its grant is the authorization code.
        public_form = await read_form(request)
        if public_form is not None and public_form.get("grant_type") == "authorization_code":
            return await state.demo_login.exchange(state, request, public_form)
    client = _authenticate_client(state, request)
    x5t = None
    form: dict[str, str] | None = None
    if client is None and state.proxy.client_cert_header is not None:
        form = await read_form(request)  # tls_client_auth: the client_id is in the form
        client, x5t = _tls_client(state, request, form)
    if client is None:
        return oauth_error(
            401, "invalid_client", "Client authentication failed", {"WWW-Authenticate": 'Basic realm="token"'}
        )
    if form is None:
        form = await read_form(request)
    if form is None:
        return oauth_error(400, "invalid_request", "Expected an application/x-www-form-urlencoded body")
    grant_type = form.get("grant_type")
    if grant_type != "client_credentials":
        return oauth_error(400, "unsupported_grant_type", "Only client_credentials is supported")
    raw_scope = form.get("scope")
    requested = frozenset(raw_scope.split()) if isinstance(raw_scope, str) and raw_scope.strip() else None
    scopes = client.default_scopes if requested is None else requested
    if not scopes <= client.scopes:
        return oauth_error(400, "invalid_scope", "Requested scope not allowed for this client")
    resource = form.get("resource")  # RFC 8707: which API the token is for
    audience = resource if isinstance(resource, str) and resource else state.audience
    if audience != state.audience and audience not in client.audiences:
        return oauth_error(400, "invalid_target", "Unknown resource for this client")

    # The proof comes last: a request refused for other reasons must not use up the client's proof.
    headers: dict[str, str] = {}
    jkt = None
    if x5t is None or "dpop" in request.headers:  # a certificate-bound token may go without a proof
        info = request_info(request.scope, _DIRECT)
        result = await state.token_endpoint.aauthenticate(info)
        if result.rejection is not None:
            return send_rejection(result.rejection)
        if result.jkt is None:  # pragma: no cover - require_dpop=True never yields an unbound result
            return oauth_error(400, "invalid_dpop_proof", "DPoP proof missing")
        jkt = result.jkt
        headers = dict(result.response_headers)
    body = {
        "access_token": state.access_token(client, scopes, audience, jkt, x5t),
        # RFC 9449 §5.1: DPoP tells the client the token is key-bound; a certificate-bound one is Bearer.
        "token_type": "DPoP" if jkt is not None else "Bearer",
        "expires_in": state.token_lifetime,
        "scope": " ".join(sorted(scopes)),
    }
    return JSONResponse(body, headers={**NO_STORE, **headers})


def _tls_client(state: IssuerState, request: Request, form: dict[str, str] | None) -> tuple[Client | None, str | None]:
    """RFC 8705 §2.1 ``tls_client_auth``: the client named by ``client_id`` in the form, if the client
    certificate (from the trusted mutual-TLS proxy) carries its registered subject DN; and the
    certificate's ``x5t#S256``, which binds the token (§3.1)."""
    cert = request_info(request.scope, state.proxy).client_cert
    if cert is None:
        return None, None
    client_id = form.get("client_id") if form is not None else None
    client = state.clients.get(client_id) if isinstance(client_id, str) else None
    if client is None or client.tls_client_auth_subject_dn is None:
        return None, None
    try:
        der = cert.der()
        subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
        x5t = cert.thumbprint()
    except (DPoPError, ValueError):
        return None, None
    if not hmac.compare_digest(subject.encode(), client.tls_client_auth_subject_dn.encode()):
        return None, None
    return client, x5t


# htu is compared with the advertised token endpoint (endpoint_url), so no proxy header matters here.
_DIRECT = ProxySettings.create(None, None)


async def jwks(request: Request) -> Response:
    state: IssuerState = request.app.state.issuer
    return JSONResponse(
        state.jwks, headers={"Cache-Control": "public, max-age=300"}, media_type="application/jwk-set+json"
    )


async def metadata(request: Request) -> Response:
    state: IssuerState = request.app.state.issuer
    return JSONResponse(state.metadata(), headers={"Cache-Control": "public, max-age=300"})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def _signing_key() -> DPoPKey:
    path = os.environ.get("ISSUER_SIGNING_KEY_FILE")
    if path:
        with open(path, "rb") as handle:
            return DPoPKey.from_pem(handle.read(), os.environ.get("ISSUER_SIGNING_ALG", "ES256"))
    return DPoPKey.generate("ES256")


def create_app(
    settings: SampleSettings | None = None,
    *,
    clients: Iterable[Client] = DEMO_CLIENTS,
    signing_key: DPoPKey | None = None,
    token_lifetime: int | None = None,
    demo_login: bool | None = None,
    browser_api_url: str | None = None,
) -> Starlette:
    """The issuer as a Starlette app. Without ``settings``, read them from the environment.

    ``settings.issuer`` is this server's own identifier and public base URL (default
    ``http://127.0.0.1:<PORT>``); ``settings.audience`` goes into ``aud``; ``settings.nonce_policy``
    applies at the token endpoint.

    ``demo_login`` (default: ``ISSUER_DEMO_LOGIN=on``) adds the DEMO-ONLY public browser client and
    serves the browser sample, which calls the API at ``browser_api_url`` (default:
    ``BROWSER_API_URL``, else the FastAPI sample on its default port).
    """
    if settings is None:
        settings = issuer_settings()
    lifetime = token_lifetime or int(os.environ.get("ISSUER_TOKEN_LIFETIME", "300"))
    if demo_login is None:
        demo_login = _demo_login_from_env()
    login = None
    if demo_login:
        api_url = browser_api_url or os.environ.get("BROWSER_API_URL", "").strip() or DEFAULT_BROWSER_API_URL
        login = DemoLogin.for_issuer(settings.issuer, api_url)
    state = IssuerState(
        issuer=settings.issuer,
        audience=settings.audience,
        signing_key=signing_key or _signing_key(),
        clients={client.client_id: client for client in clients},
        token_endpoint=TokenEndpointVerifier(
            f"{settings.issuer.rstrip('/')}/token", **token_endpoint_options(settings)
        ),
        token_lifetime=lifetime,
        demo_login=login,
        proxy=ProxySettings.create(
            settings.mtls.get("trusted_proxies"),
            client_cert_header=settings.mtls.get("client_cert_header"),
            client_cert_format=settings.mtls.get("client_cert_format"),
        ),
    )
    routes: list[BaseRoute] = [
        Route("/token", token, methods=["POST"]),
        Route("/jwks", jwks, methods=["GET"]),
        # RFC 8414 §3.1: an issuer with a path publishes its metadata below the well-known prefix.
        Route(f"/.well-known/oauth-authorization-server{urlsplit(settings.issuer).path.rstrip('/')}", metadata),
        Route("/healthz", healthz, methods=["GET"]),
    ]
    if login is not None:
        routes.extend(login.routes())
    app = Starlette(routes=routes)
    app.state.issuer = state
    return app


def _demo_login_from_env() -> bool:
    value = os.environ.get("ISSUER_DEMO_LOGIN", "").strip().lower() or "off"
    if value not in ("on", "off"):
        raise ValueError(f"ISSUER_DEMO_LOGIN must be 'on' or 'off', not {value!r}")
    return value == "on"


def issuer_settings(environ: Mapping[str, str] | None = None) -> SampleSettings:
    """The issuer's settings: as :meth:`SampleSettings.from_env`, but ``DPOP_ISSUER`` defaults to itself."""
    env = dict(os.environ if environ is None else environ)
    settings = SampleSettings.from_env(env, default_port=9000)
    if not env.get("DPOP_ISSUER", "").strip():
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
        settings = replace(settings, issuer=f"http://{host}:{settings.port}")
    return settings
