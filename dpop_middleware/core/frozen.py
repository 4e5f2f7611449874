"""A positional constructor for frozen, slotted dataclasses built once per request on the hot path.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, a slot-wrapper
call per field: for the 12 fields of a principal that is about twice the cost of writing the slots
through their member descriptors (``docs/performance-notes.md``). The object built either way is the
same, and stays immutable: its ``__setattr__`` still refuses.
"""

from __future__ import annotations

import dataclasses
import keyword
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["positional_constructor"]

T = TypeVar("T")


def positional_constructor(cls: type[T]) -> Callable[..., T]:
    """A function taking every field of ``cls`` positionally, in field order, that builds an instance
    without running its frozen ``__init__`` (no defaults, no ``__post_init__``: callers pass them all).
    """
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in vars(cls) or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} must be a frozen, slotted dataclass without __post_init__")
    if not all(name.isidentifier() and not keyword.iskeyword(name) for name in names):  # pragma: no cover
        raise TypeError(f"{cls.__name__} has a field name that cannot be a parameter")
    # Generated like dataclasses' own __init__, unrolled: one member-descriptor call per field.
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    namespace.update((f"_set_{name}", getattr(cls, name).__set__) for name in names)
    body = "".join(f"    _set_{name}(self, {name})\n" for name in names)
    exec(f"def build({', '.join(names)}):\n    self = _new(_cls)\n{body}    return self\n", namespace)  # noqa: S102
    built: Callable[..., T] = namespace["build"]
    built.__qualname__ = f"positional_constructor({cls.__name__})"
    return built
