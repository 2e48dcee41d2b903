"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flux_factory import register_flux_family


@pytest.fixture
def flux_family(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of a family for :func:`flux_factory.build_tiny_flux`, registered for one test."""
    yield from register_flux_family(monkeypatch)
