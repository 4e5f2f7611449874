"""Settings shared by every sample, read from environment variables, and the objects built from them.

=====================  ================================================================================
Variable               Meaning (default)
=====================  ================================================================================
``DPOP_ISSUER``        the authorization server's issuer identifier, ``iss`` of the tokens
                       (``http://127.0.0.1:9000``: the sample issuer on its default port)
``DPOP_JWKS_URI``      where the issuer's signing keys are; unset: found by RFC 8414 discovery
``DPOP_AUDIENCE``      this API's identifier, the ``aud`` its tokens must carry (``dpop-sample-api``)
``DPOP_PUBLIC_URL``    the API's public base URL when it runs behind a proxy (unset: the Host header)
``DPOP_NONCE``         nonce policy: ``off``, ``always``, ``unsafe_methods`` or ``heal_iat`` (``off``)
``DPOP_NONCE_SECRET``  shared secret (16+ bytes) signing nonces, so that several instances accept each
                       other's nonces; several, comma-separated, to rotate: the first signs, all verify
                       (unset: a random per-process key)
``DPOP_REPLAY_STORE``  ``memory`` (one process) or a Redis URL: ``redis://``, ``rediss://``, ``unix://``,
                       ``redis+sentinel://h:p[,h:p]/service[/db]``, ``redis+cluster://h:p[,h:p]``
                       (``memory``)
``DPOP_RESOURCE_METADATA``  serve RFC 9728 metadata at ``/.well-known/oauth-protected-resource`` and
                       name it in 401 challenges (``true``; ``false`` turns it off)
``DPOP_RESOURCE``      this API's resource identifier in that metadata (``DPOP_PUBLIC_URL``, else
                       ``http://127.0.0.1:<PORT>``)
``PORT``               the port to listen on (each sample has its own default); ``HOST``: 127.0.0.1
=====================  ================================================================================

Behind a proxy that terminates mutual TLS (``sample_projects/mtls``, docs/mtls.md), also
``DPOP_CERTIFICATE_BOUND_TOKENS`` (accept RFC 8705 certificate-bound tokens), ``DPOP_TRUSTED_PROXIES``
(the proxy's address), ``DPOP_CLIENT_CERT_HEADER`` and ``DPOP_CLIENT_CERT_FORMAT`` (where and how it
passes the client certificate): the library's own settings, read by its settings reader.

The gateway (``dpop-middleware gateway``, ``docs/gateway.md``) reads the same variables through the
library's own :func:`dpop_middleware.settings.environ_settings`, which every ``DPOP_<SETTING>`` name
goes through, plus a TOML file for its route policy.

The sample issuer reads the same variables for itself: ``DPOP_ISSUER`` is then its own identifier,
``DPOP_AUDIENCE`` the audience it puts in tokens and ``DPOP_NONCE`` its token endpoint's policy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from dpop_middleware import DPoPPrincipal, DPoPVerifier, NoncePolicy
from dpop_middleware.settings import (
    BUILDER_NAMES,
    CONFIG_NAMES,
    REDIS_SCHEMES,
    build_replay_store,
    environ_settings,
    environ_spell,
    read_settings,
)
from dpop_middleware.settings import build_verifier as settings_builder

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "DEFAULT_PORTS",
    "SampleSettings",
    "build_verifier",
    "dpop_values",
    "identity",
    "proxy_values",
    "replay_store",
    "token_endpoint_options",
]

DEFAULT_PORTS = {"issuer": 9000, "django_api": 8001, "flask_api": 8002, "fastapi_api": 8003, "mcp_server": 8004}
DEFAULT_ISSUER = f"http://127.0.0.1:{DEFAULT_PORTS['issuer']}"
DEFAULT_AUDIENCE = "dpop-sample-api"
#: The settings of a sample behind a proxy that terminates mutual TLS.
MTLS_NAMES = frozenset({"certificate_bound_tokens", "trusted_proxies", "client_cert_header", "client_cert_format"})


def _text(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def _absolute_url(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an absolute http(s) URL, not {value!r}")
    return value


@dataclass(frozen=True)
class SampleSettings:
    """One sample's configuration; build it with :meth:`from_env`."""

    issuer: str = DEFAULT_ISSUER
    audience: str = DEFAULT_AUDIENCE
    jwks_uri: str | None = None
    public_url: str | None = None
    nonce_policy: NoncePolicy = NoncePolicy.OFF
    nonce_secret: str | None = None
    replay_store: str = "memory"
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORTS["issuer"]
    #: The mutual-TLS settings (:data:`MTLS_NAMES`) given, checked by the library's settings reader.
    mtls: Mapping[str, Any] = field(default_factory=dict)
    resource_metadata: bool = True
    resource: str | None = None

    @property
    def resource_identifier(self) -> str:
        """This API's RFC 9728 resource identifier: ``DPOP_RESOURCE``, else the public URL, else loopback."""
        return self.resource or self.public_url or f"http://127.0.0.1:{self.port}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, default_port: int) -> SampleSettings:
        """Read the variables above from ``environ`` (default: ``os.environ``); raise ValueError if bad."""
        env = os.environ if environ is None else environ
        nonce = (_text(env, "DPOP_NONCE") or "off").lower()
        try:
            policy = NoncePolicy(nonce)
        except ValueError:
            choices = ", ".join(p.value for p in NoncePolicy)
            raise ValueError(f"DPOP_NONCE must be one of {choices}, not {nonce!r}") from None
        store = _text(env, "DPOP_REPLAY_STORE") or "memory"
        if store != "memory" and store.partition("://")[0].lower() not in REDIS_SCHEMES:
            # The URL is not echoed: it may hold a password. The builder checks the rest of its form.
            forms = ", ".join(f"{scheme}://" for scheme in REDIS_SCHEMES)
            raise ValueError(f"DPOP_REPLAY_STORE must be 'memory' or a Redis URL ({forms})")
        secret = _text(env, "DPOP_NONCE_SECRET")
        if secret is not None and any(len(part.strip().encode()) < 16 for part in secret.split(",")):
            raise ValueError("DPOP_NONCE_SECRET must be secrets of at least 16 bytes each, comma-separated")
        switch = (_text(env, "DPOP_RESOURCE_METADATA") or "true").lower()
        if switch not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise ValueError(f"DPOP_RESOURCE_METADATA must be true or false, not {switch!r}")
        port_text = _text(env, "PORT")
        try:
            port = int(port_text) if port_text is not None else default_port
        except ValueError:
            raise ValueError(f"PORT must be a number, not {port_text!r}") from None
        if not 0 < port < 65536:
            raise ValueError(f"PORT out of range: {port}")
        return cls(
            issuer=_absolute_url("DPOP_ISSUER", _text(env, "DPOP_ISSUER")) or DEFAULT_ISSUER,
            audience=_text(env, "DPOP_AUDIENCE") or DEFAULT_AUDIENCE,
            jwks_uri=_absolute_url("DPOP_JWKS_URI", _text(env, "DPOP_JWKS_URI")),
            public_url=_absolute_url("DPOP_PUBLIC_URL", _text(env, "DPOP_PUBLIC_URL")),
            nonce_policy=policy,
            nonce_secret=secret,
            replay_store=store,
            host=_text(env, "HOST") or "127.0.0.1",
            port=port,
            mtls=environ_settings(env, accepted=MTLS_NAMES),
            resource_metadata=switch in ("true", "1", "yes", "on"),
            resource=_absolute_url("DPOP_RESOURCE", _text(env, "DPOP_RESOURCE")),
        )


