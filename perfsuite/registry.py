"""Registries of named items (models, techniques) that remember where each entry came from.

Every entry reaches a :class:`Registry` the same way, perfsuite's own included: an entry point of the
registry's group (``perfsuite.models``, ``perfsuite.techniques``, declared in a package's
``pyproject.toml``), a pytest hook (see :mod:`perfsuite.hookspecs`), or :meth:`Registry.register`
from code. Each entry keeps its source, so a name registered twice is an error that names both.

Entry points are loaded once per process, on first use. The object an entry point names is an item,
an iterable of items, or a callable without arguments that returns either. A single item must carry
the entry point's name; the entry name of an iterable is only a label. An entry point that fails to
import or gives something else is an error that names it.

Registrations made by a pytest session live in a :meth:`Registry.layer` that is dropped when the
session ends, so one session's models never leak into the next one of the same process.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

__all__ = [
    "NAME_PATTERN",
    "DuplicateNameError",
    "EntryPointError",
    "Registered",
    "Registry",
    "RegistryError",
    "caller_source",
]

#: What a registered name may hold: it appears in test ids, combo ids (joined by ``+``) and folder names.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

_OWN_DISTRIBUTION = "perfsuite"


class RegistryError(ValueError):
    """A registration that cannot be accepted; the message names its source and the fix."""


class DuplicateNameError(RegistryError):
    """A name registered twice; the message names both sources."""


class EntryPointError(RegistryError):
    """An entry point that fails to import or gives something other than the registry's items."""


class _Named(Protocol):
    @property
    def name(self) -> str: ...


T = TypeVar("T", bound=_Named)


@dataclass(frozen=True)
class Registered(Generic[T]):
    """One entry: the item under its name, and where it was registered."""

    name: str
    item: T
    source: str


def caller_source(depth: int = 2) -> str:
    """``file:line`` of the code that called the caller of this function (a registration's source)."""
    frame = sys._getframe(depth)
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


