"""The settings table: every key type-checked, named as the user spells it, choices listed."""

from __future__ import annotations

import re

import pytest

from dpop_middleware import DPoPVerifier, MemoryReplayStore, NonceKeyring
from dpop_middleware.core.config import Mode
from dpop_middleware.core.nonce import NoncePolicy
from dpop_middleware.settings import (
    BUILDER_NAMES,
    CONFIG_NAMES,
    SETTINGS,
    SettingsError,
    build_verifier,
    read_settings,
)


def django_spell(name: str) -> str:
    return f"DPOP['{name.upper()}']"


def flask_spell(name: str) -> str:
    return f"DPOP_{name.upper()}"


ALL = frozenset(SETTINGS)


def read(raw, spell=django_spell):
    return read_settings(raw, spell=spell, accepted=ALL)


def test_every_verifier_option_and_builder_input_is_in_the_table():
    assert SETTINGS.keys() >= CONFIG_NAMES
    assert SETTINGS.keys() >= BUILDER_NAMES


def test_unknown_key_is_named_with_the_valid_ones():
    with pytest.raises(SettingsError) as info:
        read_settings({"max_agee": 5}, spell=flask_spell, accepted={"max_age", "mode"})
    message = str(info.value)
    assert message.startswith("DPOP_MAX_AGEE is not a setting")
    assert "DPOP_MAX_AGE" in message and "DPOP_MODE" in message


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("mode", "strict", "must be one of 'required', 'allow_bearer', 'report_only', not 'strict' (str)"),
        ("mode", ["required"], "must be one of 'required'"),
        ("nonce_policy", 3, "must be one of 'off', 'always', 'unsafe_methods', 'heal_iat', not 3 (int)"),
        ("max_age", "soon", "must be a number of seconds, at least 0, not 'soon' (str)"),
        ("max_age", -1, "at least 0"),
        ("max_age", float("nan"), "a number of seconds"),
        ("max_age", True, "a number of seconds"),
        ("max_age", 10**400, "a number of seconds"),
        ("min_rsa_bits", 1024, "an integer, at least 2048"),
        ("max_proof_bytes", 1.5, "an integer, at least 256"),
        ("algorithms", "ES256 HS256", "among 'ES256'"),
        ("algorithms", "", "a non-empty list of JWS algorithm names"),
        ("algorithms", {"alg": "ES256"}, "a list of JWS algorithm names"),
        ("trusted_proxies", "10.0.0.0/8 not-an-ip", "(not 'not-an-ip')"),
        ("trusted_headers", ["x-forwarded-for", "x-real-ip"], "(not 'x-real-ip')"),
        ("public_url", "api.example.com", "an absolute http(s) URL"),
        ("public_url", "https://api.example.com/?q", "without query"),
        ("debug", "maybe", "a boolean"),
        ("enforce_all", 2, "a boolean"),
        ("issuer", "", "a non-empty string"),
        ("issuer", ["https://as"], "a non-empty string"),
        ("audience", [], "a non-empty string, or a list of them"),
        ("jwks", "{not json", "this text is not JSON"),
        ("jwks", {"keys": {}}, "a JWKS: a dict {'keys': [...]}"),
        ("jwks", [1, 2], "a JWKS"),
        ("default", "open", "one of 'required', 'optional', 'exempt'"),
        ("allowed_hosts", 5, "a list of host names"),
        ("nonce_keyring", {"k1": "short"}, "secret of 16+ bytes"),
    ],
)
def test_wrong_type_names_key_expected_type_and_choices(name, value, expected):
    with pytest.raises(SettingsError) as info:
        read({name: value})
    message = str(info.value)
    assert message.startswith(django_spell(name) + " must be ")
    assert expected in message
    assert info.value.key == django_spell(name)
    assert info.value.name == name


