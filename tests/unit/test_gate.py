"""The gate's verdicts on plain measurements: policy, history, fidelity, and the failure message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perfsuite.baselines import Baseline, Bounds
from perfsuite.gate import (
    FAIL,
    MISSING,
    NOT_COMPARED,
    PASS,
    Check,
    Verdict,
    check_diagnostics,
    check_fidelity,
    check_history,
    check_policy,
    judge,
    judge_failure,
    machine_fingerprint,
)
from perfsuite.stats import Summary, speedup

MACHINE = {
    "cpu_model": "Example CPU",
    "cpu_cores": 2,
    "cpu_flags": {"avx2": True, "avx512f": False},
    "gpu_name": None,
}


def bounds(**overrides: float) -> Bounds:
    values = {
        "min_speedup": 0.0,
        "min_ssim": 0.9,
        "min_ssim_stored": 0.95,
        "latency_tolerance": 0.15,
        "memory_tolerance": 0.10,
        "speedup_tolerance": 0.15,
    }
    values.update(overrides)
    return Bounds(**values, sources=dict.fromkeys(values, "policy.toml [defaults]"))


def measurement(
    latency_s: float, reference_s: float, noise: float = 0.01, seed: int = 0, n: int = 10
) -> dict:
    """A measurement like ``CaseResult.to_dict()``: samples around the given medians."""
    rng = np.random.default_rng(seed)
    cand = list(latency_s * np.exp(noise * rng.standard_normal(n)))
    ref = list(reference_s * np.exp(noise * rng.standard_normal(n)))
    summary = Summary.from_samples(cand)
    ratio = speedup(ref, cand)
    return {
        "latency_samples_s": cand,
        "reference_samples_s": ref,
        "latency_median_s": summary.median,
        "latency_ci_s": [summary.ci_low, summary.ci_high],
        "speedup": ratio.estimate,
        "speedup_ci": [ratio.ci_low, ratio.ci_high],
        "peak_mem_bytes": 500 * 2**20,
        "peak_mem_kind": "cpu-rss-hwm",
    }


def baseline(data: dict, machine: dict | None = None) -> Baseline:
    return Baseline(
        profile="cpu-example-2c",
        model="tiny-sd",
        combo="bf16",
        created="2026-11-01T00:00:00+00:00",
        commit="0123456789abcdef0123456789abcdef01234567",
        machine=machine or MACHINE,
        measurement=data,
        path=Path("baselines/cpu-example-2c/tiny-sd/bf16.json"),
    )


def by_field(checks, field, kind="history"):
    (check,) = [c for c in checks if c.field == field and c.kind == kind]
    return check


# --- policy ----------------------------------------------------------------------------------------


def test_speed_floor_fails_only_when_the_whole_interval_is_below_it():
    slow = measurement(1.0, 1.1)  # ~1.1x, tight interval
    (check,) = check_policy(slow, bounds(min_speedup=1.5))
    assert check.status == FAIL and "whole interval lies below" in check.detail
    assert check.bound == ">= 1.50x" and "min_speedup from policy.toml [defaults]" in check.source

    wide = measurement(1.0, 1.4, noise=0.3, seed=3)  # point estimate below 1.5, interval reaches it
    assert wide["speedup"] < 1.5 <= wide["speedup_ci"][1]
    (check,) = check_policy(wide, bounds(min_speedup=1.5))
    assert check.status == PASS and "interval reaches it" in check.detail


def test_no_floor_passes():
    (check,) = check_policy(measurement(2.0, 1.0), bounds())
    assert check.status == PASS


# --- history ---------------------------------------------------------------------------------------


def test_a_significant_slowdown_beyond_tolerance_fails():
    old = baseline(measurement(1.0, 1.0, seed=1))
    new = measurement(1.25, 1.25, seed=2)
    check = by_field(check_history(new, old, bounds(), MACHINE), "latency")
    assert check.status == FAIL and check.timing
    assert "+2" in check.detail and "Mann-Whitney p =" in check.detail
    assert "latency_tolerance from policy.toml [defaults]" in check.source
    assert str(old.path) in check.source


def test_a_slowdown_within_tolerance_passes_even_when_significant():
    old = baseline(measurement(1.0, 1.0, noise=0.002, seed=1))
    new = measurement(1.08, 1.08, noise=0.002, seed=2)
    assert by_field(check_history(new, old, bounds(), MACHINE), "latency").status == PASS


def test_a_large_but_insignificant_change_passes():
    old = baseline(measurement(1.0, 1.0, noise=0.5, seed=1))
    new = measurement(1.2, 1.2, noise=0.5, seed=6)
    check = by_field(check_history(new, old, bounds(), MACHINE), "latency")
    assert new["latency_median_s"] / old.measurement["latency_median_s"] - 1 > 0.15  # +53% by chance
    assert check.status == PASS


def test_absolute_latency_is_not_compared_across_machines():
    other = {**MACHINE, "cpu_flags": {"avx2": True, "avx512f": True}}
    old = baseline(measurement(1.0, 1.0, seed=1), machine=other)
    new = measurement(2.0, 2.0, seed=2)
    check = by_field(check_history(new, old, bounds(), MACHINE), "latency")
    assert check.status == NOT_COMPARED
    assert "avx512f" in check.detail and "not compared across machines" in check.detail
    assert machine_fingerprint(MACHINE) != machine_fingerprint(other)


def test_speedup_is_not_compared_across_machines():
    # A bf16 speedup that was 1.1x on an avx512_bf16 host is about 0.1x on an AVX2 host of the profile.
    other = {**MACHINE, "cpu_flags": {"avx2": True, "avx512f": True, "avx512_bf16": True}}
    old = baseline(
        {**measurement(1.0, 1.0, seed=1), "speedup": 1.1, "speedup_ci": [1.05, 1.15]}, machine=other
    )
    dropped = {**measurement(1.0, 1.0, seed=2), "speedup": 0.1, "speedup_ci": [0.09, 0.11]}
    here = by_field(check_history(dropped, old, bounds(), MACHINE), "speedup")
    assert here.status == NOT_COMPARED
    assert "avx512_bf16" in here.detail and "not compared across machines" in here.detail
    # The same drop on the baseline's own machine fails.
    assert by_field(check_history(dropped, old, bounds(), other), "speedup").status == FAIL


def test_bf16_capable_hosts_of_one_profile_are_different_machines():
    # One "AMD EPYC" 2-core profile: bf16 is ten times slower than fp32 without avx512_bf16, par with it.
    skylake_like = {**MACHINE, "cpu_flags": {"avx2": True, "avx512f": True, "avx512_bf16": False}}
    zen4_like = {**MACHINE, "cpu_flags": {"avx2": True, "avx512f": True, "avx512_bf16": True}}
    assert machine_fingerprint(skylake_like) != machine_fingerprint(zen4_like)
    # A baseline recorded before the flag was collected still matches its own host, where it is absent.
    recorded_then = {**MACHINE, "cpu_flags": {"avx2": True, "avx512f": False, "amx": False}}
    recorded_now = {
        **MACHINE,
        "cpu_flags": {"avx2": True, "avx512f": False, "avx512_bf16": False, "amx": False},
    }
    assert machine_fingerprint(recorded_then) == machine_fingerprint(recorded_now)


def test_memory_growth_beyond_tolerance_fails_and_other_kinds_are_not_compared():
    old = baseline(measurement(1.0, 1.0))
    grown = {**measurement(1.0, 1.0), "peak_mem_bytes": int(500 * 2**20 * 1.2)}
    check = by_field(check_history(grown, old, bounds(), MACHINE), "peak memory")
    assert check.status == FAIL and "+20.0%" in check.detail and not check.timing
    within = {**grown, "peak_mem_bytes": int(500 * 2**20 * 1.05)}
    assert by_field(check_history(within, old, bounds(), MACHINE), "peak memory").status == PASS
    gpu = {**grown, "peak_mem_kind": "cuda-allocated"}
    assert by_field(check_history(gpu, old, bounds(), MACHINE), "peak memory").status == NOT_COMPARED


def test_speedup_drop_fails_only_when_the_intervals_do_not_overlap():
    old = baseline(measurement(0.5, 1.0, seed=1))  # 2.0x
    dropped = measurement(0.7, 1.0, seed=2)  # ~1.43x, tight
    check = by_field(check_history(dropped, old, bounds(), MACHINE), "speedup")
    assert check.status == FAIL and check.timing
    noisy = measurement(0.7, 1.0, noise=0.4, seed=3)
    assert noisy["speedup_ci"][1] >= old.measurement["speedup_ci"][0]  # the intervals overlap
    assert by_field(check_history(noisy, old, bounds(), MACHINE), "speedup").status == PASS
    # A noisy baseline (a bimodal machine) widens its own interval: a tight drop inside it passes.
    wide_old = baseline(measurement(0.5, 1.0, noise=0.4, seed=3))
    assert wide_old.measurement["speedup_ci"][0] < dropped["speedup_ci"][1]
    assert by_field(check_history(dropped, wide_old, bounds(), MACHINE), "speedup").status == PASS


# --- fidelity --------------------------------------------------------------------------------------


def comparison(ssim: float) -> dict:
    return {"ssim": ssim, "psnr_db": 30.0, "max_abs_diff": 0.2, "mean_abs_diff": 0.01}


def test_non_finite_output_is_a_policy_failure_with_its_own_message():
    data = {"fidelity": {"non_finite": "tiny-sd/bf16 holds 12 NaN", "reference": None, "stored": None}}
    (check,) = check_fidelity(data, bounds())
    assert (check.field, check.kind, check.status) == ("image", "policy", FAIL)
    assert "12 NaN" in check.detail and "never 'similar'" in check.source


def test_ssim_below_the_policy_floor_fails_and_the_stored_image_is_checked_too():
    data = {"fidelity": {"non_finite": None, "reference": comparison(0.85), "stored": comparison(0.99)}}
    checks = check_fidelity(data, bounds(min_ssim=0.9))
    assert by_field(checks, "ssim", "policy").status == FAIL
    assert by_field(checks, "ssim", "policy").bound == "SSIM >= 0.9000"
    assert by_field(checks, "ssim", "history").status == PASS
    data["fidelity"]["stored"] = comparison(0.9)
    assert by_field(check_fidelity(data, bounds()), "ssim", "history").status == FAIL


def test_a_missing_stored_image_is_missing_and_an_absent_entry_has_no_checks():
    note = "no stored reference image at x.png"
    fidelity = {"non_finite": None, "reference": comparison(1.0), "stored": None, "stored_note": note}
    data = {"fidelity": {**fidelity, "stored_missing": True}}
    check = by_field(check_fidelity(data, bounds()), "ssim", "history")
    assert check.status == MISSING and "x.png" in check.detail
    assert check_fidelity({}, bounds()) == []


# --- verdict ---------------------------------------------------------------------------------------


def test_the_failure_message_names_everything_a_reader_needs():
    old = baseline(measurement(1.0, 1.0, seed=1))
    new = measurement(1.3, 1.3, seed=2)
    verdict = judge("tiny-sd", "bf16", "cpu-example-2c", new, bounds(), old, machine=MACHINE)
    assert not verdict.passed and verdict.status == FAIL
    text = verdict.message("pytest 'x::test_combo[tiny-sd/bf16]' --perf-update-baselines")
    for needle in (
        "tiny-sd/bf16 on profile cpu-example-2c",
        "latency (history): FAIL",
        "obtained: 1.",
        "expected: 1.",
        "bound:    at most",
        "source:   baselines/cpu-example-2c/tiny-sd/bf16.json",
        "latency_tolerance from policy.toml [defaults]",
        "--perf-update-baselines",
    ):
        assert needle in text, needle


def test_a_missing_baseline_names_the_file_and_fails_only_when_strict():
    path = Path("baselines/cpu-example-2c/tiny-sd/bf16.json")
    verdict = judge("tiny-sd", "bf16", "cpu-example-2c", measurement(1.0, 1.0), bounds(), None,
                    baseline_file=path, missing_reason="create it with X")  # fmt: skip
    assert verdict.passed and verdict.status == MISSING
    assert str(path) in verdict.message("cmd", strict=True)
    assert "create it with X" in verdict.message("cmd", strict=True)


def test_verdicts_round_trip_through_dicts():
    old = baseline(measurement(1.0, 1.0, seed=1))
    verdict = judge("tiny-sd", "bf16", "p", measurement(1.3, 1.3), bounds(), old, machine=MACHINE)
    verdict = verdict.with_notes("re-measured")
    again = Verdict.from_dict(verdict.to_dict())
    assert again == verdict and again.to_dict()["status"] == FAIL
    with pytest.raises(ValueError, match="not a verdict"):
        Verdict.from_dict({"model": "x"})


def test_a_baseline_of_other_call_settings_is_not_compared_and_counts_as_missing():
    old = baseline({**measurement(1.0, 1.0, seed=1), "call": {"num_inference_steps": 30}})
    new = {**measurement(3.0, 3.0, seed=2), "call": {"num_inference_steps": 10}}
    verdict = judge("tiny-sd", "bf16", "p", new, bounds(), old, machine=MACHINE)
    assert verdict.passed and verdict.status == MISSING
    (check,) = verdict.missing
    assert "other call settings" in check.detail and "'num_inference_steps': 30" in check.detail


def test_compile_health_and_syncs_per_step_are_gated_by_policy():
    data = {**measurement(1.0, 1.0), "graph_breaks": 2, "recompiles": 0}
    checks = check_diagnostics(data, bounds())
    assert by_field(checks, "graph breaks", "policy").status == FAIL
    assert (
        "max_graph_breaks from perfsuite built-in default"
        in by_field(checks, "graph breaks", "policy").source
    )
    assert by_field(checks, "recompiles", "policy").status == PASS
    assert not [c for c in checks if c.field == "syncs per step"]  # not set in the policy: not checked

    strict = bounds(max_syncs_per_step=0.0)
    data["diagnostics"] = {"host_syncs": {"per_step_syncs": [0, 1, 0], "unavailable_reason": None}}
    check = by_field(check_diagnostics(data, strict), "syncs per step", "policy")
    assert check.status == FAIL and "1 host-device syncs in the worst" in check.obtained
    data["diagnostics"] = {
        "host_syncs": {"per_step_syncs": None, "unavailable_reason": "no host-device sync on CPU"}
    }
    check = by_field(check_diagnostics(data, strict), "syncs per step", "policy")
    assert check.status == NOT_COMPARED and check.detail == "no host-device sync on CPU"


def test_a_failed_history_check_names_the_versions_that_changed_since_the_baseline():
    old = baseline(measurement(1.0, 1.0, seed=1), machine={**MACHINE, "versions": {"torch": "2.13.0+cpu"}})
    here = {**MACHINE, "versions": {"torch": "2.14.1+cu130", "diffusers": "0.42.1"}}
    slower = judge("tiny-sd", "bf16", "p", measurement(1.3, 1.3, seed=2), bounds(), old, machine=here)
    assert not slower.passed
    (note,) = [n for n in slower.notes if n.startswith("versions differ")]
    assert "torch 2.13.0+cpu -> 2.14.1+cu130" in note
    assert "diffusers (not recorded) -> 0.42.1" in note
    assert "torch 2.13.0+cpu -> 2.14.1+cu130" in slower.message("pytest x --perf-update-baselines")
    same_speed = judge("tiny-sd", "bf16", "p", measurement(1.0, 1.0, seed=3), bounds(), old, machine=here)
    assert same_speed.passed and not same_speed.notes  # versions alone are no finding


def test_recompiles_are_gated_after_warm_up_only_and_warm_up_is_reported():
    regional = {**measurement(1.0, 1.0), "graph_breaks": 0, "recompiles": 0}
    regional.update(unique_graphs=3, warmup_recompiles=2)  # blocks of other shapes, met in warm-up
    check = by_field(check_diagnostics(regional, bounds()), "recompiles", "policy")
    assert check.status == PASS
    assert check.obtained == "0 recompilations after warm-up"
    assert check.detail == "warm-up (not gated): 3 graphs, 2 recompiles"
    every_call = {**regional, "recompiles": 4}  # one on every call after warm-up
    assert by_field(check_diagnostics(every_call, bounds()), "recompiles", "policy").status == FAIL
    allowed = check_diagnostics(every_call, bounds(max_recompiles=4))
    assert by_field(allowed, "recompiles", "policy").status == PASS
    older = {**measurement(1.0, 1.0), "graph_breaks": 0, "recompiles": 0}  # no warm-up keys
    assert by_field(check_diagnostics(older, bounds()), "recompiles", "policy").detail == ""


FUSE_QKV_FAILURE = {
    "kind": "verify",
    "technique": "fuse-qkv",
    "expected": "fuse-qkv active: fused QKV (self-attention) and KV (cross-attention) projections",
    "found": "unet attention uses AttnProcessor2_0",
    "where": "verify, after apply",
    "log": "Traceback (most recent call last):\n  ...\nNotActiveError: fuse-qkv: unet attention uses ...",
}


def test_a_failed_verification_is_one_failed_policy_check_with_its_own_advice():
    verdict = judge_failure("tiny-sd", "fp32+fuse-qkv", "p", FUSE_QKV_FAILURE)
    (check,) = verdict.failures
    assert (verdict.status, check.field, check.kind) == (FAIL, "verify", "policy")
    assert check.obtained == "fuse-qkv: unet attention uses AttnProcessor2_0"
    assert check.expected.startswith("fuse-qkv active:") and check.log.startswith("Traceback")
    assert "verify, after apply" in check.source
    message = verdict.message("pytest 'x' --perf-update-baselines")
    assert "  verify (policy): FAIL\n    obtained: fuse-qkv: unet attention uses AttnProcessor2_0" in message
    assert "the case was not measured" in message
    assert "--perf-update-baselines" not in message and "Traceback" not in message  # the log stays out
    assert Verdict.from_dict(verdict.to_dict()) == verdict


def test_a_dynamo_refusal_is_one_line_with_the_technique_and_the_place():
    failure = {**FUSE_QKV_FAILURE, "kind": "dynamo", "technique": "compile", "where": "unet.py:12 in forward",
               "found": "Unsupported: Call to `torch._dynamo.graph_break()`"}  # fmt: skip
    (check,) = judge_failure("tiny-sd", "fp32+compile", "p", failure).failures
    assert check.line() == (
        "dynamo (policy) fail: compile: Unsupported: Call to `torch._dynamo.graph_break()`; "
        "bound no dynamo error; at unet.py:12 in forward"
    )
    with pytest.raises(ValueError, match="unknown failure kind 'oops'"):
        judge_failure("tiny-sd", "fp32", "p", {**failure, "kind": "oops"})


def test_a_check_without_a_log_still_reads():
    check = judge_failure("m", "c", "p", FUSE_QKV_FAILURE).checks[0]
    data = {key: value for key, value in check.to_dict().items() if key != "log"}
    assert Check.from_dict(data).log == ""
