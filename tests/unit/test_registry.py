"""The generic registry: sources, duplicates, session layers, entry points (loaded once, named on error)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from perfsuite import registry as registry_module
from perfsuite.registry import DuplicateNameError, EntryPointError, Registry, RegistryError

GROUP = "perfsuite-tests.items"


@dataclass(frozen=True)
class Item:
    name: str
    size: int = 1


def _check(item: Item) -> None:
    if item.size < 0:
        raise ValueError(f"size {item.size} is negative")


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A module ``perfsuite_test_items`` on sys.path with the objects entry points will name."""
    (tmp_path / "perfsuite_test_items.py").write_text(
        "from tests_registry_item import Item\n"
        "ONE = Item('one')\n"
        "MANY = (Item('two'), Item('three'))\n"
        "def factory():\n    return [Item('four')]\n"
        "def broken_factory():\n    raise RuntimeError('no GPU here')\n"
        "NOT_AN_ITEM = 42\n"
        "MIXED = (Item('five'), 'six')\n"
    )
    (tmp_path / "tests_registry_item.py").write_text(
        "from dataclasses import dataclass\n"
        "@dataclass(frozen=True)\nclass Item:\n    name: str\n    size: int = 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("perfsuite_test_items", "tests_registry_item"):
        sys.modules.pop(name, None)
    yield
    for name in ("perfsuite_test_items", "tests_registry_item"):
        sys.modules.pop(name, None)


def _with_entry_points(monkeypatch: pytest.MonkeyPatch, *pairs: tuple[str, str]) -> None:
    points = [metadata.EntryPoint(name, value, GROUP) for name, value in pairs]
    real = metadata.entry_points

    def fake(**kwargs):
        return (
            [p for p in points if p.group == kwargs.get("group")]
            if kwargs.get("group") == GROUP
            else real(**kwargs)
        )

    monkeypatch.setattr(registry_module.metadata, "entry_points", fake)


def _registry() -> Registry:
    import tests_registry_item

    return Registry("item", GROUP, tests_registry_item.Item, _check)


def test_register_lookup_and_source() -> None:
    registry = Registry("item", GROUP, Item, _check)
    registry.register(Item("a"), "test source")
    assert registry.get("a") == Item("a")
    assert registry.lookup("a").source == "test source"
    assert "a" in registry and "b" not in registry
    with pytest.raises(KeyError, match="unknown item 'b'; known: a"):
        registry.get("b")


def test_a_name_registered_twice_names_both_sources() -> None:
    registry = Registry("item", GROUP, Item, _check)
    registry.register(Item("a"), "conftest.py at the root")
    with pytest.raises(
        DuplicateNameError, match=r"item 'a' is registered twice: by conftest\.py at the root and by plugin x"
    ):
        registry.register(Item("a", size=2), "plugin x")


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("not an item", r"gives a str .* expected a .*Item"),
        (Item("a+b"), "invalid item name 'a\\+b'"),
        (Item(""), "invalid item name ''"),
        (Item("x", size=-1), "item 'x': size -1 is negative"),
    ],
)
def test_bad_items_are_refused_with_their_source(item: object, message: str) -> None:
    registry = Registry("item", GROUP, Item, _check)
    with pytest.raises(RegistryError, match=f"my hook: .*{message}"):
        registry.register(item, "my hook")  # type: ignore[arg-type]


def test_a_layer_drops_its_registrations_and_only_its_own() -> None:
    registry = Registry("item", GROUP, Item, _check)
    registry.register(Item("kept"), "code")
    with registry.layer():
        registry.register(Item("outer"), "outer session")
        with registry.layer():
            registry.register(Item("inner"), "inner session")
            assert registry.names() == ("kept", "outer", "inner")
        assert registry.names() == ("kept", "outer")
    assert registry.names() == ("kept",)


