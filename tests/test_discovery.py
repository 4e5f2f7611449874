"""Client discovery from a resource URL (RFC 9728 §5, §3.3, then RFC 8414): httpx (sync and async) and
requests against a real loopback server that answers whatever each test scripts, hostile documents
included."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dpop_middleware.discovery import Discovery, DiscoveryError, challenge_metadata_url
from dpop_middleware.httpx_auth import adiscover
from dpop_middleware.httpx_auth import discover as httpx_discover
from dpop_middleware.requests_auth import discover as requests_discover

WELL_KNOWN = "/.well-known/oauth-protected-resource"
Answer = tuple[int, dict[str, str], bytes]


class ScriptedServer:
    """Real HTTP on 127.0.0.1: ``routes[path]`` is the (status, headers, body) to answer; 404 otherwise."""

    def __init__(self) -> None:
        self.routes: dict[str, Answer] = {}
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits.append(self.path)
                status, headers, body = server.routes.get(self.path, (404, {}, b"{}"))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self._http.server_address[1]}"
        # A short poll: shutdown() waits for it, once per test.
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.02,), daemon=True)

    def json(self, path: str, document: object, status: int = 200) -> None:
        self.routes[path] = (status, {"Content-Type": "application/json"}, json.dumps(document).encode())


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    scripted._thread.start()
    try:
        yield scripted
    finally:
        scripted._http.shutdown()
        scripted._http.server_close()


def api_and_issuer(server: ScriptedServer, *, challenge: bool = True, resource: str | None = None) -> str:
    """A protected API at ``/api`` and its issuer at ``/as`` on ``server``; returns the resource URL."""
    url = f"{server.base}/api"
    metadata_url = f"{server.base}{WELL_KNOWN}/api"
    header = f'DPoP algs="ES256", resource_metadata="{metadata_url}"' if challenge else 'DPoP algs="ES256"'
    server.routes["/api"] = (401, {"WWW-Authenticate": header}, b"{}")
    server.json(f"{WELL_KNOWN}/api", {
        "resource": resource or url, "authorization_servers": [f"{server.base}/as"],
        "dpop_signing_alg_values_supported": ["ES256"], "dpop_bound_access_tokens_required": True,
    })  # fmt: skip
    server.json("/.well-known/oauth-authorization-server/as", {
        "issuer": f"{server.base}/as", "token_endpoint": f"{server.base}/as/token",
    })  # fmt: skip
    return url


DRIVERS: dict[str, Callable[[str], Discovery]] = {
    "httpx": lambda url: httpx_discover(url, timeout=5),
    "httpx-async": lambda url: asyncio.run(adiscover(url, timeout=5)),
    "requests": lambda url: requests_discover(url, timeout=5),
}


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_the_401_leads_to_the_metadata_and_the_metadata_to_the_issuer(server: ScriptedServer, driver: str) -> None:
    url = api_and_issuer(server)
    found = DRIVERS[driver](url)
    assert found.resource == url
    assert found.resource_metadata_url == f"{server.base}{WELL_KNOWN}/api"
    assert found.issuer == f"{server.base}/as"
    assert found.token_endpoint == f"{server.base}/as/token"
    assert found.dpop_algorithms == ("ES256",)
    assert server.hits == ["/api", f"{WELL_KNOWN}/api", "/.well-known/oauth-authorization-server/as"]


def test_without_the_challenge_parameter_the_well_known_url_is_tried(server: ScriptedServer) -> None:
    url = api_and_issuer(server, challenge=False)
    assert httpx_discover(url).issuer == f"{server.base}/as"
    assert f"{WELL_KNOWN}/api" in server.hits


def test_openid_discovery_is_the_fallback_for_the_issuer(server: ScriptedServer) -> None:
    url = api_and_issuer(server)
    server.routes.pop("/.well-known/oauth-authorization-server/as")
    server.json("/as/.well-known/openid-configuration", {"issuer": f"{server.base}/as"})
    assert requests_discover(url).issuer == f"{server.base}/as"


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_metadata_for_another_resource_is_refused(server: ScriptedServer, driver: str) -> None:
    url = api_and_issuer(server, resource="https://evil.example/api")
    with pytest.raises(DiscoveryError) as caught:
        DRIVERS[driver](url)
    assert caught.value.reason == "resource_mismatch"
    assert "/.well-known/oauth-authorization-server/as" not in server.hits  # nothing of it was used


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"resource": 7}, "bad_metadata"),
        ({"authorization_servers": "https://as.example"}, "bad_metadata"),
        ({"authorization_servers": []}, "bad_metadata"),
        ({"authorization_servers": [None]}, "bad_metadata"),
        ({"dpop_bound_access_tokens_required": "yes"}, "bad_metadata"),
        ({"scopes_supported": "read write"}, "bad_metadata"),
        ({"authorization_servers": ["http://as.example.com"]}, "insecure_url"),
        ({"authorization_servers": ["file:///etc/passwd"]}, "insecure_url"),
    ],
)
def test_hostile_metadata_members_are_refused(server: ScriptedServer, document: dict[str, object], reason: str) -> None:
    url = api_and_issuer(server)
    good = json.loads(server.routes[f"{WELL_KNOWN}/api"][2])
    server.json(f"{WELL_KNOWN}/api", {**good, **document})
    with pytest.raises(DiscoveryError) as caught:
        httpx_discover(url)
    assert caught.value.reason == reason


@pytest.mark.parametrize("body", [b"[1, 2]", b"not json", b'{"a": ' * 5000, b"\xff\xfe"])
def test_bodies_that_are_not_a_json_object_are_refused(server: ScriptedServer, body: bytes) -> None:
    url = api_and_issuer(server)
    server.routes[f"{WELL_KNOWN}/api"] = (200, {"Content-Type": "application/json"}, body)
    with pytest.raises(DiscoveryError) as caught:
        requests_discover(url)
    assert caught.value.reason == "not_json"


@pytest.mark.parametrize("driver", list(DRIVERS))
def test_a_huge_document_is_refused(server: ScriptedServer, driver: str) -> None:
    url = api_and_issuer(server)
    huge = json.dumps({"resource": url, "padding": "x" * 200_000}).encode()
    server.routes[f"{WELL_KNOWN}/api"] = (200, {"Content-Type": "application/json"}, huge)
    with pytest.raises(DiscoveryError) as caught:
        DRIVERS[driver](url)
    assert caught.value.reason == "metadata_too_large"


def test_an_issuer_metadata_for_another_issuer_is_refused(server: ScriptedServer) -> None:
    url = api_and_issuer(server)
    server.json("/.well-known/oauth-authorization-server/as", {"issuer": "https://evil.example"})
    with pytest.raises(DiscoveryError) as caught:
        httpx_discover(url)
    assert caught.value.reason == "issuer_mismatch"


def test_a_challenge_pointing_off_loopback_over_http_is_refused(server: ScriptedServer) -> None:
    url = api_and_issuer(server)
    server.routes["/api"] = (401, {"WWW-Authenticate": 'DPoP resource_metadata="http://attacker.example/m"'}, b"")
    with pytest.raises(DiscoveryError) as caught:
        httpx_discover(url)
    assert caught.value.reason == "insecure_url"


def test_plain_http_resources_off_loopback_and_unreachable_servers_fail_closed() -> None:
    with pytest.raises(DiscoveryError) as caught:
        httpx_discover("http://api.example.com/")
    assert caught.value.reason == "insecure_url"
    with ScriptedServer()._http as closed:  # bound, never served, then closed: connection refused
        port = closed.server_address[1]
    for discover in (httpx_discover, requests_discover):
        with pytest.raises(DiscoveryError) as caught:
            discover(f"http://127.0.0.1:{port}/api", timeout=2)  # type: ignore[operator]
        assert caught.value.reason == "unreachable"


def test_challenge_parser_reads_quoted_values_and_refuses_ambiguity() -> None:
    assert challenge_metadata_url(['DPoP algs="ES256", resource_metadata="https://a/x\\"y"']) == 'https://a/x"y'
    assert challenge_metadata_url(["Bearer resource_metadata=https://a/m"]) == "https://a/m"
    assert challenge_metadata_url(['DPoP algs="ES256"', ""]) is None
    joined = 'DPoP resource_metadata="https://a/m", Bearer resource_metadata="https://a/m"'
    assert challenge_metadata_url([joined]) == "https://a/m"
    with pytest.raises(DiscoveryError, match="different"):
        challenge_metadata_url(['DPoP resource_metadata="https://a/m", Bearer resource_metadata="https://b/m"'])


@pytest.mark.parametrize("driver", ["httpx", "requests"])
def test_redirects_are_not_followed(server: ScriptedServer, driver: str) -> None:
    url = api_and_issuer(server)
    server.routes[f"{WELL_KNOWN}/api"] = (302, {"Location": "https://evil.example/metadata"}, b"")
    with pytest.raises(DiscoveryError) as caught:
        DRIVERS[driver](url)
    assert caught.value.reason == "metadata_unavailable"


# -- a remote resource may not lead the client anywhere it could not go itself (sans-IO, no network) --

def _drive(flow: object, answers: dict[str, tuple[int, dict[str, str], object]]) -> tuple[Discovery, list[str]]:
    """Run ``discovery_flow`` answering each URL from ``answers`` (404 for any other); the URLs asked."""
    from dpop_middleware.tokens._http import HTTPResponse

    asked: list[str] = []
    gen = flow  # a generator: send each answer back
    response = None
    try:
        while True:
            request = gen.send(response)  # type: ignore[attr-defined]
            asked.append(request.url)
            status, headers, body = answers.get(request.url, (404, {}, {}))
            response = HTTPResponse(status, headers, json.dumps(body).encode())
    except StopIteration as done:
        return done.value, asked


REMOTE = "https://api.example/data"


def _remote_api(metadata_url: str, servers: list[str]) -> dict[str, tuple[int, dict[str, str], object]]:
    return {
        REMOTE: (401, {"www-authenticate": f'DPoP algs="ES256", resource_metadata="{metadata_url}"'}, {}),
        metadata_url: (200, {}, {"resource": REMOTE, "authorization_servers": servers}),
        **{
            f"{urlsplit_base(s)}/.well-known/oauth-authorization-server{urlsplit_path(s)}":
                (200, {}, {"issuer": s, "token_endpoint": f"{s}/token"})
            for s in servers
        },
    }  # fmt: skip


def urlsplit_base(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def urlsplit_path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path.rstrip("/")


@pytest.mark.parametrize("target", [
    "http://127.0.0.1:6379/admin",            # plain http on the client's own machine
    "https://127.0.0.1:8443/metadata",        # a loopback host named by a remote resource
    "http://localhost/.well-known/x",
])  # fmt: skip
def test_a_remote_resource_cannot_point_the_client_at_its_own_machine(target: str) -> None:
    from dpop_middleware.discovery import discovery_flow

    with pytest.raises(DiscoveryError) as caught:
        _drive(discovery_flow(REMOTE), _remote_api(target, ["https://as.example"]))
    assert caught.value.reason == "insecure_url"


def test_a_remote_resource_cannot_name_a_loopback_issuer() -> None:
    from dpop_middleware.discovery import discovery_flow

    metadata = "https://api.example/.well-known/oauth-protected-resource/data"
    with pytest.raises(DiscoveryError) as caught:
        _drive(discovery_flow(REMOTE), _remote_api(metadata, ["http://127.0.0.1:9000"]))
    assert caught.value.reason == "insecure_url"


def test_trusted_issuers_refuse_an_authorization_server_the_client_does_not_trust() -> None:
    from dpop_middleware.discovery import discovery_flow

    metadata = "https://api.example/.well-known/oauth-protected-resource/data"
    answers = _remote_api(metadata, ["https://attacker-as.example"])
    found, _ = _drive(discovery_flow(REMOTE), answers)
    assert found.issuer == "https://attacker-as.example"  # without a list, the resource chooses
    with pytest.raises(DiscoveryError) as caught:
        _drive(discovery_flow(REMOTE, trusted_issuers=["https://as.example"]), answers)
    assert caught.value.reason == "untrusted_issuer"


def test_trusted_issuers_pick_the_first_trusted_server_the_resource_lists() -> None:
    from dpop_middleware.discovery import discovery_flow

    metadata = "https://api.example/.well-known/oauth-protected-resource/data"
    answers = _remote_api(metadata, ["https://attacker-as.example", "https://as.example"])
    found, asked = _drive(discovery_flow(REMOTE, trusted_issuers=["https://as.example"]), answers)
    assert found.issuer == "https://as.example"
    assert not any("attacker" in url for url in asked)


def test_trusted_issuers_must_be_a_list_not_a_string() -> None:
    from dpop_middleware.discovery import discovery_flow

    with pytest.raises(TypeError, match="trusted_issuers"):
        next(discovery_flow(REMOTE, trusted_issuers="https://as.example"))


@pytest.mark.parametrize("driver", ["httpx", "requests"])
def test_trusted_issuers_through_the_client_helpers(server: ScriptedServer, driver: str) -> None:
    url = api_and_issuer(server)
    discover = httpx_discover if driver == "httpx" else requests_discover
    assert discover(url, trusted_issuers=[f"{server.base}/as"]).issuer == f"{server.base}/as"
    with pytest.raises(DiscoveryError) as caught:
        discover(url, trusted_issuers=["https://as.example"])
    assert caught.value.reason == "untrusted_issuer"


class DrippingServer:
    """Real HTTP on 127.0.0.1 that sends its headers at once, then one body byte every ``interval``."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.stop = threading.Event()
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n")
            while not self.stop.wait(self.interval):
                try:
                    conn.sendall(b" ")
                except OSError:
                    return

    def close(self) -> None:
        self.stop.set()
        self._socket.close()


