"""A small end-to-end run of the suite through pytester: interleaved timing, the table, the skips and
pytest-benchmark's JSON."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SUITE = """
import numpy as np

def test_combo(perf_case, perf_run):
    result = perf_run(perf_case)
    assert np.isfinite(result.image).all()
"""


@pytest.fixture(autouse=True)
def _policy(project):
    """Each pytester project gets the shipped policy in its own <rootdir>/baselines."""


def test_a_small_run_measures_interleaved_and_prints_the_table(pytester):
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess(
        "--perf-device=cpu",
        "--perf-preset=single",
        "--perf-rounds=3",
        "--perf-warmup=1",
        "-k",
        "fp32 and (sdpa-math or channels-last or compile-regions or tf32 or fp32])",
        "-rs",
        "--benchmark-json=bench.json",
    )
    result.assert_outcomes(passed=3, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "*perfsuite results on cpu (profile cpu-*)*",
            "*fp32+sdpa-math *x ?*",
            "*SKIPPED*unsupported on tiny-sd: accelerate compile_regions wraps conv_norm_out*",
            "*SKIPPED*pruned: tf32: TF32 needs an NVIDIA GPU*",
        ]
    )
    import json

    bench = json.loads((pytester.path / "bench.json").read_text())
    extra = {b["name"]: b["extra_info"] for b in bench["benchmarks"]}
    info = extra["test_combo[tiny-sd/fp32+sdpa-math]"]
    assert len(info["latency_samples_s"]) == len(info["reference_samples_s"]) == 3
    assert any("math" in e for e in info["evidence"])