def test_a_secret_is_never_echoed_in_the_error():
    with pytest.raises(SettingsError) as info:
        read({"nonce_keyring": {"k1": "tooshort-secret"}})
    assert "tooshort-secret" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "value", "coerced"),
    [
        ("algorithms", "ES256, EdDSA", ("ES256", "EdDSA")),
        ("algorithms", ["PS256"], ("PS256",)),
        ("mode", "Report_Only", Mode.REPORT_ONLY),
        ("mode", Mode.ALLOW_BEARER, Mode.ALLOW_BEARER),
        ("nonce_policy", "heal_iat", NoncePolicy.HEAL_IAT),
        ("max_age", "30", 30.0),
        ("max_age", 30, 30.0),
        ("token_cache_size", "0", 0),
        ("debug", "off", False),
        ("debug", "TRUE", True),
        ("trusted_proxies", "10.0.0.0/8,127.0.0.1", ("10.0.0.0/8", "127.0.0.1")),
        ("trusted_headers", "X-Forwarded-For X-Forwarded-Host", ("x-forwarded-for", "x-forwarded-host")),
        ("allowed_hosts", "api.example.com,.example.org", ("api.example.com", ".example.org")),
        ("exempt_paths", "/healthz, /static", ("/healthz", "/static")),
        ("jwks", '{"keys": []}', {"keys": []}),
        ("audience", ["a", "b"], ("a", "b")),
    ],
)
def test_values_from_environment_strings_are_coerced(name, value, coerced):
    assert read({name: value})[name] == coerced


def test_none_counts_as_unset():
    assert read({"public_url": None, "max_age": None}) == {}


def test_exempt_paths_keep_compiled_regexes():
    pattern = re.compile(r"^/health")
    assert read({"exempt_paths": [pattern, "^/metrics$"]})["exempt_paths"] == (pattern, "^/metrics$")


def _load(path: str):
    raise ImportError(f"No module named {path.split('.', maxsplit=1)[0]!r}")


def test_build_names_every_missing_key(issuer):
    with pytest.raises(SettingsError) as info:
        build_verifier(read({"issuer": issuer.issuer}, flask_spell), spell=flask_spell, load=_load)
    message = str(info.value)
    assert "DPOP_AUDIENCE" in message and "DPOP_JWKS_URI" in message and "DPOP_TOKEN_VALIDATOR" in message
    # Keys are optional since issue 20: without JWKS or JWKS_URI they are found by discovery.
    assert "missing: DPOP_AUDIENCE)" in message


def test_build_from_issuer_audience_jwks(issuer):
    values = read({"issuer": issuer.issuer, "audience": issuer.audience, "jwks": issuer.jwks, "max_age": "30",
                   "nonce_keyring": {"k1": "0123456789abcdef0123"}})
    verifier = build_verifier(values, spell=django_spell, load=_load)
    assert isinstance(verifier, DPoPVerifier)
    assert verifier.config.max_age == 30.0
    assert isinstance(verifier.config.nonce_keyring, NonceKeyring)
    store = verifier.replay_store
    assert isinstance(store, MemoryReplayStore)
    assert store.setting == "DPOP['REPLAY_STORE']"


def test_build_allow_per_process_store_reaches_the_store(issuer):
    values = read({"issuer": issuer.issuer, "audience": issuer.audience, "jwks": issuer.jwks,
                   "allow_per_process_store": "true"})
    store = build_verifier(values, spell=django_spell, load=_load).replay_store
    assert store._guard is None  # the guard is switched off on purpose


def test_build_jwks_without_a_usable_key_names_the_key(issuer):
    values = read({"issuer": issuer.issuer, "audience": issuer.audience, "jwks": {"keys": [{"kty": "oct", "k": "AA"}]}})
    with pytest.raises(SettingsError, match=r"^DPOP\['JWKS'\] holds no usable signing key"):
        build_verifier(values, spell=django_spell, load=_load)


def test_build_verifier_clashes_with_builder_keys(issuer):
    verifier = DPoPVerifier(issuer.validator())
    with pytest.raises(SettingsError, match=r"DPOP_VERIFIER is given, so DPOP_MAX_AGE would be ignored"):
        build_verifier(read({"verifier": verifier, "max_age": 5}, flask_spell), spell=flask_spell, load=_load)
    assert build_verifier(read({"verifier": verifier}), spell=django_spell, load=_load) is verifier