@pytest.mark.parametrize("interval", [0.2, 3.0], ids=["drip_within_each_read_timeout", "stall"])
@pytest.mark.parametrize("driver", ["httpx", "httpx-async", "requests"])
def test_a_server_dripping_its_answer_is_given_up_at_the_deadline(driver: str, interval: float) -> None:
    # Bytes each well within the per-read timeout: only a deadline for the whole exchange ends it.
    dripping = DrippingServer(interval=interval)
    run: dict[str, Callable[[str], Discovery]] = {
        "httpx": lambda url: httpx_discover(url, timeout=1),
        "httpx-async": lambda url: asyncio.run(adiscover(url, timeout=1)),
        "requests": lambda url: requests_discover(url, timeout=1),
    }
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            run[driver](f"{dripping.base}/api")
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    # In a thread: without a deadline the call would read for 5,000 x 0.2 s, and the test must fail, not hang.
    worker = threading.Thread(target=attempt, daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(10)
    dripping.close()
    assert not worker.is_alive(), "still reading after 10 s: no deadline for the whole exchange"
    assert time.monotonic() - started < 4  # about the 1 s deadline and one read timeout
    assert len(outcome) == 1 and isinstance(outcome[0], DiscoveryError), outcome
    assert outcome[0].reason == "unreachable"
