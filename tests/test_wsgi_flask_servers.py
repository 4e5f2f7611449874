"""The Flask extension and the plain WSGI middleware under a real gunicorn (sync worker) on 127.0.0.1.

Each app is served under gunicorn's ``SCRIPT_NAME=/api`` and, below that, mounted with werkzeug's
DispatcherMiddleware (see ``flask_app_server`` / ``wsgi_app_server``). The test itself plays the
reverse proxy: requests come from 127.0.0.1 carrying forwarded headers. gunicorn's own
``--forwarded-allow-ips`` is pointed elsewhere, so only the library decides what to trust.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from servers import free_port, issuer_env, running

from dpop_middleware.client import DPoPKey
from dpop_middleware.testing import TestIssuer, dpop_headers

PUBLIC = "https://public.example"


@dataclass
class Server:
    port: int
    issuer: TestIssuer
    key: DPoPKey
    client: httpx.Client

    @property
    def local(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def headers(self, method: str, url: str, **kw: Any) -> dict[str, str]:
        return dpop_headers(self.key, method, url, self.issuer.token(self.key.jkt), **kw)

    def get(self, path: str, proof_url: str | None = None, extra: dict[str, str] | None = None) -> httpx.Response:
        headers = self.headers("GET", proof_url or self.local + path)
        headers.update(extra or {})
        return self.client.get(path, headers=headers)


@pytest.fixture(scope="module", params=["flask_app_server", "wsgi_app_server"], ids=["flask", "wsgi"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    issuer = TestIssuer(audience="https://api.test")
    port = free_port()
    argv = [
        sys.executable, "-m", "gunicorn", "-w", "1", "-k", "sync", "-b", f"127.0.0.1:{port}",
        "--forwarded-allow-ips", "192.0.2.1", f"{request.param}:application",
    ]
    env = {"SCRIPT_NAME": "/api", **issuer_env(issuer)}
    with running(argv, port, env=env), httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        yield Server(port, issuer, DPoPKey.generate(), client)


def raw_request(port: int, request_line: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[str, list[str]]]:
    """Send bytes httpx would refuse or re-encode (a hostile Host, raw UTF-8 in the path)."""
    lines = [request_line, *(name + b": " + value for name, value in headers), b"Connection: close", b"", b""]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\r\n".join(lines))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    out: dict[str, list[str]] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        out.setdefault(name.strip().lower(), []).append(value.strip())
    return status, out


def challenge(resp: httpx.Response) -> str:
    values = resp.headers.get_list("www-authenticate")
    assert len(values) == 1 and values[0].startswith("DPoP ") and 'algs="' in values[0], values
    assert resp.headers.get("cache-control") == "no-store"
    return values[0]


# -- the basics, under SCRIPT_NAME and a DispatcherMiddleware mount -------------------------------


def test_good_proof_under_script_name(server: Server) -> None:
    resp = server.get("/api/protected")
    assert resp.status_code == 200, resp.text
    assert resp.json()["jkt"] == server.key.jkt and resp.json()["sub"] == "alice"


def test_proof_without_mount_prefix_is_rejected(server: Server) -> None:
    resp = server.get("/api/protected", proof_url=server.local + "/protected")
    assert resp.status_code == 401
    assert 'error="invalid_dpop_proof"' in challenge(resp)


def test_dispatcher_mount_below_script_name(server: Server) -> None:
    assert server.get("/api/u/protected").status_code == 200
    assert server.get("/api/u/protected", proof_url=server.local + "/api/protected").status_code == 401


def test_post(server: Server) -> None:
    url = server.local + "/api/protected"
    resp = server.client.post("/api/protected", headers=server.headers("POST", url), content=b"{}")
    assert resp.status_code == 200


def test_no_credentials_and_exempt_path(server: Server) -> None:
    resp = server.client.get("/api/protected")
    assert resp.status_code == 401
    assert "error=" not in challenge(resp)
    assert server.client.get("/api/health").status_code == 200
    assert server.client.get("/api/optional").json() == {"anonymous": True}


def test_replay_is_rejected(server: Server) -> None:
    headers = server.headers("GET", server.local + "/api/protected")
    assert server.client.get("/api/protected", headers=headers).status_code == 200
    resp = server.client.get("/api/protected", headers=headers)
    assert resp.status_code == 401 and 'error="invalid_dpop_proof"' in challenge(resp)


# -- paths: percent-encoding and non-ASCII -------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/api/echo/a%2Fb", "/api/echo/caf%C3%A9", "/api/echo/sp%20ace", "/api/echo/%7Euser", "/api/u/echo/x%2fy"],
)
def test_percent_encoded_paths(server: Server, path: str) -> None:
    resp = server.get(path)
    assert resp.status_code == 200, (path, resp.text)


def test_escape_of_unreserved_char_matches_its_plain_form(server: Server) -> None:
    # RFC 3986 normalization: %7E and ~ are the same URL.
    assert server.get("/api/echo/%7Euser", proof_url=server.local + "/api/echo/~user").status_code == 200


def test_encoded_slash_is_not_a_slash(server: Server) -> None:
    # The app sees "/echo/a/b" in PATH_INFO either way; the client signed "a%2Fb", not "a/b".
    resp = server.get("/api/echo/a%2Fb", proof_url=server.local + "/api/echo/a/b")
    assert resp.status_code == 401


def test_non_ascii_htu_matches_percent_encoded_request(server: Server) -> None:
    # A client may sign the IRI form; both sides are normalized to UTF-8 percent-escapes.
    # (gunicorn refuses raw non-ASCII bytes in the request line; see the translation unit tests.)
    assert server.get("/api/echo/caf%C3%A9", proof_url=server.local + "/api/echo/café").status_code == 200
    assert server.get("/api/echo/caf%C3%A9", proof_url=server.local + "/api/echo/cafe").status_code == 401


def test_case_sensitive_path(server: Server) -> None:
    assert server.get("/api/echo/Abc", proof_url=server.local + "/api/echo/abc").status_code == 401


# -- hostile input -------------------------------------------------------------------------------


def test_repeated_dpop_headers_merged_by_server(server: Server) -> None:
    headers = server.headers("GET", server.local + "/api/protected")
    pairs = [("Authorization", headers["Authorization"]), ("DPoP", headers["DPoP"]), ("DPoP", headers["DPoP"])]
    resp = server.client.get("/api/protected", headers=pairs)
    assert resp.status_code == 400
    assert 'error="invalid_request"' in challenge(resp)


@pytest.mark.parametrize(
    "host", [b"evil.example/api/protected?", b"a b", b"user@127.0.0.1", b"127.0.0.1:99999x", b"[zz]", b"\xff\xfe"]
)
def test_hostile_host_header_is_400_with_challenge(server: Server, host: bytes) -> None:
    token = server.issuer.token(server.key.jkt)
    proof = server.key.proof("GET", "http://evil.example/api/protected", access_token=token)
    status, headers = raw_request(
        server.port,
        b"GET /api/protected HTTP/1.1",
        [(b"Host", host), (b"Authorization", f"DPoP {token}".encode()), (b"DPoP", proof.encode())],
    )
    if status == 400 and not headers.get("www-authenticate"):
        pytest.fail(f"gunicorn itself refused {host!r}; expected the library's challenge")
    assert status == 400, (host, status)
    assert any(v.startswith("DPoP ") and 'error="invalid_request"' in v for v in headers["www-authenticate"])


def test_host_header_decides_the_authority(server: Server) -> None:
    # Without a trusted proxy, the Host header is the authority the client used.
    resp = server.get("/api/protected", proof_url="http://api.example:8080/api/protected",
                      extra={"Host": "api.example:8080"})
    assert resp.status_code == 200


# -- behind a reverse proxy ------------------------------------------------------------------------


FORWARDED_X = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "public.example"}


def test_x_forwarded_from_trusted_peer(server: Server) -> None:
    assert server.get("/api/protected", PUBLIC + "/api/protected", FORWARDED_X).status_code == 200
    # The URL the proxy received is no longer the one that counts.
    assert server.get("/api/protected", None, FORWARDED_X).status_code == 401


def test_x_forwarded_prefix_and_port(server: Server) -> None:
    extra = dict(FORWARDED_X, **{"X-Forwarded-Prefix": "/edge", "X-Forwarded-Port": "8443"})
    resp = server.get("/api/protected", "https://public.example:8443/edge/api/protected", extra)
    assert resp.status_code == 200, resp.text


def test_forwarded_header_from_trusted_peer(server: Server) -> None:
    extra = {"Forwarded": 'for=203.0.113.9;proto=https;host="public.example"'}
    assert server.get("/api/protected", PUBLIC + "/api/protected", extra).status_code == 200
    # Forwarded wins over X-Forwarded-*.
    extra["X-Forwarded-Host"] = "other.example"
    assert server.get("/api/protected", PUBLIC + "/api/protected", extra).status_code == 200


def test_multi_hop_chain_uses_rightmost_untrusted_hop(server: Server) -> None:
    # client 203.0.113.9 -> edge proxy (https, public.example) -> inner proxy 127.0.0.1 (trusted) -> us
    extra = {
        "X-Forwarded-For": "203.0.113.9, 127.0.0.1",
        "X-Forwarded-Proto": "https, http",
        "X-Forwarded-Host": "public.example, inner.internal",
    }
    assert server.get("/api/protected", PUBLIC + "/api/protected", extra).status_code == 200
    # A client that forges an extra hop on the left cannot choose the host.
    forged = {
        "X-Forwarded-For": "198.51.100.7, 203.0.113.9",
        "X-Forwarded-Proto": "https, https",
        "X-Forwarded-Host": "evil.example, public.example",
    }
    assert server.get("/api/protected", "https://evil.example/api/protected", forged).status_code == 401
    assert server.get("/api/protected", PUBLIC + "/api/protected", forged).status_code == 200
    chain = {"Forwarded": 'for=198.51.100.7;host=evil.example;proto=https, for=203.0.113.9;host=public.example;proto=https'}
    assert server.get("/api/protected", "https://evil.example/api/protected", chain).status_code == 401
    assert server.get("/api/protected", PUBLIC + "/api/protected", chain).status_code == 200


def test_only_the_trusted_headers_count_from_a_trusted_peer(server: Server) -> None:
    """/d trusts 127.0.0.1 for X-Forwarded-For/-Proto only (the default): a client's X-Forwarded-Host
    that the proxy passes through untouched must not choose the URL the proof is checked against."""
    spoofed = server.get("/api/d/protected", PUBLIC + "/api/d/protected", FORWARDED_X)
    assert spoofed.status_code == 401
    challenge(spoofed)
    own_host = f"https://127.0.0.1:{server.port}/api/d/protected"
    assert server.get("/api/d/protected", own_host, FORWARDED_X).status_code == 200
    extra = {"Forwarded": "for=203.0.113.9;proto=https;host=public.example", "X-Forwarded-Prefix": "/edge"}
    assert server.get("/api/d/protected", PUBLIC + "/edge/api/d/protected", extra).status_code == 401
    assert server.get("/api/d/protected", None, extra).status_code == 200


@pytest.mark.parametrize("target", [b"/api/echo/../health", b"/api/echo/%2E%2E/health", b"/api/echo/%2e%2e/health"])
def test_dot_segments_cannot_borrow_the_exempt_rule(server: Server, target: bytes) -> None:
    """/health is exempt; Flask routes /echo/../health to the echo view (a catch-all), so it must
    be challenged. Sent raw: httpx would normalize the dots away."""
    status, headers = raw_request(server.port, b"GET " + target + b" HTTP/1.1", [(b"Host", b"127.0.0.1")])
    assert status == 401
    assert headers["www-authenticate"][0].startswith("DPoP ")
    assert raw_request(server.port, b"GET /api/health HTTP/1.1", [(b"Host", b"127.0.0.1")])[0] == 200


def test_forwarded_headers_from_untrusted_peer_are_ignored(server: Server) -> None:
    assert server.get("/api/u/protected", PUBLIC + "/api/u/protected", FORWARDED_X).status_code == 401
    assert server.get("/api/u/protected", None, FORWARDED_X).status_code == 200
    extra = {"Forwarded": "for=203.0.113.9;proto=https;host=public.example", "X-Forwarded-Prefix": "/edge"}
    assert server.get("/api/u/protected", None, extra).status_code == 200


def test_public_url_replaces_mount_prefix(server: Server) -> None:
    resp = server.get("/api/pub/protected", "https://public.example/base/protected", FORWARDED_X)
    assert resp.status_code == 200, resp.text
    assert server.get("/api/pub/protected").status_code == 401
