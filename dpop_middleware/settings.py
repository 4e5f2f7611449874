"""Framework-free settings: one typed table of every setting, and one builder of the verifier.

The Django adapter reads ``settings.DPOP`` and the Flask extension ``DPOP_*`` config keys; both hand
their values here under canonical lower-case names (``max_age``, ``replay_store``...), with a
``spell`` function that turns a name back into the user's spelling, so every error names the key as
the user wrote it, the type it must have and, for choices, the valid values. Values that come from
environment variables are strings: lists accept comma- or space-separated text, booleans
``true``/``false``/``1``/``0``/``yes``/``no``/``on``/``off``, numbers their decimal text.
"""

from __future__ import annotations

import enum
import importlib
import ipaddress
import json
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .core.client_cert import CLIENT_CERT_FORMATS
from .core.config import PROFILES, Mode, VerifierConfig
from .core.keys import ALGORITHMS
from .core.nonce import NonceKeyring, NoncePolicy
from .core.origin import FORWARDING_HEADERS
from .core.resource_metadata import ResourceMetadata, check_resource_url
from .core.routes import MODES, scope_names
from .core.step_up import StepUp, step_up_rule
from .stores.memory import MemoryReplayStore
from .tokens.jwt import JWTAccessTokenValidator
from .verifier import DPoPVerifier

__all__ = [
    "ADAPTER_NAMES",
    "BUILDER_NAMES",
    "CONFIG_NAMES",
    "SETTINGS",
    "Setting",
    "MissingValidatorError",
    "ROUTE_NAMES",
    "SettingsError",
    "build_replay_store",
    "build_verifier",
    "environ_settings",
    "import_string",
    "read_settings",
]

Spell = Callable[[str], str]

#: How this API may authenticate itself at the introspection endpoint (``introspection_auth_method``).
INTROSPECTION_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
#: URL schemes of ``replay_store`` that name a Redis server (``stores.redis_urls.URL_SCHEMES``,
#: repeated here so that the settings load without redis-py).
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")
_REDIS_FORMS = (
    "redis://[user:password@]host:port[/db], rediss://... (TLS), unix:///path/to.sock[?db=N], "
    "redis+sentinel://host:port[,host:port]/service_name[/db] or redis+cluster://host:port[,host:port]"
)


class SettingsError(ValueError):
    """A setting is missing, unknown or of the wrong type; the message says which and how to fix it."""

    def __init__(self, key: str, message: str, *, name: str = "") -> None:
        super().__init__(f"{key} {message}")
        self.key = key  # as the user spells it, e.g. DPOP['MAX_AGE'] or DPOP_MAX_AGE
        self.name = name  # canonical, e.g. max_age


class MissingValidatorError(SettingsError):
    """No way to validate access tokens is configured (a Django system check reports it on its own)."""


