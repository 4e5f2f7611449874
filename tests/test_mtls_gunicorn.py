"""The server's own TLS as the certificate source: gunicorn with ``--certfile``/``--ca-certs``/
``--cert-reqs`` on 127.0.0.1, its TLS socket read by the WSGI adapter (docs/mtls.md's server table)."""

from __future__ import annotations

import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mtls_support import Issued, TestCA
from servers import free_port, issuer_env, running

from dpop_middleware.testing import TestIssuer

ISSUER = TestIssuer()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, TestCA, Path, dict[str, Issued]]]:
    work = tmp_path_factory.mktemp("gunicorn-mtls")
    ca = TestCA()
    ca_path = work / "ca.pem"
    ca_path.write_text(ca.issued.pem)
    cert, key = ca.issue("127.0.0.1", server=True).write(work, "server")
    clients = {name: ca.issue(name) for name in ("alice", "mallory")}
    for name, issued in clients.items():
        issued.write(work, name)
    port = free_port()
    argv = [
        sys.executable, "-m", "gunicorn", "-w", "1", "-k", "sync", "-b", f"127.0.0.1:{port}",
        "--certfile", str(cert), "--keyfile", str(key), "--ca-certs", str(ca_path), "--cert-reqs", "1",
        "mtls_wsgi_server:application",
    ]  # fmt: skip
    with running(argv, port, env=issuer_env(ISSUER), log_path=work / "gunicorn.log"):
        yield f"https://127.0.0.1:{port}", ca, work, clients


def _tls(work: Path, who: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(work / "ca.pem"))
    if who is not None:
        context.load_cert_chain(work / f"{who}.pem", work / f"{who}.key")
    return context


def test_gunicorn_tls_peer_certificate_binds_the_token(server: tuple[str, TestCA, Path, dict[str, Issued]]) -> None:
    url, _, work, clients = server
    token = ISSUER.token(None, cnf={"x5t#S256": clients["alice"].x5t})
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(verify=_tls(work, "alice"), timeout=10) as http:
        ok = http.get(f"{url}/me", headers=headers)
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"x5t": clients["alice"].x5t, "jkt": None}
    for who in ("mallory", None):
        with httpx.Client(verify=_tls(work, who), timeout=10) as http:
            refused = http.get(f"{url}/me", headers=headers)
        assert refused.status_code == 401, (who, refused.text)
