"""The mutations of :mod:`test_seams_property_types` through every adapter's own test client.

Issue 19 §4, first bullet, adapter half: Django (middleware, and DRF alone) and Flask through their
test clients (Django also under its async client), Starlette and FastAPI through Starlette's ``TestClient``, a plain WSGI app through
werkzeug's client and a bare ASGI app through ``TestClient``. Each mutated request must answer:

* never a 5xx, except the documented 503 of our own outage (an introspection answer whose
  ``active`` is not a boolean, a JWKS document that is not one), which carries ``Retry-After``;
* never a 2xx when the mutation must be rejected, and a 4xx with a challenge when it is;
* 200 where the request must pass (a good key beside an odd JWKS entry);
* never an exception out of the framework's test client.

The apps and drivers are those of the shared adapter case table (``tests/test_*_cases.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from adapter_cases import Driver, Response
from django_app.harness import DjangoDriver, ensure_django
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_asgi_cases import BareASGIDriver
from test_fastapi_cases import FastAPIDriver
from test_flask_cases import FlaskDriver
from test_seams_property_types import (
    ACCEPT,
    KEYRING,
    KINDS,
    REJECT,
    RULES,
    SAME,
    Check,
    Mutation,
    World,
    json_values,
    mutations,
    random_mutation,
)
from test_starlette_cases import StarletteDriver, middleware_stack
from test_wsgi_cases import WSGIDriver

from dpop_middleware import DPoPVerifier, MemoryReplayStore

ensure_django()

ADAPTERS: dict[str, Callable[[], Driver]] = {
    "django": DjangoDriver,
    "django_async": lambda: DjangoDriver(use_async=True),
    "django_drf": lambda: DjangoDriver("/drf", middleware=False),
    "flask": lambda: FlaskDriver(enforce_all=False),
    "starlette": lambda: StarletteDriver(middleware_stack),
    "fastapi": lambda: FastAPIDriver(exact_errors=True),
    "wsgi": WSGIDriver,
    "asgi": BareASGIDriver,
}
# The token endpoint and the static-JWKS checks have no adapter: the core test covers them.
SURFACES = [s for s in RULES if s not in ("token_endpoint", "jwks_static")]
# Through the adapters, one value per JSON type (the core test runs every value of ODD).
ADAPTER_KINDS = ("list", "object", "int", "float", "true", "null", "empty_string", "lone_surrogate",
                 "surrogate_in_text", "int40", "huge_string", "absent")
assert set(ADAPTER_KINDS) <= set(KINDS)


class Harness:
    """One adapter's app, rebuilt once per verifier route, and the world its requests come from."""

    def __init__(self, adapter: str) -> None:
        self.driver = ADAPTERS[adapter]()
        self.world = World(self.driver.base_url + "/protected", time.time)
        store = MemoryReplayStore()
        jwt = self.world.issuer.validator()
        self.verifiers = {
            "jwt": DPoPVerifier(jwt, replay_store=store),
            "nonce": DPoPVerifier(jwt, replay_store=store, nonce_policy="always", nonce_keyring=KEYRING),
            "introspection": DPoPVerifier(self.world.introspection, replay_store=store),
            "jwks": DPoPVerifier(self.world.jwks, replay_store=store),
        }
        self.built: str | None = None

    def send(self, check: Check) -> Response:
        if self.built != check.route:
            self.driver.build(self.verifiers[check.route])
            self.built = check.route
        return self.driver.request(check.method, "/protected", check.headers)

    def close(self) -> None:
        close = getattr(self.driver, "close", None)
        if close is not None:
            close()


@pytest.fixture
def harness_factory() -> Iterator[Callable[[str], Harness]]:
    made: dict[str, Harness] = {}  # one per adapter and test (hypothesis examples share it)

    def make(adapter: str) -> Harness:
        if adapter not in made:
            made[adapter] = Harness(adapter)
        return made[adapter]

    yield make
    for harness in made.values():
        harness.close()


def may_be_unavailable(m: Mutation) -> bool:
    """Our own outage, documented as a 503: the authorization server answered something unusable."""
    return (m.surface == "introspection" and m.path == ("active",)) or m.surface == "jwks_document"


def verdict(m: Mutation, check: Check, resp: Response) -> str | None:
    status = resp.status
    if status == 503 and may_be_unavailable(m) and check.expect != ACCEPT:
        return None if resp.header("retry-after") else "503 without Retry-After"
    if status >= 500:
        return f"answered {status}"
    if check.expect == ACCEPT:
        return None if status == 200 else f"must pass, answered {status} {resp.header('www-authenticate')}"
    if 200 <= status < 300:
        return f"answered {status} to a request that must fail" if check.expect == REJECT else None
    if status not in (400, 401, 403):
        return f"answered {status}"
    if not any(c.startswith(("DPoP", "Bearer")) for c in resp.header("www-authenticate")):
        return f"{status} without a challenge"
    return None


def problems(harness: Harness, m: Mutation) -> list[str]:
    out = []
    for check in harness.world.checks(m):
        if check.route in ("direct", "token_endpoint"):
            continue
        try:
            resp = harness.send(check)
        except Exception as exc:
            out.append(f"{m.name} [{check.label}]: the test client raised {type(exc).__name__}: {str(exc)[:120]}")
            continue
        found = verdict(m, check, resp)
        if found:
            out.append(f"{m.name} [{check.label}]: {found}")
    return out


def test_unmutated_requests_pass_everywhere(harness_factory: Callable[[str], Harness]) -> None:
    for adapter in ADAPTERS:
        harness = harness_factory(adapter)
        for surface in SURFACES:
            if surface == "jwks_document":
                continue
            m = Mutation(surface, next(iter(RULES[surface])), "baseline", SAME, ACCEPT)
            for check in harness.world.checks(m):
                check.expect = ACCEPT
                if check.route not in ("direct", "token_endpoint"):
                    resp = harness.send(check)
                    assert resp.status == 200, (adapter, surface, check.label, resp)


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("adapter", list(ADAPTERS))
def test_every_member_with_every_json_type(adapter: str, surface: str, harness_factory: Callable[[str], Harness]) -> None:
    harness = harness_factory(adapter)
    found: list[str] = []
    for m in mutations([surface]):
        if m.kind in ADAPTER_KINDS:
            found += problems(harness, m)
    assert not found, f"{adapter}:\n" + "\n".join(found)


HYPOTHESIS = settings(max_examples=25, deadline=None, database=None, derandomize=True,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("adapter", list(ADAPTERS))
@HYPOTHESIS
@given(data=st.data())
def test_random_json_through_the_adapter(adapter: str, data: st.DataObject,
                                         harness_factory: Callable[[str], Harness]) -> None:
    harness = harness_factory(adapter)
    surface = data.draw(st.sampled_from(SURFACES), label="surface")
    path = data.draw(st.sampled_from(list(RULES[surface])), label="member")
    value: Any = data.draw(json_values, label="value")
    found = problems(harness, random_mutation(surface, path, value))
    assert not found, "\n".join(found) + f"\nvalue: {value!r}"