class _Invalid(Exception):
    """Raised by a coercer: ``expected`` completes "must be ..."."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def _shown(value: object) -> str:
    text = repr(value)
    return (text[:60] + "...") if len(text) > 63 else text


# -- coercers: each returns the value to use, or raises _Invalid -------------------------------


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
    raise _Invalid("a boolean (True/False, or 'true'/'false' in an environment variable)")


def _number(minimum: float) -> Callable[[object], float]:
    def coerce(value: object) -> float:
        result: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                result = float(value)
            except OverflowError:
                result = None
        elif isinstance(value, str):
            try:
                result = float(value.strip())
            except ValueError:
                result = None
        if result is None or not math.isfinite(result) or result < minimum:
            raise _Invalid(f"a number of seconds, at least {minimum:g}")
        return result

    return coerce


def _integer(minimum: int) -> Callable[[object], int]:
    def coerce(value: object) -> int:
        result: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            result = value
        elif isinstance(value, str) and value.strip().isdigit() and value.strip().isascii():
            result = int(value.strip())
        if result is None or result < minimum:
            raise _Invalid(f"an integer, at least {minimum}")
        return result

    return coerce


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid("a non-empty string")
    return value.strip()


def _url(value: object) -> str:
    if not isinstance(value, str) or re.fullmatch(r"https?://[^/?#\s]+(/[^?#\s]*)?", value.strip()) is None:
        raise _Invalid("an absolute http(s) URL without query or fragment, e.g. 'https://api.example.com'")
    return value.strip()


def _strings(value: object, what: str) -> tuple[str, ...]:
    """A list of strings, or one string of comma- or space-separated items (environment variables)."""
    if isinstance(value, str):
        return tuple(value.replace(",", " ").split())
    if isinstance(value, (list, tuple, set, frozenset)) and all(isinstance(item, str) for item in value):
        return tuple(item.strip() for item in value if item.strip())
    raise _Invalid(f"a list of {what}, or one string of them separated by commas")


def _choices(choices: Iterable[str], what: str, *, fold_case: bool = False) -> Callable[[object], tuple[str, ...]]:
    valid = tuple(choices)

    def coerce(value: object) -> tuple[str, ...]:
        items = _strings(value, what)
        items = tuple(item.lower() for item in items) if fold_case else items
        wrong = [item for item in items if item not in valid]
        if wrong:
            raise _Invalid(f"a list of {what} among {', '.join(map(repr, valid))} (not {', '.join(map(repr, wrong))})")
        return items

    return coerce


def _algorithms(value: object) -> tuple[str, ...]:
    items = _choices(ALGORITHMS, "JWS algorithm names")(value)
    if not items:
        raise _Invalid(f"a non-empty list of JWS algorithm names among {', '.join(map(repr, ALGORITHMS))}")
    return items


def _enum(kind: type[enum.Enum]) -> Callable[[object], Any]:
    def coerce(value: object) -> Any:
        if isinstance(value, kind):
            return value
        if isinstance(value, str):
            try:
                return kind(value.strip().lower())
            except ValueError:
                pass
        choices = ", ".join(repr(member.value) for member in kind)
        raise _Invalid(f"one of {choices}")

    return coerce


def _networks(value: object) -> tuple[str, ...]:
    items = _strings(value, "IP addresses or CIDR blocks")
    for item in items:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise _Invalid(f"a list of IP addresses or CIDR blocks such as '10.0.0.0/8' (not {item!r})") from None
    return items


def _paths(value: object) -> tuple[str | re.Pattern[str], ...]:
    """Path prefixes (``/health``); :mod:`dpop_middleware.route_settings` checks each one.

    Compiled patterns pass here only so that Django's deprecated regex spelling still loads.
    """
    if isinstance(value, re.Pattern):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(i, (str, re.Pattern)) for i in value):
        return tuple(i.strip() if isinstance(i, str) else i for i in value if not isinstance(i, str) or i.strip())
    return _strings(value, "paths starting with '/'")


def _regexes(value: object) -> tuple[str | re.Pattern[str], ...]:
    """Regular expressions, each matched against the whole path (never split: a regex may hold spaces)."""
    if isinstance(value, (str, re.Pattern)):
        value = [value]
    if isinstance(value, (list, tuple)) and all(isinstance(i, (str, re.Pattern)) for i in value):
        for item in value:
            try:
                re.compile(item)
            except (re.error, TypeError) as exc:
                raise _Invalid(f"a list of regular expressions ({item!r} is not one: {exc})") from None
        return tuple(value)
    raise _Invalid("a list of regular expressions, each matched against the whole path")


def _by_path(value: object, expected: str) -> Mapping[str, object]:
    """A ``{path: ...}`` dict, or its JSON text; else :class:`_Invalid` saying ``expected``."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, Mapping) or not all(isinstance(path, str) for path in value):
        raise _Invalid(expected)
    return value


def _path_scopes(value: object) -> dict[str, tuple[str, ...]]:
    """``{path: scopes}``, scopes as a space-separated string or a list (or that mapping as JSON text)."""
    expected = "a dict {path: scopes (a space-separated string or a list of strings)}, or its JSON text"
    rules = _by_path(value, expected)
    try:
        return {path: scope_names(scopes, f"the scopes of {path!r}") for path, scopes in rules.items()}  # type: ignore[arg-type]
    except TypeError as exc:
        raise _Invalid(f"{expected}; {exc}") from None


def _path_step_up(value: object) -> dict[str, StepUp]:
    """``{path: {"acr_values": ..., "max_age": seconds}}`` (or its JSON text): RFC 9470 demands by path."""
    expected = 'a dict {path: {"acr_values": "space-separated or a list", "max_age": seconds}}, or its JSON text'
    rules = _by_path(value, expected)
    try:
        return {path: step_up_rule(demand, f"the demand for {path!r}") for path, demand in rules.items()}
    except (TypeError, ValueError) as exc:
        raise _Invalid(f"{expected}; {exc}") from None


