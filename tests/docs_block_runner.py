"""Runs documentation code blocks in this fresh interpreter (started by tests/test_docs_code_blocks.py).

Reads a JSON job on stdin: ``{"mode": "run" | "django", "chunks": [{"code", "filename", "line"}]}``.
The chunks (setup code and blocks) run in order in one namespace, a module of its own, compiled with
their Markdown file and line so that a traceback points into the docs. Exit status 0: every chunk ran.

``django``: the chunks are a fragment of a project's ``settings.py`` (and views). Django is first
configured as a new project (``BASE`` below, with DRF installed); the chunks run in a namespace that
starts with those settings, so ``INSTALLED_APPS += [...]`` works; the upper-case names they leave
become the project's settings (``override_settings``). What a fragment leaves out is completed:
``dpop_middleware.django`` in ``INSTALLED_APPS``, ``DPoPMiddleware`` before ``CsrfViewMiddleware``,
and a ``DPOP`` that trusts a ``TestIssuer``. Then the adapter builds everything from ``DPOP`` as at
start-up, and Django's system checks must report no error.
"""

from __future__ import annotations

import copy
import json
import sys
import types
from typing import Any

BASE: dict[str, Any] = {
    "SECRET_KEY": "docs-test-" + "k" * 50,
    "DEBUG": False,
    "ALLOWED_HOSTS": ["api.example.com"],
    "INSTALLED_APPS": [
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "django.contrib.sessions",
        "rest_framework",
    ],
    "MIDDLEWARE": [
        "django.middleware.security.SecurityMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ],
    "ROOT_URLCONF": "docs_block_runner",
    "DATABASES": {},
    "USE_TZ": True,
    "CACHES": {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
}
APP = "dpop_middleware.django"
MIDDLEWARE = "dpop_middleware.django.DPoPMiddleware"
urlpatterns: list[Any] = []  # ROOT_URLCONF of the django mode


def run_chunks(chunks: list[dict[str, Any]], namespace: dict[str, Any]) -> None:
    for chunk in chunks:
        code = compile("\n" * (chunk["line"] - 1) + chunk["code"], chunk["filename"], "exec")
        exec(code, namespace)


def fresh_namespace() -> dict[str, Any]:
    module = types.ModuleType("docs_block")
    sys.modules[module.__name__] = module
    return module.__dict__


def run_django(chunks: list[dict[str, Any]]) -> None:
    import django
    from django.conf import settings
    from django.core.checks import run_checks
    from django.test.utils import override_settings

    settings.configure(**copy.deepcopy(BASE))
    django.setup()
    namespace = fresh_namespace()
    namespace.update(copy.deepcopy(BASE))
    run_chunks(chunks, namespace)
    changed = {name: value for name, value in namespace.items() if name.isupper() and value != BASE.get(name)}
    apps = list(changed.get("INSTALLED_APPS", BASE["INSTALLED_APPS"]))
    if APP not in apps:
        changed["INSTALLED_APPS"] = [*apps, APP]
    middleware = list(changed.get("MIDDLEWARE", BASE["MIDDLEWARE"]))
    if MIDDLEWARE not in middleware:
        csrf = middleware.index("django.middleware.csrf.CsrfViewMiddleware")
        changed["MIDDLEWARE"] = [*middleware[:csrf], MIDDLEWARE, *middleware[csrf:]]
    if "DPOP" not in changed:
        from dpop_middleware.testing import TestIssuer

        changed["DPOP"] = TestIssuer().django_settings()
    with override_settings(**changed):
        from dpop_middleware.django.conf import get_state

        get_state()  # raises ImproperlyConfigured for a DPOP the adapter refuses
        messages = run_checks()
        for message in messages:
            print(f"system check: {message}", file=sys.stderr)
        errors = [message for message in messages if message.is_serious()]
        if errors:
            raise SystemExit(f"{len(errors)} system check error(s): " + "; ".join(str(e) for e in errors))


def main() -> None:
    job = json.load(sys.stdin)
    if job["mode"] == "django":
        run_django(job["chunks"])
    else:
        run_chunks(job["chunks"], fresh_namespace())


if __name__ == "__main__":
    main()
