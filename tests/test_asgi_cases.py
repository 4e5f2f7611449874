"""The shared adapter case table through ``DPoPMiddleware`` around a bare ASGI callable (no framework)."""

from __future__ import annotations

import pytest
from adapter_cases import CASE_IDS, CASES, STEP_UP, Case, Response, run_case
from asgi_apps.apps import bare_app, to_case_response
from starlette.testclient import TestClient

from dpop_middleware import DPoPVerifier
from dpop_middleware.starlette import DPoPMiddleware


class BareASGIDriver:
    base_url = "http://testserver"

    def build(self, verifier: DPoPVerifier) -> None:
        app = DPoPMiddleware(
            bare_app,
            verifier=verifier,
            exempt_paths=["/health"],
            optional_paths=["/optional"],
            path_scopes={"/scoped": "write"},
            path_step_up={"/stepped": STEP_UP},
        )
        self.client = TestClient(app)

    def request(self, method: str, path: str, headers: list[tuple[str, str]]) -> Response:
        return to_case_response(self.client.request(method, path, headers=headers))


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case(case: Case) -> None:
    run_case(BareASGIDriver(), case)