def _audience(value: object) -> str | tuple[str, ...]:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, (list, tuple)) and value and all(isinstance(i, str) and i.strip() for i in value):
        return tuple(value)
    raise _Invalid("a non-empty string, or a list of them")


def _jwks(value: object) -> Mapping[str, Any]:
    if isinstance(value, str):
        text = value
        try:
            value = json.loads(text)
        except ValueError:
            hint = " (for keys at a URL, set jwks_uri instead)" if "://" in text else ""
            raise _Invalid(f"a JWKS: a dict {{'keys': [...]}} or its JSON text; this text is not JSON{hint}") from None
    if not isinstance(value, Mapping) or not isinstance(value.get("keys"), list):
        raise _Invalid("a JWKS: a dict {'keys': [...]} or its JSON text")
    return value


_KEYRING_FORMS = (
    "a NonceKeyring, a list of secrets of 16+ bytes (the first signs, all verify), the same as "
    "comma-separated text, or a dict {key id: secret of 16+ bytes}"
)


def _nonce_keyring(value: object) -> NonceKeyring:
    if isinstance(value, NonceKeyring):
        return value
    if isinstance(value, str) and value.lstrip().startswith(("{", "[")):
        try:
            value = json.loads(value)
        except ValueError:
            raise _Invalid(f"{_KEYRING_FORMS}; this text is not JSON") from None
    elif isinstance(value, str):  # DPOP_NONCE_SECRET="new-secret,old-secret"
        value = [part.strip() for part in value.split(",")]
    try:
        if isinstance(value, Mapping) and value:
            return NonceKeyring(value)
        if isinstance(value, (list, tuple)) and value:
            return NonceKeyring.from_secrets(value)
    except (TypeError, ValueError, AttributeError) as exc:
        raise _Invalid(f"{_KEYRING_FORMS} ({exc})") from None
    raise _Invalid(_KEYRING_FORMS)


def _private_key(value: object) -> Any:
    """A client's private key for ``private_key_jwt``: PEM text, or a private JWK (dict or JSON text)."""
    from .client import DPoPKey  # the client's key library, needed only for this setting

    invalid = _Invalid("a private key: PEM text or a private JWK (dict or JSON text) of an EC, RSA or OKP key")
    if isinstance(value, DPoPKey):
        return value
    try:
        if isinstance(value, Mapping):
            return DPoPKey.from_jwk(value)
        if isinstance(value, str) and value.lstrip().startswith("-----BEGIN"):
            return DPoPKey.from_pem(value)
        if isinstance(value, str) and value.lstrip().startswith("{"):
            return DPoPKey.from_jwk(value)
    except Exception:  # noqa: BLE001 - whatever the key library says, the message must not hold the key
        raise invalid from None
    raise invalid


def _resource_url(value: object) -> str:
    try:
        return check_resource_url(value.strip() if isinstance(value, str) else value, "it")
    except ValueError:
        raise _Invalid(
            "an absolute https URL without query or fragment (http only on a loopback host), "
            "e.g. 'https://api.example.com'"
        ) from None


def _resource_urls(value: object) -> tuple[str, ...]:
    items = _strings(value, "https URLs")
    for item in items:
        _resource_url(item)
    return items


def _json_members(value: object) -> dict[str, Any]:
    """A dict of extra metadata members (or its JSON text), e.g. ``{"resource_name": "Notes API"}``."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, Mapping) or not all(isinstance(name, str) for name in value):
        raise _Invalid("a dict of metadata members such as {'resource_name': 'Notes API'}, or its JSON text")
    return dict(value)


def _anything(value: object) -> object:
    return value


def _object_or_path(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        raise _Invalid("an object or a dotted import path")
    return value


def _one_of(value: object, choices: tuple[str, ...]) -> str:
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    raise _Invalid(f"one of {', '.join(map(repr, choices))}")


# -- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One setting: its canonical name, how its value is checked, and what it means (for the docs)."""

    name: str
    coerce: Callable[[object], Any]
    meaning: str
    secret: bool = False  # never echo the value in an error message


