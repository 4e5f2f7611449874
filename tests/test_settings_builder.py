"""One settings-to-verifier builder (issue 20 item 3): validator choice, stores, keyring, environment.

The builder is framework-free; Django's ``DPOP``, Flask's ``DPOP_*`` and the samples' environment
contract all reach it. Keys at a URL (``jwks_uri``), RFC 8414 discovery from the issuer and RFC 7662
introspection are chosen by settings alone, and every mistake names the key as the user spelt it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fakes import JSONServer

from dpop_middleware import MemoryReplayStore, NoncePolicy
from dpop_middleware.client import DPoPKey
from dpop_middleware.settings import (
    BUILDER_NAMES,
    CONFIG_NAMES,
    MissingValidatorError,
    SettingsError,
    build_replay_store,
    build_verifier,
    environ_settings,
    environ_spell,
    read_settings,
)
from dpop_middleware.stores.redis import AsyncRedisReplayStore, RedisReplayStore
from dpop_middleware.testing import TestIssuer, dpop_headers
from dpop_middleware.tokens.client_auth import ClientSecretPost, PrivateKeyJWT
from dpop_middleware.tokens.introspection import IntrospectionValidator
from dpop_middleware.tokens.jwt import JWTAccessTokenValidator
from dpop_middleware.tokens.remote import RemoteJWKSValidator

ACCEPTED = BUILDER_NAMES | CONFIG_NAMES


def flask_spell(name: str) -> str:
    return f"DPOP_{name.upper()}"


def build(raw: dict[str, Any], **options: Any) -> Any:
    return build_verifier(read_settings(raw, spell=flask_spell, accepted=ACCEPTED), spell=flask_spell, **options)


BASE = {"issuer": "https://as.example.com", "audience": "https://api.example.com"}


# -- validator choice -------------------------------------------------------------------------


def test_jwks_uri_gives_a_remote_validator_for_that_url() -> None:
    validator = build({**BASE, "jwks_uri": "https://as.example.com/keys"}).token_validator
    assert isinstance(validator, RemoteJWKSValidator)
    assert validator.jwks_uri == "https://as.example.com/keys"


def test_issuer_and_audience_alone_mean_discovery() -> None:
    validator = build(BASE).token_validator
    assert isinstance(validator, RemoteJWKSValidator) and validator.jwks_uri is None


def test_static_jwks_still_gives_the_local_validator(issuer: TestIssuer) -> None:
    verifier = build({"issuer": issuer.issuer, "audience": issuer.audience, "jwks": issuer.jwks})
    assert isinstance(verifier.token_validator, JWTAccessTokenValidator)


def test_plain_http_keys_away_from_loopback_are_refused_at_start_up() -> None:
    with pytest.raises(SettingsError, match=r"^DPOP_JWKS_URI cannot be used: refusing plain-http"):
        build({**BASE, "jwks_uri": "http://keys.example.com/jwks"})


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"jwks": {"keys": []}, "jwks_uri": "https://as.example.com/keys"}, "DPOP_JWKS_URI and DPOP_JWKS"),
        ({"jwks_uri": "https://as.example.com/keys", "introspection_endpoint": "https://as.example.com/i"},
         "DPOP_INTROSPECTION_ENDPOINT and DPOP_JWKS_URI"),
    ],
)  # fmt: skip
def test_two_ways_to_validate_are_named_both(extra: dict[str, Any], named: str) -> None:
    with pytest.raises(SettingsError, match=f"^{named} are two ways to validate access tokens: keep one"):
        build({**BASE, **extra})


def test_token_validator_next_to_a_jwks_uri_is_a_clash(issuer: TestIssuer) -> None:
    with pytest.raises(SettingsError, match=r"DPOP_TOKEN_VALIDATOR is given, so DPOP_JWKS_URI would be ignored"):
        build({"token_validator": issuer.validator(), "jwks_uri": "https://as.example.com/keys"})


def test_missing_audience_is_named() -> None:
    with pytest.raises(MissingValidatorError, match=r"^DPOP_AUDIENCE is missing: .*DPOP_INTROSPECTION_ENDPOINT"):
        build({"issuer": "https://as.example.com"})


# -- introspection ----------------------------------------------------------------------------

INTROSPECTION = {
    "audience": "https://api.example.com",
    "introspection_endpoint": "https://as.example.com/introspect",
    "introspection_client_id": "api",
}


def test_introspection_with_a_client_secret() -> None:
    verifier = build({**INTROSPECTION, "introspection_client_secret": "s3cret-s3cret"})
    assert isinstance(verifier.token_validator, IntrospectionValidator)
    post = build({**INTROSPECTION, "introspection_client_secret": "x" * 12, "introspection_auth_method": "client_secret_post"})
    assert isinstance(post.token_validator.client_auth, ClientSecretPost)


def test_introspection_with_private_key_jwt_from_pem() -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    verifier = build({**INTROSPECTION, "introspection_private_key": pem.decode()})
    auth = verifier.token_validator.client_auth
    assert isinstance(auth, PrivateKeyJWT) and auth.client_id == "api" and isinstance(auth.key, DPoPKey)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({**INTROSPECTION}, r"^DPOP_INTROSPECTION_CLIENT_SECRET is missing"),
        ({**INTROSPECTION, "introspection_auth_method": "private_key_jwt"}, r"^DPOP_INTROSPECTION_PRIVATE_KEY is missing"),
        ({k: v for k, v in INTROSPECTION.items() if k != "introspection_client_id"}, r"^DPOP_INTROSPECTION_CLIENT_ID is missing"),
        ({k: v for k, v in INTROSPECTION.items() if k != "audience"} | {"introspection_client_secret": "x" * 12},
         r"^DPOP_AUDIENCE is missing: introspected tokens"),
        ({**BASE, "introspection_client_id": "api"}, r"^DPOP_INTROSPECTION_CLIENT_ID is only read with DPOP_INTROSPECTION_ENDPOINT"),
        ({**INTROSPECTION, "introspection_auth_method": "tls"}, r"^DPOP_INTROSPECTION_AUTH_METHOD must be one of 'client_secret_basic'"),
    ],
)  # fmt: skip
def test_introspection_mistakes_are_named(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        build(raw)


def test_a_private_key_that_does_not_parse_is_never_echoed() -> None:
    with pytest.raises(SettingsError) as info:
        build({**INTROSPECTION, "introspection_private_key": "-----BEGIN PRIVATE KEY-----\nS3cretMaterial\n"})
    assert "S3cretMaterial" not in str(info.value) and "DPOP_INTROSPECTION_PRIVATE_KEY must be a private key" in str(info.value)


# -- replay stores ----------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6399/0", "rediss://:pw@cache.example.com:6380/1", "unix:///run/redis.sock"])
def test_redis_urls_build_the_client_for_the_app_kind(url: str) -> None:
    values = {"replay_store": url}
    assert isinstance(build_replay_store(values, spell=flask_spell), RedisReplayStore)
    assert isinstance(build_replay_store(values, spell=flask_spell, asynchronous=True), AsyncRedisReplayStore)


def test_another_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(SettingsError) as info:
        build_replay_store({"replay_store": "memcached://user:S3cret@cache:11211"}, spell=flask_spell)
    assert "S3cret" not in str(info.value) and "redis://" in str(info.value)


def test_memory_is_the_default_and_names_its_setting() -> None:
    store = build_replay_store({}, spell=environ_spell)
    assert isinstance(store, MemoryReplayStore)


# -- the environment contract ------------------------------------------------------------------


def test_environment_variables_are_the_dpop_spelling_with_the_samples_aliases() -> None:
    environ = {
        "DPOP_ISSUER": "https://as.example.com",
        "DPOP_AUDIENCE": "https://api.example.com",
        "DPOP_JWKS_URI": "https://as.example.com/keys",
        "DPOP_MAX_AGE": "30",
        "DPOP_NONCE": "always",
        "DPOP_NONCE_SECRET": "n" * 32,
        "DPOP_SOMETHING_ELSE": "ignored",  # a shell holds many variables; unknown ones are not ours
        "DPOP_MODE": "",  # empty: unset
        "PATH": "/usr/bin",
    }
    values = environ_settings(environ, accepted=ACCEPTED)
    assert values["max_age"] == 30.0 and values["nonce_policy"] is NoncePolicy.ALWAYS and "mode" not in values
    verifier = build_verifier(values, spell=environ_spell)
    assert isinstance(verifier.token_validator, RemoteJWKSValidator)
    assert not verifier.config.nonce_keyring.generated


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DPOP_MAX_AGE", "soon", r"^DPOP_MAX_AGE must be a number of seconds"),
        ("DPOP_NONCE", "sometimes", r"^DPOP_NONCE must be one of 'off'"),
        ("DPOP_NONCE_SECRET", "short", r"^DPOP_NONCE_SECRET must be a NonceKeyring"),
    ],
)
def test_environment_mistakes_name_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as info:
        environ_settings({variable: value}, accepted=ACCEPTED)
    if variable == "DPOP_NONCE_SECRET":
        assert "short" not in str(info.value)


# -- end to end: keys fetched from a real loopback URL, from settings alone ----------------------


@pytest.fixture
def jwks_server(issuer: TestIssuer) -> Iterator[str]:
    with JSONServer() as server:
        server.documents["/jwks"] = issuer.jwks
        yield f"{server.base}/jwks"


def test_flask_with_dpop_jwks_uri_accepts_a_bound_token(issuer: TestIssuer, key: DPoPKey, jwks_server: str) -> None:
    from flask import Flask

    from dpop_middleware.flask import DPoP

    app = Flask(__name__)
    app.config.update(
        DPOP_ISSUER=issuer.issuer, DPOP_AUDIENCE=issuer.audience, DPOP_JWKS_URI=jwks_server,
        DPOP_PUBLIC_URL="https://api.example.com",
    )  # fmt: skip
    dpop = DPoP(app)

    @app.get("/me")
    @dpop.required
    def me() -> dict[str, Any]:
        return {"ok": True}

    client = app.test_client()
    token = issuer.token(key.jkt)
    accepted = client.get("/me", headers=dpop_headers(key, "GET", "https://api.example.com/me", token))
    assert accepted.status_code == 200, accepted.get_data(as_text=True)
    stolen = DPoPKey.generate("ES256")
    refused = client.get("/me", headers=dpop_headers(stolen, "GET", "https://api.example.com/me", token))
    assert refused.status_code == 401