def dpop_values(settings: SampleSettings, *, validator: Any = None) -> dict[str, Any]:
    """These settings as the library's canonical settings: what Django's ``DPOP``, Flask's ``DPOP_*``
    and :func:`dpop_middleware.settings.build_verifier` read (upper-case them for Django and Flask).

    The library's builder chooses the token validator (keys at ``DPOP_JWKS_URI``, or found by RFC 8414
    discovery from the issuer), builds the replay store from ``DPOP_REPLAY_STORE`` and the nonce
    keyring from ``DPOP_NONCE_SECRET``. ``validator`` replaces the remote one (tests).
    """
    values: dict[str, Any] = {"nonce_policy": settings.nonce_policy.value, "replay_store": settings.replay_store}
    if validator is not None:
        values["token_validator"] = validator
    else:
        values.update(issuer=settings.issuer, audience=settings.audience)
        if settings.jwks_uri is not None:
            values["jwks_uri"] = settings.jwks_uri
    if settings.nonce_secret is not None:
        values["nonce_keyring"] = settings.nonce_secret  # "new,old": the builder's keyring, first signs
    if "certificate_bound_tokens" in settings.mtls:
        values["certificate_bound_tokens"] = settings.mtls["certificate_bound_tokens"]
    if settings.resource_metadata:
        values.update(
            resource_metadata=True,
            resource=settings.resource_identifier,
            authorization_servers=[settings.issuer],
            resource_metadata_fields={"resource_name": "dpop-middleware sample API"},
        )
    return values


def proxy_values(settings: SampleSettings) -> dict[str, Any]:
    """The adapter's options for the mutual-TLS proxy in front (``trusted_proxies``, ``client_cert_*``)."""
    return {name: value for name, value in settings.mtls.items() if name != "certificate_bound_tokens"}


def build_verifier(settings: SampleSettings, *, validator: Any = None, asynchronous: bool) -> DPoPVerifier:
    """The API's verifier, built by the library's own settings builder (``asynchronous``: an ASGI app)."""
    values = read_settings(
        dpop_values(settings, validator=validator), spell=environ_spell, accepted=BUILDER_NAMES | CONFIG_NAMES
    )
    return settings_builder(values, spell=environ_spell, asynchronous=asynchronous)


def replay_store(settings: SampleSettings, *, asynchronous: bool = False) -> Any:
    """The replay store ``DPOP_REPLAY_STORE`` names, built by the library's builder, whose errors (and
    the memory store's refusal to serve several workers) then name the environment variable."""
    values = read_settings({"replay_store": settings.replay_store}, spell=environ_spell, accepted={"replay_store"})
    return build_replay_store(values, spell=environ_spell, asynchronous=asynchronous)


def token_endpoint_options(settings: SampleSettings) -> dict[str, Any]:
    """The issuer's token endpoint options (replay store, nonce policy and keyring), by the same builder."""
    names = {"nonce_policy", "nonce_keyring"}
    values = read_settings(
        {k: v for k, v in dpop_values(settings).items() if k in names}, spell=environ_spell, accepted=names
    )
    store = replay_store(settings, asynchronous=True)
    return {"replay_store": store, "nonce_policy": values["nonce_policy"], "nonce_keyring": values.get("nonce_keyring")}


def identity(principal: DPoPPrincipal) -> dict[str, Any]:
    """What ``GET /api/me`` returns: who the token names, and the key it is bound to."""
    body = {
        "sub": principal.subject,
        "client_id": principal.client_id,
        "jkt": principal.jkt,
        "scopes": sorted(principal.scopes),
        "scheme": principal.scheme,
    }
    if principal.x5t_s256 is not None:  # a certificate-bound token (RFC 8705): which certificate
        body["x5t#S256"] = principal.x5t_s256
    return body
