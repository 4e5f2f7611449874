"""Reading a WSGI environ (or Django's ``META``, which holds the same keys) for the core's rules.

Shared by the WSGI, Flask and Django adapters: the core knows requests as
:class:`~dpop_middleware.core.request.RequestInfo`, never as an environ.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from .core.client_cert import ClientCertificate, presented_certificate
from .core.origin import FORWARDING_HEADERS, ProxySettings, rebuild_url
from .core.request import RequestInfo, is_cors_preflight

__all__ = [
    "client_cert_from_environ",
    "credential_headers_from_environ",
    "forwarding_from_environ",
    "environ_request",
    "is_cors_preflight_environ",
    "raw_target_path",
]

#: The request headers the core reads, by environ key (CGI style), with their lower-case names.
_CREDENTIAL_KEYS = (("HTTP_AUTHORIZATION", "authorization"), ("HTTP_DPOP", "dpop"))
#: The forwarding headers :func:`~dpop_middleware.core.origin.rebuild_url` may read, by environ key.
_FORWARDING_KEYS = {"HTTP_" + name.upper().replace("-", "_"): name for name in FORWARDING_HEADERS}
_PREFLIGHT_KEYS = (("HTTP_ORIGIN", "Origin"), ("HTTP_ACCESS_CONTROL_REQUEST_METHOD", "Access-Control-Request-Method"))


def credential_headers_from_environ(environ: Mapping[str, object]) -> list[tuple[str, str]]:
    """``Authorization`` and ``DPoP``, the only headers the core reads (copying every ``HTTP_*`` key costs more).

    The server has already joined repeated fields with commas; the core counts a comma in either
    header as several values.
    """
    return [(name, value) for key, name in _CREDENTIAL_KEYS if isinstance(value := environ.get(key), str)]


def forwarding_from_environ(environ: Mapping[str, object], settings: ProxySettings) -> dict[str, list[str]]:
    """The forwarding headers that :func:`~dpop_middleware.core.origin.rebuild_url` may read under ``settings``."""
    if not settings.reads_forwarding_headers:
        return {}
    return {name: [value] for key, name in _FORWARDING_KEYS.items() if isinstance(value := environ.get(key), str)}


def is_cors_preflight_environ(environ: Mapping[str, object]) -> bool:
    """:func:`~dpop_middleware.core.request.is_cors_preflight` for an environ: Flask, Django and WSGI ask it."""
    if environ.get("REQUEST_METHOD") != "OPTIONS":
        return False
    return is_cors_preflight("OPTIONS", [(name, "") for key, name in _PREFLIGHT_KEYS if key in environ])


def raw_target_path(environ: Mapping[str, object]) -> str | None:
    """The path of the raw request target, when the server kept it and it is in origin form.

    ``RAW_URI`` (gunicorn) or ``REQUEST_URI`` (uWSGI, mod_wsgi, werkzeug), query and fragment removed.
    """
    raw = environ.get("RAW_URI")
    if not (isinstance(raw, str) and raw.startswith("/")):
        raw = environ.get("REQUEST_URI")
        if not (isinstance(raw, str) and raw.startswith("/")):
            return None
    return raw.partition("?")[0].partition("#")[0]


def environ_request(
    environ: Mapping[str, Any],
    settings: ProxySettings,
    *,
    method: str,
    scheme: str,
    host: str,
    root_path: str,
    path: str,
) -> RequestInfo:
    """The :class:`RequestInfo` of an environ whose method and URL parts the adapter has read.

    The URL is :func:`~dpop_middleware.core.origin.rebuild_url`'s, with the environ's peer and
    forwarding headers, and keeps the query string (the core refuses tokens sent there). Headers:
    the two the core reads, which the server has already comma-joined when repeated.
    """
    peer = environ.get("REMOTE_ADDR")
    url = rebuild_url(
        scheme=scheme,
        host=host,
        root_path=root_path,
        path=path,
        peer=peer,
        headers=forwarding_from_environ(environ, settings),
        settings=settings,
    )
    query = environ.get("QUERY_STRING")
    if query:
        url = f"{url}?{query}"
    cert = client_cert_from_environ(environ, settings)
    return RequestInfo(method, url, credential_headers_from_environ(environ), cert)


def _server_client_cert(environ: Mapping[str, Any]) -> str | bytes | None:
    """The TLS peer certificate the WSGI server exposes: ``SSL_CLIENT_CERT`` (PEM; Apache mod_ssl with
    mod_wsgi), else the DER from gunicorn's TLS socket (``gunicorn.socket``, an ``ssl.SSLSocket``)."""
    pem = environ.get("SSL_CLIENT_CERT")
    if isinstance(pem, str) and pem.strip():
        return pem
    sock = environ.get("gunicorn.socket")
    if isinstance(sock, ssl.SSLSocket):
        try:
            der = sock.getpeercert(binary_form=True)
        except (ValueError, OSError):  # not connected any more, handshake not done
            return None
        return der or None
    return None


def client_cert_from_environ(environ: Mapping[str, Any], settings: ProxySettings) -> ClientCertificate | None:
    """The client certificate the request presents (:func:`~dpop_middleware.core.client_cert.presented_certificate`)."""
    header = None
    if settings.client_cert_header is not None:
        header = environ.get("HTTP_" + settings.client_cert_header.upper().replace("-", "_"))
    server = _server_client_cert(environ)
    if header is None and server is None:
        return None
    peer = environ.get("REMOTE_ADDR")
    return presented_certificate(
        header_values=[header] if isinstance(header, str) else [],
        peer_trusted=settings.is_trusted(peer if isinstance(peer, str) else None),
        header_encoding=settings.client_cert_format,
        server_cert=server,
    )