class Registry(Generic[T]):
    """Name -> item, filled from the entry-point ``group``, then from code and hooks, in that order.

    ``kind`` names the items in messages ("model", "technique"); ``item_type`` is what is accepted;
    ``check(item)`` raises ``ValueError`` for an item that breaks the registry's own rules.
    """

    def __init__(
        self,
        kind: str,
        group: str,
        item_type: type[T],
        check: Callable[[T], None] | None = None,
    ) -> None:
        self.kind = kind
        self.group = group
        self._type = item_type
        self._check = check
        self._entry_points: dict[str, Registered[T]] | None = None
        # The bottom layer holds what code registered; pytest sessions push their own on top.
        self._layers: list[dict[str, Registered[T]]] = [{}]

    # --- reading ----------------------------------------------------------------------------------

    def entries(self) -> tuple[Registered[T], ...]:
        """Every entry: entry points first (perfsuite's own, then other packages'), then the rest
        in the order they were registered."""
        layers = [self._loaded(), *self._layers]
        return tuple(entry for layer in layers for entry in layer.values())

    def names(self) -> tuple[str, ...]:
        return tuple(entry.name for entry in self.entries())

    def lookup(self, name: str) -> Registered[T] | None:
        """The entry of ``name``, or ``None``."""
        for layer in (self._loaded(), *self._layers):
            if name in layer:
                return layer[name]
        return None

    def get(self, name: str) -> T:
        """The item registered as ``name``; ``KeyError`` listing the known names otherwise."""
        entry = self.lookup(name)
        if entry is None:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or 'none'}")
        return entry.item

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.lookup(name) is not None

    # --- writing ----------------------------------------------------------------------------------

    def register(self, item: T, source: str) -> T:
        """Add ``item`` under its name. A name already registered raises :class:`DuplicateNameError`."""
        entry = self._validated(item, source)
        self._add(self._layers[-1], entry)
        return item

    @contextmanager
    def layer(self) -> Iterator[None]:
        """Registrations made inside the block are dropped when it ends (one pytest session)."""
        self._loaded()  # entry points belong to the process, never to a layer
        layer: dict[str, Registered[T]] = {}
        self._layers.append(layer)
        try:
            yield
        finally:
            # By identity: another layer may be equal (two empty dicts) and must stay.
            self._layers[:] = [other for other in self._layers if other is not layer]

    def _validated(self, item: Any, source: str) -> Registered[T]:
        if not isinstance(item, self._type):
            raise RegistryError(
                f"{source}: gives a {type(item).__name__} ({item!r:.80}), expected a "
                f"{self._type.__module__}.{self._type.__name__}"
            )
        name = item.name
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise RegistryError(
                f"{source}: invalid {self.kind} name {name!r}: use letters, digits and '._-', "
                "starting with a letter or digit"
            )
        if self._check is not None:
            try:
                self._check(item)
            except ValueError as exc:
                raise RegistryError(f"{source}: {self.kind} {name!r}: {exc}") from None
        return Registered(name, item, source)

    def _add(self, layer: dict[str, Registered[T]], entry: Registered[T]) -> None:
        existing = self.lookup(entry.name)  # loads the entry points first
        if existing is not None:
            raise DuplicateNameError(
                f"{self.kind} {entry.name!r} is registered twice: by {existing.source} and by "
                f"{entry.source}; rename one of them"
            )
        layer[entry.name] = entry

    # --- entry points -----------------------------------------------------------------------------

    def _loaded(self) -> dict[str, Registered[T]]:
        if self._entry_points is None:
            loaded: dict[str, Registered[T]] = {}
            for entry_point in _ordered(metadata.entry_points(group=self.group)):
                for entry in self._from_entry_point(entry_point):
                    if entry.name in loaded:
                        raise DuplicateNameError(
                            f"{self.kind} {entry.name!r} is registered twice: by "
                            f"{loaded[entry.name].source} and by {entry.source}; rename one of them"
                        )
                    loaded[entry.name] = entry
            _check_own_entry_points(self.group, self.kind)
            self._entry_points = loaded
        return self._entry_points

    def _from_entry_point(self, entry_point: metadata.EntryPoint) -> list[Registered[T]]:
        source = _describe(entry_point)
        try:
            obj = entry_point.load()
        except Exception as exc:  # any import-time error of a third-party module: re-raised, named
            raise EntryPointError(
                f"{self.kind} {source} failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        if callable(obj) and not isinstance(obj, self._type):
            try:
                obj = obj()
            except Exception as exc:  # the factory's own error, re-raised with the entry point named
                raise EntryPointError(
                    f"{self.kind} {source}: calling {entry_point.value} raised {type(exc).__name__}: {exc}"
                ) from exc
        if isinstance(obj, self._type) and obj.name != entry_point.name:
            raise EntryPointError(
                f"{source} gives the {self.kind} {obj.name!r}; an entry point that gives one "
                f"{self.kind} must have its name (write `{obj.name} = {entry_point.value}`)"
            )
        return self._coerce(obj, source, EntryPointError)

    def register_all(self, obj: object, source: str) -> list[T]:
        """Register what a hook returned: one item, an iterable of items, or ``None`` (nothing)."""
        entries = [] if obj is None else self._coerce(obj, source, RegistryError)
        for entry in entries:
            self._add(self._layers[-1], entry)
        return [entry.item for entry in entries]

    def _coerce(self, obj: object, source: str, error: type[RegistryError]) -> list[Registered[T]]:
        if isinstance(obj, self._type):
            return [self._validated(obj, source)]
        if isinstance(obj, Iterable) and not isinstance(obj, str | bytes):
            return [self._validated(item, source) for item in obj]
        raise error(
            f"{source} gives a {type(obj).__name__}; expected a {self._type.__name__}, an iterable of "
            f"them, or a callable without arguments that returns either"
        )


def _describe(entry_point: metadata.EntryPoint) -> str:
    dist = entry_point.dist
    package = f" of {dist.metadata['Name']} {dist.version}" if dist is not None else ""
    return f"entry point '{entry_point.name} = {entry_point.value}' ({entry_point.group}){package}"


def _dist_name(entry_point: metadata.EntryPoint) -> str:
    dist = entry_point.dist
    return (dist.metadata["Name"] or "") if dist is not None else ""


def _ordered(entry_points: Iterable[metadata.EntryPoint]) -> list[metadata.EntryPoint]:
    """perfsuite's own entry points first, then other packages' by package name; each package's in
    the order of its ``pyproject.toml`` (which metadata keeps)."""
    by_dist: dict[str, list[metadata.EntryPoint]] = {}
    for entry_point in entry_points:
        by_dist.setdefault(_dist_name(entry_point), []).append(entry_point)
    order = sorted(by_dist, key=lambda name: (name.lower() != _OWN_DISTRIBUTION, name.lower()))
    return [entry_point for name in order for entry_point in by_dist[name]]


def _check_own_entry_points(group: str, kind: str) -> None:
    """In a source checkout, the installed entry points of perfsuite must be those of its
    ``pyproject.toml``: an editable install keeps the list of the day it was installed, so an entry
    added since then would be silently missing."""
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    if not pyproject.is_file():
        return  # an installed wheel: its metadata is the declaration
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return
    if project.get("name") != _OWN_DISTRIBUTION:
        return
    declared = set(project.get("entry-points", {}).get(group, {}))
    installed = {
        ep.name for ep in metadata.entry_points(group=group) if _dist_name(ep).lower() == _OWN_DISTRIBUTION
    }
    if declared != installed:
        missing, extra = sorted(declared - installed), sorted(installed - declared)
        detail = "; ".join(
            part
            for part in (
                f"not installed: {', '.join(missing)}" if missing else "",
                f"no longer declared: {', '.join(extra)}" if extra else "",
            )
            if part
        )
        raise EntryPointError(
            f"perfsuite's installed {kind} entry points ({group}) differ from {pyproject} ({detail}); "
            "the package metadata is out of date: reinstall perfsuite (python -m pip install -e .)"
        )
