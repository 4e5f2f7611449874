"""RFC 9728 protected resource metadata: the core document, the challenge parameter, the settings, and
every adapter serving it through its framework's test client (Django, Flask, Starlette, FastAPI, plain
WSGI, plain ASGI)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from django.test import Client as DjangoClient
from django_app.harness import django_settings, ensure_django
from flask import Flask
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.test import Client as WerkzeugClient

from dpop_middleware import DPoPVerifier
from dpop_middleware.client import DPoPKey
from dpop_middleware.core.jose import b64url_decode
from dpop_middleware.core.resource_metadata import ResourceMetadata, metadata_path, metadata_url, publish
from dpop_middleware.flask import DPoP
from dpop_middleware.settings import SettingsError, build_verifier, environ_settings, environ_spell, read_settings
from dpop_middleware.starlette import DPoPMiddleware, metadata_route
from dpop_middleware.testing import TestIssuer, dpop_headers
from dpop_middleware.wsgi import DPoPWSGIMiddleware

ensure_django()

ISSUER = TestIssuer(audience="https://api.test")
RESOURCE = "https://api.test"
WELL_KNOWN = "/.well-known/oauth-protected-resource"
CHALLENGE_PARAM = f'resource_metadata="{RESOURCE}{WELL_KNOWN}"'


def verifier(**metadata: Any) -> DPoPVerifier:
    options: dict[str, Any] = {"resource": RESOURCE, "authorization_servers": (ISSUER.issuer,), **metadata}
    return DPoPVerifier(ISSUER.validator(), resource_metadata=ResourceMetadata(**options))


def check_document(body: bytes, **expected: Any) -> dict[str, Any]:
    document = json.loads(body)
    assert document["resource"] == RESOURCE
    assert document["authorization_servers"] == [ISSUER.issuer]
    assert document["bearer_methods_supported"] == ["header"]
    assert document["dpop_bound_access_tokens_required"] is True
    assert document["tls_client_certificate_bound_access_tokens"] is False
    assert "ES256" in document["dpop_signing_alg_values_supported"]
    for name, value in expected.items():
        assert document[name] == value
    return dict(document)


def verify_es256(jwt: str, key: DPoPKey) -> dict[str, Any]:
    """Check a compact ES256 JWS with ``key``'s public key (independently of the library's verifier)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    header, payload, signature = jwt.split(".")
    raw = b64url_decode(signature)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public = key._key.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(der, f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))  # raises if forged
    assert json.loads(b64url_decode(header))["alg"] == "ES256"
    return dict(json.loads(b64url_decode(payload)))


# -- the core ----------------------------------------------------------------------------------------


def test_well_known_location_inserts_the_suffix_before_the_resource_path() -> None:
    assert metadata_path("https://api.test") == WELL_KNOWN
    assert metadata_path("https://api.test/") == WELL_KNOWN
    assert metadata_path("https://host.test/notes/v1/") == WELL_KNOWN + "/notes/v1"
    assert metadata_url("https://host.test:8443/notes") == "https://host.test:8443" + WELL_KNOWN + "/notes"


@pytest.mark.parametrize(
    "resource",
    ["http://api.test", "https://api.test/?q=1", "https://api.test/#frag", "ftp://api.test", "api.test", "https://"],
)
def test_a_resource_that_is_not_an_https_url_is_refused(resource: str) -> None:
    with pytest.raises(ValueError, match="resource"):
        ResourceMetadata(resource=resource)


def test_user_fields_cannot_override_what_the_verifier_decides_and_must_be_json() -> None:
    with pytest.raises(ValueError, match="dpop_bound_access_tokens_required"):
        ResourceMetadata(resource=RESOURCE, fields={"dpop_bound_access_tokens_required": False})
    with pytest.raises(ValueError, match="plain JSON"):
        ResourceMetadata(resource=RESOURCE, fields={"resource_name": object()})


