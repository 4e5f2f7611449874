"""The shared adapter case table through Django: the middleware (sync and async) and DRF."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from adapter_cases import CASE_IDS, CASES, Case, run_case
from django_app.harness import DjangoDriver, ensure_django

ensure_django()


@pytest.fixture
def driver_factory() -> Iterator[list[DjangoDriver]]:
    drivers: list[DjangoDriver] = []
    yield drivers
    for driver in drivers:
        driver.close()


def _run(drivers: list[DjangoDriver], driver: DjangoDriver, case: Case) -> None:
    drivers.append(driver)
    run_case(driver, case)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_middleware_sync(case: Case, driver_factory: list[DjangoDriver]) -> None:
    _run(driver_factory, DjangoDriver(), case)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_middleware_mounted_under_script_name(case: Case, driver_factory: list[DjangoDriver]) -> None:
    _run(driver_factory, DjangoDriver(script_name="/mount"), case)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_middleware_async(case: Case, driver_factory: list[DjangoDriver]) -> None:
    _run(driver_factory, DjangoDriver(use_async=True), case)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_drf(case: Case, driver_factory: list[DjangoDriver]) -> None:
    # DRF alone: DPoPAuthentication + DPoPRequired on APIViews, no DPoPMiddleware.
    _run(driver_factory, DjangoDriver("/drf", middleware=False), case)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_drf_behind_middleware(case: Case, driver_factory: list[DjangoDriver]) -> None:
    # Both installed: the middleware verifies once, DRF reuses its result (no false replay).
    _run(driver_factory, DjangoDriver("/drf", middleware=True), case)
