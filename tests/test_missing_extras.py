"""Importing an adapter whose framework is not installed names the extra that brings it.

Each case runs in a fresh interpreter in which the framework cannot be found: a finder placed first
on ``sys.meta_path`` answers the framework's top-level name with the ``ModuleNotFoundError`` Python
raises for a package that is not installed (``sys.modules[name] = None`` would not do: for
``from starlette.applications import ...`` it names the submodule instead). The probe imports the
adapter and reports what was raised.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

PROBE = """
import importlib, importlib.abc, json, sys
module, blocked = sys.argv[1], set(sys.argv[2:])

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
try:
    importlib.import_module(module)
except ImportError as exc:
    cause = exc.__cause__
    print(json.dumps({
        "type": type(exc).__name__, "message": str(exc), "name": exc.name,
        "cause": type(cause).__name__ if cause is not None else None,
        "cause_name": getattr(cause, "name", None),
    }))
else:
    print("null")
"""


def import_without(module: str, *blocked: str) -> dict[str, Any] | None:
    """What importing ``module`` raises when the modules ``blocked`` are not installed (None: nothing)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, module, *blocked], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] | None = json.loads(done.stdout)
    return result


#: (adapter module, the framework's top-level module, the extra that installs it)
CASES = [
    ("dpop_middleware.django", "django", "django"),
    ("dpop_middleware.django.drf", "rest_framework", "drf"),
    ("dpop_middleware.flask", "flask", "flask"),
    ("dpop_middleware.starlette", "starlette", "starlette"),
    ("dpop_middleware.fastapi", "fastapi", "fastapi"),
    ("dpop_middleware.stores.redis", "redis", "redis"),
    ("dpop_middleware.requests_auth", "requests", "requests"),
    ("dpop_middleware.httpx_auth", "httpx", "httpx"),
    ("dpop_middleware.pkcs11_key", "pkcs11", "pkcs11"),
]


@pytest.mark.parametrize(("module", "framework", "extra"), CASES, ids=[case[0] for case in CASES])
def test_a_missing_framework_names_the_extra_to_install(module: str, framework: str, extra: str) -> None:
    raised = import_without(module, framework)
    assert raised is not None, f"{module} imported although {framework} could not be"
    # Our ImportError, not the interpreter's bare ModuleNotFoundError (a subclass of ImportError).
    assert raised["type"] == "ImportError", raised
    assert f"pip install 'dpop-middleware[{extra}]'" in raised["message"]
    # Raised from the original error, which still names the missing module.
    assert (raised["cause"], raised["cause_name"]) == ("ModuleNotFoundError", framework)


def test_a_module_the_framework_needs_keeps_its_own_error() -> None:
    # Flask is installed but werkzeug (which Flask imports) is not: the error must name werkzeug,
    # not tell the user to install the flask extra they already have.
    raised = import_without("dpop_middleware.flask", "werkzeug")
    assert raised is not None
    assert (raised["type"], raised["name"]) == ("ModuleNotFoundError", "werkzeug")
    assert "dpop-middleware[" not in raised["message"]


def test_the_framework_independent_modules_import_without_any_framework() -> None:
    # The core, the verifier, the WSGI/ASGI adapters and the client need only the required dependencies.
    frameworks = ("django", "rest_framework", "flask", "werkzeug", "starlette", "fastapi", "redis", "httpx", "requests")
    frameworks = (*frameworks, "pkcs11")
    modules = ("dpop_middleware.client", "dpop_middleware.signer", "dpop_middleware.redaction")
    for module in ("dpop_middleware", "dpop_middleware.wsgi", "dpop_middleware.asgi", *modules):
        assert import_without(module, *frameworks) is None, module
