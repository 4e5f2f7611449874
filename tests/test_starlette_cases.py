"""The shared adapter case table through Starlette: the pure ASGI middleware and the auth backend."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from adapter_cases import CASE_IDS, CASES, Case, Response, run_case
from asgi_apps.apps import starlette_app, to_case_response
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.testclient import TestClient

from dpop_middleware import DPoPVerifier
from dpop_middleware.starlette import DPoPAuthBackend, DPoPAuthenticationMiddleware, DPoPMiddleware

PATHS = {"exempt_paths": ["/health"], "optional_paths": ["/optional"]}


def middleware_stack(verifier: DPoPVerifier) -> list[Middleware]:
    return [Middleware(DPoPMiddleware, verifier=verifier, **PATHS)]


def backend_stack(verifier: DPoPVerifier) -> list[Middleware]:
    return [Middleware(DPoPAuthenticationMiddleware, backend=DPoPAuthBackend(verifier, **PATHS))]


def stock_backend_stack(verifier: DPoPVerifier) -> list[Middleware]:
    backend = DPoPAuthBackend(verifier, **PATHS)
    return [Middleware(AuthenticationMiddleware, backend=backend, on_error=DPoPAuthBackend.on_error)]


class StarletteDriver:
    base_url = "http://testserver"

    def __init__(self, stack: Callable[[DPoPVerifier], list[Middleware]]) -> None:
        self.stack = stack

    def build(self, verifier: DPoPVerifier) -> None:
        self.client = TestClient(starlette_app(self.stack(verifier)))

    def request(self, method: str, path: str, headers: list[tuple[str, str]]) -> Response:
        return to_case_response(self.client.request(method, path, headers=headers))


STACKS = {"middleware": middleware_stack, "auth_backend": backend_stack, "stock_auth_middleware": stock_backend_stack}


@pytest.mark.parametrize("stack", list(STACKS))
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case(case: Case, stack: str) -> None:
    run_case(StarletteDriver(STACKS[stack]), case)
