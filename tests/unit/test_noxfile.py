"""The nox sessions: `nox -s ab -- REF [pytest args]` reads its ref, and costly sessions are opt-in."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def noxfile():
    spec = importlib.util.spec_from_file_location("perfsuite_noxfile", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_ab_session_takes_a_ref_then_pytest_arguments(noxfile):
    assert noxfile.ab_ref([]) == ("main", [])
    assert noxfile.ab_ref(["v0.1.0"]) == ("v0.1.0", [])
    assert noxfile.ab_ref(["origin/main", "-k", "fp32]"]) == ("origin/main", ["-k", "fp32]"])
    assert noxfile.ab_ref(["--perf-preset", "single"]) == ("main", ["--perf-preset", "single"])


def test_the_ab_session_is_opt_in_and_says_what_it_does(noxfile):
    from nox.registry import get

    sessions = get()
    assert "ab" in sessions
    assert sessions["ab"].__doc__.startswith("Gate this checkout against a git ref (default main)")
    assert "ab" not in noxfile.nox.options.sessions