_TABLE = (
    # VerifierConfig
    Setting("algorithms", _algorithms, "proof algorithms accepted"),
    Setting("mode", _enum(Mode), "required, allow_bearer or report_only"),
    Setting("max_age", _number(0), "how old a proof's iat may be, in seconds"),
    Setting("clock_skew", _number(0), "leeway on both sides of the iat window, in seconds"),
    Setting("max_proof_bytes", _integer(256), "largest DPoP header accepted"),
    Setting("max_token_bytes", _integer(16), "largest access token accepted"),
    Setting("max_jti_length", _integer(1), "longest jti accepted"),
    Setting("min_rsa_bits", _integer(2048), "smallest RSA proof key"),
    Setting("nonce_policy", _enum(NoncePolicy), "when a server nonce is demanded"),
    Setting("nonce_keyring", _nonce_keyring, "keys signing server nonces, shared by every instance", secret=True),
    Setting("token_cache_size", _integer(0), "validated tokens kept in memory"),
    Setting("token_cache_max_ttl", _number(0), "longest a validated token is cached, in seconds"),
    Setting("debug", _boolean, "rejections say what was expected and received (development only)"),
    Setting("certificate_bound_tokens", _boolean, "accept RFC 8705 certificate-bound tokens (cnf x5t#S256)"),
    Setting("profile", lambda v: _one_of(v, PROFILES), "a preset of rules: 'fapi2' (docs/fapi2.md)"),
    # what the verifier is built from
    Setting("verifier", _object_or_path, "a ready DPoPVerifier (then no other verifier setting)"),
    Setting("token_validator", _object_or_path, "any token validator, or a dotted path to one"),
    Setting("issuer", _text, "the authorization server's issuer identifier"),
    Setting("audience", _audience, "this API's identifier(s), the tokens' aud"),
    Setting("jwks", _jwks, "the issuer's public keys (JWKS dict or JSON text)"),
    Setting("jwks_uri", _url, "where the issuer publishes its keys (default: found by discovery from issuer)"),
    Setting("introspection_endpoint", _url, "validate tokens by RFC 7662 introspection at this URL"),
    Setting("introspection_client_id", _text, "this API's client id at the introspection endpoint"),
    Setting("introspection_client_secret", _text, "its client secret (client_secret_basic/_post)", secret=True),
    Setting(
        "introspection_auth_method",
        lambda v: _one_of(v, INTROSPECTION_AUTH_METHODS),
        "client_secret_basic, client_secret_post or private_key_jwt",
    ),
    Setting("introspection_private_key", _private_key, "its private key for private_key_jwt", secret=True),
    Setting("replay_store", _object_or_path, "'memory', a store object or a dotted path"),
    Setting("allow_per_process_store", _boolean, "let the in-memory store serve under several workers"),
    Setting("on_outcome", _object_or_path, "metrics hook called with each Outcome"),
    # RFC 9728 protected resource metadata (docs/resource-metadata.md)
    Setting("resource_metadata", _boolean, "serve /.well-known/oauth-protected-resource and name it in challenges"),
    Setting("resource", _resource_url, "this API's resource identifier (default: public_url)"),
    Setting("authorization_servers", _resource_urls, "issuers named in the metadata (default: issuer)"),
    Setting("resource_metadata_fields", _json_members, "extra metadata members (resource_name, ...)"),
    Setting("resource_metadata_signing_key", _private_key, "private key signing signed_metadata", secret=True),
    # the request's URL and routes
    Setting("trusted_proxies", _networks, "proxies whose forwarding headers count"),
    Setting("trusted_headers", _choices(FORWARDING_HEADERS, "forwarding header names", fold_case=True), ""),
    Setting("public_url", _url, "the public base URL, overriding Host and forwarded headers"),
    Setting("allowed_hosts", lambda v: _strings(v, "host names"), "hosts this API answers for"),
    Setting("client_cert_header", _text, "header in which a trusted proxy passes the client certificate"),
    Setting(
        "client_cert_format", lambda v: _one_of(v, CLIENT_CERT_FORMATS), "rfc9440 (Client-Cert) or nginx (escaped PEM)"
    ),
    # route policy (dpop_middleware.route_settings), the same in every adapter
    Setting("default", lambda v: _one_of(v, MODES), "mode of a route no decorator or rule names"),
    Setting("required_paths", _paths, "path prefixes that require DPoP"),
    Setting("optional_paths", _paths, "path prefixes where DPoP is optional"),
    Setting("exempt_paths", _paths, "path prefixes never checked"),
    Setting("path_scopes", _path_scopes, "scopes required below a path prefix"),
    Setting("path_step_up", _path_step_up, "acr_values / max_age (RFC 9470) required below a path prefix"),
    Setting("required_path_patterns", _regexes, "regexes (whole path) that require DPoP"),
    Setting("optional_path_patterns", _regexes, "regexes (whole path) where DPoP is optional"),
    Setting("exempt_path_patterns", _regexes, "regexes (whole path) never checked"),
    # Django only
    Setting("replay_cache_alias", _text, "the Django cache of the 'django-cache' store"),
    Setting("replay_key_prefix", _text, "key prefix in that cache"),
    Setting("drf_user", _object_or_path, "principal -> user for DRF"),
    # Flask only
    Setting("enforce_all", _boolean, "deprecated: DPOP_DEFAULT ('required', or 'exempt' for False)"),
)

