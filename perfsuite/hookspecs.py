"""The pytest hooks through which a repository adds its own models and techniques.

Implement them in the ``conftest.py`` at the root of your tests (or the folder you pass to pytest),
or in a pytest plugin: perfsuite calls them once per session, right after pytest has read its
configuration and before it collects the suite, so a ``conftest.py`` further down the tree is read
too late (perfsuite says so). What they return is registered for that session only, with the
hook's module as its source; a name that already exists is an error that names both sources.

Packages that want their models or techniques in every repository declare entry points instead
(``perfsuite.models``, ``perfsuite.techniques``), as perfsuite does for its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from perfsuite.catalog import ModelSpec
    from perfsuite.optimizations import Technique

__all__ = ["pytest_perfsuite_models", "pytest_perfsuite_techniques"]


def pytest_perfsuite_models(config: pytest.Config) -> Iterable[ModelSpec]:  # type: ignore[empty-body]
    """Models to add to the suite: ``ModelSpec`` objects, each with a name not registered yet.

    A spec says how to build the pipeline (``build(device, dtype)``), its fixed call arguments and
    its family (``sd``, ``sdxl``, ...). For a saved pipeline directory,
    ``perfsuite.catalog.local_model(name, path)`` makes the spec.
    """


def pytest_perfsuite_techniques(config: pytest.Config) -> Iterable[Technique]:  # type: ignore[empty-body]
    """Techniques to add to the matrix: ``perfsuite.optimizations.Technique`` objects.

    Each has the contract of perfsuite's own techniques: ``requires``, ``apply``, ``verify`` (and
    optionally ``context`` and ``verify_trace``), and declares in ``touches`` every process-wide
    setting it changes. A technique of a group perfsuite does not have joins the presets after
    perfsuite's own groups.
    """
