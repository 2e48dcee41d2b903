"""The pytest side of the extension points: what one session adds to the model and technique registries.

When a session starts, :func:`register_session_entries` opens a registry layer of its own (dropped
when the session ends), calls every ``pytest_perfsuite_techniques`` and ``pytest_perfsuite_models``
hook (see :mod:`perfsuite.hookspecs`) and registers what they return with the hook's module as the
source, then registers the ``--perf-model NAME=PATH`` models. :func:`late_hooks` finds the hooks of a
``conftest.py`` that pytest read only later, while collecting, so they were never called.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest

from perfsuite import options

__all__ = ["HOOKS", "late_hooks", "model_entry", "model_names", "register_session_entries", "show_registries"]

#: The hooks, in the order they are called: techniques first, then models.
HOOKS = ("pytest_perfsuite_techniques", "pytest_perfsuite_models")

#: The --perf-model names of the session, and the NAME=PATH entries as given (for rerun commands).
MODEL_NAMES = pytest.StashKey[list[str]]()
MODEL_ENTRIES = pytest.StashKey[dict[str, str]]()
#: The plugins whose hooks were called when the session started.
HOOKED_PLUGINS = pytest.StashKey[list[object]]()


def register_session_entries(config: pytest.Config) -> None:
    """Open this session's registry layers (closed at the end of the session), then register the
    models and techniques of the pytest_perfsuite_* hooks and of ``--perf-model NAME=PATH``.

    A registration that cannot be accepted (a name registered twice, a wrong type, a folder that is
    not there) is a :class:`pytest.UsageError` that names its source.
    """
    from perfsuite.catalog import MODELS, UnknownModelError, local_model
    from perfsuite.optimizations import REGISTRY
    from perfsuite.registry import Registry, RegistryError

    stack = contextlib.ExitStack()
    config.add_cleanup(stack.close)
    hooked: list[object] = []
    config.stash[HOOKED_PLUGINS] = hooked
    names: list[str] = []
    entries: dict[str, str] = {}
    try:
        stack.enter_context(MODELS.layer())
        stack.enter_context(REGISTRY.layer())
        registries: tuple[Registry[Any], ...] = (REGISTRY, MODELS)
        for hook, registry in zip(HOOKS, registries, strict=True):
            for impl in getattr(config.hook, hook).get_hookimpls():
                hooked.append(impl.plugin)
                source = f"{hook} in {_plugin_label(impl)}"
                kwargs = {"config": config} if "config" in impl.argnames else {}
                try:
                    registry.register_all(impl.function(**kwargs), source)
                except UnknownModelError as exc:  # e.g. local_model() of a folder that is not there
                    raise RegistryError(f"{source}: {exc}") from None
        for entry in config.getoption("perf_model", [options.DEFAULT_MODEL]):
            name, path = options.split_model(entry)
            if path is not None:
                spec = local_model(name, Path(config.invocation_params.dir, path))
                MODELS.register(spec, f"--perf-model {entry}")
                entries[name] = entry
            names.append(name)
    except (RegistryError, UnknownModelError) as exc:
        prefix = "--perf-model: " if isinstance(exc, UnknownModelError) else ""
        raise pytest.UsageError(f"{prefix}{exc}") from None
    config.stash[MODEL_NAMES] = names
    config.stash[MODEL_ENTRIES] = entries


def model_names(config: pytest.Config) -> list[str]:
    """The model names of ``--perf-model`` (NAME for a NAME=PATH entry)."""
    names: list[str] = config.stash.get(MODEL_NAMES, [options.DEFAULT_MODEL])
    return list(names)


def model_entry(config: pytest.Config, name: str) -> str:
    """How ``name`` was given to ``--perf-model`` (``NAME=PATH`` for a named directory)."""
    return config.stash.get(MODEL_ENTRIES, {}).get(name, name)


def _plugin_label(impl: Any) -> str:
    """A conftest's path, or a plugin's module file or name."""
    return str(getattr(impl.plugin, "__file__", None) or impl.plugin_name)


def late_hooks(config: pytest.Config) -> list[str]:
    """pytest_perfsuite_* hooks of conftest files read after the session started (never called)."""
    called = config.stash.get(HOOKED_PLUGINS, [])
    return [
        f"{hook} in {_plugin_label(impl)}"
        for hook in HOOKS
        for impl in getattr(config.hook, hook).get_hookimpls()
        if not any(impl.plugin is plugin for plugin in called)
    ]


def show_registries(config: pytest.Config, session: pytest.Session) -> int:
    """``--perf-list``: every registered model and technique of this session, with its source."""
    from perfsuite.inventory import registry_lines

    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for line in registry_lines(in_pytest=True):
        if reporter is not None:
            reporter.write_line(line)
        else:
            print(line)
    return 0