#: Every known setting by canonical name.
SETTINGS: dict[str, Setting] = {setting.name: setting for setting in _TABLE}
#: The names that are :class:`~dpop_middleware.core.config.VerifierConfig` fields.
CONFIG_NAMES = frozenset(VerifierConfig.__dataclass_fields__)
#: The names that choose and configure the token validator.
VALIDATOR_NAMES = frozenset(
    {
        "token_validator",
        "issuer",
        "audience",
        "jwks",
        "jwks_uri",
        "introspection_endpoint",
        "introspection_client_id",
        "introspection_client_secret",
        "introspection_auth_method",
        "introspection_private_key",
    }
)
#: The names of the RFC 9728 metadata (:func:`resource_metadata`).
METADATA_NAMES = frozenset(
    {
        "resource_metadata",
        "resource",
        "authorization_servers",
        "resource_metadata_fields",
        "resource_metadata_signing_key",
    }
)
#: The names :func:`build_verifier` reads besides the config's.
BUILDER_NAMES = VALIDATOR_NAMES | METADATA_NAMES | {"verifier", "replay_store", "allow_per_process_store", "on_outcome"}
#: The route-policy names (:class:`~dpop_middleware.core.routes.RoutePolicy`), the same in every adapter.
ROUTE_NAMES = frozenset(
    {
        "default",
        "required_paths",
        "optional_paths",
        "exempt_paths",
        "path_scopes",
        "path_step_up",
        "required_path_patterns",
        "optional_path_patterns",
        "exempt_path_patterns",
    }
)
#: Names every adapter accepts for the request's URL and route policy.
_URL_NAMES = {"trusted_proxies", "trusted_headers", "public_url", "allowed_hosts"}
#: The client certificate (RFC 8705): which header a trusted proxy passes it in, and how encoded.
CLIENT_CERT_NAMES = frozenset({"client_cert_header", "client_cert_format"})
ADAPTER_NAMES = frozenset(_URL_NAMES) | CLIENT_CERT_NAMES | ROUTE_NAMES


def read_settings(raw: Mapping[str, Any], *, spell: Spell, accepted: Collection[str]) -> dict[str, Any]:
    """Check and coerce ``raw`` (canonical name -> value); ``None`` values count as unset.

    Raises :class:`SettingsError` for an unknown name (listing the valid ones) or a value of the
    wrong type (naming the type, and the choices for enumerations).
    """
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in accepted or name not in SETTINGS:
            valid = ", ".join(spell(n) for n in sorted(accepted))
            raise SettingsError(spell(name), f"is not a setting; the valid ones are {valid}", name=name)
        if value is None:
            continue
        try:
            values[name] = SETTINGS[name].coerce(value)
        except _Invalid as exc:
            shown = "a value" if SETTINGS[name].secret else _shown(value)
            raise SettingsError(
                spell(name), f"must be {exc.expected}, not {shown} ({type(value).__name__})", name=name
            ) from None
    return values


def _loaded(values: Mapping[str, Any], name: str, load: Callable[[str], Any], spell: Spell) -> Any:
    value = values[name]
    if isinstance(value, str):
        if "://" in value or "@" in value:
            # A URL, perhaps with a password in it: never echoed, and never an import path.
            raise SettingsError(
                spell(name),
                "looks like a URL; give an object built from it (e.g. RedisReplayStore(url)) or a dotted path",
                name=name,
            )
        try:
            value = load(value)
        except Exception as exc:  # noqa: BLE001 - any import failure is this setting's mistake
            raise SettingsError(spell(name), f"names {value!r}, which cannot be imported: {exc}", name=name) from None
    return value


