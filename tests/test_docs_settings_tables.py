"""The settings tables of the docs name exactly what the code accepts.

Every setting or option an adapter accepts appears in a row of its page's tables, every row names
something the adapter accepts, and the defaults written for the verifier's options are the code's.
Django: docs/django.md "Settings" against ``dpop_middleware.django.conf.ACCEPTED``; Flask:
docs/flask.md "Settings" against the extension's accepted ``DPOP_*`` keys; Starlette and FastAPI:
docs/starlette-fastapi.md "Options" against the constructors' keywords (adapter_options.py's
TypedDicts); the README's configuration reference against ``VerifierConfig``.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
from pathlib import Path

import pytest

from dpop_middleware.adapter_options import AdapterOptions, ProxyOptions
from dpop_middleware.core.config import VerifierConfig

ROOT = Path(__file__).resolve().parent.parent
_NAME = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


def section(path: Path, heading: str) -> str:
    """The text of the ``## heading`` section of ``path`` (up to the next ``## `` heading)."""
    text = path.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match is not None, f"{path.name} has no '## {heading}' section"
    return match.group(1)


def table_rows(text: str, first_header: str) -> list[list[str]]:
    """The body rows (cells stripped) of every table in ``text`` whose first header cell is ``first_header``."""
    rows: list[list[str]] = []
    in_table = False
    for line in text.splitlines():
        if not line.startswith("|"):
            in_table = False
            continue
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if not in_table:
            in_table = cells[0] == first_header
            continue
        if set(cells[0]) <= {"-", ":"}:
            continue
        rows.append(cells)
    return rows


def names(rows: list[list[str]]) -> list[str]:
    """The names in the first cells: ``MAX_AGE``, or several in one cell (`` `A`, `B` ``)."""
    found = [name for row in rows for name in _NAME.findall(row[0])]
    assert found, "no table rows found"
    return found


def assert_same(documented: list[str], accepted: set[str], what: str) -> None:
    duplicated = sorted({name for name in documented if documented.count(name) > 1})
    assert not duplicated, f"{what}: documented twice: {duplicated}"
    assert sorted(accepted - set(documented)) == [], f"{what}: accepted by the code, missing from the table"
    assert sorted(set(documented) - accepted) == [], f"{what}: in the table, not accepted by the code"


def assert_complete_rows(rows: list[list[str]], width: int, what: str) -> None:
    for row in rows:
        assert len(row) == width and all(row), f"{what}: every row needs {width} non-empty cells: {row}"


def assert_config_defaults(rows: list[list[str]], spell: dict[str, str], default_column: int, what: str) -> None:
    """Each verifier option's documented default shows the code's default value."""
    by_name = {name: row for row in rows for name in _NAME.findall(row[0])}
    for field in dataclasses.fields(VerifierConfig):
        if field.default is dataclasses.MISSING:
            continue  # a factory: nonce_keyring, random per process
        value = field.default
        if isinstance(value, enum.Enum):
            shown = str(value.value)
        elif isinstance(value, bool):
            continue  # debug: the framework's own debug flag
        elif isinstance(value, (int, float)):
            shown = f"{value:g}"
        else:
            continue  # the algorithm tuple: described in words
        cell = by_name[spell[field.name]][default_column]
        assert shown in cell, f"{what}: {spell[field.name]} defaults to {shown}, the table says {cell!r}"


# -- Django ----------------------------------------------------------------------------------------


def test_django_settings_tables_match_the_accepted_keys() -> None:
    from dpop_middleware.django.conf import ACCEPTED

    rows = table_rows(section(ROOT / "docs" / "django.md", "Settings"), "key")
    assert_same(names(rows), {name.upper() for name in ACCEPTED}, "docs/django.md DPOP keys")
    assert_complete_rows(rows, 4, "docs/django.md")
    assert_config_defaults(rows, {n: n.upper() for n in ACCEPTED}, 2, "docs/django.md")


