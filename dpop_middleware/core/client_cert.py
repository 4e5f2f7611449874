"""The client certificate a request presents (RFC 8705 §3), and its SHA-256 thumbprint, pure.

Where a certificate may come from, and who is believed:

* a header set by a **trusted proxy** that terminated mutual TLS: RFC 9440 ``Client-Cert``
  (a structured-field byte sequence, ``:base64(DER):``) or nginx's ``$ssl_client_escaped_cert``
  (URL-escaped PEM). The header is read only when the immediate peer is one of
  ``trusted_proxies`` (the same rule as the forwarding headers, :mod:`.origin`); from anyone else it
  is ignored: such a request presents no certificate.
* the server's own TLS connection, where the server exposes the peer certificate (the ASGI ``tls``
  extension, ``SSL_CLIENT_CERT`` in a WSGI environ, gunicorn's TLS socket). When the peer is a
  trusted proxy, its header wins: the TLS peer is then the proxy, not the client.

Adapters only collect the raw value (:func:`presented_certificate`); the verifier parses it when a
token is certificate-bound (:meth:`ClientCertificate.thumbprint`), so a DPoP-only request pays nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from cryptography import x509

from .errors import InvalidTokenError

__all__ = [
    "CLIENT_CERT_FORMATS",
    "client_cert_settings_problem",
    "MAX_CLIENT_CERT_BYTES",
    "ClientCertificate",
    "certificate_thumbprint",
    "presented_certificate",
    "thumbprints_match",
]

#: How a trusted proxy encodes the certificate in its header: RFC 9440 ``Client-Cert``, or nginx's
#: ``$ssl_client_escaped_cert`` (URL-escaped PEM).
CLIENT_CERT_FORMATS = ("rfc9440", "nginx")
#: Larger header values (or server-given certificates) are refused unparsed: a client certificate
#: with a long chain of names is a few KiB; nginx's escaped PEM is about 1.4 times the DER.
MAX_CLIENT_CERT_BYTES = 16384

Source = Literal["header", "server"]


def _malformed() -> InvalidTokenError:
    return InvalidTokenError("client_cert_malformed", "Client certificate unusable")


def certificate_thumbprint(der: bytes) -> str:
    """``x5t#S256`` of a DER certificate (RFC 8705 §3.1): unpadded base64url of its SHA-256.

    The DER must parse as an X.509 certificate (``cryptography``); otherwise ``invalid_token``.
    """
    try:
        x509.load_der_x509_certificate(der)
    except ValueError:
        raise _malformed() from None
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode("ascii")


def _der_from_pem(pem: str) -> bytes:
    try:
        cert = x509.load_pem_x509_certificate(pem.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise _malformed() from None
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)


def _der_from_sf_binary(value: str) -> bytes:
    """RFC 8941 §3.3.5 byte sequence ``:base64:`` (standard alphabet, padding allowed), strictly."""
    value = value.strip()
    if len(value) < 3 or value[0] != ":" or value[-1] != ":" or not value.isascii():
        raise _malformed()
    try:
        return base64.b64decode(value[1:-1], validate=True)
    except (binascii.Error, ValueError):
        raise _malformed() from None


@dataclass(frozen=True, slots=True)
class ClientCertificate:
    """A certificate as the request presented it, not yet parsed.

    ``source``: ``"header"`` (from a trusted proxy) or ``"server"`` (the server's TLS); ``encoding``:
    ``"rfc9440"``, ``"nginx"``, ``"pem"`` or ``"der"``; ``value`` the text (or DER bytes).
    """

    source: Source
    encoding: str
    value: str | bytes

    def der(self) -> bytes:
        """The DER bytes; ``invalid_token`` (``client_cert_malformed``) when they cannot be had."""
        value = self.value
        if len(value) > MAX_CLIENT_CERT_BYTES:
            raise InvalidTokenError("client_cert_too_large", "Client certificate unusable")
        if isinstance(value, bytes):
            return value
        if self.encoding == "rfc9440":
            return _der_from_sf_binary(value)
        if self.encoding == "nginx":
            return _der_from_pem(unquote(value, errors="strict") if "%" in value else value)
        return _der_from_pem(value)

    def thumbprint(self) -> str:
        """The ``x5t#S256`` this certificate would match."""
        try:
            return certificate_thumbprint(self.der())
        except UnicodeDecodeError:  # a %-escape that is not UTF-8
            raise _malformed() from None


def client_cert_settings_problem(certificate_bound_tokens: bool, client_cert_header: str | None) -> str | None:
    """What is wrong with this combination at start-up, in words (``None``: nothing).

    A certificate header without certificate-bound tokens is a half-made configuration: the operator
    believes certificates are checked, yet every certificate-bound token is refused.
    """
    if client_cert_header is not None and not certificate_bound_tokens:
        return (
            "client_cert_header is set but certificate_bound_tokens is off: no token would ever be checked "
            "against the certificate; turn certificate_bound_tokens on, or remove client_cert_header"
        )
    return None


def thumbprints_match(expected: str, presented: str) -> bool:
    """Constant-time comparison of two thumbprints (ASCII; anything else never matches)."""
    return expected.isascii() and hmac.compare_digest(expected, presented)


def presented_certificate(
    *,
    header_values: list[str],
    peer_trusted: bool,
    header_encoding: str,
    server_cert: str | bytes | None,
) -> ClientCertificate | None:
    """What certificate the request presents, as adapters see it (``None``: none).

    ``header_values``: the configured certificate header's values (empty when none is configured);
    believed only when ``peer_trusted`` (the peer is one of ``trusted_proxies``), and then it wins
    over ``server_cert`` (the server's TLS peer certificate, PEM text or DER bytes: the proxy's own
    when the peer is the proxy). Two values are refused as a malformed certificate, never picked from.
    """
    if peer_trusted and header_values:
        if len(header_values) > 1 or (header_encoding == "rfc9440" and "," in header_values[0]):
            return ClientCertificate("header", header_encoding, "")  # refused when parsed
        value = header_values[0].strip()
        if value:  # nginx sends an empty value when the client presented no certificate
            return ClientCertificate("header", header_encoding, value)
        return None
    if peer_trusted:
        return None
    if isinstance(server_cert, bytes) and server_cert:
        return ClientCertificate("server", "der", server_cert)
    if isinstance(server_cert, str) and server_cert.strip():
        return ClientCertificate("server", "pem", server_cert)
    return None
