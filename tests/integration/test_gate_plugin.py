"""The gate end to end, through pytester: updates, strict mode, broken baseline files, an interrupted
update, a planted slowdown, a planted fidelity regression and a non-finite output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

POLICY = Path(__file__).resolve().parents[2] / "baselines" / "policy.toml"
FAST = ("--perf-device=cpu", "--perf-rounds=3", "--perf-warmup=1", "-p", "no:randomly")
THREE = ("--perf-preset=single", "-k", "fp32] or fp32+sdpa-math or fp32+channels-last")


def stored(project) -> dict[str, bytes]:
    """Every file under baselines/, by relative path (hidden temp files included)."""
    root = project.path / "baselines"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def combo_file(project, name: str, ext: str = ".json") -> Path:
    (path,) = (project.path / "baselines").glob(f"cpu-*/tiny-sd/{name}{ext}")
    return path


def test_update_writes_only_what_ran_then_strict_passes_then_broken_files_fail_clearly(project):
    first = project.runpytest_subprocess(*FAST, *THREE, "--perf-update-baselines")
    first.assert_outcomes(passed=3)
    first.stdout.fnmatch_lines(
        ["*baselines updated under*policy.toml untouched*", "*tiny-sd/fp32: new baseline*"]
    )
    files = stored(project)
    assert sorted(Path(f).name for f in files) == [
        "fp32+channels-last.json", "fp32+channels-last.png", "fp32+sdpa-math.json", "fp32+sdpa-math.png",
        "fp32.json", "fp32.png", "policy.toml",
    ]  # fmt: skip
    assert files["policy.toml"] == POLICY.read_bytes()
    document = json.loads(combo_file(project, "fp32").read_text())
    assert document["schema_version"] == 1 and len(document["measurement"]["latency_samples_s"]) == 3
    assert document["measurement"]["fidelity"]["reference"]["ssim"] > 0.99

    again = project.runpytest_subprocess(*FAST, *THREE, "--perf-strict")
    again.assert_outcomes(passed=3)
    assert stored(project) == files  # a gated run never writes baselines

    combo_file(project, "fp32").unlink()
    combo_file(project, "fp32+sdpa-math").write_text('{"schema_version": 1, "profile": ')
    bumped = combo_file(project, "fp32+channels-last")
    bumped.write_text(bumped.read_text().replace('"schema_version": 1', '"schema_version": 2'))
    broken = project.runpytest_subprocess(*FAST, *THREE, "--perf-strict")
    broken.assert_outcomes(failed=3)
    broken.stdout.fnmatch_lines_random(
        [
            "*baseline (history): MISSING*",
            "*no baseline at *tiny-sd/fp32.json*create it with `pytest tests/perf --perf-update-baselines`*",
            "*fp32+sdpa-math.json: not valid JSON*regenerate it with*",
            "*fp32+channels-last.json: schema_version 2 is newer than this perfsuite understands (1)*",
        ]
    )
    without_strict = project.runpytest_subprocess(*FAST, "--perf-preset=single", "-k", "fp32]")
    without_strict.assert_outcomes(passed=1)
    without_strict.stdout.fnmatch_lines(["*1 case(s) have no stored baseline*reported, not failed*"])


INTERRUPT = """
import pytest

def pytest_runtest_teardown(item):
    if "sdpa-math" in item.nodeid:
        raise KeyboardInterrupt
"""


def test_an_interrupted_update_leaves_the_previous_files_intact(project):
    project.runpytest_subprocess(*FAST, *THREE, "--perf-update-baselines").assert_outcomes(passed=3)
    before = stored(project)
    project.makeconftest(INTERRUPT)
    interrupted = project.runpytest_subprocess(*FAST, *THREE, "--perf-update-baselines")
    assert interrupted.ret == pytest.ExitCode.INTERRUPTED
    interrupted.stdout.fnmatch_lines(["*interrupted; no baseline was written*"])
    assert stored(project) == before  # byte for byte, and no temp file left behind


SLOWER_UNET = """
import diffusers

_forward = diffusers.UNet2DConditionModel.forward


def forward(self, *args, **kwargs):
    # The planted regression: two extra UNet passes per call, three times the UNet work. It is this
    # large so that the machine's own 2x swings between the two runs cannot hide it; the smallest
    # slowdown the check catches is measured by scripts/detection-limit.py, not asserted here.
    _forward(self, *args, **kwargs)
    _forward(self, *args, **kwargs)
    return _forward(self, *args, **kwargs)


