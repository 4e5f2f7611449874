"""RFC 8705 end to end: nginx terminating mutual TLS in front of the sample issuer and each sample API.

Real parts only: a CA, the server's and two clients' certificates made here with ``cryptography``;
Debian's nginx with ``sample_projects/mtls`` (its shipped template) on free loopback ports, reaching
the apps from 127.0.0.2 (``proxy_bind``) so that the tests' own direct requests (from 127.0.0.1) are
not the proxy's; the sample issuer and the Django (gunicorn), Flask (gunicorn) and FastAPI (uvicorn)
APIs started by the demo's launcher. nginx passes the certificate as RFC 9440 ``Client-Cert`` (its
njs function), which the APIs read, and as URL-escaped PEM, which the issuer reads. The issuer binds the token of a ``tls_client_auth`` client to its
certificate; each API accepts it only with that certificate, and DPoP-bound tokens beside it.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from mtls_support import Issued, TestCA
from servers import free_port, running

from dpop_middleware.client import DPoPKey
from dpop_middleware.httpx_auth import DPoPAuth, fetch_token
from sample_projects.common import DEFAULT_AUDIENCE
from sample_projects.demo.processes import ServerGroup
from sample_projects.mtls import CERT_HEADER, JS_MODULE, Proxied, render_config

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
APIS = (
    ("django", "sample_projects.django_api"),
    ("flask", "sample_projects.flask_api"),
    ("fastapi", "sample_projects.fastapi_api"),
)
PROXY_ADDRESS = "127.0.0.2"


@dataclass
class Story:
    ca: TestCA
    ca_path: Path
    clients: dict[str, tuple[Issued, Path, Path]]
    public: dict[str, str]  # through nginx (https)
    direct: dict[str, str]  # the app itself (http), bypassing nginx

    def tls(self, who: str | None = None) -> ssl.SSLContext:
        """What a client trusts (the test CA) and, for ``who``, the certificate it presents."""
        context = ssl.create_default_context(cafile=str(self.ca_path))
        if who is not None:
            _, cert, key = self.clients[who]
            context.load_cert_chain(cert, key)
        return context


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    if NGINX is None or not JS_MODULE.exists():
        if os.environ.get("CI"):
            pytest.fail("nginx and its njs module are required in CI (scripts/run-tests.sh installs them)")
        pytest.skip("nginx or libnginx-mod-http-js not installed")
    work = tmp_path_factory.mktemp("mtls")
    ca = TestCA()
    ca_path = work / "ca.pem"
    ca_path.write_text(ca.issued.pem)
    server_cert, server_key = ca.issue("127.0.0.1", server=True).write(work, "server")
    clients = {}
    for name in ("mtls-client", "mallory"):
        issued = ca.issue(name)
        clients[name] = (issued, *issued.write(work, name))
    public_ports = {name: free_port() for name in ("issuer", *(api for api, _ in APIS))}
    public = {name: f"https://127.0.0.1:{port}" for name, port in public_ports.items()}
    # nginx passes the certificate in both formats; the issuer reads the escaped PEM, the APIs
    # RFC 9440 Client-Cert (written by the shipped njs function), so both go through a real proxy.
    trusted = {"DPOP_TRUSTED_PROXIES": PROXY_ADDRESS}
    pem_env = {**trusted, "DPOP_CLIENT_CERT_HEADER": CERT_HEADER, "DPOP_CLIENT_CERT_FORMAT": "nginx"}
    rfc9440_env = {**trusted, "DPOP_CLIENT_CERT_HEADER": "Client-Cert", "DPOP_CLIENT_CERT_FORMAT": "rfc9440"}
    with ServerGroup(work) as group:
        issuer = group.start(
            "issuer", "sample_projects.issuer",
            {"DPOP_ISSUER": public["issuer"], "DPOP_AUDIENCE": DEFAULT_AUDIENCE, **pem_env},
        )  # fmt: skip
        common = {
            "DPOP_ISSUER": public["issuer"],
            "DPOP_JWKS_URI": f"{issuer.url}/jwks",  # the apps fetch keys directly, not through the proxy
            "DPOP_AUDIENCE": DEFAULT_AUDIENCE,
            "DPOP_CERTIFICATE_BOUND_TOKENS": "true",
            **rfc9440_env,
        }
        apis = {name: group.start(name, module, common) for name, module in APIS}
        group.wait_ready(60)
        upstream = {"issuer": issuer, **apis}
        prefix = work / "nginx"
        prefix.mkdir()
        config = prefix / "nginx.conf"
        config.write_text(
            render_config(
                prefix,
                [Proxied(name, f"127.0.0.1:{port}", f"127.0.0.1:{upstream[name].port}") for name, port in public_ports.items()],
                server_cert=server_cert, server_key=server_key, client_ca=ca_path, proxy_address=PROXY_ADDRESS,
            )
        )  # fmt: skip
        subprocess.run([NGINX, "-t", "-p", str(prefix), "-c", str(config)], check=True, capture_output=True)
        argv = [NGINX, "-p", str(prefix), "-c", str(config), "-g", "daemon off;"]
        with running(argv, public_ports["fastapi"], log_path=work / "nginx.out"):
            for port in public_ports.values():
                from servers import wait_for_port

                wait_for_port(port)
            yield Story(ca, ca_path, clients, public, {name: server.url for name, server in apis.items()})


def _certificate_bound_token(story: Story, who: str = "mtls-client") -> str:
    with httpx.Client(verify=story.tls(who), timeout=10) as http:
        response = http.post(
            f"{story.public['issuer']}/token",
            data={"grant_type": "client_credentials", "client_id": "mtls-client", "scope": "notes:read notes:write"},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"  # RFC 8705 tokens are sent as Bearer
    return str(body["access_token"])


@pytest.fixture(scope="module")
def cert_token(story: Story) -> str:
    return _certificate_bound_token(story)


def _me(story: Story, api: str, token: str, who: str | None) -> httpx.Response:
    with httpx.Client(verify=story.tls(who), timeout=10) as http:
        return http.get(f"{story.public[api]}/api/me", headers={"Authorization": f"Bearer {token}"})


def test_issuer_refuses_tls_client_auth_with_another_certificate(story: Story) -> None:
    with httpx.Client(verify=story.tls("mallory"), timeout=10) as http:
        response = http.post(
            f"{story.public['issuer']}/token", data={"grant_type": "client_credentials", "client_id": "mtls-client"}
        )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    with httpx.Client(verify=story.tls(), timeout=10) as http:
        meta = http.get(f"{story.public['issuer']}/.well-known/oauth-authorization-server").json()
    assert "tls_client_auth" in meta["token_endpoint_auth_methods_supported"]
    assert meta["tls_client_certificate_bound_access_tokens"] is True


@pytest.mark.parametrize("api", [name for name, _ in APIS])
def test_good_certificate_is_accepted(story: Story, cert_token: str, api: str) -> None:
    response = _me(story, api, cert_token, "mtls-client")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scheme"] == "Bearer" and body["jkt"] is None
    assert body["x5t#S256"] == story.clients["mtls-client"][0].x5t


@pytest.mark.parametrize("api", [name for name, _ in APIS])
def test_another_clients_certificate_or_none_is_refused(story: Story, cert_token: str, api: str) -> None:
    other = _me(story, api, cert_token, "mallory")
    assert other.status_code == 401, other.text
    assert 'Bearer error="invalid_token"' in ", ".join(other.headers.get_list("www-authenticate"))
    assert _me(story, api, cert_token, None).status_code == 401


@pytest.mark.parametrize("api", [name for name, _ in APIS])
def test_certificate_header_from_a_client_that_is_not_the_proxy_is_ignored(
    story: Story, cert_token: str, api: str
) -> None:
    good = story.clients["mtls-client"][0]
    forged = {
        "Authorization": f"Bearer {cert_token}",
        "Client-Cert": good.client_cert_header,
        CERT_HEADER: good.nginx_header,
        "X-Forwarded-Proto": "https",
    }
    response = httpx.get(f"{story.direct[api]}/api/me", headers=forged, timeout=10)
    assert response.status_code == 401, response.text
    # Through the proxy, a client's own headers are replaced by the certificate it really presented,
    # or dropped when it presented none.
    for who in ("mallory", None):
        with httpx.Client(verify=story.tls(who), timeout=10) as http:
            spoofed = http.get(f"{story.public[api]}/api/me", headers=forged)
        assert spoofed.status_code == 401, (who, spoofed.text)


@pytest.mark.parametrize("api", [name for name, _ in APIS])
def test_dpop_bound_and_certificate_bound_tokens_side_by_side(story: Story, cert_token: str, api: str) -> None:
    key = DPoPKey.generate("ES256")
    with httpx.Client(verify=story.tls(), timeout=10) as http:
        dpop_token = fetch_token(
            f"{story.public['issuer']}/token", key, client=http, client_id="demo-client",
            client_secret="demo-secret", scope="notes:read notes:write",
        ).access_token  # fmt: skip
    # The DPoP-bound token needs no certificate, and a certificate changes nothing for it.
    for who in (None, "mallory"):
        with httpx.Client(verify=story.tls(who), auth=DPoPAuth(key, dpop_token), timeout=10) as http:
            response = http.get(f"{story.public[api]}/api/me")
        assert response.status_code == 200, response.text
        assert response.json()["jkt"] == key.jkt and "x5t#S256" not in response.json()
        # Its Bearer downgrade stays refused, certificate or not.
        assert _me(story, api, dpop_token, "mtls-client").status_code == 401
    assert _me(story, api, cert_token, "mtls-client").status_code == 200


@pytest.mark.parametrize("api", [name for name, _ in APIS])
def test_hybrid_token_needs_both_proof_and_certificate_with_the_client_helpers(story: Story, api: str) -> None:
    """fetch_token over an httpx client presenting the certificate: the token is bound to the proof key
    and the certificate; DPoPAuth (httpx) and the requests DPoPAuth then need both."""
    import requests

    from dpop_middleware.requests_auth import DPoPAuth as RequestsDPoPAuth

    key = DPoPKey.generate("ES256")
    with httpx.Client(verify=story.tls("mtls-client"), timeout=10) as http:
        issued = fetch_token(f"{story.public['issuer']}/token", key, client=http, client_id="mtls-client")
        both = http.get(f"{story.public[api]}/api/me", auth=DPoPAuth(key, issued.access_token))
    assert both.status_code == 200, both.text
    mine = story.clients["mtls-client"]
    assert both.json()["jkt"] == key.jkt and both.json()["x5t#S256"] == mine[0].x5t
    with httpx.Client(verify=story.tls(), auth=DPoPAuth(key, issued.access_token), timeout=10) as http:
        assert http.get(f"{story.public[api]}/api/me").status_code == 401  # the proof alone is not enough
    url, auth, ca = f"{story.public[api]}/api/me", RequestsDPoPAuth(key, issued.access_token), str(story.ca_path)
    with requests.Session() as session:
        # verify= per request: a REQUESTS_CA_BUNDLE in the environment would override session.verify.
        ok = session.get(url, auth=auth, verify=ca, cert=(str(mine[1]), str(mine[2])), timeout=10)
        assert ok.status_code == 200, ok.text
        assert ok.json()["x5t#S256"] == mine[0].x5t
        assert session.get(url, auth=auth, verify=ca, timeout=10).status_code == 401
