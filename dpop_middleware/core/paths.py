"""Per-path policy for adapters that configure routes by path (WSGI, Flask, Starlette), pure.

A rule covers its path and everything below it, by whole segments, after dot-segment removal, so
``/health`` covers ``/health/db`` but not ``/healthz``, and ``/health/../admin`` is ``/admin``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .htu import remove_dot_segments

__all__ = ["PathRules", "path_matches"]


def _normalized_rule(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"path rules must start with '/': {path!r}")
    return path.rstrip("/") or "/"


def path_matches(path: str, rule: str) -> bool:
    """``rule`` covers ``path`` itself and everything below it, by whole segments.

    ``/health`` covers ``/health`` and ``/health/db`` but not ``/healthz``; ``/`` covers everything.
    ``path`` has its dot segments removed first, so ``/health/../admin`` is matched as ``/admin``.
    """
    clean = remove_dot_segments(path if path.startswith("/") else "/" + path)
    if rule == "/":
        return True
    return clean == rule or clean.startswith(rule + "/")


@dataclass(frozen=True)
class PathRules:
    """Per-path policy below the mount point (paths are matched against ``PATH_INFO``).

    ``exempt``: never checked; ``optional``: anonymous requests pass (``environ["dpop"]`` is
    ``None``) but credentials, when sent, must be valid; ``scopes``: scopes required below a path
    (every matching rule applies). Paths not listed follow ``required``.
    """

    exempt: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    scopes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    required: bool = True

    @classmethod
    def create(
        cls,
        *,
        required: bool = True,
        exempt_paths: Iterable[str] = (),
        optional_paths: Iterable[str] = (),
        path_scopes: Mapping[str, Iterable[str] | str] | None = None,
    ) -> PathRules:
        scopes = tuple(
            (_normalized_rule(path), tuple(value.split()) if isinstance(value, str) else tuple(value))
            for path, value in (path_scopes or {}).items()
        )
        return cls(
            exempt=tuple(_normalized_rule(p) for p in exempt_paths),
            optional=tuple(_normalized_rule(p) for p in optional_paths),
            scopes=scopes,
            required=required,
        )

    def is_exempt(self, path: str) -> bool:
        return any(path_matches(path, rule) for rule in self.exempt)

    def is_required(self, path: str) -> bool:
        if any(path_matches(path, rule) for rule in self.optional):
            return False
        return self.required

    def scopes_for(self, path: str) -> tuple[str, ...]:
        needed: list[str] = []
        for rule, scopes in self.scopes:
            if path_matches(path, rule):
                needed.extend(s for s in scopes if s not in needed)
        return tuple(needed)
