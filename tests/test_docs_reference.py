"""The API reference of the documentation site covers the public API.

docs/reference/*.md hold mkdocstrings directives (``::: module``); ``mkdocs build --strict`` checks
that each one renders, these tests that none of the public modules or top-level names is left out.
"""

from __future__ import annotations

import re
from pathlib import Path

import dpop_middleware

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference"

#: The modules a user imports from (docs/reference must render each one).
PUBLIC_MODULES = {
    "dpop_middleware",
    "dpop_middleware.verifier",
    "dpop_middleware.core",
    "dpop_middleware.core.config",
    "dpop_middleware.core.routes",
    "dpop_middleware.ports",
    "dpop_middleware.settings",
    "dpop_middleware.tokens",
    "dpop_middleware.tokens.jwt",
    "dpop_middleware.tokens.remote",
    "dpop_middleware.tokens.introspection",
    "dpop_middleware.tokens.client_auth",
    "dpop_middleware.stores",
    "dpop_middleware.stores.memory",
    "dpop_middleware.stores.redis",
    "dpop_middleware.stores.failopen",
    "dpop_middleware.client",
    "dpop_middleware.httpx_auth",
    "dpop_middleware.requests_auth",
    "dpop_middleware.pkcs11_key",
    "dpop_middleware.signer",
    "dpop_middleware.redaction",
    "dpop_middleware.authorization_server",
    "dpop_middleware.django",
    "dpop_middleware.django.drf",
    "dpop_middleware.flask",
    "dpop_middleware.starlette",
    "dpop_middleware.fastapi",
    "dpop_middleware.wsgi",
    "dpop_middleware.asgi",
    "dpop_middleware.testing",
    "dpop_middleware.testing.plugin",
}


def directives() -> list[str]:
    return [
        match.group(1)
        for page in sorted(REFERENCE.glob("*.md"))
        for match in re.finditer(r"^::: ([\w.]+)\s*$", page.read_text(encoding="utf-8"), re.MULTILINE)
    ]


def test_every_public_module_is_rendered_once() -> None:
    rendered = directives()
    assert sorted(PUBLIC_MODULES - set(rendered)) == []
    assert sorted({name for name in rendered if rendered.count(name) > 1}) == []


def test_the_reference_index_says_where_each_top_level_name_is_documented() -> None:
    table = (REFERENCE / "index.md").read_text(encoding="utf-8").split("## The core")[0]
    listed = set(re.findall(r"`(\w+)`", table))
    exported = set(dpop_middleware.__all__) - {"__version__"} | {"RemoteJWKSValidator", "IntrospectionValidator"}
    errors = {name for name in exported if issubclass_safe(getattr(dpop_middleware, name), Exception)}
    assert sorted(exported - errors - listed) == []  # the errors: "DPoPError and its subclasses"
    assert "DPoPError" in listed


def issubclass_safe(value: object, base: type) -> bool:
    return isinstance(value, type) and issubclass(value, base)