def _token_validator(values: Mapping[str, Any], spell: Spell, load: Callable[[str], Any]) -> Any:
    """The validator ``values`` choose: one given, static keys, keys at a URL (or by discovery), introspection."""
    if "token_validator" in values:
        clashing = [spell(n) for n in sorted(VALIDATOR_NAMES - {"token_validator"}) if n in values]
        if clashing:
            raise SettingsError(
                spell("token_validator"), f"is given, so {', '.join(clashing)} would be ignored: remove them"
            )
        validator = _loaded(values, "token_validator", load, spell)
        # A dotted path to a class means "instantiate it with no arguments".
        validator = validator() if isinstance(validator, type) else validator
        if not (callable(validator) or hasattr(validator, "validate") or hasattr(validator, "avalidate")):
            raise SettingsError(
                spell("token_validator"),
                "must be a token validator (an object with validate()/avalidate(), or a callable token -> claims), "
                f"not {type(validator).__name__}",
                name="token_validator",
            )
        return validator
    sources = [name for name in ("jwks", "jwks_uri", "introspection_endpoint") if name in values]
    if len(sources) > 1:
        raise SettingsError(
            spell(sources[1]), f"and {spell(sources[0])} are two ways to validate access tokens: keep one"
        )
    if sources == ["introspection_endpoint"]:
        return _introspection_validator(values, spell)
    stray = sorted(spell(n) for n in values if n.startswith("introspection_"))
    if stray:
        raise SettingsError(stray[0], f"is only read with {spell('introspection_endpoint')}, which is not set")
    missing = [spell(n) for n in ("issuer", "audience") if n not in values]
    if missing:
        raise MissingValidatorError(
            missing[0],
            f"is missing: to validate access tokens set {spell('issuer')} and {spell('audience')} (keys from "
            f"{spell('jwks')}, {spell('jwks_uri')} or discovery from the issuer), or "
            f"{spell('introspection_endpoint')}, or {spell('token_validator')} (missing: {', '.join(missing)})",
        )
    if "jwks" in values:
        try:
            return JWTAccessTokenValidator(issuer=values["issuer"], audience=values["audience"], jwks=values["jwks"])
        except (TypeError, ValueError, KeyError) as exc:
            raise SettingsError(spell("jwks"), f"holds no usable signing key ({exc})", name="jwks") from None
    from .tokens.remote import RemoteJWKSValidator

    where = "jwks_uri" if "jwks_uri" in values else "issuer"
    try:  # no I/O here: the keys (and, by discovery, their URL) are fetched on first use
        return RemoteJWKSValidator(
            issuer=values["issuer"], audience=values["audience"], jwks_uri=values.get("jwks_uri")
        )
    except (ImportError, ValueError) as exc:
        raise SettingsError(spell(where), f"cannot be used: {exc}", name=where) from None


def _introspection_validator(values: Mapping[str, Any], spell: Spell) -> Any:
    from .tokens.client_auth import PrivateKeyJWT
    from .tokens.introspection import IntrospectionValidator

    if "introspection_client_id" not in values:
        raise SettingsError(
            spell("introspection_client_id"), "is missing: the introspection endpoint needs this API's client id"
        )
    if "audience" not in values:
        raise SettingsError(
            spell("audience"), "is missing: introspected tokens must be checked for this API's audience"
        )
    method = values.get(
        "introspection_auth_method",
        "private_key_jwt" if "introspection_private_key" in values else "client_secret_basic",
    )
    needed = "introspection_private_key" if method == "private_key_jwt" else "introspection_client_secret"
    if needed not in values:
        raise SettingsError(spell(needed), f"is missing: {spell('introspection_auth_method')} is {method!r}")
    options: dict[str, Any] = {
        "endpoint": values["introspection_endpoint"],
        "audience": values["audience"],
        "issuer": values.get("issuer"),
    }
    if method == "private_key_jwt":
        options["client_auth"] = PrivateKeyJWT(
            values["introspection_client_id"], values["introspection_private_key"], audience=values.get("issuer")
        )
    else:
        options.update(
            client_id=values["introspection_client_id"],
            client_secret=values["introspection_client_secret"],
            auth_method=method,
        )
    try:
        return IntrospectionValidator(**options)
    except (ImportError, ValueError) as exc:
        raise SettingsError(
            spell("introspection_endpoint"), f"cannot be used: {exc}", name="introspection_endpoint"
        ) from None


