"""The registry of inference optimizations: one entry per technique of the accelerate-inference guide.

Each :class:`Technique` says what it needs (``requires`` returns a skip reason or ``None``), how to
switch it on (``apply`` changes the pipeline in place, ``context`` wraps every call for
process-wide settings and restores them), and how to prove it is on: ``verify`` inspects the
pipeline after it was applied, and ``verify_trace`` inspects what a profiled call after warm-up
really ran. A technique that cannot prove itself fails the case instead of being timed as if it
had worked.

Techniques live in :data:`REGISTRY`, filled from the ``perfsuite.techniques`` entry-point group:
perfsuite's own (listed in :mod:`perfsuite.optimizations.builtin`) come through its entry point
there like any other package's. A
pytest session adds the techniques of ``pytest_perfsuite_techniques`` hooks; code calls
:func:`register_technique`. :data:`TECHNIQUES` and :data:`GROUPS` are live views of the registry.

Group order (the order of tokens in a combo id): perfsuite's own groups in :data:`BUILTIN_GROUPS`
order, then every group that only registered techniques use, in alphabetical order of the group
name. The order does not depend on which package loads first, so a combo id is the same on every
machine.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import overload

from perfsuite.optimizations.base import (
    DTYPES,
    GlobalSetting,
    NotActiveError,
    RunTrace,
    Target,
    Technique,
    Unsupported,
    torch_dtype,
)
from perfsuite.optimizations.builtin import BUILTIN_GROUPS
from perfsuite.optimizations.compilation import INDUCTOR_FLAGS, INDUCTOR_INT8_FLAGS, inductor_flags_for
from perfsuite.optimizations.quantization import dynamic_quant_filter, is_int8_weight
from perfsuite.registry import NAME_PATTERN, Registry, caller_source

__all__ = [
    "BUILTIN_GROUPS",
    "DTYPES",
    "GROUPS",
    "INDUCTOR_FLAGS",
    "INDUCTOR_INT8_FLAGS",
    "REGISTRY",
    "TECHNIQUES",
    "GlobalSetting",
    "NotActiveError",
    "RunTrace",
    "Target",
    "Technique",
    "Unsupported",
    "dynamic_quant_filter",
    "get_technique",
    "inductor_flags_for",
    "is_int8_weight",
    "register_technique",
    "torch_dtype",
]

_HOOKS = ("requires", "apply", "context", "verify_trace")


def _check_technique(technique: Technique) -> None:
    if not isinstance(technique.group, str) or not NAME_PATTERN.fullmatch(technique.group):
        raise ValueError(f"invalid group {technique.group!r}: use letters, digits and '._-'")
    if technique.group == "dtype" and technique.name not in DTYPES:
        raise ValueError(f"the dtype group holds only {', '.join(DTYPES)}; choose another group")
    if not callable(technique.verify):
        raise ValueError("verify is not callable; it must be verify(pipe, target) -> list of evidence")
    for hook in _HOOKS:
        if getattr(technique, hook) is not None and not callable(getattr(technique, hook)):
            raise ValueError(f"{hook} is not callable")
    names = []
    for setting in technique.touches:
        if not isinstance(setting, GlobalSetting):
            raise ValueError(
                f"touches holds a {type(setting).__name__}; declare each global as a GlobalSetting"
            )
        names.append(setting.name)
    if len(set(names)) != len(names):
        raise ValueError(f"touches declares a global twice: {sorted(names)}")


#: Every technique with its source. perfsuite's own come from its ``perfsuite.techniques`` entry points.
REGISTRY: Registry[Technique] = Registry("technique", "perfsuite.techniques", Technique, _check_technique)


def register_technique(technique: Technique, source: str | None = None) -> Technique:
    """Add ``technique``; a name that exists already is an error naming both sources."""
    return REGISTRY.register(technique, source or f"register_technique() at {caller_source()}")


class _Techniques(Mapping[str, Technique]):
    """Name -> technique, read from :data:`REGISTRY` at each access."""

    def __getitem__(self, name: str) -> Technique:
        entry = REGISTRY.lookup(name)
        if entry is None:
            raise KeyError(name)
        return entry.item

    def __iter__(self) -> Iterator[str]:
        return iter(REGISTRY.names())

    def __len__(self) -> int:
        return len(REGISTRY.names())

    def __repr__(self) -> str:
        return f"TECHNIQUES({', '.join(self)})"


class _Groups(Sequence[str]):
    """:data:`BUILTIN_GROUPS`, then the groups only registered techniques use, alphabetically."""

    def _current(self) -> tuple[str, ...]:
        extra = {entry.item.group for entry in REGISTRY.entries()} - set(BUILTIN_GROUPS)
        return (*BUILTIN_GROUPS, *sorted(extra))

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...

    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        return self._current()[index]

    def __len__(self) -> int:
        return len(self._current())

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __repr__(self) -> str:
        return f"GROUPS{self._current()!r}"


#: Every registered technique by name (a live, read-only view of :data:`REGISTRY`).
TECHNIQUES: Mapping[str, Technique] = _Techniques()

#: Technique groups in the order their tokens appear in a combo id (a live view; see the module doc).
GROUPS: Sequence[str] = _Groups()


def get_technique(name: str) -> Technique:
    """The registry entry of ``name``; an unknown name lists the known ones."""
    entry = REGISTRY.lookup(name)
    if entry is None:
        raise KeyError(f"unknown technique {name!r}; known techniques: {', '.join(TECHNIQUES)}")
    return entry.item
