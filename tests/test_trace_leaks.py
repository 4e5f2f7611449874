"""Traces carry no usable credential: every adapter and client, DEBUG logging everywhere, a scan.

Each adapter runs the whole shared case table (tests/adapter_cases.py: success and every failure
path) plus a token validator whose exception quotes the token, with the root logger and the
third-party loggers (httpx, httpcore, urllib3, django, werkzeug, asyncio...) at DEBUG. Every token
and proof sent is recorded; the captured log output (messages, ``extra`` fields, tracebacks) must
contain none of them, nor any 24-character piece of their payload or signature. The clients
(httpx sync and async, requests) do the same against a real server, including the token endpoint's
refusal and a server that is down. The scanner is shown to catch a leak (a negative control), and
:func:`install_redaction` to remove it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import requests
import test_asgi_cases as asgi_cases
import test_fastapi_cases as fastapi_cases
import test_flask_cases as flask_cases
import test_starlette_cases as starlette_cases
import test_wsgi_cases as wsgi_cases
from adapter_cases import CASES, Response, run_case
from django_app.harness import DjangoDriver, ensure_django
from servers import free_port, python_argv, running
from test_client_servers import CLIENT_ID, CLIENT_SECRET, _env

from dpop_middleware import DPoPVerifier
from dpop_middleware.client import DPoPKey, NonceCache, TokenRequestError, proof_headers
from dpop_middleware.core.request import Credentials, RequestInfo
from dpop_middleware.httpx_auth import DPoPAuth, afetch_token, fetch_token
from dpop_middleware.redaction import RedactingFilter, install_redaction, uninstall_redaction
from dpop_middleware.requests_auth import DPoPAuth as RequestsDPoPAuth
from dpop_middleware.testing import TestIssuer

ensure_django()

THIRD_PARTY = [
    "httpx", "httpcore", "urllib3", "requests", "django", "django.request", "django.server", "werkzeug",
    "asyncio", "starlette", "fastapi", "uvicorn", "flask.app", "dpop_middleware",
]  # fmt: skip
PIECE = 24  # "substantial": any 24 characters of a payload or signature (144 bits)


class Capture(logging.Handler):
    """Everything logged, formatted with tracebacks, plus every string ``extra`` field."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.lines.extend(f"{k}={v}" for k, v in vars(record).items() if isinstance(v, str) and k != "msg")

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@contextlib.contextmanager
def debug_logging() -> Iterator[Capture]:
    capture = Capture()
    names = set(THIRD_PARTY) | {n for n, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    loggers = [logging.getLogger(n) for n in names]
    saved = [(lg, lg.level, lg.disabled) for lg in [logging.root, *loggers]]
    logging.root.addHandler(capture)
    logging.root.setLevel(logging.DEBUG)
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.disabled = False
        if not lg.propagate:  # a logger that keeps its records to itself gets the handler too
            lg.addHandler(capture)
    logging.captureWarnings(True)
    try:
        yield capture
    finally:
        logging.captureWarnings(False)
        logging.root.removeHandler(capture)
        for lg, level, disabled in saved:
            lg.setLevel(level)
            lg.disabled = disabled
            if capture in lg.handlers:
                lg.removeHandler(capture)


def pieces(secret: str) -> set[str]:
    """The secret itself and every 24-character window (step 8) of its payload and signature."""
    parts = secret.split(".")
    sensitive = parts[1:] if len(parts) >= 3 else parts  # a JWT's header segment is public (alg, jwk)
    out = {secret} if len(secret) >= PIECE else set()
    for part in sensitive:
        out.update(part[i : i + PIECE] for i in range(0, max(0, len(part) - PIECE) + 1, 8) if len(part) >= PIECE)
    return out


def leaks(text: str, secrets: set[str]) -> list[str]:
    return sorted({piece for secret in secrets for piece in pieces(secret) if piece in text})


class Recording:
    """A case-table driver that remembers every token and proof sent through it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.base_url = inner.base_url
        self.secrets: set[str] = set()

    def build(self, verifier: DPoPVerifier) -> None:
        self.inner.build(verifier)

    def request(self, method: str, path: str, headers: list[tuple[str, str]]) -> Response:
        for name, value in headers:
            if name.lower() == "authorization":
                self.secrets.add(value.split(None, 1)[-1])
            elif name.lower() == "dpop":
                self.secrets.add(value)
        return self.inner.request(method, path, headers)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


ADAPTERS: dict[str, Callable[[], Any]] = {
    "wsgi": wsgi_cases.WSGIDriver,
    "asgi": asgi_cases.BareASGIDriver,
    "starlette": lambda: starlette_cases.StarletteDriver(starlette_cases.STACKS["middleware"]),
    "starlette_auth_backend": lambda: starlette_cases.StarletteDriver(starlette_cases.STACKS["auth_backend"]),
    "fastapi": lambda: fastapi_cases.FastAPIDriver(exact_errors=True),
    "flask": lambda: flask_cases.FlaskDriver(enforce_all=False),
    "django": DjangoDriver,
    "django_async": lambda: DjangoDriver(use_async=True),
    "drf": lambda: DjangoDriver("/drf", middleware=False),
    # The other wirings of the same adapters, which log through other paths.
    "starlette_stock_auth_middleware": lambda: starlette_cases.StarletteDriver(
        starlette_cases.STACKS["stock_auth_middleware"]
    ),
    "fastapi_default_handler": lambda: fastapi_cases.FastAPIDriver(exact_errors=False),
    "flask_enforce_all": lambda: flask_cases.FlaskDriver(enforce_all=True),
    "django_mounted": lambda: DjangoDriver(script_name="/mount"),
    "drf_behind_middleware": lambda: DjangoDriver("/drf", middleware=True),
}


class LeakyValidator:
    """A token validator that fails and quotes the token in its exception: our logs must not repeat it."""

    def validate(self, token: str) -> Any:
        raise RuntimeError(f"upstream choked on {token}")


@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_adapter_logs_no_token_or_proof_on_any_path(adapter: str) -> None:
    driver = Recording(ADAPTERS[adapter]())
    try:
        with debug_logging() as capture, warnings.catch_warnings():
            warnings.simplefilter("always")
            for case in CASES:
                run_case(driver, case)
            # A validator outage whose exception text holds the token: a 503 and a log line without it.
            issuer, key = TestIssuer(audience="https://api.test"), DPoPKey.generate()
            driver.build(DPoPVerifier(LeakyValidator()))
            token = issuer.token(key.jkt)
            sent = proof_headers(key, "GET", driver.base_url + "/protected", token)
            assert driver.request("GET", "/protected", list(sent.items())).status == 503
        assert len(driver.secrets) > 20  # the scan has something to look for
        assert "dpop " in capture.text  # and the logs it scans are there: our refusals are logged
        assert leaks(capture.text, driver.secrets) == [], adapter
    finally:
        driver.close()


def test_the_scan_catches_a_leak_and_the_filter_removes_it() -> None:
    issuer, key = TestIssuer(audience="https://api.test"), DPoPKey.generate()
    token = issuer.token(key.jkt)
    proof = key.proof("GET", "https://api.test/x", access_token=token)
    signature = proof.rsplit(".", 1)[1]
    with debug_logging() as capture:
        logging.getLogger("httpx").debug("sending headers %s", {"Authorization": f"DPoP {token}"})
        logging.getLogger("urllib3.connectionpool").debug("proof signature: %s", signature[:30])
    found = leaks(capture.text, {token, proof})
    assert token in found and any(piece in signature for piece in found)

    # With the filter on the handler, and then with the installer (any handler, present or future).
    for mode in ("filter", "installer"):
        with debug_logging() as capture:
            if mode == "filter":
                capture.addFilter(RedactingFilter())
            else:
                install_redaction()
            try:
                logging.getLogger("httpcore.http11").debug("headers=[(b'authorization', b'DPoP %s')]", token)
                logging.getLogger("requests").debug("DPoP: %s", proof)
                try:
                    raise ValueError(f"bad header {proof}")
                except ValueError:
                    logging.getLogger("django.request").exception("failed")
                logging.getLogger("flask.app").info("ok", extra={"auth": f"Bearer {token}"})
            finally:
                uninstall_redaction()
        if mode == "filter":  # extra fields are set after the record factory: the filter covers them
            assert leaks(capture.text, {token, proof}) == [], capture.text
        else:
            assert leaks(capture.text.replace(f"auth=Bearer {token}", ""), {token, proof}) == [], capture.text
        assert "[REDACTED]" in capture.text and "bad header" in capture.text


def test_token_endpoint_logs_no_proof() -> None:
    from dpop_middleware.authorization_server import TokenEndpointVerifier

    endpoint = "https://as.test/token"
    verifier = TokenEndpointVerifier(endpoint, nonce_policy="always", nonce_keyring={"k1": "token-endpoint-nonce-key-0123"})
    key, thief = DPoPKey.generate(), DPoPKey.generate()
    proofs: set[str] = set()

    def ask(proof: str, *, dpop_jkt: str | None = None) -> Any:
        proofs.add(proof)
        return verifier.authenticate(RequestInfo("POST", endpoint, [("DPoP", proof)]), dpop_jkt=dpop_jkt)

    with debug_logging() as capture:
        challenge = ask(key.proof("POST", endpoint))  # 400 use_dpop_nonce
        nonce = dict(challenge.rejection.headers)["DPoP-Nonce"]
        good = key.proof("POST", endpoint, nonce=nonce)
        assert ask(good).rejection is None
        assert ask(good).rejection is not None  # replayed
        assert ask(key.proof("GET", endpoint, nonce=nonce)).rejection is not None  # htm
        assert ask(key.proof("POST", endpoint, nonce=nonce), dpop_jkt=thief.jkt).rejection is not None  # dpop_jkt
        assert ask(key.proof("POST", endpoint, nonce=nonce, iat=1_000_000_000)).rejection is not None  # stale
    assert "dpop " in capture.text
    assert leaks(capture.text, proofs) == []


def test_introspection_logs_no_token_or_secret() -> None:
    """Opaque tokens go to the introspection endpoint over real HTTP (httpx at DEBUG in this process)."""
    import secrets
    import time

    from authz_server import AuthzServer

    from dpop_middleware.tokens import IntrospectionValidator

    key = DPoPKey.generate()
    now = int(time.time())
    answer = {"active": True, "token_type": "DPoP", "exp": now + 600, "iat": now, "sub": "alice",
              "aud": "https://api.test", "scope": "read", "cnf": {"jkt": key.jkt}}  # fmt: skip
    secret = "introspection-client-secret-0123456789"
    sent: set[str] = {secret}
    with AuthzServer() as authz, debug_logging() as capture:
        authz.state.clients["rs"] = secret
        up = IntrospectionValidator(
            endpoint=authz.introspection_endpoint, client_id="rs", client_secret=secret, audience="https://api.test"
        )
        down = IntrospectionValidator(
            endpoint=f"http://127.0.0.1:{free_port()}/introspect", client_id="rs", client_secret=secret,
            audience="https://api.test", timeout=1.0,
        )  # fmt: skip
        try:
            for validator, active, status in ((up, True, 200), (up, False, 401), (down, True, 503)):
                token = "op_" + secrets.token_urlsafe(32)
                authz.state.introspection[token] = answer if active else {"active": False}
                headers = proof_headers(key, "GET", "https://api.test/x", token)
                sent |= {token, headers["DPoP"]}
                result = DPoPVerifier(validator).authenticate(RequestInfo("GET", "https://api.test/x", list(headers.items())))
                assert (result.rejection.status if result.rejection else 200) == status
        finally:
            up.close()
            down.close()
    assert "httpx" in capture.text or "httpcore" in capture.text
    assert leaks(capture.text, sent) == []


def test_reprs_carry_no_credential() -> None:
    from dpop_middleware.authorization_server import TokenEndpointVerifier

    issuer, key = TestIssuer(audience="https://api.test"), DPoPKey.generate()
    token = issuer.token(key.jkt)
    headers = proof_headers(key, "GET", "https://api.test/x", token)
    reprs = [
        repr(RequestInfo("GET", "https://api.test/x", list(headers.items()))),
        repr(Credentials("DPoP", token, headers["DPoP"])),
        repr(DPoPAuth(key, token)),
        repr(RequestsDPoPAuth(key, token)),
        repr(key),
        repr(DPoPVerifier(issuer.validator()).verify(RequestInfo("GET", "https://api.test/x", list(headers.items())))),
        repr(DPoPVerifier(issuer.validator()).authenticate(RequestInfo("GET", "https://api.test/x", list(headers.items())))),
        repr(DPoPVerifier(issuer.validator()).authenticate(RequestInfo("POST", "https://api.test/x", list(headers.items())))),
        repr(TokenEndpointVerifier("https://api.test/x").authenticate(RequestInfo("GET", "https://api.test/x", [("DPoP", headers["DPoP"])]))),
    ]
    assert leaks("\n".join(reprs), {token, headers["DPoP"]}) == [], reprs
    assert "[REDACTED]" in reprs[0]


# -- the clients against a real server --------------------------------------------------------


class RecordingKey:
    """A ProofKey that remembers every proof it signs."""

    def __init__(self, key: DPoPKey) -> None:
        self.key, self.alg, self.jkt = key, key.alg, key.jkt
        self.proofs: set[str] = set()

    def proof(self, method: str, url: str, *, access_token: str | None = None, nonce: str | None = None) -> str:
        proof = self.key.proof(method, url, access_token=access_token, nonce=nonce)
        self.proofs.add(proof)
        return proof


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, TestIssuer]]:
    issuer = TestIssuer("https://issuer.test", "https://api.test")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = python_argv(
        "-m", "uvicorn", "--factory", "test_client_servers:starlette_app", "--host", "127.0.0.1",
        "--port", str(port), "--log-level", "warning",
    )  # fmt: skip
    with running(argv, port, env=_env(issuer, base)):
        yield base, issuer


def _down_url() -> str:
    return f"http://127.0.0.1:{free_port()}/api/me"  # nothing listens there


def test_httpx_sync_and_async_log_no_token_or_proof(server: tuple[str, TestIssuer]) -> None:
    base, issuer = server
    key = RecordingKey(DPoPKey.generate())
    secrets: set[str] = {CLIENT_SECRET}
    with debug_logging() as capture:
        nonces = NonceCache()
        with httpx.Client(timeout=10) as client:
            token = fetch_token(
                base + "/token", key, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, nonces=nonces, client=client
            ).access_token
            secrets.add(token)
            assert client.get(base + "/api/me", auth=DPoPAuth(key, token, nonces=nonces)).status_code == 200
            stolen = issuer.token(DPoPKey.generate().jkt)  # bound to another key: 401 invalid_token
            secrets.add(stolen)
            assert client.get(base + "/api/me", auth=DPoPAuth(key, stolen)).status_code == 401
            with pytest.raises(TokenRequestError) as refused:
                fetch_token(base + "/token", key, client_id=CLIENT_ID, client_secret="wrong", client=client)
            with pytest.raises(httpx.ConnectError) as down:
                client.get(_down_url(), auth=DPoPAuth(key, token))

        async def run_async() -> None:
            async with httpx.AsyncClient(timeout=10) as aclient:
                atoken = (
                    await afetch_token(base + "/token", key, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, client=aclient)
                ).access_token
                secrets.add(atoken)
                assert (await aclient.post(base + "/api/me", auth=DPoPAuth(key, atoken), content=b"{}")).status_code == 200

        asyncio.run(run_async())
        logging.getLogger("test").debug("errors: %s | %s", refused.value, down.value)
    assert "httpcore" in capture.text and "httpx" in capture.text  # third-party DEBUG lines were captured
    secrets |= key.proofs
    assert len(key.proofs) >= 6
    assert leaks(capture.text, secrets) == []


def test_requests_logs_no_token_or_proof(server: tuple[str, TestIssuer]) -> None:
    base, issuer = server
    key = RecordingKey(DPoPKey.generate())
    with httpx.Client(timeout=10) as client:
        token = fetch_token(base + "/token", key, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, client=client).access_token
    stolen = issuer.token(DPoPKey.generate().jkt)
    with debug_logging() as capture, requests.Session() as session:
        nonces = NonceCache()
        first = session.get(base + "/api/me", auth=RequestsDPoPAuth(key, token, nonces=nonces), timeout=10)
        assert first.status_code == 200 and first.history[0].status_code == 401  # the nonce retry
        assert session.get(base + "/api/me", auth=RequestsDPoPAuth(key, stolen), timeout=10).status_code == 401
        with pytest.raises(requests.ConnectionError) as down:
            session.get(_down_url(), auth=RequestsDPoPAuth(key, token), timeout=10)
        logging.getLogger("test").debug("error: %s", down.value)
    assert "urllib3" in capture.text
    assert leaks(capture.text, {token, stolen, *key.proofs}) == []


REDACTIONS = [
    ("Authorization: DPoP abc", "Authorization: DPoP [REDACTED]"),
    ("{'authorization': 'Bearer abc'}", "{'authorization': 'Bearer [REDACTED]'}"),
    ("[(b'Authorization', b'DPoP abc')]", "[(b'Authorization', b'DPoP [REDACTED]')]"),
    ("authorization: bearer abc", "authorization: bearer [REDACTED]"),
    ("Proxy-Authorization=Basic dXNlcjpwYXNz", "Proxy-Authorization=Basic [REDACTED]"),
    ("sent DPoP opaque-token-0123456789 ok", "sent DPoP [REDACTED] ok"),
    ("DPoP: eyJ0eXAiOiJkcG9wK2p3dCJ9.eyJodG0iOiJHRVQifQ.c2lnbmF0dXJl", "DPoP: [REDACTED]"),
    ("GET /a?access_token=abc&b=1", "GET /a?access_token=[REDACTED]&b=1"),
    # Our own log lines and challenges are left alone.
    ("dpop replayed: DPoP proof already used (401) GET https://a/b", None),
    ("dpop: the JWKS is down; the request is refused with 503", None),
    ('DPoP algs="ES256", error="invalid_token"', None),
    ("https://api.example.com/v1/things", None),
]


@pytest.mark.parametrize(("text", "expected"), REDACTIONS)
def test_redact_text(text: str, expected: str | None) -> None:
    from dpop_middleware.core.redact import redact_text

    assert redact_text(text) == (text if expected is None else expected)