def test_build_verifier_of_the_wrong_type_is_named(issuer):
    with pytest.raises(SettingsError, match=r"DPOP_VERIFIER must be a DPoPVerifier .*not JWTAccessTokenValidator"):
        build_verifier(read({"verifier": issuer.validator()}), spell=flask_spell, load=_load)


def test_build_token_validator_clashes_with_issuer(issuer):
    values = read({"token_validator": issuer.validator(), "issuer": issuer.issuer})
    with pytest.raises(SettingsError, match=r"TOKEN_VALIDATOR'\] is given, so DPOP\['ISSUER'\] would be ignored"):
        build_verifier(values, spell=django_spell, load=_load)


def test_build_dotted_path_that_cannot_be_imported_is_named(issuer):
    values = read({"token_validator": "nowhere.validator"})
    with pytest.raises(SettingsError, match=r"TOKEN_VALIDATOR'\] names 'nowhere.validator', which cannot be imported"):
        build_verifier(values, spell=django_spell, load=_load)


def test_build_replay_store_choices(issuer):
    base = {"issuer": issuer.issuer, "audience": issuer.audience, "jwks": issuer.jwks}
    with pytest.raises(SettingsError, match=r"must be one of 'memory', 'django-cache', a redis://.* URL, a store object"):
        build_verifier(read({**base, "replay_store": "redis"}), spell=django_spell, load=_load,
                       stores={"django-cache": MemoryReplayStore})
    with pytest.raises(SettingsError, match=r"must be a replay store"):
        build_verifier(read({**base, "replay_store": object()}), spell=django_spell, load=_load)
    custom = MemoryReplayStore(allow_multiple_processes=True)
    assert build_verifier(read({**base, "replay_store": custom}), spell=django_spell, load=_load).replay_store is custom


def test_build_on_outcome_must_be_callable(issuer):
    base = {"issuer": issuer.issuer, "audience": issuer.audience, "jwks": issuer.jwks}
    with pytest.raises(SettingsError, match=r"DPOP_ON_OUTCOME must be callable, not int"):
        build_verifier(read({**base, "on_outcome": 3}), spell=flask_spell, load=_load)


def test_build_token_validator_of_the_wrong_type_is_named():
    with pytest.raises(SettingsError, match=r"DPOP_TOKEN_VALIDATOR must be a token validator .*not int"):
        build_verifier(read({"token_validator": 42}, flask_spell), spell=flask_spell, load=_load)


def test_jwks_url_gets_a_hint():
    with pytest.raises(SettingsError, match=r"for keys at a URL, set jwks_uri"):
        read({"jwks": "https://as.example.com/jwks"})


def test_adapter_store_settings_clash_with_a_ready_verifier(issuer):
    verifier = DPoPVerifier(issuer.validator())
    with pytest.raises(SettingsError, match=r"DPOP\['REPLAY_CACHE_ALIAS'\] would be ignored"):
        build_verifier(read({"verifier": verifier, "replay_cache_alias": "x"}), spell=django_spell, load=_load,
                       store_names=("replay_cache_alias",))


@pytest.mark.parametrize("secret", [16, 16.0, None, ["x" * 16], True])
def test_a_nonce_secret_that_is_not_text_or_bytes_is_refused(secret):
    # bytes(16) would be sixteen zero bytes: a nonce key anyone could reproduce.
    with pytest.raises(SettingsError, match=r"NONCE_KEYRING'\] must be a NonceKeyring"):
        read({"nonce_keyring": {"k1": secret}})
    with pytest.raises(ValueError, match="str or bytes"):
        NonceKeyring({"k1": secret})


@pytest.mark.parametrize("name", ["token_validator", "verifier", "on_outcome"])
def test_a_url_given_as_an_import_path_is_named_but_never_echoed(issuer, name):
    values = read({"issuer": issuer.issuer, "audience": issuer.audience, "jwks": issuer.jwks,
                   name: "redis://:S3cretPass@redis.example.com:6379/0"})
    if name in ("token_validator", "verifier"):
        values = {k: v for k, v in values.items() if k not in ("issuer", "audience", "jwks")}
    with pytest.raises(SettingsError) as info:
        build_verifier(values, spell=django_spell, load=_load)
    assert "looks like a URL" in str(info.value)
    assert "S3cretPass" not in str(info.value)