# -- Flask -----------------------------------------------------------------------------------------


def test_flask_settings_tables_match_the_accepted_keys() -> None:
    from dpop_middleware import flask as flask_adapter

    accepted = {f"DPOP_{name.upper()}": name for name in flask_adapter._ACCEPTED}
    rows = table_rows(section(ROOT / "docs" / "flask.md", "Settings"), "key")
    assert_same(names(rows), set(accepted), "docs/flask.md DPOP_* keys")
    assert_complete_rows(rows, 4, "docs/flask.md")
    assert_config_defaults(rows, {name: key for key, name in accepted.items()}, 2, "docs/flask.md")


# -- Starlette and FastAPI -------------------------------------------------------------------------


def keywords(function: object, typed: type) -> set[str]:
    """The named parameters of ``function`` (but ``self`` and ``app``) and the keys of its ``**`` TypedDict."""
    parameters = inspect.signature(function).parameters.values()  # type: ignore[arg-type]
    named = {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {"self", "app"}
    assert any(p.kind is p.VAR_KEYWORD for p in parameters)
    return named | set(typed.__optional_keys__) | set(typed.__required_keys__)  # type: ignore[attr-defined]


def starlette_tables() -> tuple[list[list[str]], list[list[str]]]:
    text = section(ROOT / "docs" / "starlette-fastapi.md", "Options")
    middleware, _, bearer = text.partition("`DPoPBearer(verifier, *, ...)`")
    assert bearer, "docs/starlette-fastapi.md: the DPoPBearer table follows `DPoPBearer(verifier, *, ...)`:"
    return table_rows(middleware, "option"), table_rows(bearer, "option")


def test_starlette_middleware_and_backend_table_matches_their_keywords() -> None:
    from dpop_middleware.starlette import DPoPAuthBackend, DPoPMiddleware

    accepted = keywords(DPoPMiddleware.__init__, AdapterOptions)
    assert keywords(DPoPAuthBackend.__init__, AdapterOptions) == accepted  # one table documents both
    rows, _ = starlette_tables()
    assert_same(names(rows), accepted, "docs/starlette-fastapi.md DPoPMiddleware/DPoPAuthBackend options")
    assert_complete_rows(rows, 4, "docs/starlette-fastapi.md")


def test_fastapi_bearer_table_matches_its_keywords() -> None:
    from dpop_middleware.fastapi import DPoPBearer

    _, rows = starlette_tables()
    assert_same(names(rows), keywords(DPoPBearer.__init__, ProxyOptions), "docs/starlette-fastapi.md DPoPBearer")
    assert_complete_rows(rows, 4, "docs/starlette-fastapi.md DPoPBearer")


# -- README: the verifier's options ----------------------------------------------------------------


def test_readme_verifier_options_match_the_config_fields() -> None:
    rows = table_rows(section(ROOT / "README.md", "Configuration reference"), "option")
    fields = {field.name for field in dataclasses.fields(VerifierConfig)}
    assert_same(names(rows), fields, "README.md verifier options")
    assert_complete_rows(rows, 3, "README.md")


# -- the checks themselves -------------------------------------------------------------------------


def test_table_parser_reads_several_names_in_one_cell_and_stops_at_the_table_end() -> None:
    text = (
        "| key | type |\n|---|---|\n| `A`, `B` | x |\n| `C` / `D` | y |\n\nprose `E`\n"
        "| other | t |\n|---|---|\n| `F` | z |\n"
    )
    rows = table_rows(text, "key")
    assert names(rows) == ["A", "B", "C", "D"]


@pytest.mark.parametrize(
    ("documented", "message"),
    [(["A", "B"], "missing from the table"), (["A", "B", "C", "D"], "not accepted"), (["A", "A", "B", "C"], "twice")],
)
def test_a_table_that_disagrees_with_the_code_fails(documented: list[str], message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        assert_same(documented, {"A", "B", "C"}, "t")
