"""Fixtures shared by the pytester tests of the plugin (unit and integration tiers)."""

from __future__ import annotations

import shutil
from pathlib import Path

import diffusers  # noqa: F401
import pytest

# pytester's in-process runs drop every module imported during the run from sys.modules when they end.
# diffusers imports torch._dynamo, which registers torch operator libraries that cannot be registered
# twice; importing it here, before any pytester run, keeps it loaded across them.

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
