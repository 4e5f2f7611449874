"""Header fields that repeat (RFC 9110 §5.3), pure: one line per name, and the elements of a list."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["fold_fields", "list_elements"]


def fold_fields(fields: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``fields`` as a mapping, each repeated field's values joined with ``", "`` in order.

    RFC 9110 §5.3 allows combining the lines of a list field (several ``WWW-Authenticate``
    challenges, for one) into one; frameworks whose responses hold one value per name need it.
    """
    folded: dict[str, str] = {}
    for name, value in fields:
        folded[name] = f"{folded[name]}, {value}" if name in folded else value
    return folded


def list_elements(lines: Sequence[str]) -> list[str]:
    """The elements of a list field (RFC 9110 §5.6.1) sent as ``lines``: split at commas, trimmed, empties dropped.

    Repeated lines and comma-joined values (as WSGI servers deliver repeated fields) read the same.
    """
    return [element for line in lines for part in line.split(",") if (element := part.strip())]
