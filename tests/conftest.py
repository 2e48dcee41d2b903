"""Fixtures shared by the pytester tests of the plugin (unit and integration tiers)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

POLICY = Path(__file__).resolve().parents[1] / "baselines" / "policy.toml"

SUITE = """
def test_combo(perf_case, perf_run):
    perf_run(perf_case)
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project with the perf suite's test and the shipped policy in <rootdir>/baselines."""
    (pytester.path / "baselines").mkdir()
    shutil.copy(POLICY, pytester.path / "baselines" / "policy.toml")
    pytester.makepyfile(test_suite=SUITE)
    return pytester