def test_document_follows_the_mode_algorithms_route_scopes_and_user_fields() -> None:
    metadata = ResourceMetadata(resource=RESOURCE, fields={"resource_name": "Notes"})
    published = publish(
        metadata, algorithms=("ES256", "EdDSA"), dpop_required=False,
        path_scopes=(("/notes", ("notes:read", "notes:write")), ("/admin", ("notes:write", "admin"))),
    )  # fmt: skip
    document = json.loads(published.body)
    assert document["dpop_signing_alg_values_supported"] == ["ES256", "EdDSA"]
    assert document["dpop_bound_access_tokens_required"] is False
    assert document["scopes_supported"] == ["notes:read", "notes:write", "admin"]
    assert document["resource_name"] == "Notes"
    assert "authorization_servers" not in document  # none configured: not invented
    tls = publish(ResourceMetadata(resource=RESOURCE, tls_client_certificate_bound_access_tokens=True),
                  algorithms=("ES256",), dpop_required=True)  # fmt: skip
    assert json.loads(tls.body)["tls_client_certificate_bound_access_tokens"] is True


def test_allow_bearer_mode_says_dpop_is_not_required() -> None:
    allowing = DPoPVerifier(
        ISSUER.validator(), mode="allow_bearer", resource_metadata=ResourceMetadata(resource=RESOURCE)
    )
    published = allowing.published_metadata()
    assert published is not None and json.loads(published.body)["dpop_bound_access_tokens_required"] is False


def test_signed_metadata_is_a_jwt_of_the_same_members_verified_with_the_key() -> None:
    key = DPoPKey.generate("ES256")
    published = verifier(signing_key=key, signing_kid="rs-1").published_metadata()
    assert published is not None
    document = json.loads(published.body)
    claims = verify_es256(document["signed_metadata"], key)
    assert claims["iss"] == RESOURCE
    for name, value in document.items():
        if name != "signed_metadata":
            assert claims[name] == value
    assert json.loads(b64url_decode(document["signed_metadata"].split(".")[0]))["kid"] == "rs-1"
    other = DPoPKey.generate("ES256")
    with pytest.raises(InvalidSignature):  # another key does not verify it
        verify_es256(document["signed_metadata"], other)


def test_answers_get_head_and_refuses_other_methods() -> None:
    published = verifier().published_metadata()
    assert published is not None
    get = published.answer("GET")
    assert get.status == 200 and dict(get.headers)["Content-Type"] == "application/json"
    assert dict(get.headers)["Cache-Control"] == "public, max-age=3600"
    head = published.answer("HEAD")
    assert head.status == 200 and head.body == b"" and dict(head.headers)["Content-Length"] == str(len(get.body))
    for method in ("POST", "PUT", "DELETE", "OPTIONS", "get"):
        refused = published.answer(method)
        assert refused.status == 405 and dict(refused.headers)["Allow"] == "GET, HEAD"


def test_challenges_name_the_metadata_only_when_it_is_served() -> None:
    rejected = verifier().authenticate(_request("/api"), required=True)
    assert rejected.rejection is not None
    challenge = dict(rejected.rejection.headers)["WWW-Authenticate"]
    assert challenge.startswith("DPoP algs=") and CHALLENGE_PARAM in challenge
    plain = DPoPVerifier(ISSUER.validator()).authenticate(_request("/api"))
    assert plain.rejection is not None and "resource_metadata" not in str(plain.rejection.headers)
    bearer = DPoPVerifier(
        ISSUER.validator(), mode="allow_bearer", resource_metadata=ResourceMetadata(resource=RESOURCE)
    )
    rejected = bearer.authenticate(_request("/api"))
    assert rejected.rejection is not None
    challenges = [value for name, value in rejected.rejection.headers if name == "WWW-Authenticate"]
    assert len(challenges) == 2 and all(CHALLENGE_PARAM in c for c in challenges)


def _request(path: str) -> Any:
    from dpop_middleware.core.request import RequestInfo

    return RequestInfo("GET", RESOURCE + path, [])


# -- settings ----------------------------------------------------------------------------------------


def _built(values: dict[str, Any]) -> DPoPVerifier:
    checked = read_settings(values, spell=environ_spell, accepted=set(values))
    return build_verifier(checked, spell=environ_spell)


def test_settings_switch_defaults_resource_to_public_url_and_servers_to_issuer() -> None:
    built = _built(
        {"issuer": ISSUER.issuer, "audience": ISSUER.audience, "jwks": ISSUER.jwks, "resource_metadata": "true",
         "public_url": RESOURCE, "resource_metadata_fields": '{"resource_name": "Notes"}'}
    )  # fmt: skip
    assert built.resource_metadata is not None
    assert built.resource_metadata.resource == RESOURCE
    assert built.resource_metadata.authorization_servers == (ISSUER.issuer,)
    assert built.resource_metadata.fields["resource_name"] == "Notes"


