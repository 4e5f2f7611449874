"""Per-path policy for adapters that configure routes by path (WSGI, Flask, Starlette), pure.

A rule covers its path and everything below it, by whole segments, so ``/health`` covers
``/health/db`` but not ``/healthz``. A path with dot segments is read both literally (as routers
do) and normalized (as proxies do): ``/health/../admin`` is exempt only if both readings are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .htu import remove_dot_segments

__all__ = ["PathDecision", "PathRules", "path_matches"]

#: ``(exempt, required, scopes)`` for one path: what :meth:`PathRules.decide` answers.
PathDecision = tuple[bool, bool, tuple[str, ...]]
_DECISIONS_SIZE = 1024


def _normalized_rule(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"path rules must start with '/': {path!r}")
    return path.rstrip("/") or "/"


def path_matches(path: str, rule: str) -> bool:
    """``rule`` covers ``path`` itself and everything below it, by whole segments.

    ``/health`` covers ``/health`` and ``/health/db`` but not ``/healthz``; ``/`` covers everything.
    The path is taken literally here; :class:`PathRules` decides how dot segments count.
    """
    if rule == "/":
        return True
    return path == rule or path.startswith(rule + "/")


def _forms(path: str) -> tuple[str, ...]:
    """The path as the framework routes it (literally) and with its dot segments removed.

    Frameworks route on the literal path (``/admin/{rest}`` serves ``/admin/../public``) while a
    normalizing proxy would see ``/public``: a rule must hold for both readings, or a client picks
    the one that suits it.
    """
    literal = path if path.startswith("/") else "/" + path
    if "/." not in literal:  # no "." or ".." segment can exist: the common case, made cheap
        return (literal,)
    normal = remove_dot_segments(literal)
    return (literal,) if normal == literal else (literal, normal)


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
    _decisions: dict[str, PathDecision] = field(default_factory=dict, init=False, repr=False, compare=False)

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

    def decide(self, path: str) -> PathDecision:
        """``(is_exempt, is_required, scopes_for)`` of ``path`` at once, memoized per path.

        Adapters ask this on every request, and an API serves the same few paths; the memo is
        bounded (a flood of distinct paths only empties it) and rules never change after creation.
        """
        decision = self._decisions.get(path)
        if decision is None:
            decision = (self.is_exempt(path), self.is_required(path), self.scopes_for(path))
            if len(self._decisions) >= _DECISIONS_SIZE:
                self._decisions.clear()
            self._decisions[path] = decision
        return decision

    # Relaxing rules (exempt, optional) must hold for every reading of the path; restricting ones
    # (scopes) apply if any reading matches. Fail closed either way.

    def is_exempt(self, path: str) -> bool:
        return all(any(path_matches(form, rule) for rule in self.exempt) for form in _forms(path))

    def is_required(self, path: str) -> bool:
        if all(any(path_matches(form, rule) for rule in self.optional) for form in _forms(path)):
            return False
        return self.required

    def scopes_for(self, path: str) -> tuple[str, ...]:
        needed: list[str] = []
        forms = _forms(path)
        for rule, scopes in self.scopes:
            if any(path_matches(form, rule) for form in forms):
                needed.extend(s for s in scopes if s not in needed)
        return tuple(needed)
