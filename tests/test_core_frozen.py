"""The hot path's positional constructor builds the same immutable object as the dataclass's own init."""

from __future__ import annotations

import dataclasses

import pytest

from dpop_middleware.core.binding import DPoPPrincipal
from dpop_middleware.core.frozen import positional_constructor
from dpop_middleware.verifier import AuthResult


def _every_field(cls: type) -> tuple[object, ...]:
    return tuple(f"value-{f.name}" for f in dataclasses.fields(cls))


@pytest.mark.parametrize("cls", [DPoPPrincipal, AuthResult])
def test_builds_what_the_dataclass_init_builds(cls: type) -> None:
    values = _every_field(cls)
    built = positional_constructor(cls)(*values)
    assert type(built) is cls
    assert built == cls(*values)
    assert repr(built) == repr(cls(*values))


def test_the_object_it_builds_stays_frozen() -> None:
    principal = positional_constructor(DPoPPrincipal)(*_every_field(DPoPPrincipal))
    with pytest.raises(dataclasses.FrozenInstanceError):
        principal.jkt = "another key"  # type: ignore[misc]


def test_every_field_must_be_given() -> None:
    build = positional_constructor(DPoPPrincipal)
    with pytest.raises(TypeError):
        build("DPoP", {})


@dataclasses.dataclass(slots=True)
class _Mutable:
    a: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Checked:
    a: int

    def __post_init__(self) -> None:
        raise AssertionError("a check the constructor would skip")


@dataclasses.dataclass(frozen=True)
class _NoSlots:
    a: int


@pytest.mark.parametrize("cls", [_Mutable, _Checked, _NoSlots])
def test_refuses_a_class_whose_init_it_cannot_stand_in_for(cls: type) -> None:
    with pytest.raises(TypeError, match="frozen, slotted dataclass without __post_init__"):
        positional_constructor(cls)
