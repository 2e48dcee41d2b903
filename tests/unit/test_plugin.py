"""The pytest plugin, driven through pytester: option validation and a small end-to-end run."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _policy(project):
    """Each pytester project gets the shipped policy in its own <rootdir>/baselines."""


SUITE = """
import numpy as np

def test_combo(perf_case, perf_run):
    result = perf_run(perf_case)
    assert np.isfinite(result.image).all()
"""


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--perf-preset=smoke", "unknown preset 'smoke'; choose one of: ladder, single, pairs, full"),
        (
            "--perf-model=tiny-sdx",
            "unknown model 'tiny-sdx'; choose from tiny-sd, tiny-sdxl, tiny-flux, tiny-sd3, tiny-wan, sd15",
        ),
        ("--perf-device=gpu", "invalid device 'gpu': expected 'cpu', 'cuda' or 'cuda:N'"),
        ("--perf-rounds=1", "must be at least 3"),
        ("--perf-profile=My Profile", "My Profile"),
        ("--perf-steps=0", "must be at least 1"),
        ("--perf-size=1024", "expected HEIGHTxWIDTH in pixels such as 1024x1024"),
        ("--perf-size=100x100", "multiples of 8"),
    ],
)
def test_bad_option_values_are_rejected_at_parse_time(pytester, option, message):
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess(option, "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_cuda_on_a_machine_without_it_is_a_usage_error(pytester):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("--perf-device=cuda", "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--perf-device: device 'cuda' was requested but CUDA is not available*"])


def test_collection_lists_combos_with_markers_and_pruned_skips(pytester):
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess(
        "--perf-device=cpu", "--perf-preset=ladder", "--collect-only", "-q", "-m", "compile"
    )
    result.stdout.fnmatch_lines(
        ["*test_combo?tiny-sd/bf16+sdpa-flash+channels-last+compile+inductor-flags?*"]
    )
    assert "tiny-sd/fp32]" not in result.stdout.str()


def test_the_xdist_hook_is_optional() -> None:
    """The wheel's own dependencies have no pytest-xdist: pluggy must not reject its hook as unknown."""
    from _pytest.config import PytestPluginManager

    import perfsuite.plugin

    manager = PytestPluginManager()  # pytest's own hook specs only, as without xdist
    manager.register(perfsuite.plugin)
    manager.check_pending()  # raises PluginValidationError for a required hook without its spec