def test_environment_contract_reads_the_metadata_variables() -> None:
    environ = {
        "DPOP_RESOURCE_METADATA": "on",
        "DPOP_RESOURCE": RESOURCE,
        "DPOP_AUTHORIZATION_SERVERS": "https://as.test",
    }
    values = environ_settings(environ, accepted={"resource_metadata", "resource", "authorization_servers"})
    assert values == {"resource_metadata": True, "resource": RESOURCE, "authorization_servers": ("https://as.test",)}


@pytest.mark.parametrize(
    ("values", "key", "message"),
    [
        ({"resource_metadata": True}, "DPOP_RESOURCE", "is missing"),
        ({"resource_metadata": True, "resource": "http://api.test"}, "DPOP_RESOURCE", "https"),
        ({"resource": RESOURCE}, "DPOP_RESOURCE", "only read with DPOP_RESOURCE_METADATA"),
        ({"resource_metadata": True, "resource": RESOURCE, "authorization_servers": "ftp://x"},
         "DPOP_AUTHORIZATION_SERVERS", "https"),
        ({"resource_metadata": True, "resource": RESOURCE, "resource_metadata_fields": {"resource": "x"}},
         "DPOP_RESOURCE_METADATA_FIELDS", "verifier's configuration"),
        ({"resource_metadata": True, "resource": RESOURCE, "resource_metadata_fields": "[1]"},
         "DPOP_RESOURCE_METADATA_FIELDS", "a dict of metadata members"),
        ({"resource_metadata": True, "resource": RESOURCE, "resource_metadata_fields": {"n": [[[[[[[[[[1]]]]]]]]]]}},
         "DPOP_RESOURCE_METADATA_FIELDS", "nested too deeply"),
        ({"resource_metadata": True, "resource": RESOURCE, "resource_metadata_signing_key": "not a key"},
         "DPOP_RESOURCE_METADATA_SIGNING_KEY", "private key"),
    ],
)  # fmt: skip
def test_settings_errors_name_the_key(values: dict[str, Any], key: str, message: str) -> None:
    base = {"token_validator": ISSUER.validator()}
    with pytest.raises(SettingsError, match=message) as caught:
        _built({**base, **values})
    assert caught.value.key == key
    assert "not a key" not in str(caught.value)  # a secret is never echoed


# -- the adapters, each through its framework's test client --------------------------------------


def _check_http(get: Any, head: Any, post: Any, protected: Any) -> None:
    """The four answers every adapter must give: document, HEAD, 405, and the challenge elsewhere."""
    assert get.status_code == 200 and get.headers["Content-Type"].startswith("application/json")
    assert get.headers["Cache-Control"] == "public, max-age=3600"
    check_document(get.content if hasattr(get, "content") else get.data)
    assert head.status_code == 200
    assert post.status_code == 405 and post.headers["Allow"] == "GET, HEAD"
    assert protected.status_code == 401 and CHALLENGE_PARAM in protected.headers["WWW-Authenticate"]


def test_plain_wsgi_middleware_serves_the_document_without_dpop() -> None:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"app"]

    client = WerkzeugClient(DPoPWSGIMiddleware(app, verifier(), public_url=RESOURCE))
    _check_http(client.get(WELL_KNOWN), client.head(WELL_KNOWN), client.post(WELL_KNOWN), client.get("/api"))
    assert client.get(WELL_KNOWN + "/other").status_code == 401  # only the resource's own path


def test_plain_wsgi_serves_the_path_inserted_form_under_a_mount_prefix() -> None:
    def app(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"app"]

    middleware = DPoPWSGIMiddleware(app, verifier(resource="https://api.test/notes"), public_url=RESOURCE)
    client = WerkzeugClient(middleware)
    response = client.get(WELL_KNOWN + "/notes")
    assert response.status_code == 200 and json.loads(response.data)["resource"] == "https://api.test/notes"
    assert client.get(WELL_KNOWN).status_code == 401  # the host's own document is not this resource's
    challenge = client.get("/notes").headers["WWW-Authenticate"]
    assert f'resource_metadata="https://api.test{WELL_KNOWN}/notes"' in challenge


