"""Route policy, pure: which paths need DPoP, which admit anonymous requests, which are left alone.

One model for every adapter (Django, Flask, Starlette/ASGI, WSGI); ``docs/routes.md`` is the guide.

* A route's **mode** is ``required`` (credentials needed), ``optional`` (anonymous requests pass,
  credentials that are sent must be valid) or ``exempt`` (never checked). Paths no rule names get
  ``default``, ``required`` unless configured otherwise.
* **Path rules** (``required_paths``, ``optional_paths``, ``exempt_paths``, ``path_scopes``) are
  segment prefixes: ``/health`` covers ``/health`` and ``/health/db`` but not ``/healthz``.
* **Pattern rules** (``*_path_patterns``) are regular expressions that must match the *whole* path
  (``re.fullmatch``): ``/v\\d+/health`` covers ``/v2/health`` but not ``/v2/health/db``.
* When rules overlap the **strictest mode wins**: a path under both ``required_paths`` and
  ``exempt_paths`` stays protected; ``default`` applies only where no rule matches.
* A path with dot segments is read literally (as routers do) and normalized (as proxies do), and the
  stricter decision of the two holds: ``/health/../admin`` is exempt only if ``/admin`` is. Scopes
  of either reading apply.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict, cast

from .htu import remove_dot_segments
from .step_up import StepUp, step_up_demand, step_up_rule

__all__ = [
    "MODES",
    "Route",
    "RouteDemands",
    "RouteMode",
    "RoutePolicy",
    "looks_like_regex",
    "mark_hidden",
    "marked_route",
    "path_matches",
    "route_of",
    "required_route",
    "scope_names",
]

RouteMode = Literal["required", "optional", "exempt"]
#: The route modes, strictest first.
MODES: tuple[RouteMode, ...] = ("required", "optional", "exempt")
_STRICTNESS = {mode: rank for rank, mode in enumerate(MODES)}
_DECISIONS_SIZE = 1024
# Characters that never occur in a plain path prefix but do in the regexes of older settings.
_REGEX_MARKS = frozenset("^$*+?()[]{}|\\")
_EMPTY_SEGMENTS = re.compile("/{2,}")

logger = logging.getLogger("dpop_middleware")


def scope_names(value: Iterable[str] | str | None, what: str = "scopes") -> tuple[str, ...]:
    """Scopes as a tuple: from a space-separated string or an iterable of strings (each may hold several).

    The one parser for scopes a route demands, used by every decorator, dependency and setting.
    Raises ``TypeError`` naming ``what`` for anything else (``None`` is no scope).
    """
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(dict.fromkeys(value.split()))
    if isinstance(value, (bytes, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(f"{what} must be a space-separated string or a list of strings, not {type(value).__name__}")
    names: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise TypeError(
                f"{what} must be a space-separated string or a list of strings, not a list holding {item!r}"
            )
        names.extend(item.split())
    return tuple(dict.fromkeys(names))


class RouteDemands(TypedDict, total=False):
    """What a view's decorator may demand besides credentials: ``scopes`` (all of them), and a
    step-up (RFC 9470): ``acr_values`` (any one of them), ``max_age`` (seconds since the user
    authenticated)."""

    scopes: Iterable[str] | str | None
    acr_values: Iterable[str] | str | None
    max_age: int | None


def required_route(what: str, demands: RouteDemands) -> Route:
    """The ``required`` route a decorator's ``demands`` describe; ``TypeError``/``ValueError`` name
    ``what``, also for a keyword it does not take (a misspelt demand must not be silently dropped)."""
    unknown = sorted(set(demands) - RouteDemands.__optional_keys__)
    if unknown:
        raise TypeError(f"{what}() got an unexpected keyword argument {unknown[0]!r}")
    scopes = scope_names(demands.get("scopes"), f"{what}(scopes=...)")
    if demands.get("scopes") is not None and not scopes:  # "" or []: a typo, not "no scope"
        raise ValueError(f"{what}(scopes=...) is empty (leave it out to demand no scope)")
    step_up = step_up_demand(demands.get("acr_values"), demands.get("max_age"), f"{what}(acr_values=..., max_age=...)")
    return Route("required", scopes, step_up)


def looks_like_regex(value: object) -> bool:
    """A path rule written as a regular expression (a compiled one, ``^...``, or regex metacharacters)."""
    return isinstance(value, re.Pattern) or (isinstance(value, str) and not _REGEX_MARKS.isdisjoint(value))


def path_matches(path: str, rule: str) -> bool:
    """``rule`` covers ``path`` itself and everything below it, by whole segments.

    ``/health`` covers ``/health`` and ``/health/db`` but not ``/healthz``; ``/`` covers everything.
    The path is taken literally here; :class:`RoutePolicy` decides how dot segments count.
    """
    if rule == "/":
        return True
    return path == rule or path.startswith(rule + "/")


def _prefix(path: object, what: str) -> str:
    if not isinstance(path, str):
        raise TypeError(f"{what}: a path must be a string, not {type(path).__name__}")
    if not path.startswith("/") or looks_like_regex(path):
        raise ValueError(
            f"{what}: {path!r} is not a path prefix; paths start with '/' and are matched by whole segments "
            "(put regular expressions in the *_path_patterns setting)"
        )
    return path.rstrip("/") or "/"


def _pattern(value: object, what: str) -> re.Pattern[str]:
    if isinstance(value, re.Pattern) and isinstance(value.pattern, str):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{what}: a pattern must be a regular expression string, not {type(value).__name__}")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"{what}: invalid regular expression {value!r}: {exc}") from None


def _readings(path: str) -> tuple[str, ...]:
    """The path as the framework routes it (literally) and with empty and dot segments removed.

    Frameworks route on the literal path (``/admin/{rest}`` serves ``/admin/../public``) while a
    normalizing proxy or server would see ``/public`` (and ``/admin`` for ``//admin``): a relaxing
    rule must hold for both, or a client picks the reading that suits it.
    """
    literal = path if path.startswith("/") else "/" + path
    if "/." not in literal and "//" not in literal:  # nothing to normalize: the common case, made cheap
        return (literal,)
    normal = remove_dot_segments(_EMPTY_SEGMENTS.sub("/", literal))
    return (literal,) if normal == literal else (literal, normal)


@dataclass(frozen=True, slots=True)
class Route:
    """The decision for one route: its mode, the scopes it needs and how (and how recently) the user
    must have authenticated (RFC 9470 step-up)."""

    mode: RouteMode
    scopes: tuple[str, ...] = ()
    step_up: StepUp | None = None
    # Derived once, read on every request: slots, not properties.
    required: bool = field(init=False, repr=False, compare=False)
    exempt: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in _STRICTNESS:
            raise ValueError(f"a route's mode is one of {', '.join(map(repr, MODES))}, not {self.mode!r}")
        object.__setattr__(self, "required", self.mode == "required")
        object.__setattr__(self, "exempt", self.mode == "exempt")

    def adding(self, path_route: Route) -> Route:
        """This route (a view's mark) with the demands of the path rules added: the mark decides the
        mode, and never drops a scope or a step-up that a path rule makes (an exempt mark keeps none)."""
        if self.exempt or (not path_route.scopes and path_route.step_up is None):
            return self
        scopes = tuple(dict.fromkeys((*self.scopes, *path_route.scopes)))
        step_up = path_route.step_up if self.step_up is None else self.step_up
        if self.step_up is not None and path_route.step_up is not None:
            step_up = self.step_up.combined(path_route.step_up)
        return Route(self.mode, scopes, step_up)

    def covers(self, other: Route) -> bool:
        """Whether a request checked under this route was checked for all that ``other`` demands."""
        if other.exempt:
            return True
        if self.exempt or (other.required and not self.required) or not set(other.scopes) <= set(self.scopes):
            return False
        mine, theirs = self.step_up, other.step_up
        return theirs is None or (mine is not None and mine.combined(theirs) == mine)


@dataclass(frozen=True)
class RoutePolicy:
    """Per-path policy: the same names, default and matching in every adapter (module docstring).

    Build it with :meth:`create`, which checks and normalizes the rules; :meth:`decide` answers for
    a path (the decoded path below the mount point, as the framework routes it).
    """

    default: RouteMode = "required"
    required_paths: tuple[str, ...] = ()
    optional_paths: tuple[str, ...] = ()
    exempt_paths: tuple[str, ...] = ()
    path_scopes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    path_step_up: tuple[tuple[str, StepUp], ...] = ()
    required_path_patterns: tuple[re.Pattern[str], ...] = ()
    optional_path_patterns: tuple[re.Pattern[str], ...] = ()
    exempt_path_patterns: tuple[re.Pattern[str], ...] = ()
    #: ``decide(path)``: the :class:`Route` for ``path``, the strictest mode any rule gives it (else
    #: ``default``) with every scope ``path_scopes`` demands there. Memoized per instance with
    #: ``functools.lru_cache`` (rules never change after creation and an API serves the same few
    #: paths; bounded, so a flood of distinct paths only evicts); set as an attribute so that a call
    #: is the cache's own, without a method call around it.
    decide: Callable[[str], Route] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.default not in _STRICTNESS:
            raise ValueError(f"default must be one of {', '.join(map(repr, MODES))}, not {self.default!r}")
        object.__setattr__(self, "decide", functools.lru_cache(maxsize=_DECISIONS_SIZE)(self._compute))

    @classmethod
    def create(
        cls,
        *,
        default: str | None = None,
        required_paths: Iterable[str] = (),
        optional_paths: Iterable[str] = (),
        exempt_paths: Iterable[str] = (),
        path_scopes: Mapping[str, Iterable[str] | str] | None = None,
        path_step_up: Mapping[str, StepUp | Mapping[str, Any]] | None = None,
        required_path_patterns: Iterable[str | re.Pattern[str]] = (),
        optional_path_patterns: Iterable[str | re.Pattern[str]] = (),
        exempt_path_patterns: Iterable[str | re.Pattern[str]] = (),
    ) -> RoutePolicy:
        """Check and normalize the rules; ``ValueError``/``TypeError`` name the faulty one."""
        return cls(
            default=cast("RouteMode", "required" if default is None else default),  # checked by __post_init__
            required_paths=tuple(_prefix(p, "required_paths") for p in _listed(required_paths)),
            optional_paths=tuple(_prefix(p, "optional_paths") for p in _listed(optional_paths)),
            exempt_paths=tuple(_prefix(p, "exempt_paths") for p in _listed(exempt_paths)),
            path_scopes=tuple(
                (_prefix(path, "path_scopes"), scope_names(value, f"path_scopes[{path!r}]"))
                for path, value in _by_path(path_scopes, "path_scopes").items()
            ),
            path_step_up=_step_up_rules(_by_path(path_step_up, "path_step_up")),
            required_path_patterns=tuple(
                _pattern(p, "required_path_patterns") for p in _listed(required_path_patterns)
            ),
            optional_path_patterns=tuple(
                _pattern(p, "optional_path_patterns") for p in _listed(optional_path_patterns)
            ),
            exempt_path_patterns=tuple(_pattern(p, "exempt_path_patterns") for p in _listed(exempt_path_patterns)),
        )

    def _compute(self, path: str) -> Route:
        readings = _readings(path)
        # MODES is strictest first: the least rank of the readings' modes is the stricter decision.
        mode = min((self._mode(reading) for reading in readings), key=_STRICTNESS.__getitem__)
        needed: list[str] = []
        for rule, scopes in self.path_scopes:
            if any(path_matches(reading, rule) for reading in readings):
                needed.extend(s for s in scopes if s not in needed)
        demand: StepUp | None = None
        for rule, step_up in self.path_step_up:
            if any(path_matches(reading, rule) for reading in readings):
                demand = step_up if demand is None else demand.combined(step_up)
        return Route(mode, tuple(needed), demand)

    def _mode(self, path: str) -> RouteMode:
        """The strictest mode a rule gives one reading of the path, else the default."""
        for mode, prefixes, patterns in (
            ("required", self.required_paths, self.required_path_patterns),
            ("optional", self.optional_paths, self.optional_path_patterns),
            ("exempt", self.exempt_paths, self.exempt_path_patterns),
        ):
            if any(path_matches(path, rule) for rule in prefixes) or any(p.fullmatch(path) for p in patterns):
                return cast("RouteMode", mode)
        return self.default


def _by_path(rules: object, what: str) -> Mapping[Any, Any]:
    if rules is None:
        return {}
    if not isinstance(rules, Mapping):
        raise TypeError(f"{what} must be a dict {{path prefix: ...}}, not {type(rules).__name__}")
    return rules


def _step_up_rules(rules: Mapping[str, StepUp | Mapping[str, Any]]) -> tuple[tuple[str, StepUp], ...]:
    """The ``path_step_up`` rules checked; rules over one path that no token could satisfy together
    are a configuration error, named here rather than refused on every request."""
    checked = tuple(
        (_prefix(path, "path_step_up"), step_up_rule(value, f"path_step_up[{path!r}]")) for path, value in rules.items()
    )
    for prefix, _ in checked:
        # What a path at this rule gets: every rule that covers it (a chain of nested prefixes).
        covering = [(rule, demand) for rule, demand in checked if path_matches(prefix, rule)]
        demand = covering[0][1]
        for _, other in covering[1:]:
            demand = demand.combined(other)
        if demand.unsatisfiable:
            names = " and ".join(f"path_step_up[{rule!r}]" for rule, _ in covering)
            raise ValueError(f"{names} cover {prefix!r} but accept no acr value in common")
    return checked


@functools.lru_cache(maxsize=_DECISIONS_SIZE)
def marked_route(mark: Route, by_path: Route) -> Route:
    """:meth:`Route.adding`, memoized (a request to a marked view under a demanding path rule pays a
    lookup, not a new ``Route``); a mark and a path rule that no token can satisfy together are a
    configuration error, logged once at ERROR, and the route refuses every request (fail closed)."""
    route = mark.adding(by_path)
    if route.step_up is not None and route.step_up.unsatisfiable:
        logger.error(
            "dpop: a view demands acr_values %r where a path rule demands %r: no token can meet both, so "
            "every request there is refused; make them share an acr value",
            " ".join(mark.step_up.acr_values if mark.step_up else ()),
            " ".join(by_path.step_up.acr_values if by_path.step_up else ()),
            extra={"dpop_reason": "step_up_conflict"},
        )
    return route


def route_of(marks: tuple[Route, ...], by_path: Route) -> Route:
    """The route a request gets: the first of a view's ``marks`` (the most specific) with the path
    rules' demands added, else the path rules' own decision."""
    return marked_route(marks[0], by_path) if marks else by_path


def mark_hidden(mark: Route, applied: object, seen: tuple[Route, ...], *, inherited: bool = False) -> bool:
    """Whether a guarded view's ``mark`` was hidden from the layer that checked the request: it did
    not see it among the view's marks (``seen``) and ``applied`` less. ``inherited``: a class's guard,
    which a subclass inherits; then any mark the layer saw (the subclass's, a method's) was its choice."""
    if not isinstance(applied, Route) or mark in seen or (inherited and seen):
        return False
    return not applied.covers(mark)


def _listed(values: Iterable[Any] | str | re.Pattern[str]) -> Iterable[Any]:
    # One string (or one compiled pattern) is one rule, not a list of characters.
    return (values,) if isinstance(values, (str, re.Pattern)) else values
