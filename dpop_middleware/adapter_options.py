"""The keyword options of the adapters configured in code (WSGI, Starlette/ASGI, FastAPI), once.

Each constructor takes ``**options: Unpack[AdapterOptions]`` (or :class:`ProxyOptions`), so the
names, their types and their checks are written here only; editors and type checkers see every
keyword. The route names are those of :class:`~dpop_middleware.core.routes.RoutePolicy` and of the
Django and Flask settings (docs/routes.md).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from .core.origin import ProxySettings
from .core.routes import RoutePolicy
from .core.step_up import StepUp

__all__ = ["AdapterOptions", "ProxyOptions", "RouteOptions", "build_options", "proxy_settings"]


class ProxyOptions(TypedDict, total=False):
    """How to rebuild the URL the client used (:class:`~dpop_middleware.core.origin.ProxySettings`)."""

    trusted_proxies: Iterable[str] | str | None
    public_url: str | None
    trusted_headers: Iterable[str] | str | None
    allowed_hosts: Iterable[str] | str | None
    client_cert_header: str | None
    client_cert_format: str | None


class RouteOptions(TypedDict, total=False):
    """The route policy (:class:`~dpop_middleware.core.routes.RoutePolicy`); ``required`` is deprecated."""

    default: str
    required_paths: Iterable[str]
    optional_paths: Iterable[str]
    exempt_paths: Iterable[str]
    path_scopes: Mapping[str, Iterable[str] | str] | None
    path_step_up: Mapping[str, StepUp | Mapping[str, Any]] | None
    required_path_patterns: Iterable[str | re.Pattern[str]]
    optional_path_patterns: Iterable[str | re.Pattern[str]]
    exempt_path_patterns: Iterable[str | re.Pattern[str]]
    required: bool  # deprecated: default="required" (True) or default="optional" (False)


class AdapterOptions(ProxyOptions, RouteOptions, total=False):
    """Every option of a middleware: the URL and the route policy."""


_PROXY_NAMES = ProxyOptions.__optional_keys__
_ROUTE_NAMES = RouteOptions.__optional_keys__


def proxy_settings(owner: str, options: Mapping[str, Any]) -> ProxySettings:
    """:class:`ProxySettings` from ``options``, which may hold no other name (``TypeError`` naming ``owner``)."""
    _refuse_unknown(owner, options, _PROXY_NAMES)
    return ProxySettings.create(
        options.get("trusted_proxies"), options.get("public_url"), options.get("trusted_headers"),
        options.get("allowed_hosts"), client_cert_header=options.get("client_cert_header"),
        client_cert_format=options.get("client_cert_format"),
    )  # fmt: skip


def build_options(owner: str, options: Mapping[str, Any]) -> tuple[ProxySettings, RoutePolicy]:
    """The proxy settings and the route policy that ``options`` (:class:`AdapterOptions`) describe."""
    _refuse_unknown(owner, options, _PROXY_NAMES | _ROUTE_NAMES)
    routes = {name: value for name, value in options.items() if name in _ROUTE_NAMES}
    if "required" in routes:
        required = routes.pop("required")
        spelled = "default='required'" if required else "default='optional'"
        # stacklevel: this function, the adapter's constructor, its caller.
        warnings.warn(f"{owner}: required={required!r} is deprecated, pass {spelled}", DeprecationWarning, stacklevel=3)
        routes.setdefault("default", "required" if required else "optional")
    proxies = proxy_settings(owner, {name: value for name, value in options.items() if name in _PROXY_NAMES})
    return proxies, RoutePolicy.create(**routes)


def _refuse_unknown(owner: str, options: Mapping[str, Any], known: Iterable[str]) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(f"{owner} got an unexpected keyword argument {unknown[0]!r}")
