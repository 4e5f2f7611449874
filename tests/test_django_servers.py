"""The Django test project under real servers on 127.0.0.1: gunicorn (sync workers) and uvicorn (ASGI).

Both mount the app under ``/prefix``: gunicorn through ``SCRIPT_NAME`` (the client sends the full
path), uvicorn through ``--root-path`` (as behind a proxy that strips the prefix). A simulated
reverse proxy is the test itself sending ``X-Forwarded-*`` / ``Forwarded`` from 127.0.0.1: they count
when 127.0.0.1 is in ``DPOP["TRUSTED_PROXIES"]`` (``trusted``: with every header in
``DPOP["TRUSTED_HEADERS"]``; ``default``: only X-Forwarded-For/-Proto, the default) and are ignored
otherwise. The servers' own
forwarded-header handling is switched off (gunicorn ``--forwarded-allow-ips``, uvicorn
``--no-proxy-headers``) so that the library alone decides.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest
from servers import free_port, python_argv, redis_server, running

from dpop_middleware.client import DPoPKey
from dpop_middleware.core.origin import FORWARDING_HEADERS
from dpop_middleware.testing import TestIssuer, dpop_headers

PREFIX = "/prefix"


@dataclass
class Server:
    kind: str
    trust: str  # "trusted" (every forwarding header), "default" (X-Forwarded-For/-Proto) or "untrusted"
    port: int
    issuer: TestIssuer
    client: httpx.Client

    @property
    def public_base(self) -> str:
        """The base URL a client of the (simulated) proxy believes it talks to."""
        return f"http://127.0.0.1:{self.port}{PREFIX}"

    def wire_path(self, path: str) -> str:
        # gunicorn's SCRIPT_NAME wants the prefix on the wire; uvicorn's --root-path assumes a proxy removed it.
        return PREFIX + path if self.kind == "gunicorn" else path

    def call(
        self,
        path: str,
        htu: str,
        *,
        key: DPoPKey | None = None,
        extra: dict[str, str] | None = None,
        method: str = "GET",
    ) -> httpx.Response:
        key = key or DPoPKey.generate()
        headers = dpop_headers(key, method, htu, self.issuer.token(key.jkt))
        headers.update(extra or {})
        return self.client.request(method, self.wire_path(path), headers=headers)


def _argv(kind: str, port: int) -> list[str]:
    if kind == "gunicorn":
        return python_argv(
            "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class", "sync",
            # Not 127.0.0.1: gunicorn must not turn X-Forwarded-Proto into wsgi.url_scheme itself.
            "--forwarded-allow-ips", "192.0.2.1", "django_app.wsgi:application",
        )  # fmt: skip
    return python_argv(
        "-m", "uvicorn", "django_app.asgi:application", "--host", "127.0.0.1", "--port", str(port),
        "--root-path", PREFIX, "--no-proxy-headers", "--lifespan", "off", "--log-level", "warning",
    )  # fmt: skip


@pytest.fixture(
    scope="module",
    params=[
        ("gunicorn", "trusted"), ("gunicorn", "untrusted"), ("uvicorn", "trusted"), ("uvicorn", "untrusted"),
        ("uvicorn", "default"),
    ],
    ids="-".join,
)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    kind, trust = request.param
    issuer = TestIssuer(audience="https://api.test")
    config = {
        "ISSUER": issuer.issuer,
        "AUDIENCE": issuer.audience,
        "JWKS": issuer.jwks,
        "TRUSTED_PROXIES": [] if trust == "untrusted" else ["127.0.0.1"],
    }
    if trust == "trusted":
        config["TRUSTED_HEADERS"] = list(FORWARDING_HEADERS)
    env = {"DJANGO_SETTINGS_MODULE": "django_app.settings", "DPOP_TEST_CONFIG": json.dumps(config)}
    if kind == "gunicorn":
        env["SCRIPT_NAME"] = PREFIX
    port = free_port()
    with running(_argv(kind, port), port, env=env), httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
        yield Server(kind, trust, port, issuer, c)


FORWARDED_X = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.com", "X-Forwarded-For": "203.0.113.7"}
FORWARDED = {"Forwarded": 'for="203.0.113.7";proto=https;host=public.example.com'}


def test_direct_request_with_prefix(server: Server) -> None:
    key = DPoPKey.generate()
    resp = server.call("/protected", server.public_base + "/protected", key=key)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"scheme": "DPoP", "jkt": key.jkt, "sub": "alice", "scopes": ["read"]}


def test_post_and_async_view_and_drf(server: Server) -> None:
    assert server.call("/protected", server.public_base + "/protected", method="POST").status_code == 200
    assert server.call("/async-protected", server.public_base + "/async-protected").status_code == 200
    resp = server.call("/drf/protected", server.public_base + "/drf/protected")
    assert resp.status_code == 200, resp.text
    assert resp.json()["sub"] == "alice"


def test_challenges_and_replay(server: Server) -> None:
    resp = server.client.get(server.wire_path("/protected"))
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"].startswith('DPoP algs="')
    assert resp.headers["cache-control"] == "no-store"
    key = DPoPKey.generate()
    headers = dpop_headers(key, "GET", server.public_base + "/protected", server.issuer.token(key.jkt))
    assert server.client.get(server.wire_path("/protected"), headers=headers).status_code == 200
    again = server.client.get(server.wire_path("/protected"), headers=headers)
    assert again.status_code == 401
    assert 'error="invalid_dpop_proof"' in again.headers["www-authenticate"]
    assert server.client.get(server.wire_path("/health")).json() == {"ok": True, "dpop": False}


def test_disallowed_host_is_a_400_challenge(server: Server) -> None:
    resp = server.call("/protected", "http://evil.example.com/prefix/protected", extra={"Host": "evil.example.com"})
    assert resp.status_code == 400
    assert 'error="invalid_request"' in resp.headers["www-authenticate"]
    assert resp.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("headers", "public"),
    [(FORWARDED_X, "https://api.example.com"), (FORWARDED, "https://public.example.com")],
    ids=["x-forwarded", "forwarded"],
)
def test_forwarded_headers(server: Server, headers: dict[str, str], public: str) -> None:
    as_forwarded = server.call("/protected", public + PREFIX + "/protected", extra=headers)
    as_direct = server.call("/protected", server.public_base + "/protected", extra=headers)
    if server.trust == "trusted":
        assert as_forwarded.status_code == 200, as_forwarded.text
        assert as_direct.status_code == 401
        assert 'error="invalid_dpop_proof"' in as_direct.headers["www-authenticate"]
    elif server.trust == "default" and "X-Forwarded-Proto" in headers:
        # X-Forwarded-Proto is believed; the X-Forwarded-Host the proxy passed through is not.
        assert as_forwarded.status_code == 401
        as_https = server.call("/protected", "https" + server.public_base[4:] + "/protected", extra=headers)
        assert as_https.status_code == 200, as_https.text
    else:  # the same headers from an untrusted peer (or not among the trusted ones) are ignored
        assert as_forwarded.status_code == 401
        assert 'error="invalid_dpop_proof"' in as_forwarded.headers["www-authenticate"]
        assert as_direct.status_code == 200, as_direct.text


def test_forwarded_prefix(server: Server) -> None:
    headers = {"X-Forwarded-Prefix": "/edge"}
    edge_url = f"http://127.0.0.1:{server.port}/edge{PREFIX}/protected"
    resp = server.call("/protected", edge_url, extra=headers)
    assert resp.status_code == (200 if server.trust == "trusted" else 401), resp.text


def test_gunicorn_workers_share_the_django_cache_store() -> None:
    """The same proof sent at once to 2 sync workers: exactly one is accepted, every round."""
    issuer = TestIssuer(audience="https://api.test")
    config = {"ISSUER": issuer.issuer, "AUDIENCE": issuer.audience, "JWKS": issuer.jwks, "REPLAY_STORE": "django-cache"}
    port = free_port()
    argv = python_argv(
        "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--worker-class", "sync",
        "--forwarded-allow-ips", "192.0.2.1", "django_app.wsgi:application",
    )  # fmt: skip
    with redis_server() as redis_port:
        env = {
            "DJANGO_SETTINGS_MODULE": "django_app.settings",
            "DPOP_TEST_CONFIG": json.dumps(config),
            "DJANGO_TEST_REDIS_URL": f"redis://127.0.0.1:{redis_port}",
        }
        with running(argv, port, env=env), ThreadPoolExecutor(4) as pool:
            url = f"http://127.0.0.1:{port}/protected"
            key = DPoPKey.generate()
            token = issuer.token(key.jkt)
            clients = [httpx.Client(timeout=10) for _ in range(4)]
            try:
                for _ in range(10):
                    headers = dpop_headers(key, "GET", url, token)
                    statuses = list(pool.map(lambda c: c.get(url, headers=headers).status_code, clients))
                    assert sorted(statuses) == [200, 401, 401, 401], statuses
            finally:
                for c in clients:
                    c.close()
