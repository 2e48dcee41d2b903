"""The caches preset end to end on tiny-flux: every cache proves skipped block computations."""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]

SUITE = """
def test_combo(perf_case, perf_run):
    perf_run(perf_case)
"""
CACHES = ("first-block-cache", "taylorseer-cache", "mag-cache", "faster-cache", "pab-cache")


@pytest.fixture(autouse=True)
def _policy(project):
    """Each pytester project gets the shipped policy in its own <rootdir>/baselines."""


def test_the_caches_preset_passes_on_tiny_flux_and_records_the_skipped_work(pytester):
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess(
        "--perf-device=cpu", "--perf-model=tiny-flux", "--perf-preset=caches", "--perf-rounds=3",
        "--perf-warmup=1", "--perf-steps=4", "--perf-report=report", "-k", "not tiny-flux/fp32]",
    )  # fmt: skip
    result.assert_outcomes(passed=len(CACHES))
    cases = json.loads((pytester.path / "report" / "results.json").read_text())["cases"]
    evidence = {case["combo"]: " | ".join(case["measurement"]["evidence"]) for case in cases}
    assert sorted(evidence) == sorted(f"fp32+{name}" for name in CACHES)
    for combo, text in evidence.items():
        assert "computations in the profiled call" in text and "skipped 0 of" not in text, combo
    assert "calibrated by one call" in evidence["fp32+first-block-cache"]
    assert "FLUX_MAG_RATIOS" in evidence["fp32+mag-cache"]
