"""Issue 19 §3 for Flask: settings that name their mistakes, debug diagnostics, the per-process store.

Every ``DPOP_*`` key is type-checked by ``init_app`` (start-up, never per request), naming the key and
the expected type (and the choices for enumerations); list settings take the comma-separated strings
of environment variables; missing keys are named.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from flask import Flask

from dpop_middleware.client import DPoPKey
from dpop_middleware.flask import DPoP
from dpop_middleware.settings import SettingsError
from dpop_middleware.stores import memory
from dpop_middleware.testing import TestIssuer, dpop_headers

BASE = "http://localhost"




def app_with(issuer: TestIssuer | None, **config: Any) -> Flask:
    app = Flask(__name__)
    if issuer is not None:
        app.config.update(DPOP_ISSUER=issuer.issuer, DPOP_AUDIENCE=issuer.audience, DPOP_JWKS=issuer.jwks)
    app.config.update(config)

    @app.get("/me")
    def me() -> dict[str, Any]:
        return {"ok": True}

    return app


def signed(issuer: TestIssuer, key: DPoPKey, path: str = "/me", url: str | None = None) -> dict[str, str]:
    return dpop_headers(key, "GET", url or BASE + path, issuer.token(key.jkt))


# -- one hostile value of each kind, for every key -------------------------------------------------

# (setting, value): each must be refused by init_app with an error naming the key.
HOSTILE: list[tuple[str, Any]] = [
    ("ALGORITHMS", ["HS256"]),
    ("ALGORITHMS", "none"),
    ("ALGORITHMS", []),
    ("ALGORITHMS", 256),
    ("ALGORITHMS", {"ES256": True}),
    ("MODE", "strict"),
    ("MODE", 1),
    ("MODE", ["required"]),
    ("MAX_AGE", -1),
    ("MAX_AGE", "soon"),
    ("MAX_AGE", float("nan")),
    ("MAX_AGE", float("inf")),
    ("MAX_AGE", True),
    ("MAX_AGE", [60]),
    ("MAX_AGE", 10**400),
    ("CLOCK_SKEW", -5),
    ("CLOCK_SKEW", {}),
    ("MAX_PROOF_BYTES", 0),
    ("MAX_PROOF_BYTES", "big"),
    ("MAX_PROOF_BYTES", 1.5),
    ("MAX_TOKEN_BYTES", -1),
    ("MAX_TOKEN_BYTES", False),
    ("MAX_JTI_LENGTH", 0),
    ("MAX_JTI_LENGTH", "٣"),  # a digit, but not an ASCII one
    ("MIN_RSA_BITS", 1024),
    ("MIN_RSA_BITS", 3072.0),
    ("NONCE_POLICY", "sometimes"),
    ("NONCE_POLICY", 3),
    ("NONCE_KEYRING", "secret"),
    ("NONCE_KEYRING", {}),
    ("NONCE_KEYRING", {"k1": "short"}),
    ("NONCE_KEYRING", 42),
    ("TOKEN_CACHE_SIZE", -1),
    ("TOKEN_CACHE_SIZE", "lots"),
    ("TOKEN_CACHE_MAX_TTL", -1),
    ("TOKEN_CACHE_MAX_TTL", "x"),
    ("DEBUG", "maybe"),
    ("DEBUG", 2),
    ("DEBUG", []),
    ("VERIFIER", 42),
    ("VERIFIER", ""),
    ("VERIFIER", "no_such_module_xyz.Verifier"),
    ("ISSUER", 42),
    ("ISSUER", ""),
    ("ISSUER", ["https://issuer.test"]),
    ("AUDIENCE", 42),
    ("AUDIENCE", ""),
    ("AUDIENCE", []),
    ("AUDIENCE", [1]),
    ("JWKS", "https://issuer.test/jwks"),
    ("JWKS", "{not json"),
    ("JWKS", {"keys": "x"}),
    ("JWKS", 42),
    ("REPLAY_STORE", 42),
    ("REPLAY_STORE", ""),
    ("REPLAY_STORE", "redis"),
    ("REPLAY_STORE", "no_such_module_xyz.Store"),
    ("ALLOW_PER_PROCESS_STORE", "perhaps"),
    ("ALLOW_PER_PROCESS_STORE", 3),
    ("ON_OUTCOME", 42),
    ("ON_OUTCOME", ""),
    ("ON_OUTCOME", "no_such_module_xyz.hook"),
    ("TRUSTED_PROXIES", "not-an-ip"),
    ("TRUSTED_PROXIES", [1]),
    ("TRUSTED_PROXIES", {"10.0.0.0/8": True}),
    ("TRUSTED_HEADERS", "X-Real-IP"),
    ("TRUSTED_HEADERS", 42),
    ("PUBLIC_URL", "api.example.com"),
    ("PUBLIC_URL", "https://api.example.com/?q=1"),
    ("PUBLIC_URL", "ftp://api.example.com"),
    ("PUBLIC_URL", 42),
    ("ALLOWED_HOSTS", 42),
    ("ALLOWED_HOSTS", [1]),
    ("ALLOWED_HOSTS", {"api.example.com": True}),
    ("EXEMPT_PATHS", 42),
    ("EXEMPT_PATHS", [re.compile("/health")]),  # Flask matches path prefixes, not regular expressions
    ("EXEMPT_PATHS", ["health"]),  # not a path
    ("ENFORCE_ALL", "maybe"),
    ("ENFORCE_ALL", 2),
    ("ENFORCE_ALL", []),
]


@pytest.mark.parametrize(("name", "value"), HOSTILE, ids=[f"{n}-{v!r}"[:60] for n, v in HOSTILE])
def test_hostile_setting_is_refused_at_init_app_naming_the_key(issuer: TestIssuer, name: str, value: Any) -> None:
    key = f"DPOP_{name}"
    # A given verifier excludes the builder keys: test DPOP_VERIFIER on an app without them.
    app = app_with(None if name == "VERIFIER" else issuer, **{key: value})
    with pytest.raises(SettingsError) as raised:
        DPoP(app)
    assert raised.value.key == key or key in str(raised.value), str(raised.value)


def test_token_validator_that_is_no_validator_is_refused_at_init_app() -> None:
    for value in ("", "no_such_module_xyz.Validator"):
        with pytest.raises(SettingsError, match="DPOP_TOKEN_VALIDATOR"):
            DPoP(app_with(None, DPOP_TOKEN_VALIDATOR=value))
    # An object that cannot validate is refused when the verifier is built (start-up, not per request).
    with pytest.raises((SettingsError, TypeError), match=r"(?i)token_validator"):
        DPoP(app_with(None, DPOP_TOKEN_VALIDATOR=42))


@pytest.mark.parametrize(
    ("name", "value", "choices"),
    [
        ("MODE", "strict", ["'required'", "'allow_bearer'", "'report_only'"]),
        ("NONCE_POLICY", "sometimes", ["'off'", "'always'", "'unsafe_methods'", "'heal_iat'"]),
        ("ALGORITHMS", "HS256", ["'ES256'", "'EdDSA'"]),
        ("TRUSTED_HEADERS", "X-Real-IP", ["'x-forwarded-host'"]),
        ("ENFORCE_ALL", "maybe", ["True/False"]),
    ],
)
def test_enum_errors_list_the_valid_choices(issuer: TestIssuer, name: str, value: str, choices: list[str]) -> None:
    with pytest.raises(SettingsError) as raised:
        DPoP(app_with(issuer, **{f"DPOP_{name}": value}))
    message = str(raised.value)
    assert message.startswith(f"DPOP_{name} must be")
    for choice in choices:
        assert choice in message


def test_unknown_key_lists_the_valid_ones(issuer: TestIssuer) -> None:
    with pytest.raises(SettingsError) as raised:
        DPoP(app_with(issuer, DPOP_MAXAGE=30))
    assert raised.value.key == "DPOP_MAXAGE"
    assert "DPOP_MAX_AGE" in str(raised.value) and "DPOP_ALLOWED_HOSTS" in str(raised.value)


def test_lower_case_key_is_not_silently_accepted(issuer: TestIssuer) -> None:
    with pytest.raises(SettingsError, match="DPOP_max_age"):
        DPoP(app_with(issuer, DPOP_max_age=30))


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        # Keys are not required since issue 20: without DPOP_JWKS(_URI) they are found by discovery.
        ({"DPOP_ISSUER": "https://issuer.test"}, ["DPOP_AUDIENCE"]),
        ({"DPOP_AUDIENCE": "https://api.test"}, ["DPOP_ISSUER"]),
        ({}, ["DPOP_ISSUER", "DPOP_AUDIENCE"]),
    ],
)
def test_missing_keys_are_named(given: dict[str, str], missing: list[str]) -> None:
    with pytest.raises(SettingsError) as raised:
        DPoP(app_with(None, **given))
    message = str(raised.value)
    assert "DPOP_TOKEN_VALIDATOR" in message
    assert f"(missing: {', '.join(missing)})" in message


def test_given_verifier_clashes_with_builder_keys_by_name(issuer: TestIssuer) -> None:
    from dpop_middleware import DPoPVerifier

    app = app_with(None, DPOP_MODE="report_only", DPOP_MAX_AGE=30)
    with pytest.raises(SettingsError) as raised:
        DPoP(app, verifier=DPoPVerifier(issuer.validator()))
    assert "DPOP_MAX_AGE" in str(raised.value) and "DPOP_MODE" in str(raised.value)


# -- strings from environment variables ------------------------------------------------------------


def test_environment_strings_are_coerced(issuer: TestIssuer, key: DPoPKey) -> None:
    app = app_with(
        issuer,
        DPOP_ALGORITHMS="ES256, EdDSA",
        DPOP_MAX_AGE="30",
        DPOP_ENFORCE_ALL="false",
        DPOP_EXEMPT_PATHS="/health, /static",
        DPOP_TRUSTED_PROXIES="10.0.0.0/8, 127.0.0.1",
        DPOP_ALLOWED_HOSTS="localhost, .example.com",
    )
    dpop = DPoP(app)
    with app.app_context():
        assert dpop.verifier.config.algorithms == ("ES256", "EdDSA")
        assert dpop.verifier.config.max_age == 30
    # "false" from the environment used to be truthy: every view was enforced.
    assert app.test_client().get("/me").status_code == 200


def test_enforce_all_true_string_enforces(issuer: TestIssuer) -> None:
    app = app_with(issuer, DPOP_ENFORCE_ALL="true", DPOP_EXEMPT_PATHS="/health,/static")
    DPoP(app)

    @app.get("/health")
    def health() -> str:
        return "ok"

    client = app.test_client()
    assert client.get("/me").status_code == 401
    assert client.get("/health").status_code == 200


def test_flask_prefixed_env_config(issuer: TestIssuer, monkeypatch: pytest.MonkeyPatch) -> None:
    """``app.config.from_prefixed_env()`` (FLASK_DPOP_*) hands JSON-decoded values or raw strings."""
    monkeypatch.setenv("FLASK_DPOP_MODE", "allow_bearer")
    monkeypatch.setenv("FLASK_DPOP_MAX_AGE", "45")
    monkeypatch.setenv("FLASK_DPOP_ALLOWED_HOSTS", "api.example.com,localhost")
    app = app_with(issuer)
    app.config.from_prefixed_env()
    dpop = DPoP(app)
    with app.app_context():
        assert dpop.verifier.config.max_age == 45
        assert dpop.verifier.config.bearer_allowed


# -- debug diagnostics -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("app_debug", "setting", "detailed"),
    [(False, None, False), (True, None, True), (False, True, True), (True, False, False), (True, "false", False)],
)
def test_htu_mismatch_is_explained_only_in_debug(
    issuer: TestIssuer, key: DPoPKey, app_debug: bool, setting: Any, detailed: bool
) -> None:
    app = app_with(issuer, DPOP_DEBUG=setting, DPOP_PUBLIC_URL=BASE, DPOP_ENFORCE_ALL=True)
    app.debug = app_debug
    DPoP(app)
    resp = app.test_client().get("/me", headers=signed(issuer, key, url="https://elsewhere.example/me"))
    assert resp.status_code == 401
    body = json.loads(resp.get_data())
    assert ("dpop_debug" in body) is detailed
    assert (b"elsewhere.example" in resp.get_data()) is detailed
    if detailed:
        assert body["dpop_debug"] == {"expected": BASE + "/me", "received": "https://elsewhere.example/me"}
    assert "elsewhere" not in resp.headers["WWW-Authenticate"]


# -- the per-process store -------------------------------------------------------------------------


class SiblingsGuard:
    """A process guard that has found sibling worker processes (as under gunicorn -w 4)."""

    problem = "4 worker processes share this server"

    def has_siblings(self) -> bool:
        return True


def test_default_store_names_dpop_replay_store(
    issuer: TestIssuer, key: DPoPKey, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(memory, "shared_guard", SiblingsGuard)
    app = app_with(issuer, DPOP_ENFORCE_ALL=True)
    dpop = DPoP(app)
    with app.app_context():
        assert getattr(dpop.verifier.replay_store, "setting", None) == "DPOP_REPLAY_STORE"
    with caplog.at_level(logging.ERROR, logger="dpop_middleware"):
        resp = app.test_client().get("/me", headers=signed(issuer, key))
    assert resp.status_code == 503
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "DPOP_REPLAY_STORE" in errors[0]


@pytest.mark.parametrize("allow", [True, "true"])
def test_allow_per_process_store_reaches_the_store(
    issuer: TestIssuer, key: DPoPKey, monkeypatch: pytest.MonkeyPatch, allow: Any
) -> None:
    monkeypatch.setattr(memory, "shared_guard", SiblingsGuard)
    app = app_with(issuer, DPOP_ENFORCE_ALL=True, DPOP_ALLOW_PER_PROCESS_STORE=allow)
    DPoP(app)
    assert app.test_client().get("/me", headers=signed(issuer, key)).status_code == 200


def test_token_validator_with_jwt_keys_names_the_ignored_keys(issuer: TestIssuer) -> None:
    """The old extension used DPOP_TOKEN_VALIDATOR and silently ignored DPOP_ISSUER/AUDIENCE/JWKS."""
    with pytest.raises(SettingsError) as raised:
        DPoP(app_with(issuer, DPOP_TOKEN_VALIDATOR=issuer.validator()))
    message = str(raised.value)
    assert message.startswith("DPOP_TOKEN_VALIDATOR is given")
    assert "DPOP_ISSUER" in message and "DPOP_AUDIENCE" in message and "DPOP_JWKS" in message
