"""scripts/gate-stability.py: reading a run's JUnit XML, and the per-combo table of false alarms."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gate-stability.py"

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
  <testcase classname="tests.perf.test_inference" name="test_combo[tiny-sd/fp32]" time="3.1"/>
  <testcase classname="tests.perf.test_inference" name="test_combo[tiny-sd/fp32+regional-compile]">
    <failure message="tiny-sd/fp32+regional-compile on profile cpu-x: 2 check(s) failed">
tiny-sd/fp32+regional-compile on profile cpu-x: 2 check(s) failed
  recompiles (policy): FAIL
    obtained: 2 recompilations after warm-up
  latency (history): FAIL
    obtained: 1.2 s median</failure>
  </testcase>
  <testcase classname="tests.perf.test_inference" name="test_combo[tiny-sd/fp32+tf32]">
    <skipped type="pytest.skip" message="pruned: tf32 needs an NVIDIA GPU"/>
  </testcase>
  <testcase classname="tests.perf.test_inference" name="test_combo[tiny-sd/fp32+compile]">
    <error message="failed on setup">RuntimeError: boom</error>
  </testcase>
</testsuite></testsuites>
"""


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("gate_stability", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_outcomes_per_case_tell_passed_skipped_failed_checks_and_errors(script, tmp_path):
    junit = tmp_path / "run.xml"
    junit.write_text(JUNIT)
    assert script.outcomes(junit) == {
        "tiny-sd/fp32": [],
        "tiny-sd/fp32+regional-compile": ["latency (history)", "recompiles (policy)"],
        "tiny-sd/fp32+tf32": None,
        "tiny-sd/fp32+compile": ["error (not a gate check)"],
    }
    assert [script.category(c) for c in ("latency (history)", "ssim (policy)", "verify (policy)")] == [
        "timing",
        "fidelity",
        "other",
    ]


def test_the_table_counts_runs_and_failures_by_check_per_combo(script):
    cases = {"tiny-sd/fp32": script.CaseRuns(judged=5), "tiny-sd/fp32+regional-compile": script.CaseRuns()}
    regional = cases["tiny-sd/fp32+regional-compile"]
    for checks in (["recompiles (policy)"], [], ["latency (history)", "recompiles (policy)"]):
        regional.judged += 1
        regional.failed += bool(checks)
        regional.checks.update(checks)
    assert script.table(cases) == [
        "combo                          runs  failed  failures by check",
        "tiny-sd/fp32                      5       0  -",
        "tiny-sd/fp32+regional-compile     3       2  latency (history) x1, recompiles (policy) x2",
    ]


def test_runs_must_be_positive(script, capsys):
    with pytest.raises(SystemExit):
        script.main(["--runs", "0"])
    assert "--runs must be at least 1" in capsys.readouterr().err
