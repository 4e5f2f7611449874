"""The pytest plugin, used from a throwaway project (pytester) as a user would use it.

The project has a Flask app, a Django project and a Starlette app, each protected by the library's
adapter with ``nonce_policy="always"`` (so the wrapped test clients must answer a nonce challenge),
and tests written only with the plugin's fixtures. It runs in a subprocess: the Django settings it
configures must not leak into this session. The plugin is found through the package's ``pytest11``
entry point, exactly as in a user's project: nothing names it.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

LOOP_SCOPE = "asyncio_default_fixture_loop_scope = function\n"  # silences pytest-asyncio's warning

FLASK_APP = """
from flask import Flask, request
from dpop_middleware.flask import DPoP, current_dpop


def create_app(config):
    app = Flask(__name__)
    app.config.update(config)
    dpop = DPoP(app)

    @app.get("/api/me")
    @dpop.required
    def me():
        return {"jkt": current_dpop.jkt, "sub": current_dpop.subject, "htu": current_dpop.htu}

    @app.post("/api/items")
    @dpop.required(scopes=["write"])
    def items():
        return {"created": request.get_json()}

    return app
"""

DJANGO_URLS = """
from django.http import JsonResponse
from django.urls import path


def me(request):
    return JsonResponse({"jkt": request.dpop.jkt, "sub": request.dpop.subject, "htu": request.dpop.htu})


def items(request):
    return JsonResponse({"method": request.method, "body": request.body.decode()})


urlpatterns = [path("api/me", me), path("api/items", items)]
"""

CONFTEST = """
import django
from django.conf import settings


def pytest_configure():
    settings.configure(
        SECRET_KEY="throwaway",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF="django_urls",
        INSTALLED_APPS=["dpop_middleware.django"],
        MIDDLEWARE=["dpop_middleware.django.DPoPMiddleware"],
        DATABASES={},
        USE_TZ=True,
        DPOP={},
    )
    django.setup()
"""

TESTS = """
import pytest
from django.test import Client, override_settings
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from dpop_middleware import DPoPVerifier, NonceKeyring, RequestInfo
from dpop_middleware.starlette import DPoPMiddleware, get_principal
from flask_app import create_app


def test_ini_options_reach_the_issuer(dpop_issuer):
    assert dpop_issuer.audience == "https://my-api.example"
    assert dpop_issuer.issuer == "https://issuer.test"


def test_flask(dpop_issuer, dpop_client, dpop_key):
    app = create_app(dpop_issuer.flask_config(DPOP_NONCE_POLICY="always"))
    client = dpop_client(app.test_client())
    first = client.get("/api/me?page=2")
    assert first.status_code == 200, first.json
    assert first.json == {"jkt": dpop_key.jkt, "sub": "alice", "htu": "http://localhost/api/me"}
    assert client.get("/api/me").status_code == 200  # the remembered nonce is reused
    assert client.post("/api/items", json={"a": 1}).status_code == 403  # the default token only reads
    writer = dpop_client(app.test_client(), scope="read write")
    assert writer.post("/api/items", json={"a": 1}).json == {"created": {"a": 1}}
    assert app.test_client().get("/api/me").status_code == 401  # unsigned: refused


def test_flask_server_name(dpop_issuer, dpop_client):
    app = create_app(dpop_issuer.flask_config(SERVER_NAME="api.example:8443", PREFERRED_URL_SCHEME="https"))
    client = dpop_client(app.test_client())
    assert client.base_url == "https://api.example:8443"
    assert client.get("/api/me", base_url="https://api.example:8443").json["htu"] == "https://api.example:8443/api/me"


def test_django(dpop_issuer, dpop_client, dpop_key):
    with override_settings(DPOP=dpop_issuer.django_settings(NONCE_POLICY="always")):
        client = dpop_client(Client())
        response = client.get("/api/me", {"page": 2})
        assert response.status_code == 200, response.content
        assert response.json() == {"jkt": dpop_key.jkt, "sub": "alice", "htu": "http://testserver/api/me"}
        posted = client.post("/api/items", data=b"{}", content_type="application/json")
        assert posted.json() == {"method": "POST", "body": "{}"}
        assert client.request("PUT", "/api/items", b"x", "text/plain").json()["method"] == "PUT"
        assert client.get("/api/me", secure=True).json()["htu"] == "https://testserver/api/me"
        assert Client().get("/api/me").status_code == 401


def test_starlette(dpop_issuer, dpop_client, dpop_key):
    async def me(request):
        principal = get_principal(request)
        return JSONResponse({"jkt": principal.jkt, "htu": principal.htu})

    verifier = DPoPVerifier(dpop_issuer.validator(), nonce_policy="always", nonce_keyring=NonceKeyring({"k": "x" * 16}))
    app = DPoPMiddleware(Starlette(routes=[Route("/api/me", me, methods=["GET", "POST"])]), verifier=verifier)
    with TestClient(app) as test_client:
        client = dpop_client(test_client)
        assert client.get("/api/me").json() == {"jkt": dpop_key.jkt, "htu": "http://testserver/api/me"}
        assert client.post("/api/me", json={}).status_code == 200
        assert test_client.get("/api/me").status_code == 401


def test_verifier_headers_and_tokens(dpop_verifier, dpop_headers, dpop_token, dpop_key):
    headers = dpop_headers("GET", "https://api.test/x")
    principal = dpop_verifier.verify(RequestInfo("GET", "https://api.test/x", list(headers.items())))
    assert principal.jkt == dpop_key.jkt and principal.scopes == {"read"}
    bearer = RequestInfo("GET", "https://api.test/x", [("Authorization", "Bearer " + dpop_token(key=False))])
    assert dpop_verifier.authenticate(bearer).rejection.status == 401


def test_unknown_clients_are_refused(dpop_client):
    with pytest.raises(TypeError, match="unsupported test client"):
        dpop_client(object())
"""


def test_plugin_from_a_throwaway_project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(flask_app=FLASK_APP, django_urls=DJANGO_URLS, conftest=CONFTEST, test_user_project=TESTS)
    pytester.makeini(f"[pytest]\ndpop_audience = https://my-api.example\n{LOOP_SCOPE}")
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=7)


def test_fixtures_are_listed(pytester: pytest.Pytester) -> None:
    pytester.makeini(f"[pytest]\n{LOOP_SCOPE}")
    result = pytester.runpytest("--fixtures", "-q")
    for name in ("dpop_issuer", "dpop_key", "dpop_token", "dpop_verifier", "dpop_headers", "dpop_client"):
        result.stdout.fnmatch_lines([f"*{name}*"])
