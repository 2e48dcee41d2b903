"""The memory-drop floor (``max_memory_ratio``): policy parsing and the gate's check."""

from __future__ import annotations

from pathlib import Path

import pytest

from perfsuite.baselines import BaselineFileError, Bounds, load_policy
from perfsuite.gate import FAIL, NOT_COMPARED, PASS, check_memory_ratio, judge

MIB = 2**20


def bounds(ratio: float | None) -> Bounds:
    values = dict(min_speedup=0.0, min_ssim=0.9, min_ssim_stored=0.98, latency_tolerance=0.1,
                  memory_tolerance=0.1, speedup_tolerance=0.1)  # fmt: skip
    sources = {"max_memory_ratio": "policy.toml rule #7 (combo='*layerwise-fp8*')"}
    return Bounds(**values, sources=sources, max_memory_ratio=ratio)


def measurement(peak_mib: float, reference_mib: float | None, kind: str = "cuda-allocated") -> dict:
    found = {"peak_mem_bytes": peak_mib * MIB, "peak_mem_kind": kind}
    if reference_mib is not None:
        found.update(reference_peak_mem_bytes=reference_mib * MIB, reference_peak_mem_kind=kind)
    return found


def test_the_peak_must_drop_to_the_bound_against_the_reference():
    (ok,) = check_memory_ratio(measurement(600, 1000), bounds(0.7))
    assert (ok.status, ok.field, ok.kind) == (PASS, "memory ratio", "policy")
    assert ok.obtained == "600.0 MiB = 0.60x the reference's 1000.0 MiB (cuda-allocated)"
    assert ok.bound == "<= 0.70x the reference's peak"
    assert ok.source == "max_memory_ratio from policy.toml rule #7 (combo='*layerwise-fp8*')"
    (bad,) = check_memory_ratio(measurement(800, 1000), bounds(0.7))
    assert bad.status == FAIL and "0.80x" in bad.obtained


def test_no_bound_no_check_and_a_missing_or_other_kind_of_reference_is_not_compared():
    assert check_memory_ratio(measurement(600, 1000), bounds(None)) == []
    (missing,) = check_memory_ratio(measurement(600, None), bounds(0.7))
    assert missing.status == NOT_COMPARED
    assert missing.detail == "the measurement holds no peak memory of the in-run reference"
    other = {**measurement(600, 1000), "reference_peak_mem_kind": "cpu-rss-hwm"}
    (mixed,) = check_memory_ratio(other, bounds(0.7))
    assert mixed.status == NOT_COMPARED and "not comparable" in mixed.detail


def test_judge_fails_a_case_whose_memory_did_not_drop():
    verdict = judge(
        "flux", "bf16+layerwise-fp8", "cuda-nvidia-h200", measurement(950, 1000), bounds(0.9), None
    )
    assert [c.field for c in verdict.failures] == ["memory ratio"]


def test_policy_reads_max_memory_ratio_and_rejects_a_bad_value(tmp_path: Path):
    path = tmp_path / "policy.toml"
    head = (
        "schema_version = 1\n[defaults]\nmin_speedup = 0.0\nmin_ssim = 0.9\nmin_ssim_stored = 0.98\n"
        "latency_tolerance = 0.1\nmemory_tolerance = 0.1\nspeedup_tolerance = 0.1\n"
    )
    path.write_text(head + "[[rule]]\ncombo = '*layerwise-fp8*'\nmax_memory_ratio = 0.8\n")
    policy = load_policy(path)
    assert policy.bounds_for("m", "bf16+layerwise-fp8", "cpu-x").max_memory_ratio == 0.8
    assert policy.bounds_for("m", "bf16", "cpu-x").max_memory_ratio is None
    path.write_text(head + "[[rule]]\ncombo = '*'\nmax_memory_ratio = -1\n")
    with pytest.raises(BaselineFileError, match="max_memory_ratio = -1 is out of range"):
        load_policy(path)


def test_the_shipped_policy_sets_the_memory_floors():
    policy = load_policy(Path(__file__).resolve().parents[2] / "baselines" / "policy.toml")
    assert policy.bounds_for("flux", "bf16+layerwise-fp8", "cuda-nvidia-h200").max_memory_ratio == 0.9
    assert policy.bounds_for("flux", "bf16+group-offload", "cuda-nvidia-h200").max_memory_ratio == 0.6
    assert policy.bounds_for("flux", "bf16+first-block-cache", "cuda-nvidia-h200").min_speedup == 1.5
    assert policy.bounds_for("tiny-flux", "bf16+first-block-cache", "cuda-nvidia-h200").min_speedup == 0.0
