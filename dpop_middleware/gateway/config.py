"""The gateway's configuration: the samples' environment contract plus a TOML file for route policy.

Every setting keeps its canonical name (:mod:`dpop_middleware.settings`): ``DPOP_ISSUER``,
``DPOP_AUDIENCE``, ``DPOP_JWKS_URI``, ``DPOP_REPLAY_STORE``, ``DPOP_NONCE``... in the environment,
``exempt_paths``, ``path_scopes``... in the file. A setting given in both places is an error (which
one wins would be a guess); so is anything of the wrong type, named with the place it came from.
The gateway adds two settings of its own: ``gateway`` (the header convention,
:data:`~dpop_middleware.gateway.original.STYLES`) and the required ``trusted_proxies``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..core.origin import ProxySettings
from ..core.routes import RoutePolicy
from ..route_settings import build_route_policy
from ..settings import (
    BUILDER_NAMES,
    CONFIG_NAMES,
    ROUTE_NAMES,
    SettingsError,
    build_verifier,
    environ_settings,
    environ_spell,
    read_settings,
)
from ..verifier import DPoPVerifier
from .original import STYLES, GatewayStyle

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the gateway extra installs tomli on Python 3.10
    import tomli as tomllib

__all__ = ["GatewayConfig", "SETTING_NAMES", "load_config"]

_PROXY_NAMES = frozenset({"trusted_proxies", "public_url", "allowed_hosts"})
#: The library settings the gateway reads, from the environment or the file.
SETTING_NAMES = (CONFIG_NAMES | BUILDER_NAMES | ROUTE_NAMES | _PROXY_NAMES) - {"verifier"}
_STYLE_KEY = "gateway"
#: File-only: let CORS preflights through unverified (off: the upstream may not treat OPTIONS as anonymous).
_PREFLIGHT_KEY = "pass_cors_preflight"


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway app needs, checked at start-up."""

    verifier: DPoPVerifier
    routes: RoutePolicy
    proxy: ProxySettings
    style: GatewayStyle
    #: A CORS preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is
    #: answered 200 without verification. Off by default: behind a gateway the upstream knows nothing
    #: of DPoP and might serve ``OPTIONS`` as if it were authenticated.
    pass_cors_preflight: bool = False


def _file_spell(path: Path) -> Any:
    return lambda name: f"{path.name}: {name}"


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return dict(tomllib.load(handle))
    except OSError as exc:
        raise SettingsError(str(path), f"cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(str(path), f"is not valid TOML: {exc}") from None


def _style(environ: Mapping[str, str], raw: Mapping[str, Any], path: Path | None) -> GatewayStyle:
    from_env = environ.get("DPOP_GATEWAY", "").strip() or None
    from_file = raw.get(_STYLE_KEY)
    if from_env is not None and from_file is not None:
        raise SettingsError("DPOP_GATEWAY", f"and {path.name if path else ''}: {_STYLE_KEY} are both set: keep one")
    key = "DPOP_GATEWAY" if from_file is None else f"{path.name if path else ''}: {_STYLE_KEY}"
    value = from_env if from_file is None else from_file
    choices = ", ".join(map(repr, STYLES))
    if value is None:
        raise SettingsError(key, f"is missing: name the gateway's header convention, one of {choices}")
    for style in STYLES:
        if isinstance(value, str) and value.strip().lower() == style:
            return style
    raise SettingsError(key, f"must be one of {choices} (a string), not {value!r} ({type(value).__name__})")


def load_config(environ: Mapping[str, str] | None = None, path: str | Path | None = None) -> GatewayConfig:
    """Read the environment (default ``os.environ``) and the TOML file at ``path``; build the gateway.

    Raises :class:`~dpop_middleware.settings.SettingsError` naming the variable or the file's key.
    """
    env = os.environ if environ is None else environ
    file_path = Path(path) if path is not None else None
    raw = _read_file(file_path) if file_path is not None else {}
    style = _style(env, raw, file_path)
    from_env = environ_settings(env, accepted=SETTING_NAMES)
    file_spell = _file_spell(file_path) if file_path is not None else environ_spell
    from_file = read_settings(
        {k: v for k, v in raw.items() if k not in (_STYLE_KEY, _PREFLIGHT_KEY)},
        spell=file_spell,
        accepted=SETTING_NAMES,
    )
    both = sorted(set(from_env) & set(from_file))
    if both:
        raise SettingsError(environ_spell(both[0]), f"and {file_spell(both[0])} are both set: keep one")

    def spell(name: str) -> str:
        return file_spell(name) if name in from_file else environ_spell(name)

    values = {**from_env, **from_file}
    if "trusted_proxies" not in values:
        raise SettingsError(
            spell("trusted_proxies"),
            "is missing: the gateway believes the original request only from these addresses "
            "(a list of IP addresses or CIDR blocks, e.g. ['127.0.0.1', '::1'] when the gateway runs on this host)",
        )
    if values.get("certificate_bound_tokens"):
        # The subrequest carries no client certificate: every such token would be refused.
        raise SettingsError(
            spell("certificate_bound_tokens"),
            "is not supported by the gateway yet (it receives no client certificate); "
            "put the library in the app behind the mutual-TLS proxy instead (docs/mtls.md)",
        )
    public_url = values.get("public_url")
    if public_url is not None and urlsplit(public_url).path not in ("", "/"):
        # The gateway reports the whole path (nginx's $request_uri), not the path below a mount.
        raise SettingsError(
            spell("public_url"),
            f"must be an origin, scheme://host[:port] without a path, for the gateway (not {public_url!r}): "
            "the original URI the gateway reports is the whole path",
        )
    verifier = build_verifier(values, spell=spell, asynchronous=True)
    routes = build_route_policy(values, spell=spell)
    try:
        proxy = ProxySettings.create(
            trusted_proxies=values["trusted_proxies"],
            public_url=values.get("public_url"),
            allowed_hosts=values.get("allowed_hosts"),
        )
    except ValueError as exc:  # the table checked each value; what is left is a combination
        raise SettingsError(spell("trusted_proxies"), f"cannot be used: {exc}") from None
    if public_url is None and not values.get("allowed_hosts"):
        # nginx and Caddy forward the client's own Host: unpinned, a proof made for one virtual host
        # would be accepted on another. A warning would not fail closed.
        raise SettingsError(
            spell("public_url"),
            f"or {spell('allowed_hosts')} must be set: the gateway reports the Host the client sent, so the "
            "host a proof is checked against must be pinned (public_url) or listed (allowed_hosts)",
        )
    preflight = raw.get(_PREFLIGHT_KEY, False)
    if not isinstance(preflight, bool):
        where = file_path.name if file_path is not None else ""
        raise SettingsError(f"{where}: {_PREFLIGHT_KEY}", f"must be true or false, not {preflight!r}")
    return GatewayConfig(verifier, routes, proxy, style, preflight)
