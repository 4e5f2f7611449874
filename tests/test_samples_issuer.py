"""The sample issuer (sample_projects.issuer) and the env-var settings every sample shares."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from dpop_middleware import JWTAccessTokenValidator, MemoryReplayStore, NoncePolicy
from dpop_middleware.client import DPoPKey
from dpop_middleware.stores.redis import AsyncRedisReplayStore, RedisReplayStore
from sample_projects.common import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    SampleSettings,
    build_verifier,
    token_endpoint_options,
)
from sample_projects.issuer import issuer_settings
from sample_projects.issuer.inprocess import InProcessIssuer


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return value


def header_of(token: str) -> dict[str, Any]:
    head = token.split(".", maxsplit=1)[0]
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    return value


@pytest.fixture
def issuer() -> InProcessIssuer:
    return InProcessIssuer()


# -- settings from the environment -----------------------------------------------------------------


def test_defaults_point_at_the_sample_issuer_on_loopback() -> None:
    settings = SampleSettings.from_env({}, default_port=8002)
    assert settings.issuer == DEFAULT_ISSUER == "http://127.0.0.1:9000"
    assert settings.audience == DEFAULT_AUDIENCE
    assert (settings.jwks_uri, settings.public_url, settings.nonce_secret) == (None, None, None)
    assert settings.nonce_policy is NoncePolicy.OFF
    assert (settings.replay_store, settings.host, settings.port) == ("memory", "127.0.0.1", 8002)


def test_every_variable_is_read() -> None:
    env = {
        "DPOP_ISSUER": "https://as.example.com/realms/demo",
        "DPOP_JWKS_URI": "https://as.example.com/keys",
        "DPOP_AUDIENCE": "https://api.example.com",
        "DPOP_PUBLIC_URL": "https://api.example.com/v1",
        "DPOP_NONCE": "UNSAFE_METHODS",
        "DPOP_NONCE_SECRET": "s" * 32,
        "DPOP_REPLAY_STORE": "redis://127.0.0.1:6399/0",
        "PORT": "8123",
        "HOST": "0.0.0.0",
    }
    settings = SampleSettings.from_env(env, default_port=1)
    assert settings == SampleSettings(
        issuer="https://as.example.com/realms/demo",
        audience="https://api.example.com",
        jwks_uri="https://as.example.com/keys",
        public_url="https://api.example.com/v1",
        nonce_policy=NoncePolicy.UNSAFE_METHODS,
        nonce_secret="s" * 32,
        replay_store="redis://127.0.0.1:6399/0",
        host="0.0.0.0",
        port=8123,
    )
    # The library's settings builder makes everything: Redis stores are built without connecting,
    # the nonce keyring is shared through the secret, the keys come from DPOP_JWKS_URI.
    sync_verifier = build_verifier(settings, asynchronous=False)
    async_verifier = build_verifier(settings, asynchronous=True)
    assert isinstance(sync_verifier.replay_store, RedisReplayStore)
    assert isinstance(async_verifier.replay_store, AsyncRedisReplayStore)
    assert isinstance(token_endpoint_options(settings)["replay_store"], AsyncRedisReplayStore)
    assert sync_verifier.config.nonce_policy is NoncePolicy.UNSAFE_METHODS
    nonce = sync_verifier.config.nonce_keyring.issue(1000.0)
    assert async_verifier.config.nonce_keyring.check(nonce, 1000.0).valid  # another instance agrees
    assert token_endpoint_options(settings)["nonce_keyring"].check(nonce, 1000.0).valid
    validator = sync_verifier.token_validator
    assert validator.jwks_uri == "https://as.example.com/keys"
    assert validator.policy.issuer == "https://as.example.com/realms/demo"


def test_memory_store_and_discovery_by_default() -> None:
    settings = SampleSettings.from_env({"DPOP_REPLAY_STORE": " memory "}, default_port=1)
    verifier = build_verifier(settings, asynchronous=True)
    assert isinstance(verifier.replay_store, MemoryReplayStore)
    assert verifier.config.nonce_keyring.generated and token_endpoint_options(settings)["nonce_keyring"] is None
    assert verifier.token_validator.jwks_uri is None  # found by RFC 8414 discovery on first use


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DPOP_NONCE", "sometimes", "DPOP_NONCE must be one of"),
        ("DPOP_REPLAY_STORE", "memcached://x", "DPOP_REPLAY_STORE"),
        ("DPOP_ISSUER", "as.example.com", "DPOP_ISSUER must be an absolute"),
        ("DPOP_JWKS_URI", "/jwks", "DPOP_JWKS_URI must be an absolute"),
        ("DPOP_PUBLIC_URL", "ftp://api.example.com", "DPOP_PUBLIC_URL must be an absolute"),
        ("DPOP_NONCE_SECRET", "short", "at least 16 bytes"),
        ("PORT", "http", "PORT must be a number"),
        ("PORT", "70000", "PORT out of range"),
    ],
)
def test_bad_settings_fail_at_start_up(name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SampleSettings.from_env({name: value}, default_port=1)


def test_issuer_names_itself_after_its_port_unless_told() -> None:
    assert issuer_settings({"PORT": "9100"}).issuer == "http://127.0.0.1:9100"
    assert issuer_settings({"PORT": "9100", "HOST": "0.0.0.0"}).issuer == "http://127.0.0.1:9100"
    told = issuer_settings({"DPOP_ISSUER": "https://login.example.com", "DPOP_AUDIENCE": "https://api.example.com"})
    assert (told.issuer, told.audience) == ("https://login.example.com", "https://api.example.com")


# -- metadata and keys -----------------------------------------------------------------------------


def test_rfc8414_metadata(issuer: InProcessIssuer) -> None:
    response = issuer.http.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    meta = response.json()
    assert meta["issuer"] == "http://127.0.0.1:9000"
    assert meta["token_endpoint"] == "http://127.0.0.1:9000/token"
    assert meta["jwks_uri"] == "http://127.0.0.1:9000/jwks"
    assert meta["grant_types_supported"] == ["client_credentials"]
    assert meta["token_endpoint_auth_methods_supported"] == ["client_secret_basic"]
    assert "ES256" in meta["dpop_signing_alg_values_supported"]
    assert not {"none", "HS256"} & set(meta["dpop_signing_alg_values_supported"])
    assert {"notes:read", "notes:write"} <= set(meta["scopes_supported"])


def test_metadata_follows_the_configured_issuer() -> None:
    settings = issuer_settings({"DPOP_ISSUER": "https://login.example.com/tenant"})
    meta = InProcessIssuer(settings).http.get("/.well-known/oauth-authorization-server/tenant").json()
    assert meta["issuer"] == "https://login.example.com/tenant"
    assert meta["token_endpoint"] == "https://login.example.com/tenant/token"


def test_jwks_holds_public_keys_only(issuer: InProcessIssuer) -> None:
    response = issuer.http.get("/jwks")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jwk-set+json")
    (jwk,) = response.json()["keys"]
    assert jwk["kty"] == "EC" and jwk["alg"] == "ES256" and jwk["use"] == "sig" and jwk["kid"]
    assert "d" not in jwk


# -- the token endpoint ----------------------------------------------------------------------------


def test_token_is_an_rfc9068_jwt_bound_to_the_proof_key(issuer: InProcessIssuer, key: DPoPKey) -> None:
    response = issuer.token_response(key, "notes:read")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "DPoP"
    assert body["scope"] == "notes:read"
    assert body["expires_in"] == 300
    token = body["access_token"]
    assert header_of(token)["typ"] == "at+jwt"
    validator = JWTAccessTokenValidator(
        issuer="http://127.0.0.1:9000", audience=DEFAULT_AUDIENCE, jwks=issuer.http.get("/jwks").json()
    )
    claims = validator.validate(token)
    assert claims["cnf"] == {"jkt": key.jkt}
    assert claims["sub"] == claims["client_id"] == "demo-client"
    assert claims["exp"] - claims["iat"] == 300
    assert claims["jti"]


def test_default_scopes_and_scope_limits(issuer: InProcessIssuer, key: DPoPKey) -> None:
    assert issuer.token_response(key, None).json()["scope"] == "notes:read"
    refused = issuer.token_response(key, "notes:write", client=("reader", "reader-secret"))
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_scope")


@pytest.mark.parametrize("client", [("demo-client", "wrong"), ("nobody", "demo-secret"), ("", "")])
def test_client_authentication_is_required(issuer: InProcessIssuer, key: DPoPKey, client: tuple[str, str]) -> None:
    response = issuer.token_response(key, client=client)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")


def test_request_errors(issuer: InProcessIssuer, key: DPoPKey) -> None:
    wrong_grant = issuer.token_response(key, grant_type="password")
    assert (wrong_grant.status_code, wrong_grant.json()["error"]) == (400, "unsupported_grant_type")
    wrong_target = issuer.token_response(key, resource="https://elsewhere.example")
    assert (wrong_target.status_code, wrong_target.json()["error"]) == (400, "invalid_target")
    proof = key.proof("POST", issuer.token_url)
    as_json = issuer.http.post(
        "/token",
        json={"grant_type": "client_credentials"},
        auth=("demo-client", "demo-secret"),
        headers={"DPoP": proof},
    )
    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")
    # None of these used up the proof: it still buys a token.
    form = {"grant_type": "client_credentials"}
    ok = issuer.http.post("/token", data=form, auth=("demo-client", "demo-secret"), headers={"DPoP": proof})
    assert ok.status_code == 200


def test_proof_is_required_and_checked(issuer: InProcessIssuer, key: DPoPKey) -> None:
    form = {"grant_type": "client_credentials"}
    auth = ("demo-client", "demo-secret")
    missing = issuer.http.post("/token", data=form, auth=auth)
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_dpop_proof")
    wrong_htu = key.proof("POST", "http://127.0.0.1:9000/other")
    bad = issuer.http.post("/token", data=form, auth=auth, headers={"DPoP": wrong_htu})
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_dpop_proof")
    wrong_method = key.proof("GET", issuer.token_url)
    bad = issuer.http.post("/token", data=form, auth=auth, headers={"DPoP": wrong_method})
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_dpop_proof")


def test_a_proof_buys_one_token(issuer: InProcessIssuer, key: DPoPKey) -> None:
    proof = key.proof("POST", issuer.token_url)
    form = {"grant_type": "client_credentials"}
    auth = ("demo-client", "demo-secret")
    assert issuer.http.post("/token", data=form, auth=auth, headers={"DPoP": proof}).status_code == 200
    replayed = issuer.http.post("/token", data=form, auth=auth, headers={"DPoP": proof})
    assert (replayed.status_code, replayed.json()["error"]) == (400, "invalid_dpop_proof")


def test_nonce_policy_from_the_environment(key: DPoPKey) -> None:
    issuer = InProcessIssuer(issuer_settings({"DPOP_NONCE": "always"}))
    challenged = issuer.token_response(key)
    assert (challenged.status_code, challenged.json()["error"]) == (400, "use_dpop_nonce")
    nonce = challenged.headers["dpop-nonce"]
    answered = issuer.token_response(key, nonce=nonce)
    assert answered.status_code == 200
    assert claims_of(answered.json()["access_token"])["cnf"]["jkt"] == key.jkt
