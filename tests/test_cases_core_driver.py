"""The shared adapter case table, run against the verifier directly (a reference 'adapter').

This pins the expected behaviour in one place: every framework driver must match it.
"""

from __future__ import annotations

import json

import pytest
from adapter_cases import CASE_IDS, CASES, STEP_UP, Case, Response, identity, run_case

from dpop_middleware import DPoPVerifier, RequestInfo
from dpop_middleware.core.step_up import StepUp


class CoreDriver:
    base_url = "http://testserver"

    def build(self, verifier: DPoPVerifier) -> None:
        self.verifier = verifier

    def request(self, method: str, path: str, headers: list[tuple[str, str]]) -> Response:
        if path == "/health":
            return Response(200, {}, {"ok": True})
        info = RequestInfo(method, self.base_url + path, headers)
        step_up = StepUp.create(**STEP_UP) if path == "/stepped" else None  # type: ignore[arg-type]
        result = self.verifier.authenticate(info, required=path != "/optional", step_up=step_up)
        if result.rejection is not None:
            return _error(result.rejection)
        if path == "/scoped":
            rejection = self.verifier.authorize(result.principal, ("write",), info).rejection
            if rejection is not None:
                return _error(rejection)
        out: dict[str, list[str]] = {}
        for name, value in result.response_headers:
            out.setdefault(name.lower(), []).append(value)
        return Response(200, out, identity(result.principal))


def _error(rejection: object) -> Response:
    out: dict[str, list[str]] = {}
    for name, value in rejection.headers:  # type: ignore[attr-defined]
        out.setdefault(name.lower(), []).append(value)
    return Response(rejection.status, out, json.loads(rejection.body))  # type: ignore[attr-defined]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_case(case: Case) -> None:
    run_case(CoreDriver(), case)