def test_register_all_takes_one_item_an_iterable_or_none() -> None:
    registry = Registry("item", GROUP, Item, _check)
    assert registry.register_all(None, "hook") == []
    registry.register_all(Item("a"), "hook")
    registry.register_all([Item("b"), Item("c")], "hook")
    assert registry.names() == ("a", "b", "c")
    with pytest.raises(RegistryError, match="hook 2 gives a int; expected a Item"):
        registry.register_all(3, "hook 2")


def test_entry_points_in_every_accepted_shape(plugin_module, monkeypatch) -> None:
    _with_entry_points(
        monkeypatch,
        ("one", "perfsuite_test_items:ONE"),
        ("many", "perfsuite_test_items:MANY"),
        ("factory", "perfsuite_test_items:factory"),
    )
    registry = _registry()
    assert registry.names() == ("one", "two", "three", "four")
    assert (
        registry.lookup("two").source
        == "entry point 'many = perfsuite_test_items:MANY' (perfsuite-tests.items)"
    )


def test_entry_points_are_loaded_once(plugin_module, monkeypatch) -> None:
    _with_entry_points(monkeypatch, ("one", "perfsuite_test_items:ONE"))
    registry = _registry()
    calls = []
    real_load = metadata.EntryPoint.load
    monkeypatch.setattr(metadata.EntryPoint, "load", lambda self: calls.append(self.name) or real_load(self))
    registry.names()
    registry.get("one")
    with registry.layer():
        registry.names()
    assert calls == ["one"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "perfsuite_test_items:MISSING",
            r"entry point 'bad = perfsuite_test_items:MISSING' .* failed to load",
        ),
        (
            "no_such_module_anywhere:X",
            r"'bad = no_such_module_anywhere:X' .* failed to load: ModuleNotFoundError",
        ),
        (
            "perfsuite_test_items:broken_factory",
            r"calling perfsuite_test_items:broken_factory raised RuntimeError: no GPU",
        ),
        ("perfsuite_test_items:NOT_AN_ITEM", r"'bad = perfsuite_test_items:NOT_AN_ITEM' .* gives a int"),
        ("perfsuite_test_items:MIXED", r"'bad = perfsuite_test_items:MIXED' .* gives a str"),
    ],
)
def test_a_broken_entry_point_is_named(plugin_module, monkeypatch, value: str, message: str) -> None:
    _with_entry_points(monkeypatch, ("bad", value))
    registry = _registry()
    with pytest.raises(RegistryError, match=message):
        registry.names()
    with pytest.raises(RegistryError, match=message):  # every later use says the same, nothing half-loaded
        registry.lookup("anything")


def test_a_single_item_entry_point_must_carry_its_name(plugin_module, monkeypatch) -> None:
    _with_entry_points(monkeypatch, ("uno", "perfsuite_test_items:ONE"))
    with pytest.raises(
        EntryPointError, match=r"gives the item .one.; .* \(write `one = perfsuite_test_items:ONE`\)"
    ):
        _registry().names()


def test_two_entry_points_with_one_name(plugin_module, monkeypatch) -> None:
    _with_entry_points(
        monkeypatch, ("one", "perfsuite_test_items:ONE"), ("again", "perfsuite_test_items:factory")
    )
    registry = _registry()
    registry.names()
    with pytest.raises(DuplicateNameError, match=r"'one = perfsuite_test_items:ONE'.* and by my conftest"):
        registry.register(registry.get("one"), "my conftest")


def test_stale_installed_entry_points_of_perfsuite_are_reported(monkeypatch) -> None:
    """A source checkout whose installed metadata lacks an entry point of pyproject.toml says so."""
    monkeypatch.setattr(registry_module.metadata, "entry_points", lambda **kwargs: [])
    with pytest.raises(
        EntryPointError,
        match=r"not installed: perfsuite.*reinstall perfsuite \(python -m pip install -e \.\)",
    ):
        registry_module._check_own_entry_points("perfsuite.models", "model")
