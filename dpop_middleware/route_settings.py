"""The route-policy settings (``DPOP['EXEMPT_PATHS']``, ``DPOP_DEFAULT``...) -> one :class:`RoutePolicy`.

Shared by the Django and Flask adapters, after :func:`dpop_middleware.settings.read_settings` has
type-checked the values; errors are :class:`~dpop_middleware.settings.SettingsError` naming the key.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

from .core.routes import MODES, RoutePolicy, looks_like_regex
from .settings import ROUTE_NAMES, SettingsError, Spell

__all__ = ["build_route_policy", "legacy_regexes", "prefix_pattern"]

# A leading inline-flags group, which must stay first when a pattern is wrapped (Python >= 3.11).
_GLOBAL_FLAGS = re.compile(r"\(\?[aiLmsux]+\)")


def prefix_pattern(value: str | re.Pattern[str]) -> re.Pattern[str]:
    """A pattern whose ``fullmatch`` is ``re.match(value, path)``: what Django's regex paths meant.

    ``re.match`` anchors only at the start (``^/health`` also matched ``/healthz``); the pattern
    settings match whole paths, so the deprecated spelling keeps its meaning by allowing any tail.
    """
    compiled = re.compile(value)  # re.error here names the user's own pattern, not our wrapping
    source, flags = compiled.pattern, compiled.flags
    head = _GLOBAL_FLAGS.match(source)
    lead = head.group() if head else ""
    return re.compile(f"{lead}(?:{source[len(lead) :]})(?s:.*)", flags)


def legacy_regexes(values: Mapping[str, Any]) -> dict[str, list[str | re.Pattern[str]]]:
    """``{"exempt_paths": [regex, ...], ...}``: values of the ``*_paths`` settings written as regexes."""
    found: dict[str, list[str | re.Pattern[str]]] = {}
    for mode in MODES:
        regexes = [value for value in values.get(f"{mode}_paths", ()) if looks_like_regex(value)]
        if regexes:
            found[f"{mode}_paths"] = regexes
    return found


def _deprecated(name: str, regexes: list[str | re.Pattern[str]], spell: Spell) -> str:
    shown = ", ".join(repr(r.pattern if isinstance(r, re.Pattern) else r) for r in regexes[:3])
    patterns = spell(name.replace("_paths", "_path_patterns"))
    return (
        f"{spell(name)} holds regular expressions ({shown}); they are read as before (re.match, anchored "
        f"at the start only) for one more release. {spell(name)} takes path prefixes matched by whole "
        f"segments ('/health' covers '/health/db', not '/healthz'): move regexes to {patterns}, where a "
        "regex must match the whole path (add '.*' to keep a prefix)"
    )


def build_route_policy(values: Mapping[str, Any], *, spell: Spell, legacy: bool = False) -> RoutePolicy:
    """The :class:`RoutePolicy` that ``values`` (canonical names) describe.

    ``legacy``: regexes in the ``*_paths`` settings (the Django adapter's former spelling) are read
    as before, with a ``DeprecationWarning``; otherwise they are an error naming the right setting.
    """
    patterns: dict[str, list[str | re.Pattern[str]]] = {
        f"{mode}_path_patterns": list(values.get(f"{mode}_path_patterns", ())) for mode in MODES
    }
    prefixes: dict[str, list[str]] = {}
    regexes = legacy_regexes(values)
    for mode in MODES:
        name = f"{mode}_paths"
        found = regexes.get(name, [])
        if found and not legacy:
            raise SettingsError(
                spell(name),
                f"must hold path prefixes matched by whole segments, not regular expressions ({found[0]!r}): "
                f"put regexes in {spell(f'{mode}_path_patterns')} (matched against the whole path)",
                name=name,
            )
        if found:
            warnings.warn(_deprecated(name, found, spell), DeprecationWarning, stacklevel=4)
            try:
                patterns[f"{mode}_path_patterns"].extend(prefix_pattern(r) for r in found)
            except re.error as exc:
                raise SettingsError(spell(name), f"holds an invalid regular expression: {exc}", name=name) from None
        prefixes[name] = [p for p in values.get(name, ()) if not looks_like_regex(p)]
    ruled = [(name, list(values.get(name, {}))) for name in ("path_scopes", "path_step_up")]
    for name, paths in (*prefixes.items(), *ruled):
        wrong = next((p for p in paths if not p.startswith("/")), None)
        if wrong is not None:
            raise SettingsError(
                spell(name), f"must hold paths starting with '/' (matched by whole segments), not {wrong!r}", name=name
            )
    try:
        return RoutePolicy.create(
            default=values.get("default", "required"),
            required_paths=prefixes["required_paths"],
            optional_paths=prefixes["optional_paths"],
            exempt_paths=prefixes["exempt_paths"],
            path_scopes=values.get("path_scopes"),
            path_step_up=values.get("path_step_up"),
            required_path_patterns=patterns["required_path_patterns"],
            optional_path_patterns=patterns["optional_path_patterns"],
            exempt_path_patterns=patterns["exempt_path_patterns"],
        )
    except (TypeError, ValueError) as exc:  # the table checked each value; what is left is between rules
        message = str(exc)
        name = next((n for n in sorted(ROUTE_NAMES, key=len, reverse=True) if message.startswith(n)), "")
        raise SettingsError(spell(name) if name else "DPoP route policy", f"is not usable: {exc}", name=name) from None