def test_plain_asgi_and_starlette_middleware_serve_the_document() -> None:
    async def me(request: Any) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/api", me)])
    wrapped = DPoPMiddleware(app, verifier=verifier(), public_url=RESOURCE, path_scopes={"/api": "notes:read"})
    with TestClient(wrapped) as client:
        get = client.get(WELL_KNOWN)
        _check_http(get, client.head(WELL_KNOWN), client.post(WELL_KNOWN), client.get("/api"))
        assert get.json()["scopes_supported"] == ["notes:read"]  # from the route policy


def test_fastapi_with_dpop_bearer_serves_it_through_metadata_route() -> None:
    from fastapi import Depends, FastAPI

    from dpop_middleware.fastapi import DPoPBearer, DPoPHTTPException, dpop_exception_handler

    checked = verifier()
    dpop = DPoPBearer(checked, public_url=RESOURCE)
    app = FastAPI()
    app.add_exception_handler(DPoPHTTPException, dpop_exception_handler)

    @app.get("/api")
    async def me(principal: Any = Depends(dpop)) -> dict[str, str]:
        return {"sub": principal.subject}

    app.router.routes.append(metadata_route(checked))
    with TestClient(app) as client:
        _check_http(client.get(WELL_KNOWN), client.head(WELL_KNOWN), client.post(WELL_KNOWN), client.get("/api"))
    with pytest.raises(ValueError, match="no resource_metadata"):
        metadata_route(DPoPVerifier(ISSUER.validator()))


def test_flask_extension_serves_the_document_before_any_view() -> None:
    app = Flask(__name__)
    app.config.update(
        DPOP_TOKEN_VALIDATOR=ISSUER.validator(), DPOP_PUBLIC_URL=RESOURCE, DPOP_RESOURCE_METADATA=True,
        DPOP_AUTHORIZATION_SERVERS=[ISSUER.issuer], DPOP_PATH_SCOPES={"/api": "notes:read"},
    )  # fmt: skip

    @app.get("/api")
    def api() -> str:
        return "ok"

    DPoP(app)
    client = app.test_client()
    get = client.get(WELL_KNOWN)
    _check_http(get, client.head(WELL_KNOWN), client.post(WELL_KNOWN), client.get("/api"))
    assert get.json is not None and get.json["scopes_supported"] == ["notes:read"]
    key = DPoPKey.generate()
    ok = client.get(
        "/api", headers=dpop_headers(key, "GET", RESOURCE + "/api", ISSUER.token(key.jkt, scope="notes:read"))
    )
    assert ok.status_code == 200  # the switch changes nothing for the API itself


def test_django_middleware_serves_the_document_before_url_resolution() -> None:
    settings = {
        "TOKEN_VALIDATOR": ISSUER.validator(), "RESOURCE_METADATA": True, "RESOURCE": RESOURCE,
        "AUTHORIZATION_SERVERS": [ISSUER.issuer],
    }  # fmt: skip
    with django_settings(settings):
        client = DjangoClient()
        get = client.get(WELL_KNOWN)
        assert get.status_code == 200 and get["Content-Type"] == "application/json"
        check_document(get.content)
        assert get["Cache-Control"] == "public, max-age=3600"
        assert client.head(WELL_KNOWN).status_code == 200
        post = client.post(WELL_KNOWN)
        assert post.status_code == 405 and post["Allow"] == "GET, HEAD"
        challenge = client.get("/protected")["WWW-Authenticate"]
        assert CHALLENGE_PARAM in challenge
    with django_settings({"TOKEN_VALIDATOR": ISSUER.validator()}):
        assert DjangoClient().get(WELL_KNOWN).status_code == 404  # off by default


def test_django_async_path_serves_the_document_too() -> None:
    import asyncio

    from django.test import AsyncClient

    settings = {
        "TOKEN_VALIDATOR": ISSUER.validator(), "RESOURCE_METADATA": True, "RESOURCE": RESOURCE,
        "AUTHORIZATION_SERVERS": [ISSUER.issuer],
    }  # fmt: skip

    async def fetch() -> tuple[Any, Any]:
        client = AsyncClient()
        return await client.get(WELL_KNOWN), await client.get("/protected")

    with django_settings(settings):
        document, challenge = asyncio.run(fetch())
    assert document.status_code == 200
    check_document(document.content)
    assert challenge.status_code == 401 and CHALLENGE_PARAM in challenge["WWW-Authenticate"]
