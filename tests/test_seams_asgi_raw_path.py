"""Issue 19 §1.7: a client-encoded ``%2F`` in the path must match the proof's ``htu`` under ASGI.

ASGI servers decode the path (``%2F`` becomes ``/`` in ``scope["path"]``); the client signed the URL
it sent, so the adapter must rebuild ``htu`` from ``scope["raw_path"]``. It only does so when the raw
path is the same path (it decodes to ``scope["path"]`` below the mount, and its prefix is part of
``root_path``): otherwise the decoded path is re-encoded and a ``%2F`` proof fails closed.

Through Starlette's ``TestClient`` (DPoPMiddleware, DPoPBearer, below a ``Mount``) and a real uvicorn
on 127.0.0.1 (with and without ``--root-path``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from asgi_support import http_scope
from fastapi import Depends, FastAPI
from servers import asgi_apps_server
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from dpop_middleware import DPoPPrincipal, DPoPVerifier
from dpop_middleware.asgi import request_info
from dpop_middleware.client import DPoPKey
from dpop_middleware.core.origin import ProxySettings
from dpop_middleware.fastapi import DPoPBearer
from dpop_middleware.starlette import DPoPMiddleware, get_principal
from dpop_middleware.testing import TestIssuer, dpop_headers

BASE = "http://api.test"
NO_PROXIES = ProxySettings.create()


@pytest.fixture(scope="module")
def issuer() -> TestIssuer:
    return TestIssuer(audience=BASE)


async def files(request: Request) -> Response:
    principal = get_principal(request)
    return JSONResponse({"path": request.url.path, "sub": principal.subject if principal else None})


def starlette_app(verifier: DPoPVerifier) -> Starlette:
    inner = Starlette(routes=[Route("/files/{rest:path}", files)])
    return Starlette(
        routes=[Route("/files/{rest:path}", files), Mount("/api", app=inner)],
        middleware=[Middleware(DPoPMiddleware, verifier=verifier)],
    )


def fastapi_app(verifier: DPoPVerifier) -> FastAPI:
    app = FastAPI()
    dpop = DPoPBearer(verifier)

    @app.get("/files/{rest:path}")
    def read(rest: str, principal: DPoPPrincipal = Depends(dpop)) -> dict[str, Any]:
        return {"rest": rest, "sub": principal.subject}

    return app


def call(client: TestClient, issuer: TestIssuer, path: str, htu: str) -> httpx.Response:
    key = DPoPKey.generate()
    return client.get(path, headers=dpop_headers(key, "GET", htu, issuer.token(key.jkt)))


@pytest.mark.parametrize("kind", ["middleware", "fastapi"])
@pytest.mark.parametrize("path", ["/files/a%2Fb", "/files/a%2fb/c", "/files/x%2F%2E%2E%2Fy"])
def test_encoded_slash_matches_the_htu_the_client_signed(issuer: TestIssuer, kind: str, path: str) -> None:
    verifier = DPoPVerifier(issuer.validator())
    app = starlette_app(verifier) if kind == "middleware" else fastapi_app(verifier)
    with TestClient(app, base_url=BASE) as client:
        ok = call(client, issuer, path, BASE + path)
        assert ok.status_code == 200, ok.text
        assert ok.json()["sub"] == "alice"
        # The decoded form is another URL (RFC 3986 §2.2: %2F is not "/"): its proof is refused.
        decoded = call(client, issuer, path, BASE + path.replace("%2F", "/").replace("%2f", "/"))
        assert decoded.status_code == 401
        assert 'error="invalid_dpop_proof"' in decoded.headers["www-authenticate"]


def test_encoded_slash_below_a_mount(issuer: TestIssuer) -> None:
    with TestClient(starlette_app(DPoPVerifier(issuer.validator())), base_url=BASE) as client:
        resp = call(client, issuer, "/api/files/a%2Fb", BASE + "/api/files/a%2Fb")
        assert resp.status_code == 200, resp.text
        assert resp.json()["path"] == "/api/files/a/b"


@pytest.mark.parametrize(
    ("path", "root_path", "app_root_path", "raw_path", "url"),
    [
        ("/a/b", "", None, b"/a%2Fb", "http://api.test/a%2Fb"),
        # uvicorn --root-path /prefix behind a proxy that strips it: path has the root, raw_path not.
        ("/prefix/a/b", "/prefix", None, b"/a%2Fb", "http://api.test/prefix/a%2Fb"),
        # the same below a Starlette Mount("/m"): root_path grew by the mount, raw_path has the mount only.
        ("/prefix/m/a/b", "/prefix/m", "/prefix", b"/m/a%2Fb", "http://api.test/prefix/m/a%2Fb"),
        # a server whose raw_path carries the whole root.
        ("/prefix/a/b", "/prefix", None, b"/prefix/a%2Fb", "http://api.test/prefix/a%2Fb"),
        # TestClient(root_path=...): path below the root, raw_path without it.
        ("/a/b", "/prefix", "/prefix", b"/a%2Fb", "http://api.test/prefix/a%2Fb"),
    ],
)
def test_raw_path_with_encoded_slash_is_used_when_consistent(
    path: str, root_path: str, app_root_path: str | None, raw_path: bytes, url: str
) -> None:
    assert request_info(http_scope(path, raw_path=raw_path, root_path=root_path, app_root_path=app_root_path), NO_PROXIES).url == url


@pytest.mark.parametrize(
    ("path", "root_path", "raw_path"),
    [
        ("/a/b", "", None),  # no raw path at all: the decoded path is all we know
        ("/a/b", "", b"/a%2Fc"),  # a raw path for another path
        ("/a/b", "", b"/x/a%2Fb"),  # a prefix that is no part of root_path
        ("/prefix/a/b", "/prefix", b"/other/a%2Fb"),  # a prefix that is not the mount's
        ("/a/b", "", b"a%2Fb"),  # not an origin-form path
        ("/a/b", "", b"http://evil.test/a%2Fb"),  # absolute-form target: never taken apart
        ("/a/b", "", "/a%2Fb"),  # not bytes, as the ASGI spec requires
    ],
)
def test_untrustworthy_raw_path_falls_back_to_the_decoded_path(path: str, root_path: str, raw_path: Any) -> None:
    """Fail closed: the URL is rebuilt from the decoded path, so a proof signed for ``%2F`` fails htu."""
    url = request_info(http_scope(path, raw_path=raw_path, root_path=root_path), NO_PROXIES).url
    assert url == f"http://api.test{path}"


# -- a real uvicorn on 127.0.0.1, serving tests/asgi_apps/server.py -----------------------------------


def serve(issuer: TestIssuer, *flags: str) -> Iterator[str]:
    with asgi_apps_server(issuer, *flags) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def uvicorn_root(issuer: TestIssuer) -> Iterator[str]:
    yield from serve(issuer, "--root-path", "/prefix", "--no-proxy-headers")


@pytest.fixture(scope="module")
def uvicorn_plain(issuer: TestIssuer) -> Iterator[str]:
    yield from serve(issuer)


def uvicorn_get(base: str, path: str, htu: str, issuer: TestIssuer) -> httpx.Response:
    key = DPoPKey.generate()
    return httpx.get(base + path, headers=dpop_headers(key, "GET", htu, issuer.token(key.jkt)), timeout=10)


@pytest.mark.parametrize("mount", ["untrusted", "bare", "fastapi-files"])
def test_encoded_slash_under_uvicorn(uvicorn_plain: str, issuer: TestIssuer, mount: str) -> None:
    path = f"/{mount}/echo/a%2Fb" if mount != "fastapi-files" else "/fastapi/files/a%2Fb"
    ok = uvicorn_get(uvicorn_plain, path, uvicorn_plain + path, issuer)
    assert ok.status_code == 200, ok.text
    decoded = uvicorn_get(uvicorn_plain, path, uvicorn_plain + path.replace("%2F", "/"), issuer)
    assert decoded.status_code == 401


def test_encoded_slash_under_uvicorn_with_root_path(uvicorn_root: str, issuer: TestIssuer) -> None:
    path = "/untrusted/echo/a%2Fb"
    ok = uvicorn_get(uvicorn_root, path, f"{uvicorn_root}/prefix{path}", issuer)
    assert ok.status_code == 200, ok.text
    assert ok.json()["path"].endswith("/echo/a/b")
    wrong = uvicorn_get(uvicorn_root, path, f"{uvicorn_root}/prefix/untrusted/echo/a/b", issuer)
    assert wrong.status_code == 401
