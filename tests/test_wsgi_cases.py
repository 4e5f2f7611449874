"""The shared adapter case table through DPoPWSGIMiddleware around a bare WSGI callable."""

from __future__ import annotations

import pytest
from adapter_cases import CASE_IDS, CASES, STEP_UP, Case, Response, run_case
from werkzeug.test import Client
from wsgi_app_support import bare_app, to_case_response

from dpop_middleware import DPoPVerifier
from dpop_middleware.wsgi import DPoPWSGIMiddleware


class WSGIDriver:
    base_url = "http://localhost"

    def build(self, verifier: DPoPVerifier) -> None:
        app = DPoPWSGIMiddleware(
            bare_app,
            verifier,
            exempt_paths=["/health"],
            optional_paths=["/optional"],
            path_scopes={"/scoped": ["write"]},
            path_step_up={"/stepped": STEP_UP},
        )
        self.client = Client(app)

    def request(self, method: str, path: str, headers: list[tuple[str, str]]) -> Response:
        resp = self.client.open(path, method=method, headers=headers)
        return to_case_response(resp.status_code, resp.headers.to_wsgi_list(), resp.get_data())


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case(case: Case) -> None:
    run_case(WSGIDriver(), case)
