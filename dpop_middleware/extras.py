"""The one message for an optional dependency that is not installed."""

from __future__ import annotations

import importlib
from typing import NoReturn

__all__ = ["missing_extra", "require_extra"]


def missing_extra(exc: ModuleNotFoundError, module: str, needs: str, extra: str) -> NoReturn:
    """Raise an ``ImportError`` that says which extra to install when ``module`` itself is missing.

    ``needs`` is what needs it ("the Flask adapter needs Flask"). When the missing module is another
    one (something ``module`` imports), ``exc`` is raised as it is: its own message says which.
    """
    if exc.name != module:
        raise exc
    raise ImportError(f"{needs}: pip install 'dpop-middleware[{extra}]'") from exc


def require_extra(module: str, needs: str, extra: str) -> None:
    """Import ``module`` first, so that its absence is reported by :func:`missing_extra`."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing_extra(exc, module, needs, extra)
