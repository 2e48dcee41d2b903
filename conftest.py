"""Repository-level pytest setup: keep every run offline and make sure the perfsuite plugin is active."""

from __future__ import annotations

import os

import pytest

# perfsuite never downloads: models come from the catalog, a local directory or the local HF cache.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config: pytest.Config) -> None:
    if not config.pluginmanager.has_plugin("perfsuite"):
        raise pytest.UsageError(
            "the perfsuite pytest plugin is not active: install the package first "
            '(python -m pip install -e ".[dev]")'
        )