diffusers.UNet2DConditionModel.forward = forward
"""

SAME_MACHINE_POLICY = """
[[rule]]
combo = '*'
latency_tolerance = 0.10
note = "a quiet machine compared with itself minutes apart"
"""


def test_a_planted_unet_slowdown_is_caught(project):
    """Tripled UNet work slows both the combo and the in-run reference, so the speedup cannot see it:
    the latency history check must, against a baseline taken on the same machine just before."""
    with open(project.path / "baselines" / "policy.toml", "a", encoding="utf-8") as policy:
        policy.write(SAME_MACHINE_POLICY)
    args = (*FAST, "--perf-rounds=20", "--perf-preset=single", "-k", "fp32]")
    project.runpytest_subprocess(*args, "--perf-update-baselines").assert_outcomes(passed=1)
    project.makeconftest(SLOWER_UNET)
    slowed = project.runpytest_subprocess(*args)
    slowed.assert_outcomes(failed=1)
    slowed.stdout.fnmatch_lines(
        [
            "*tiny-sd/fp32 on profile cpu-*: * check(s) failed*",
            "*latency (history): FAIL*",
            "*bound:    at most * (+10%)*",
            "*a first timing pass failed latency (history)*; confirmed by a second pass*",
            "*--perf-update-baselines*",
        ]
    )


NOISY_BF16 = """
import diffusers
import torch

_forward = diffusers.UNet2DConditionModel.forward


def forward(self, *args, **kwargs):
    out = _forward(self, *args, **kwargs)
    if self.dtype == torch.bfloat16:  # the planted regression: noise on the low-precision path only
        sample = out[0] if isinstance(out, tuple) else out.sample
        generator = torch.Generator().manual_seed(0)
        sample.add_(torch.randn(sample.shape, generator=generator).to(sample.dtype) * 2.0)
    return out


diffusers.UNet2DConditionModel.forward = forward
"""


def test_a_planted_quality_regression_in_bf16_fails_with_obtained_and_diff_images(project):
    project.makeconftest(NOISY_BF16)
    result = project.runpytest_subprocess(*FAST, "-k", "fp32] or bf16]")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*tiny-sd/bf16 on profile cpu-*",
            "*ssim (policy): FAIL*",
            "*obtained: SSIM 0.*, PSNR * dB*",
            "*bound:    SSIM >= 0.9950*",
            "*images: obtained *bf16.obtained.png; expected *bf16.expected.png; diff*bf16.diff.png*",
        ]
    )
    for suffix in (".obtained.png", ".expected.png", ".diff.png"):
        assert combo_file(project, "bf16", suffix).stat().st_size > 0
    assert not list((project.path / "baselines").glob("cpu-*/tiny-sd/fp32.*.png"))


NAN_VAE = """
import diffusers
import torch

_decode = diffusers.AutoencoderKL.decode


def decode(self, z, *args, **kwargs):
    out = _decode(self, z, *args, **kwargs)
    if self.dtype == torch.bfloat16:  # as an fp16/bf16 VAE overflow would
        sample = out[0] if isinstance(out, tuple) else out.sample
        sample.fill_(float("nan"))
    return out


diffusers.AutoencoderKL.decode = decode
"""


def test_a_non_finite_output_fails_with_its_own_message_and_the_session_goes_on(project):
    project.makeconftest(NAN_VAE)
    result = project.runpytest_subprocess(*FAST, "-k", "fp32] or bf16]", "--perf-update-baselines")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*image (policy): FAIL*",
            "*obtained: non-finite output*",
            "*NaN*",
            "*tiny-sd/bf16: NOT written: its output is not finite*",
        ]
    )
    assert combo_file(project, "fp32").exists()
    assert not list((project.path / "baselines").glob("cpu-*/tiny-sd/bf16.*"))


FLAT_VAE = """
import diffusers

_decode = diffusers.AutoencoderKL.decode


def decode(self, z, *args, **kwargs):
    out = _decode(self, z, *args, **kwargs)
    sample = out[0] if isinstance(out, tuple) else out.sample
    sample.zero_()  # a flat grey image, as a blanked or clamped output would be
    return out


diffusers.AutoencoderKL.decode = decode
"""


def test_a_degenerate_reference_image_fails_the_cases_of_that_model(project):
    project.makeconftest(FLAT_VAE)
    result = project.runpytest_subprocess(*FAST, "--perf-preset=single", "-k", "fp32] or sdpa-math")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*the fp32 eager reference output of tiny-sd is flat*SSIM against a flat*"])