def resource_metadata(values: Mapping[str, Any], *, spell: Spell) -> ResourceMetadata | None:
    """The RFC 9728 metadata ``values`` describe, or ``None`` when ``resource_metadata`` is not on.

    ``resource`` defaults to ``public_url``, ``authorization_servers`` to ``[issuer]``; the other
    metadata settings without the switch are an error (they would be silently ignored).
    """
    if not values.get("resource_metadata", False):
        stray = sorted(spell(n) for n in METADATA_NAMES - {"resource_metadata"} if n in values)
        if stray:
            raise SettingsError(stray[0], f"is only read with {spell('resource_metadata')} = True, which is not set")
        return None
    resource = values.get("resource", values.get("public_url"))
    if resource is None:
        raise SettingsError(
            spell("resource"),
            f"is missing: {spell('resource_metadata')} needs this API's resource identifier, an https URL "
            f"(or set {spell('public_url')})",
            name="resource",
        )
    resource_key = "resource" if "resource" in values else "public_url"
    servers_key = "authorization_servers" if "authorization_servers" in values else "issuer"
    servers = values.get("authorization_servers")
    if servers is None:
        servers = (values["issuer"],) if "issuer" in values else ()
    checked: list[str] = []
    for key, urls in ((resource_key, (resource,)), (servers_key, tuple(servers))):
        for url in urls:
            try:
                checked.append(_resource_url(url))
            except _Invalid as exc:
                raise SettingsError(
                    spell(key), f"must be {exc.expected} to be named in the metadata", name=key
                ) from None
    try:
        return ResourceMetadata(
            resource=checked[0],
            authorization_servers=tuple(checked[1:]),
            fields=values.get("resource_metadata_fields", {}),
            signing_key=values.get("resource_metadata_signing_key"),
        )
    except (TypeError, ValueError) as exc:
        raise SettingsError(spell("resource_metadata_fields"), f"cannot be used: {exc}") from None


def build_replay_store(
    values: Mapping[str, Any],
    *,
    spell: Spell,
    load: Callable[[str], Any] | None = None,
    stores: Mapping[str, Callable[[], Any]] | None = None,
    asynchronous: bool = False,
) -> Any:
    """The replay store ``values["replay_store"]`` names: ``"memory"`` (the default), a Redis URL
    (``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``, ``redis+cluster://``; the asyncio
    client when ``asynchronous``), a name in
    ``stores``, a store object or a dotted path to one."""
    stores = stores or {}
    choice = values.get("replay_store", "memory")
    if choice == "memory":
        return MemoryReplayStore(
            setting=spell("replay_store"), allow_multiple_processes=values.get("allow_per_process_store", False)
        )
    if isinstance(choice, str) and choice in stores:
        return stores[choice]()
    if isinstance(choice, str) and choice.partition("://")[0].lower() in REDIS_SCHEMES and "://" in choice:
        from .stores.redis_urls import RedisURLError  # no redis-py needed

        try:  # builds the client; connects on first use
            from .stores.redis import AsyncRedisReplayStore, RedisReplayStore

            return AsyncRedisReplayStore(choice) if asynchronous else RedisReplayStore(choice)
        except ImportError as exc:
            raise SettingsError(spell("replay_store"), f"is a Redis URL that cannot be used ({exc})") from None
        except ValueError as exc:  # the URL may hold a password: never echoed, only what was wrong
            why = str(exc) if isinstance(exc, RedisURLError) else type(exc).__name__
            raise SettingsError(
                spell("replay_store"), f"is a Redis URL that cannot be used ({why}); expected {_REDIS_FORMS}"
            ) from None
    if isinstance(choice, str) and "." not in choice:
        names = ", ".join(repr(n) for n in ("memory", *stores))
        raise SettingsError(
            spell("replay_store"),
            f"must be one of {names}, a redis://, rediss://, unix://, redis+sentinel:// or redis+cluster:// URL, "
            f"a store object or a dotted path, not {_shown(choice) if '://' not in choice else 'this URL'} "
            f"(Redis URLs: {_REDIS_FORMS})",
        )
    store = _loaded(values, "replay_store", load or import_string, spell)
    store = store() if isinstance(store, type) else store
    if type(store).__module__.startswith("redis.") and callable(getattr(store, "set", None)):
        # A redis-py client (Redis, RedisCluster, a Sentinel's master_for, asyncio twins): its store.
        from .stores.redis import AsyncRedisReplayStore, RedisReplayStore

        asyncio_client = type(store).__module__.startswith("redis.asyncio")
        return AsyncRedisReplayStore(store) if asyncio_client else RedisReplayStore(store)
    if not callable(getattr(store, "add_if_absent", None)):
        raise SettingsError(spell("replay_store"), "must be a replay store (an object with add_if_absent(key, ttl))")
    return store


