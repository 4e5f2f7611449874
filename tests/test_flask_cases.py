"""The shared adapter case table through the Flask extension (app.test_client()).

Run twice: with per-view decorators, and with ``DPOP_ENFORCE_ALL`` (app-wide enforcement) where only
the optional, scoped and exempt views carry a decorator.
"""

from __future__ import annotations

import pytest
from adapter_cases import CASE_IDS, CASES, STEP_UP, Case, Response, run_case
from flask import Flask
from wsgi_app_support import identity, to_case_response

from dpop_middleware import DPoPVerifier
from dpop_middleware.flask import DPoP, current_dpop


def make_app(verifier: DPoPVerifier, *, enforce_all: bool = False) -> Flask:
    app = Flask(__name__)
    app.config["DPOP_ENFORCE_ALL"] = enforce_all
    dpop = DPoP(app, verifier=verifier)

    def protected() -> dict[str, object]:
        return identity(current_dpop._get_current_object())

    app.add_url_rule("/protected", "protected", protected if enforce_all else dpop.required(protected), methods=["GET", "POST"])

    @app.get("/optional")
    @dpop.optional
    def optional() -> dict[str, object]:
        return identity(current_dpop._get_current_object())

    @dpop.required(scopes=["write"])  # above @app.route on purpose: the decorators only mark the view
    @app.get("/scoped")
    def scoped() -> dict[str, object]:
        return identity(current_dpop._get_current_object())

    @app.get("/stepped")
    @dpop.required(**STEP_UP)  # type: ignore[arg-type]
    def stepped() -> dict[str, object]:
        return identity(current_dpop._get_current_object())

    @app.get("/health")
    @dpop.exempt
    def health() -> dict[str, object]:
        return {"ok": True, "dpop": current_dpop._get_current_object() is None}

    return app


class FlaskDriver:
    base_url = "http://localhost"

    def __init__(self, enforce_all: bool) -> None:
        self.enforce_all = enforce_all

    def build(self, verifier: DPoPVerifier) -> None:
        self.client = make_app(verifier, enforce_all=self.enforce_all).test_client()

    def request(self, method: str, path: str, headers: list[tuple[str, str]]) -> Response:
        resp = self.client.open(path, method=method, headers=headers)
        return to_case_response(resp.status_code, resp.headers.to_wsgi_list(), resp.get_data())


@pytest.mark.parametrize("enforce_all", [False, True], ids=["decorators", "enforce_all"])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case(case: Case, enforce_all: bool) -> None:
    run_case(FlaskDriver(enforce_all), case)
