"""The gateway app in process: hostile descriptions of the original request, each style's headers,
identity header encoding, and configuration errors that name the key (issue 23)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from dpop_middleware.client import DPoPKey
from dpop_middleware.core.binding import DPoPPrincipal
from dpop_middleware.gateway import create_app, identity_headers
from dpop_middleware.gateway.cli import main
from dpop_middleware.settings import SettingsError
from dpop_middleware.testing import TestIssuer, dpop_headers

BASE = "https://api.example.com"
TOML = """
trusted_proxies = ["127.0.0.1"]
public_url = "https://api.example.com"
exempt_paths = ["/health"]
[path_scopes]
"/admin" = "admin"
"""


def env(issuer: TestIssuer, style: str = "nginx", **extra: str) -> dict[str, str]:
    return {
        "DPOP_GATEWAY": style,
        "DPOP_ISSUER": issuer.issuer,
        "DPOP_AUDIENCE": issuer.audience,
        "DPOP_JWKS": json.dumps(issuer.jwks),
        **extra,
    }


def config_file(tmp_path: Path, text: str = TOML) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def client_for(app: object, peer: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://gateway.internal")


@pytest.fixture
def nginx_app(issuer: TestIssuer, tmp_path: Path) -> object:
    return create_app(env(issuer), config_file(tmp_path))


def nginx_headers(key: DPoPKey, token: str, method: str, uri: str, **extra: str) -> dict[str, str]:
    return {**dpop_headers(key, method, BASE + uri.partition("?")[0], token), "X-Original-Method": method,
            "X-Original-URI": uri, **extra}  # fmt: skip


async def test_accepted_check_answers_200_with_every_identity_header(
    nginx_app: object, issuer: TestIssuer, key: DPoPKey
) -> None:
    async with client_for(nginx_app) as http:
        response = await http.get("/check", headers=nginx_headers(key, issuer.token(key.jkt), "DELETE", "/api/x?y=1"))
    assert response.status_code == 200, response.text
    assert response.headers["x-dpop-subject"] == "alice"
    assert response.headers["x-dpop-jkt"] == key.jkt
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Original-URI", None),
        ("X-Original-URI", ""),
        ("X-Original-URI", "api/x"),
        ("X-Original-URI", "http://evil.example/api/x"),
        ("X-Original-URI", "*"),
        ("X-Original-URI", "/api/x#frag"),
        ("X-Original-URI", "/api/x y"),
        ("X-Original-URI", "/" + "a" * 100_000),
        ("X-Original-Method", None),
        ("X-Original-Method", "GE T"),
        ("X-Original-Method", "G" * 100),
        ("X-Forwarded-Proto", "gopher"),
    ],
)
async def test_a_hostile_original_request_is_400_never_500(
    nginx_app: object, issuer: TestIssuer, key: DPoPKey, name: str, value: str | None
) -> None:
    headers = nginx_headers(key, issuer.token(key.jkt), "GET", "/api/x")
    if value is None:
        del headers[name]
    else:
        headers[name] = value
    async with client_for(nginx_app) as http:
        response = await http.get("/check", headers=headers)
    assert response.status_code == 400
    assert 'error="invalid_request"' in response.headers["www-authenticate"]
    assert "x-dpop-subject" not in response.headers


async def test_a_repeated_original_uri_is_400(nginx_app: object, issuer: TestIssuer, key: DPoPKey) -> None:
    headers = [*list(nginx_headers(key, issuer.token(key.jkt), "GET", "/api/x").items()), ("X-Original-URI", "/health")]
    async with client_for(nginx_app) as http:
        response = await http.get("/check", headers=headers)
    assert response.status_code == 400


async def test_invalid_utf8_in_the_original_uri_is_refused_not_500(
    nginx_app: object, issuer: TestIssuer, key: DPoPKey
) -> None:
    headers: list[tuple[bytes, bytes]] = [
        (k.encode(), v.encode()) for k, v in nginx_headers(key, issuer.token(key.jkt), "GET", "/api/x").items()
    ]
    headers = [(k, b"/api/caf\xe9\xff" if k == b"X-Original-URI" else v) for k, v in headers]
    async with client_for(nginx_app) as http:
        response = await http.get("/check", headers=headers)
    assert response.status_code == 401  # a proof for /api/x is not one for /api/caf%E9%FF
    assert 'error="invalid_dpop_proof"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("raw", "signed"), [(b"/api/caf\xe9\xff", "/api/caf%E9%FF"), (b"/api/caf\xc3\xa9", "/api/caf%C3%A9")]
)
async def test_raw_bytes_in_the_original_uri_are_checked_percent_encoded(
    nginx_app: object, issuer: TestIssuer, key: DPoPKey, raw: bytes, signed: str
) -> None:
    # nginx's $request_uri holds the bytes the client sent, UTF-8 or not; the proof signs them escaped.
    headers = [(k.encode(), v.encode()) for k, v in nginx_headers(key, issuer.token(key.jkt), "GET", signed).items()]
    headers = [(k, raw if k == b"X-Original-URI" else v) for k, v in headers]
    async with client_for(nginx_app) as http:
        response = await http.get("/check", headers=headers)
    assert response.status_code == 200, response.text


async def test_an_encoded_original_uri_is_checked_as_the_client_spelled_it(
    nginx_app: object, issuer: TestIssuer, key: DPoPKey
) -> None:
    token = issuer.token(key.jkt)
    uri = "/api/caf%C3%A9/a%2Fb"
    async with client_for(nginx_app) as http:
        response = await http.get("/check", headers=nginx_headers(key, token, "GET", uri))
    assert response.status_code == 200, response.text


async def test_an_untrusted_peer_is_refused_without_reading_its_headers(
    nginx_app: object, issuer: TestIssuer, key: DPoPKey
) -> None:
    headers = nginx_headers(key, issuer.token(key.jkt), "GET", "/api/x")
    async with client_for(nginx_app, peer="203.0.113.9") as http:
        refused = await http.get("/check", headers=headers)
    assert refused.status_code == 400
    async with client_for(nginx_app) as http:  # the proof was not consumed
        assert (await http.get("/check", headers=headers)).status_code == 200


async def test_exempt_routes_pass_with_empty_identity_headers(nginx_app: object) -> None:
    async with client_for(nginx_app) as http:
        response = await http.get("/check", headers={"X-Original-Method": "GET", "X-Original-URI": "/health/db"})
    assert response.status_code == 200
    assert response.headers["x-dpop-subject"] == ""


async def test_forwarded_style_reads_x_forwarded_headers_only(issuer: TestIssuer, key: DPoPKey, tmp_path: Path) -> None:
    app = create_app(
        env(issuer, "forwarded"),
        config_file(tmp_path, TOML.replace('public_url = "https://api.example.com"', 'allowed_hosts = ["shop.example"]')),
    )
    token = issuer.token(key.jkt)
    headers = {**dpop_headers(key, "PATCH", "https://shop.example/api/x", token), "X-Forwarded-Method": "PATCH",
               "X-Forwarded-Uri": "/api/x", "X-Forwarded-Host": "shop.example", "X-Forwarded-Proto": "https"}  # fmt: skip
    async with client_for(app) as http:
        assert (await http.get("/check", headers=headers)).status_code == 200
        nginx_only = {**dpop_headers(key, "GET", "https://shop.example/health", token), "X-Original-URI": "/health"}
        assert (await http.get("/check", headers=nginx_only)).status_code == 400


async def test_envoy_style_checks_the_request_itself(issuer: TestIssuer, key: DPoPKey, tmp_path: Path) -> None:
    app = create_app(env(issuer, "envoy"), config_file(tmp_path))
    token = issuer.token(key.jkt)
    async with client_for(app) as http:
        ok = await http.post("/api/orders?id=3", headers=dpop_headers(key, "POST", f"{BASE}/api/orders", token))
        assert ok.status_code == 200, ok.text
        admin = await http.get("/admin", headers=dpop_headers(key, "GET", f"{BASE}/admin", token))
        assert admin.status_code == 403


def test_identity_values_are_one_line_of_ascii() -> None:
    principal = DPoPPrincipal(
        "DPoP", {"jti": "t1"}, jkt="k", subject=" Zoë\r\nX-Evil: 1 ", client_id=None, scopes=frozenset({"a", "b"})
    )
    headers = dict(identity_headers(principal))
    assert headers["X-DPoP-Subject"] == "%20Zo%C3%AB%0D%0AX-Evil: 1%20"
    assert headers["X-DPoP-Client-Id"] == ""
    assert headers["X-DPoP-Scopes"] == "a b"
    assert headers["X-DPoP-Token-Jti"] == "t1"


# -- configuration errors name the key, the type and the choices ---------------------------------


def test_missing_gateway_style_names_the_variable_and_choices(issuer: TestIssuer, tmp_path: Path) -> None:
    environ = env(issuer)
    del environ["DPOP_GATEWAY"]
    with pytest.raises(SettingsError, match=r"DPOP_GATEWAY is missing.*'nginx', 'forwarded', 'envoy'"):
        create_app(environ, config_file(tmp_path))


def test_a_wrong_style_in_the_file_names_the_key(issuer: TestIssuer, tmp_path: Path) -> None:
    environ = env(issuer)
    del environ["DPOP_GATEWAY"]
    with pytest.raises(SettingsError, match=r"gateway.toml: gateway must be one of 'nginx', 'forwarded', 'envoy'.*int"):
        create_app(environ, config_file(tmp_path, "gateway = 3\n" + TOML))


def test_a_wrong_type_in_the_file_names_the_key_and_type(issuer: TestIssuer, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"gateway.toml: exempt_paths must be a list of paths.*int"):
        create_app(
            env(issuer), config_file(tmp_path, "exempt_paths = 5\n" + TOML.replace('exempt_paths = ["/health"]\n', ""))
        )
    with pytest.raises(SettingsError, match=r"gateway.toml: default must be one of 'required', 'optional', 'exempt'"):
        create_app(env(issuer), config_file(tmp_path, 'default = "open"\n' + TOML))
    with pytest.raises(SettingsError, match=r"gateway.toml: colour is not a setting"):
        create_app(env(issuer), config_file(tmp_path, 'colour = "blue"\n' + TOML))


def test_trusted_proxies_are_required(issuer: TestIssuer, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"DPOP_TRUSTED_PROXIES is missing"):
        create_app(env(issuer), config_file(tmp_path, TOML.replace('trusted_proxies = ["127.0.0.1"]\n', "")))


def test_a_setting_in_both_places_is_an_error(issuer: TestIssuer, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"DPOP_PUBLIC_URL and gateway.toml: public_url are both set"):
        create_app(env(issuer, DPOP_PUBLIC_URL="https://x.example"), config_file(tmp_path))


def test_invalid_toml_names_the_file(issuer: TestIssuer, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"gateway.toml is not valid TOML"):
        create_app(env(issuer), config_file(tmp_path, "exempt_paths = [\n"))


def test_the_command_reports_a_configuration_error_at_start_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DPOP_GATEWAY", raising=False)
    assert main(["gateway", "--config", str(config_file(tmp_path))]) == 2
    assert "DPOP_GATEWAY is missing" in capsys.readouterr().err


def test_public_url_must_be_an_origin(issuer: TestIssuer, tmp_path: Path) -> None:
    text = TOML.replace('"https://api.example.com"', '"https://example.com/api"')
    with pytest.raises(SettingsError, match=r"gateway.toml: public_url must be an origin"):
        create_app(env(issuer), config_file(tmp_path, text))


async def test_without_public_url_the_reported_host_must_be_allowed(
    issuer: TestIssuer, key: DPoPKey, tmp_path: Path
) -> None:
    text = TOML.replace('public_url = "https://api.example.com"', 'allowed_hosts = ["shop.example"]')
    app = create_app(env(issuer, "forwarded"), config_file(tmp_path, text))
    token = issuer.token(key.jkt)
    for host, status in (("shop.example", 200), ("evil.example", 400)):
        url = f"https://{host}/api/x"
        headers = {**dpop_headers(key, "GET", url, token), "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/x",
                   "X-Forwarded-Host": host, "X-Forwarded-Proto": "https"}  # fmt: skip
        async with client_for(app) as http:
            response = await http.get("/check", headers=headers)
        assert response.status_code == status, (host, response.text)


PREFLIGHT = {"X-Original-Method": "OPTIONS", "X-Original-URI": "/admin/x", "Origin": "https://app.example",
             "Access-Control-Request-Method": "POST"}  # fmt: skip


async def test_a_cors_preflight_is_verified_like_any_request_by_default(nginx_app: object) -> None:
    # Behind a gateway the upstream knows nothing of DPoP: an OPTIONS it might serve is not let through.
    async with client_for(nginx_app) as http:
        assert (await http.get("/check", headers=PREFLIGHT)).status_code == 401


async def test_pass_cors_preflight_lets_preflights_through_and_only_them(issuer: TestIssuer, tmp_path: Path) -> None:
    app = create_app(env(issuer), config_file(tmp_path, "pass_cors_preflight = true\n" + TOML))
    async with client_for(app) as http:
        passed = await http.get("/check", headers=PREFLIGHT)
        assert passed.status_code == 200
        assert passed.headers["x-dpop-subject"] == ""
        plain = {k: v for k, v in PREFLIGHT.items() if k != "Access-Control-Request-Method"}
        assert (await http.get("/check", headers=plain)).status_code == 401  # a plain OPTIONS is checked


def test_pass_cors_preflight_must_be_a_boolean(issuer: TestIssuer, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"gateway.toml: pass_cors_preflight must be true or false"):
        create_app(env(issuer), config_file(tmp_path, 'pass_cors_preflight = "yes"\n' + TOML))


def test_an_unpinned_host_is_refused_at_start_up(issuer: TestIssuer, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"PUBLIC_URL or DPOP_ALLOWED_HOSTS must be set"):
        create_app(env(issuer), config_file(tmp_path, TOML.replace('public_url = "https://api.example.com"\n', "")))


# -- step-up (RFC 9470) by path, from the file -------------------------------------------------------

STEP_UP_TOML = TOML + '''[path_step_up."/admin"]
acr_values = "urn:mfa"
max_age = 300
'''


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ({"acr": "urn:mfa", "auth_time": "now"}, 200),
        ({"acr": "urn:pwd", "auth_time": "now"}, 401),
        ({"acr": ["urn:mfa"], "auth_time": "now"}, 401),  # wrong JSON type: missing
        ({"acr": "urn:mfa", "auth_time": 10**400}, 401),  # no float holds it: never a 500
        ({"acr": "urn:mfa", "auth_time": {"t": 1}}, 401),
    ],
)
async def test_the_gateway_demands_a_path_step_up_and_hostile_claims_are_401(
    issuer: TestIssuer, key: DPoPKey, tmp_path: Path, claims: dict[str, object], status: int
) -> None:
    import time

    app = create_app(env(issuer), config_file(tmp_path, STEP_UP_TOML))
    if claims["auth_time"] == "now":
        claims = {**claims, "auth_time": int(time.time())}
    token = issuer.token(key.jkt, scope="read admin", **claims)
    async with client_for(app) as http:
        response = await http.get("/check", headers=nginx_headers(key, token, "GET", "/admin/keys"))
    assert response.status_code == status, response.text
    if status == 401:
        assert 'error="insufficient_user_authentication"' in response.headers["www-authenticate"]
        assert "x-dpop-subject" not in response.headers


def test_a_bad_step_up_in_the_file_names_the_key(issuer: TestIssuer, tmp_path: Path) -> None:
    bad = TOML + '[path_step_up."/admin"]\nacr = "urn:mfa"\n'
    with pytest.raises(SettingsError, match=r"gateway.toml: path_step_up must be .*acr_values"):
        create_app(env(issuer), config_file(tmp_path, bad))
    conflict = TOML + '[path_step_up."/a"]\nacr_values = "x"\n[path_step_up."/a/b"]\nacr_values = "y"\n'
    with pytest.raises(SettingsError, match=r"path_step_up.*accept no acr value in common"):
        create_app(env(issuer), config_file(tmp_path, conflict))