def import_string(path: str) -> Any:
    """The object a dotted path (``package.module.name`` or ``package.module:name``) names."""
    module_name, colon, attribute = path.partition(":")
    if not colon:
        module_name, _, attribute = path.rpartition(".")
    if not module_name or not attribute:
        raise ImportError(f"{path!r} is not a dotted path to an object")
    value: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


def build_verifier(
    values: Mapping[str, Any],
    *,
    spell: Spell,
    load: Callable[[str], Any] = import_string,
    stores: Mapping[str, Callable[[], Any]] | None = None,
    store_names: Collection[str] = (),
    asynchronous: bool = False,
) -> DPoPVerifier:
    """The verifier that ``values`` (from :func:`read_settings`) describe.

    ``load`` imports a dotted path (Django's ``import_string``, werkzeug's ``import_string``);
    ``stores`` adds named replay stores (the Django adapter's ``"django-cache"``), and
    ``store_names`` the adapter's settings those stores read (which a ready verifier would ignore).
    ``asynchronous``: the app verifies on an event loop, so a Redis URL gets the asyncio client.
    """
    if "verifier" in values:
        ignored = (CONFIG_NAMES | BUILDER_NAMES | frozenset(store_names)) - {"verifier"}
        clashing = sorted(spell(n) for n in values if n in ignored)
        if clashing:
            raise SettingsError(spell("verifier"), f"is given, so {', '.join(clashing)} would be ignored: remove them")
        verifier = _loaded(values, "verifier", load, spell)
        if not isinstance(verifier, DPoPVerifier):
            raise SettingsError(
                spell("verifier"), f"must be a DPoPVerifier (or a dotted path to one), not {type(verifier).__name__}"
            )
        return verifier
    options = {name: values[name] for name in CONFIG_NAMES if name in values}
    try:
        config = VerifierConfig(**options)
    except (TypeError, ValueError) as exc:  # the table checks each value; this is a combination
        raise SettingsError(", ".join(spell(n) for n in sorted(options)), f"do not fit together: {exc}") from None
    validator = _token_validator(values, spell, load)
    store = build_replay_store(values, spell=spell, load=load, stores=stores, asynchronous=asynchronous)
    on_outcome = _loaded(values, "on_outcome", load, spell) if "on_outcome" in values else None
    if on_outcome is not None and not callable(on_outcome):
        raise SettingsError(spell("on_outcome"), f"must be callable, not {type(on_outcome).__name__}")
    metadata = resource_metadata(values, spell=spell)
    return DPoPVerifier(validator, replay_store=store, config=config, on_outcome=on_outcome, resource_metadata=metadata)


#: Environment variables the samples (and the gateway) have always read, besides ``DPOP_<SETTING>``.
ENVIRON_ALIASES = {"DPOP_NONCE": "nonce_policy", "DPOP_NONCE_SECRET": "nonce_keyring"}


def environ_spell(name: str) -> str:
    """A canonical setting name as an environment variable: ``DPOP_MAX_AGE``."""
    aliases = {canonical: variable for variable, canonical in ENVIRON_ALIASES.items()}
    return aliases.get(name, f"DPOP_{name.upper()}")


def environ_settings(environ: Mapping[str, str], *, accepted: Collection[str]) -> dict[str, Any]:
    """The ``DPOP_*`` variables of ``environ`` among ``accepted`` names, checked by :func:`read_settings`.

    Each setting is ``DPOP_<NAME>`` (``DPOP_MAX_AGE``, ``DPOP_JWKS_URI``...); ``DPOP_NONCE`` is
    the nonce policy and ``DPOP_NONCE_SECRET`` the nonce keyring's shared secrets, comma-separated
    (the first signs, all verify: rotate without downtime). Empty
    variables count as unset; other ``DPOP_*`` variables are not read (a shell holds many).
    """
    raw: dict[str, Any] = {}
    for variable, value in environ.items():
        if not variable.startswith("DPOP_") or not value.strip():
            continue
        name = ENVIRON_ALIASES.get(variable, variable[5:].lower())
        if name in accepted:
            raw[name] = value
    return read_settings(raw, spell=environ_spell, accepted=accepted)
