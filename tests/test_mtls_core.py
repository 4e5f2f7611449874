"""RFC 8705 §3 certificate-bound tokens in the core: the rule table (cnf kind x credentials x scheme),
the certificate encodings, and who is believed (trusted proxy header, server TLS) in each translation."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from core_support import Env, make_env
from mtls_support import TestCA

from dpop_middleware import DPoPError, RequestInfo
from dpop_middleware.asgi import request_info as asgi_request_info
from dpop_middleware.client import DPoPKey
from dpop_middleware.core.client_cert import ClientCertificate, certificate_thumbprint, presented_certificate
from dpop_middleware.core.origin import ProxySettings
from dpop_middleware.wsgi_environ import client_cert_from_environ

CA = TestCA()
ALICE = CA.issue("alice-client")
MALLORY = CA.issue("mallory-client")
PROXY = ProxySettings.create(["10.0.0.1"], client_cert_header="Client-Cert")


@pytest.fixture
def env() -> Env:
    return make_env(certificate_bound_tokens=True)


def header_cert(issued: Any = ALICE) -> ClientCertificate:
    return ClientCertificate("header", "rfc9440", issued.client_cert_header)


def send(env: Env, cnf: dict[str, str] | None, *, scheme: str, proof_key: DPoPKey | None, cert: Any, **options: Any) -> Any:
    token = env.issuer.token(None, **({"cnf": cnf} if cnf is not None else {}))
    proof = env.proof(token, key=proof_key) if proof_key is not None else None
    plain = env.request(token, proof, scheme=scheme)
    request = RequestInfo(plain.method, plain.url, plain.headers, cert)
    return env.verifier(**options).verify(request)


# Every cnf kind x presented credentials x scheme: the outcome ("ok") or the refusal's reason.
OTHER_KEY = DPoPKey.generate("ES256")
ROWS = [
    # cnf,          scheme,   proof,     certificate, outcome
    ("x5t", "Bearer", None, "alice", "ok"),
    ("x5t", "Bearer", None, "mallory", "client_cert_mismatch"),
    ("x5t", "Bearer", None, None, "bearer_not_accepted"),  # mode required: Bearer without a certificate, unread
    ("x5t", "Bearer", None, "garbage", "client_cert_malformed"),
    ("x5t", "DPoP", "own", "alice", "token_not_bound"),  # DPoP scheme means a DPoP-bound token
    ("x5t", "DPoP", "other", "alice", "token_not_bound"),
    ("jkt", "DPoP", "own", None, "ok"),
    ("jkt", "DPoP", "own", "mallory", "ok"),  # a certificate changes nothing for a DPoP-bound token
    ("jkt", "DPoP", "other", "alice", "key_binding_mismatch"),
    ("jkt", "Bearer", None, "alice", "bound_token_as_bearer"),
    ("both", "DPoP", "own", "alice", "ok"),
    ("both", "DPoP", "own", None, "client_cert_missing"),
    ("both", "DPoP", "own", "mallory", "client_cert_mismatch"),
    ("both", "DPoP", "other", "alice", "key_binding_mismatch"),
    ("both", "Bearer", None, "alice", "bound_token_as_bearer"),
    ("none", "DPoP", "own", "alice", "token_not_bound"),
    ("none", "Bearer", None, "alice", "bearer_not_accepted"),  # mode required: unbound Bearer stays refused
    ("none", "Bearer", None, None, "bearer_not_accepted"),
]


@pytest.mark.parametrize(("kind", "scheme", "proof", "cert", "outcome"), ROWS)
def test_the_tokens_cnf_decides(env: Env, kind: str, scheme: str, proof: str | None, cert: str | None, outcome: str) -> None:
    cnf = {"x5t": {"x5t#S256": ALICE.x5t}, "jkt": {"jkt": env.key.jkt}, "none": None}.get(kind)
    if kind == "both":
        cnf = {"jkt": env.key.jkt, "x5t#S256": ALICE.x5t}
    certificate = {
        "alice": header_cert(ALICE),
        "mallory": header_cert(MALLORY),
        "garbage": ClientCertificate("header", "rfc9440", ":bm90IGEgY2VydA==:"),
        None: None,
    }[cert]
    key = {"own": env.key, "other": OTHER_KEY, None: None}[proof]
    if outcome == "ok":
        principal = send(env, cnf, scheme=scheme, proof_key=key, cert=certificate)
        assert principal.scheme == scheme
        assert principal.x5t_s256 == (ALICE.x5t if kind in ("x5t", "both") else None)
        assert principal.jkt == (env.key.jkt if kind in ("jkt", "both") else None)
    else:
        with pytest.raises(DPoPError) as caught:
            send(env, cnf, scheme=scheme, proof_key=key, cert=certificate)
        assert caught.value.reason == outcome
        assert caught.value.status == 401


def test_certificate_bound_token_refused_when_the_feature_is_off() -> None:
    env = make_env()
    for scheme, key in (("DPoP", env.key), ("Bearer", None)):
        cnf = {"jkt": env.key.jkt, "x5t#S256": ALICE.x5t} if key else {"x5t#S256": ALICE.x5t}
        with pytest.raises(DPoPError) as caught:
            send(env, cnf, scheme=scheme, proof_key=key, cert=header_cert(), mode="allow_bearer")
        assert caught.value.reason == "cert_binding_not_enabled"


def test_unbound_bearer_still_accepted_in_allow_bearer_mode_with_a_certificate(env: Env) -> None:
    principal = send(env, None, scheme="Bearer", proof_key=None, cert=header_cert(), mode="allow_bearer")
    assert principal.scheme == "Bearer" and principal.x5t_s256 is None


def test_certificate_bound_bearer_without_certificate_is_invalid_token_in_allow_bearer(env: Env) -> None:
    with pytest.raises(DPoPError) as caught:
        send(env, {"x5t#S256": ALICE.x5t}, scheme="Bearer", proof_key=None, cert=None, mode="allow_bearer")
    assert caught.value.reason == "client_cert_missing" and caught.value.error == "invalid_token"


def test_malformed_x5t_member_is_a_malformed_binding(env: Env) -> None:
    with pytest.raises(DPoPError) as caught:
        send(env, {"x5t#S256": 42}, scheme="Bearer", proof_key=None, cert=header_cert())  # type: ignore[dict-item]
    assert caught.value.reason == "cnf_malformed"


def test_mismatch_renders_invalid_token_on_a_bearer_challenge(env: Env) -> None:
    verifier = env.verifier()
    token = env.issuer.token(None, cnf={"x5t#S256": ALICE.x5t})
    plain = env.request(token, None, scheme="Bearer")
    result = verifier.authenticate(RequestInfo(plain.method, plain.url, plain.headers, header_cert(MALLORY)))
    assert result.rejection is not None and result.rejection.status == 401
    challenges = [v for k, v in result.rejection.headers if k == "WWW-Authenticate"]
    assert challenges[0].startswith("DPoP algs=")
    assert challenges[1].startswith('Bearer error="invalid_token"')
    assert verifier.certificate_bound_tokens is True


def test_thumbprint_is_base64url_sha256_of_the_der() -> None:
    assert certificate_thumbprint(ALICE.der) == ALICE.x5t
    assert ClientCertificate("header", "nginx", ALICE.nginx_header).thumbprint() == ALICE.x5t
    assert ClientCertificate("server", "pem", ALICE.pem).thumbprint() == ALICE.x5t
    assert ClientCertificate("server", "der", ALICE.der).thumbprint() == ALICE.x5t


@pytest.mark.parametrize(
    ("encoding", "value"),
    [
        ("rfc9440", ""),
        ("rfc9440", "not-a-byte-sequence"),
        ("rfc9440", ":!!!:"),
        ("rfc9440", ":" + "A" * 30000 + ":"),
        ("rfc9440", ":\u00e9:"),
        ("nginx", "%ZZ"),
        ("nginx", "%FF%FE"),
        ("nginx", "-----BEGIN CERTIFICATE-----%0Agarbage%0A-----END CERTIFICATE-----"),
        ("pem", "\u2603"),
        ("der", b"\x30\x03\x02\x01\x00"),
    ],
)
def test_malformed_certificates_are_invalid_token_never_a_crash(encoding: str, value: str | bytes) -> None:
    with pytest.raises(DPoPError) as caught:
        ClientCertificate("header", encoding, value).thumbprint()
    assert caught.value.status == 401 and caught.value.error == "invalid_token"


def test_header_believed_only_from_a_trusted_proxy() -> None:
    value = [ALICE.client_cert_header]
    assert presented_certificate(header_values=value, peer_trusted=False, header_encoding="rfc9440", server_cert=None) is None
    cert = presented_certificate(header_values=value, peer_trusted=True, header_encoding="rfc9440", server_cert=ALICE.pem)
    assert cert is not None and cert.source == "header"
    # From a trusted proxy without the header: the TLS peer is the proxy, never the client.
    assert presented_certificate(header_values=[], peer_trusted=True, header_encoding="rfc9440", server_cert=ALICE.pem) is None
    two = presented_certificate(header_values=value * 2, peer_trusted=True, header_encoding="rfc9440", server_cert=None)
    assert two is not None
    with pytest.raises(DPoPError):
        two.thumbprint()


def _scope(peer: str, headers: list[tuple[bytes, bytes]], tls: dict[str, Any] | None = None) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http", "method": "GET", "scheme": "https", "path": "/x", "raw_path": b"/x", "root_path": "",
        "query_string": b"", "headers": [(b"host", b"api.example.com"), *headers], "client": (peer, 5000),
    }  # fmt: skip
    if tls is not None:
        scope["extensions"] = {"tls": tls}
    return scope


def test_asgi_translation_reads_the_header_from_proxies_and_the_tls_extension() -> None:
    header = [(b"client-cert", ALICE.client_cert_header.encode())]
    trusted = asgi_request_info(_scope("10.0.0.1", header), PROXY).client_cert
    assert trusted is not None and trusted.thumbprint() == ALICE.x5t
    assert asgi_request_info(_scope("192.0.2.7", header), PROXY).client_cert is None
    tls = {"client_cert_chain": [MALLORY.pem, CA.issued.pem]}
    direct = asgi_request_info(_scope("192.0.2.7", header, tls), PROXY).client_cert
    assert direct is not None and direct.thumbprint() == MALLORY.x5t  # the server's TLS, not the header
    assert asgi_request_info(_scope("192.0.2.7", header), ProxySettings.create(["10.0.0.1"])).client_cert is None


def test_wsgi_translation_reads_the_header_from_proxies_and_the_server() -> None:
    environ = {"REMOTE_ADDR": "10.0.0.1", "HTTP_CLIENT_CERT": ALICE.client_cert_header}
    trusted = client_cert_from_environ(environ, PROXY)
    assert trusted is not None and trusted.thumbprint() == ALICE.x5t
    assert client_cert_from_environ({**environ, "REMOTE_ADDR": "192.0.2.7"}, PROXY) is None
    server = client_cert_from_environ({"REMOTE_ADDR": "192.0.2.7", "SSL_CLIENT_CERT": MALLORY.pem}, PROXY)
    assert server is not None and server.thumbprint() == MALLORY.x5t
    assert client_cert_from_environ({"REMOTE_ADDR": "1.2.3.4", "gunicorn.socket": object()}, PROXY) is None
    assert isinstance(ssl.SSLSocket, type)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"client_cert_header": "Client-Cert"}, "trusted_proxies"),
        ({"trusted_proxies": ["10.0.0.1"], "client_cert_header": "Authorization"}, "another purpose"),
        ({"trusted_proxies": ["10.0.0.1"], "client_cert_header": "bad name"}, "header name"),
        ({"trusted_proxies": ["10.0.0.1"], "client_cert_header": "x", "client_cert_format": "apache"}, "rfc9440"),
    ],
)
def test_client_cert_settings_fail_at_start_up(options: dict[str, Any], message: str) -> None:
    trusted = options.pop("trusted_proxies", None)
    with pytest.raises(ValueError, match=message):
        ProxySettings.create(trusted, **options)


def test_report_only_counts_a_certificate_bound_bearer_request_as_accepted(env: Env) -> None:
    outcomes: list[Any] = []
    verifier = env.verifier(mode="report_only", on_outcome=outcomes.append)
    token = env.issuer.token(None, cnf={"x5t#S256": ALICE.x5t})
    plain = env.request(token, None, scheme="Bearer")
    result = verifier.authenticate(RequestInfo(plain.method, plain.url, plain.headers, header_cert()))
    assert result.outcome == "accepted" and result.principal is not None
    assert [o.outcome for o in outcomes] == ["accepted"]
    unbound = env.request(env.issuer.token(None), None, scheme="Bearer")
    assert verifier.authenticate(RequestInfo(unbound.method, unbound.url, unbound.headers, header_cert())).outcome == "reported"


def test_rfc9728_metadata_announces_what_the_verifier_accepts(env: Env) -> None:
    from dpop_middleware.core.resource_metadata import ResourceMetadata

    metadata = ResourceMetadata(resource="https://api.example.com")
    on = env.verifier(resource_metadata=metadata).published_metadata()
    assert on is not None
    assert on.document["tls_client_certificate_bound_access_tokens"] is True
    assert on.document["dpop_bound_access_tokens_required"] is False  # certificate-bound tokens go without DPoP
    off = make_env().verifier(resource_metadata=metadata).published_metadata()
    assert off is not None and off.document["tls_client_certificate_bound_access_tokens"] is False
    assert off.document["dpop_bound_access_tokens_required"] is True
