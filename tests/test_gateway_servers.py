"""The gateway story behind real nginx and Caddy (issue 23): the shipped configs, a static nginx API.

Each gateway runs once per module: nginx or Caddy in front of the upstream, the dpop-middleware
gateway (uvicorn) behind them, with the shipped ``gateway.toml`` and ``DPOP_NONCE=unsafe_methods``
(so that a POST meets a nonce challenge). Then two gateway processes sharing a redis-server, and a
client that reaches a gateway directly with spoofed headers.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from gateway_servers import front_caddy, front_nginx, gateway, gateway_config, gateway_env, upstream
from servers import free_port, redis_server

from dpop_middleware.client import DPoPKey
from dpop_middleware.core.nonce import NonceKeyring
from dpop_middleware.httpx_auth import DPoPAuth
from dpop_middleware.testing import TestIssuer, dpop_headers

FRONTS = {"nginx": (front_nginx, "nginx"), "caddy": (front_caddy, "forwarded")}
NONCE_SECRET = "gateway-tests-nonce-secret"
SPOOFED_IDENTITY = {"X-DPoP-Subject": "mallory", "X-DPoP-Scopes": "admin", "X-DPoP-Jkt": "forged"}


@dataclass
class Stack:
    name: str
    base: str
    issuer: TestIssuer
    gateway_port: int


@pytest.fixture(scope="module", params=sorted(FRONTS))
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    front, style = FRONTS[request.param]
    directory = tmp_path_factory.mktemp(f"gateway-{request.param}")
    issuer = TestIssuer()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = gateway_env(issuer, style, DPOP_NONCE="unsafe_methods", DPOP_NONCE_SECRET=NONCE_SECRET)
    with contextlib.ExitStack() as started:
        api = started.enter_context(upstream(directory))
        gateway_port = started.enter_context(gateway(gateway_config(base, directory), env, directory))
        started.enter_context(front(gateway_port, api, port, directory))
        yield Stack(request.param, base, issuer, gateway_port)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http


def seen(response: httpx.Response) -> dict[str, str]:
    """What the upstream API received, as it echoes it."""
    return {k[len("x-seen-") :]: v for k, v in response.headers.items() if k.startswith("x-seen-")}


def test_token_and_proof_accepted_upstream_sees_the_gateway_identity_not_the_clients(
    stack: Stack, client: httpx.Client
) -> None:
    key = DPoPKey.generate()
    token = stack.issuer.token(key.jkt, scope="read write", subject="alice")
    url = f"{stack.base}/api/items"
    headers = {**dpop_headers(key, "GET", url, token), **SPOOFED_IDENTITY}
    response = client.get(f"{url}?page=2&sort=name", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"api": "static"}
    echo = seen(response)
    assert echo["subject"] == "alice"
    assert echo["scopes"] == "read write"
    assert echo["jkt"] == key.jkt
    assert echo["client-id"] == "test-client"
    assert echo["scheme"] == "DPoP"
    assert echo["token-jti"]
    assert echo["uri"] == "/api/items?page=2&sort=name"  # the query string reached the API untouched


def test_the_same_proof_replayed_is_refused(stack: Stack, client: httpx.Client) -> None:
    key = DPoPKey.generate()
    url = f"{stack.base}/api/items"
    headers = dpop_headers(key, "GET", url, stack.issuer.token(key.jkt))
    assert client.get(url, headers=headers).status_code == 200
    replay = client.get(url, headers=headers)
    assert replay.status_code == 401
    challenges = replay.headers.get_list("www-authenticate")
    assert challenges == [challenges[0]] and 'error="invalid_dpop_proof"' in challenges[0]
    assert "already used" in challenges[0]
    assert "x-seen-uri" not in replay.headers  # never reached the API


def test_a_stolen_token_with_another_key_is_refused(stack: Stack, client: httpx.Client) -> None:
    owner, thief = DPoPKey.generate(), DPoPKey.generate()
    url = f"{stack.base}/api/items"
    response = client.get(url, headers=dpop_headers(thief, "GET", url, stack.issuer.token(owner.jkt)))
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert "x-seen-uri" not in response.headers


def test_bearer_downgrade_is_refused(stack: Stack, client: httpx.Client) -> None:
    key = DPoPKey.generate()
    url = f"{stack.base}/api/items"
    bound = stack.issuer.token(key.jkt)
    for headers in ({"Authorization": f"Bearer {bound}"}, {"Authorization": f"Bearer {stack.issuer.token(None)}"}):
        response = client.get(url, headers={**headers, **SPOOFED_IDENTITY})
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("DPoP ")
        assert "x-seen-uri" not in response.headers


def test_a_nonce_challenge_is_answered_through_the_gateway_and_a_post_body_reaches_the_api(
    stack: Stack, client: httpx.Client
) -> None:
    key = DPoPKey.generate()
    token = stack.issuer.token(key.jkt)
    url = f"{stack.base}/api/items"
    first = client.post(url, headers=dpop_headers(key, "POST", url, token), content=b'{"name":"x"}')
    assert first.status_code == 401
    assert 'error="use_dpop_nonce"' in first.headers["www-authenticate"]
    nonce = first.headers["dpop-nonce"]
    assert len(first.headers.get_list("dpop-nonce")) == 1
    retry = client.post(url, headers=dpop_headers(key, "POST", url, token, nonce=nonce), content=b'{"name":"x"}')
    assert retry.status_code == 200, retry.text
    assert seen(retry)["method"] == "POST"
    assert seen(retry)["length"] == "12"
    assert seen(retry)["subject"] == "alice"


def test_a_fresh_nonce_handed_out_with_a_200(stack: Stack, client: httpx.Client) -> None:
    # A nonce of the previous time step is still good, and the gateway hands out the current one.
    keyring = NonceKeyring({"env": NONCE_SECRET})
    old = keyring.issue(time.time() - keyring.step_seconds)
    key = DPoPKey.generate()
    url = f"{stack.base}/api/items"
    response = client.post(url, headers=dpop_headers(key, "POST", url, stack.issuer.token(key.jkt), nonce=old))
    assert response.status_code == 200, response.text
    if stack.name == "nginx":
        assert response.headers["dpop-nonce"] not in ("", old)
    else:  # docs/gateway.md: Caddy copies an answer's headers to the request only
        assert "dpop-nonce" not in response.headers


def test_the_httpx_client_helper_retries_the_nonce_on_its_own(stack: Stack) -> None:
    key = DPoPKey.generate()
    with httpx.Client(auth=DPoPAuth(key, stack.issuer.token(key.jkt)), timeout=10) as http:
        response = http.put(f"{stack.base}/api/items/7?v=1", content=b"abc")
    assert response.status_code == 200, response.text
    assert seen(response)["method"] == "PUT"
    assert seen(response)["uri"] == "/api/items/7?v=1"


def test_htu_is_built_from_the_public_url_not_the_host_header(stack: Stack, client: httpx.Client) -> None:
    key = DPoPKey.generate()
    token = stack.issuer.token(key.jkt)
    url = f"{stack.base}/api/items"
    other = "http://api.other.example/api/items"
    accepted = client.get(url, headers={**dpop_headers(key, "GET", url, token), "Host": "api.other.example"})
    assert accepted.status_code == 200, accepted.text
    refused = client.get(url, headers={**dpop_headers(key, "GET", other, token), "Host": "api.other.example"})
    assert refused.status_code == 401
    assert 'error="invalid_dpop_proof"' in refused.headers["www-authenticate"]


def test_route_policy_scopes_and_exempt_routes(stack: Stack, client: httpx.Client) -> None:
    key = DPoPKey.generate()
    token = stack.issuer.token(key.jkt, scope="read")
    admin = f"{stack.base}/admin/users"
    refused = client.get(admin, headers=dpop_headers(key, "GET", admin, token))
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    assert 'scope="admin"' in refused.headers["www-authenticate"]
    health = client.get(f"{stack.base}/health", headers=SPOOFED_IDENTITY)
    assert health.status_code == 200
    assert "subject" not in seen(health)  # exempt: no identity, and the client's copy is gone
    anonymous = client.get(f"{stack.base}/public/info", headers=SPOOFED_IDENTITY)
    assert anonymous.status_code == 200
    assert "subject" not in seen(anonymous)


def test_identity_headers_spelt_with_underscores_never_reach_the_api(stack: Stack, client: httpx.Client) -> None:
    forged = {"X_DPoP_Subject": "mallory", "X_DPoP_Scopes": "admin"}
    health = client.get(f"{stack.base}/health", headers=forged)
    assert health.status_code == 200
    assert "subject" not in seen(health) and "scopes" not in seen(health)
    key = DPoPKey.generate()
    url = f"{stack.base}/api/items"
    accepted = client.get(url, headers={**dpop_headers(key, "GET", url, stack.issuer.token(key.jkt)), **forged})
    assert accepted.status_code == 200
    assert seen(accepted)["subject"] == "alice"
    assert seen(accepted)["scopes"] == "read"


def test_headers_naming_another_original_request_are_ignored_behind_the_gateway(
    stack: Stack, client: httpx.Client
) -> None:
    # A client behind the gateway names an exempt path in every convention's header: the gateway
    # reads only the one its gateway sets, so /admin stays /admin.
    key = DPoPKey.generate()
    token = stack.issuer.token(key.jkt, scope="read")
    admin = f"{stack.base}/admin/users"
    spoofed = {"X-Original-URI": "/health", "X-Original-Method": "GET", "X-Forwarded-Uri": "/health"}
    response = client.get(admin, headers={**dpop_headers(key, "GET", f"{stack.base}/health", token), **spoofed})
    assert response.status_code == 401
    assert "x-seen-uri" not in response.headers


# -- two gateway processes, one redis-server -----------------------------------------------------


def check_headers(key: DPoPKey, token: str, base: str, path: str) -> dict[str, str]:
    """A check request as the shipped nginx.conf sends it."""
    return {
        **dpop_headers(key, "GET", f"{base}{path}", token),
        "X-Original-Method": "GET",
        "X-Original-URI": path,
        "X-Forwarded-Host": base.removeprefix("http://"),
        "X-Forwarded-Proto": "http",
    }


def test_a_proof_replayed_to_another_gateway_process_sharing_redis_is_refused(
    tmp_path: Path, client: httpx.Client
) -> None:
    issuer, key = TestIssuer(), DPoPKey.generate()
    base = "http://127.0.0.1:8000"
    with redis_server() as redis_port:
        env = gateway_env(issuer, "nginx", DPOP_REPLAY_STORE=f"redis://127.0.0.1:{redis_port}/0")
        config = gateway_config(base, tmp_path)
        with gateway(config, env, tmp_path, "first") as first, gateway(config, env, tmp_path, "second") as second:
            headers = check_headers(key, issuer.token(key.jkt), base, "/api/items?x=1")
            accepted = client.get(f"http://127.0.0.1:{first}/check", headers=headers)
            assert accepted.status_code == 200, accepted.text
            assert accepted.headers["x-dpop-subject"] == "alice"
            replayed = client.get(f"http://127.0.0.1:{second}/check", headers=headers)
            assert replayed.status_code == 401
            assert "already used" in replayed.headers["www-authenticate"]


# -- a client that reaches the gateway directly --------------------------------------------------


def test_spoofed_original_request_headers_from_an_untrusted_client_are_ignored(stack: Stack) -> None:
    # The gateway trusts 127.0.0.1 only; this client speaks from 127.0.0.2.
    key = DPoPKey.generate()
    token = stack.issuer.token(key.jkt)
    url = f"{stack.base}/api/spoof"
    headers = dpop_headers(key, "GET", url, token)
    spoofed = {
        "X-Original-Method": "GET", "X-Original-URI": "/api/spoof", "X-Forwarded-Method": "GET",
        "X-Forwarded-Uri": "/api/spoof", "X-Forwarded-Host": "127.0.0.1", "X-Forwarded-Proto": "http",
    }  # fmt: skip
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport, timeout=10) as direct:
        response = direct.get(f"http://127.0.0.1:{stack.gateway_port}/check", headers={**headers, **spoofed})
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["www-authenticate"]
    assert "x-dpop-subject" not in response.headers
    # The proof was not checked, so not consumed: through the gateway it is still good.
    with httpx.Client(timeout=10) as http:
        assert http.get(url, headers=headers).status_code == 200


# -- outages fail closed -------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FRONTS))
def test_a_replay_store_outage_is_503_with_retry_after_through_the_gateway(
    name: str, tmp_path: Path, client: httpx.Client
) -> None:
    front, style = FRONTS[name]
    issuer, key = TestIssuer(), DPoPKey.generate()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = gateway_env(issuer, style, DPOP_REPLAY_STORE=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    with contextlib.ExitStack() as started:
        api = started.enter_context(upstream(tmp_path))
        gateway_port = started.enter_context(gateway(gateway_config(base, tmp_path), env, tmp_path))
        started.enter_context(front(gateway_port, api, port, tmp_path))
        url = f"{base}/api/items"
        response = client.get(url, headers=dpop_headers(key, "GET", url, issuer.token(key.jkt)))
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert "www-authenticate" not in response.headers
    assert "x-seen-uri" not in response.headers


@pytest.mark.parametrize("name", sorted(FRONTS))
def test_an_unreachable_gateway_never_lets_a_request_through(name: str, tmp_path: Path, client: httpx.Client) -> None:
    front, _ = FRONTS[name]
    port = free_port()
    with upstream(tmp_path) as api, front(free_port(), api, port, tmp_path):
        response = client.get(f"http://127.0.0.1:{port}/api/items", headers=SPOOFED_IDENTITY)
    # nginx.conf answers 503; Caddy's forward_auth answers 502 on its own.
    assert response.status_code == (503 if name == "nginx" else 502)
    assert "x-seen-uri" not in response.headers


def raw_request(port: int, target: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    """Send ``GET target`` byte for byte (no client library normalizes it); status and headers."""
    lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in head[1:])
    return int(head[0].split()[1]), {name.lower(): value for name, value in fields.items()}


def test_raw_targets_are_judged_as_the_client_sent_them(stack: Stack) -> None:
    key = DPoPKey.generate()
    token = stack.issuer.token(key.jkt, scope="read")
    port = int(stack.base.rsplit(":", 1)[1])
    # Bytes that are not UTF-8, signed escaped: accepted, and the API gets the path.
    status, fields = raw_request(port, "/api/caf\xe9", dpop_headers(key, "GET", f"{stack.base}/api/caf%E9", token))
    assert status == 200
    assert fields["x-seen-subject"] == "alice"
    # Dot segments cannot walk out of a scope: /api/../admin needs the admin scope.
    for target in ("/api/../admin/x", "/api/%2e%2e/admin/x"):
        status, fields = raw_request(port, target, dpop_headers(key, "GET", f"{stack.base}{target}", token))
        assert status == 403, target
        assert "x-seen-uri" not in fields
