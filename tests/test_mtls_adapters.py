"""Certificate-bound tokens in each adapter: settings checked at start-up (naming the key), and the
certificate taken from a trusted proxy's header only (Django, Flask, Starlette, FastAPI, WSGI)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django_app.harness import ensure_django
from flask import Flask
from mtls_support import TestCA
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from dpop_middleware import DPoPVerifier
from dpop_middleware.fastapi import DPoPBearer
from dpop_middleware.flask import DPoP
from dpop_middleware.settings import SettingsError
from dpop_middleware.starlette import DPoPMiddleware
from dpop_middleware.testing import TestIssuer
from dpop_middleware.wsgi import DPoPWSGIMiddleware

ensure_django()

from django.core.exceptions import ImproperlyConfigured  # noqa: E402

from dpop_middleware.django.conf import build_state  # noqa: E402

CA = TestCA()
ALICE, MALLORY = CA.issue("alice"), CA.issue("mallory")
ISSUER = TestIssuer()
TOKEN = ISSUER.token(None, cnf={"x5t#S256": ALICE.x5t})
PROXY = "10.0.0.1"


def verifier(**options: Any) -> DPoPVerifier:
    return DPoPVerifier(ISSUER.validator(), **options)


def test_django_refuses_a_certificate_header_without_certificate_bound_tokens() -> None:
    base = {"ISSUER": ISSUER.issuer, "AUDIENCE": ISSUER.audience, "JWKS": ISSUER.jwks}
    with pytest.raises(ImproperlyConfigured, match=r"CLIENT_CERT_HEADER.*certificate_bound_tokens"):
        build_state({**base, "TRUSTED_PROXIES": [PROXY], "CLIENT_CERT_HEADER": "Client-Cert"})
    with pytest.raises(ImproperlyConfigured, match="trusted_proxies"):
        build_state({**base, "CERTIFICATE_BOUND_TOKENS": True, "CLIENT_CERT_HEADER": "Client-Cert"})
    with pytest.raises(ImproperlyConfigured, match=r"CLIENT_CERT_FORMAT.*'rfc9440', 'nginx'"):
        build_state({**base, "CLIENT_CERT_FORMAT": "apache"})
    state = build_state(
        {**base, "CERTIFICATE_BOUND_TOKENS": "true", "TRUSTED_PROXIES": PROXY, "CLIENT_CERT_HEADER": "Client-Cert"}
    )
    assert state.verifier.certificate_bound_tokens is True and state.proxy.client_cert_header == "client-cert"


def flask_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(DPOP_ISSUER=ISSUER.issuer, DPOP_AUDIENCE=ISSUER.audience, DPOP_JWKS=ISSUER.jwks, **config)

    @app.get("/me")
    def me() -> dict[str, Any]:
        from flask import g

        return {"x5t": g.dpop.x5t_s256}

    return app


def test_flask_start_up_errors_name_the_key() -> None:
    with pytest.raises(SettingsError, match="DPOP_CLIENT_CERT_HEADER"):
        DPoP(flask_app(DPOP_TRUSTED_PROXIES=PROXY, DPOP_CLIENT_CERT_HEADER="Client-Cert"))
    with pytest.raises(SettingsError, match=r"DPOP_CLIENT_CERT_HEADER.*trusted_proxies"):
        DPoP(flask_app(DPOP_CERTIFICATE_BOUND_TOKENS=True, DPOP_CLIENT_CERT_HEADER="Client-Cert"))
    with pytest.raises(SettingsError, match="DPOP_CERTIFICATE_BOUND_TOKENS must be a boolean"):
        DPoP(flask_app(DPOP_CERTIFICATE_BOUND_TOKENS="maybe"))


def test_flask_takes_the_certificate_from_the_trusted_proxy_only() -> None:
    app = flask_app(DPOP_CERTIFICATE_BOUND_TOKENS=True, DPOP_TRUSTED_PROXIES=PROXY, DPOP_CLIENT_CERT_HEADER="Client-Cert")
    DPoP(app)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {TOKEN}", "Client-Cert": ALICE.client_cert_header}
    ok = client.get("/me", headers=headers, environ_base={"REMOTE_ADDR": PROXY})
    assert ok.status_code == 200 and ok.json == {"x5t": ALICE.x5t}
    assert client.get("/me", headers=headers, environ_base={"REMOTE_ADDR": "192.0.2.9"}).status_code == 401
    other = {**headers, "Client-Cert": MALLORY.client_cert_header}
    refused = client.get("/me", headers=other, environ_base={"REMOTE_ADDR": PROXY})
    assert refused.status_code == 401
    assert 'Bearer error="invalid_token"' in ", ".join(refused.headers.getlist("WWW-Authenticate"))
    malformed = client.get("/me", headers={**headers, "Client-Cert": ":%%%:"}, environ_base={"REMOTE_ADDR": PROXY})
    assert malformed.status_code == 401


def test_starlette_and_fastapi_refuse_a_half_configuration_at_construction() -> None:
    with pytest.raises(ValueError, match="certificate_bound_tokens"):
        DPoPMiddleware(Starlette(), verifier=verifier(), trusted_proxies=PROXY, client_cert_header="Client-Cert")
    with pytest.raises(ValueError, match="certificate_bound_tokens"):
        DPoPBearer(verifier(), trusted_proxies=PROXY, client_cert_header="Client-Cert")
    with pytest.raises(ValueError, match="trusted_proxies"):
        DPoPBearer(verifier(certificate_bound_tokens=True), client_cert_header="Client-Cert")
    with pytest.raises(ValueError, match="certificate_bound_tokens"):
        DPoPWSGIMiddleware(lambda e, s: [], verifier(), trusted_proxies=PROXY, client_cert_header="Client-Cert")


@pytest.mark.parametrize("peer", [PROXY, "192.0.2.9"])
def test_starlette_takes_the_certificate_from_the_trusted_proxy_only(peer: str) -> None:
    from dpop_middleware.starlette import get_principal

    async def me(request: Request) -> JSONResponse:
        principal = get_principal(request)
        return JSONResponse({"x5t": principal.x5t_s256 if principal else None})

    app = DPoPMiddleware(
        Starlette(routes=[Route("/me", me)]), verifier=verifier(certificate_bound_tokens=True),
        trusted_proxies=PROXY, client_cert_header="X-SSL-Client-Cert", client_cert_format="nginx",
    )  # fmt: skip
    with TestClient(app, client=(peer, 4000)) as client:
        response = client.get(
            "/me", headers={"Authorization": f"Bearer {TOKEN}", "X-SSL-Client-Cert": ALICE.nginx_header}
        )
    if peer == PROXY:
        assert response.status_code == 200 and response.json() == {"x5t": ALICE.x5t}
    else:
        assert response.status_code == 401


def test_wsgi_reads_the_servers_own_peer_certificate() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["dpop"].x5t_s256.encode()]

    wrapped = DPoPWSGIMiddleware(app, verifier(certificate_bound_tokens=True), allowed_hosts=["localhost"])
    from werkzeug.test import Client

    client = Client(wrapped)
    env = {"REMOTE_ADDR": "192.0.2.9", "SSL_CLIENT_CERT": ALICE.pem}
    ok = client.get("/me", headers={"Authorization": f"Bearer {TOKEN}"}, environ_base=env)
    assert ok.status_code == 200 and ok.get_data() == ALICE.x5t.encode()
    other = {**env, "SSL_CLIENT_CERT": MALLORY.pem}
    assert client.get("/me", headers={"Authorization": f"Bearer {TOKEN}"}, environ_base=other).status_code == 401


@pytest.mark.parametrize("who", ["alice", "mallory"])
def test_drf_judges_a_bearer_request_with_a_certificate_itself(who: str) -> None:
    """Even where Bearer belongs to a later class (``bearer_elsewhere``), a certificate-bound token
    with a certificate is DPoPAuthentication's to judge: accepted with its certificate, else refused."""
    from django.test import Client
    from django_app.harness import django_settings

    dpop = {
        "ISSUER": ISSUER.issuer, "AUDIENCE": ISSUER.audience, "JWKS": ISSUER.jwks, "CERTIFICATE_BOUND_TOKENS": True,
        "TRUSTED_PROXIES": ["127.0.0.1"], "CLIENT_CERT_HEADER": "Client-Cert",
    }  # fmt: skip
    cert = {"alice": ALICE, "mallory": MALLORY}[who]
    with django_settings(dpop, middleware=False, ROOT_URLCONF="django_app.seams_urls"):
        response = Client().get(
            "/drf/toy-bearer-opt-in", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", HTTP_CLIENT_CERT=cert.client_cert_header
        )
    assert b"toy-user" not in response.content
    assert response.status_code == (200 if who == "alice" else 401), response.content


def test_gateway_refuses_certificate_bound_tokens_at_start_up() -> None:
    from dpop_middleware.gateway.config import load_config

    env = {
        "DPOP_ISSUER": ISSUER.issuer, "DPOP_AUDIENCE": ISSUER.audience, "DPOP_JWKS": json.dumps(ISSUER.jwks),
        "DPOP_TRUSTED_PROXIES": "127.0.0.1", "DPOP_CERTIFICATE_BOUND_TOKENS": "true", "DPOP_GATEWAY": "nginx",
    }  # fmt: skip
    with pytest.raises(SettingsError, match="DPOP_CERTIFICATE_BOUND_TOKENS is not supported by the gateway"):
        load_config(env)
