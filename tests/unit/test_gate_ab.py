"""The ab check kind: the head against the base environment, from a measurement's ``ab`` section."""

from __future__ import annotations

from ab_factory import ab_section

from perfsuite.baselines import Bounds, load_policy
from perfsuite.gate import FAIL, INCONCLUSIVE, NOT_COMPARED, PASS, Verdict, check_ab, judge


def bounds(**overrides: float) -> Bounds:
    values = {
        "min_speedup": 0.0,
        "min_ssim": 0.9,
        "min_ssim_stored": 0.98,
        "latency_tolerance": 0.15,
        "memory_tolerance": 0.10,
        "speedup_tolerance": 0.15,
        "ab_tolerance": 0.05,
    }
    values.update(overrides)
    return Bounds(**values, sources=dict.fromkeys(values, "policy.toml rule #9 (combo='*')"))


def by_field(checks):
    return {check.field: check for check in checks}


def test_a_run_without_a_base_has_no_ab_checks():
    assert check_ab({"latency_median_s": 0.3}, bounds()) == []


def test_same_speed_passes_and_names_the_design_the_bound_and_the_differing_versions():
    checks = by_field(check_ab({"ab": ab_section(1.0)}, bounds()))
    latency = checks["latency"]
    assert (latency.kind, latency.status) == ("ab", PASS)
    assert latency.obtained.startswith("head/base 1.0") and "[99.3% CI" in latency.obtained
    assert "40 pairs in 27 s; head " in latency.obtained and "ms median" in latency.obtained
    assert latency.bound == "head/base at most 1.050x (+5%)"
    assert (
        "ab_tolerance from policy.toml rule #9" in latency.source
        and "/base/.venv/bin/python" in latency.source
    )
    assert (
        "Student t interval over 4 attempts of 10 pairs, each attempt between a base and a head "
        "process of its own"
        in latency.detail
        and "0.01 per direction over 3 looks (0.00333333 each)" in latency.detail
    )
    assert "torch 2.12.0+cpu -> 2.13.0+cpu" in latency.detail
    assert checks["peak memory"].status == PASS and checks["ssim"].status == PASS


def test_the_design_says_how_the_attempts_were_prepared():
    older = {key: value for key, value in ab_section(1.0).items() if key != "head_pids"}
    detail = by_field(check_ab({"ab": older}, bounds()))["latency"].detail
    assert "both sides prepared again between attempts" in detail  # a results file from before
    compiled = {**older, "refreshed": False}
    detail = by_field(check_ab({"ab": compiled}, bounds()))["latency"].detail
    assert "blocks of one prepared case (a compiled case is not prepared again)" in detail


def test_a_slower_head_fails_latency_with_the_whole_interval_above_the_bound():
    latency = by_field(check_ab({"ab": ab_section(1.10)}, bounds()))["latency"]
    assert latency.status == FAIL and "the whole interval lies above 1.050" in latency.detail


def test_an_undecided_comparison_is_inconclusive_never_a_pass():
    section = ab_section(1.05, noise=0.03, max_pairs=20)
    latency = by_field(check_ab({"ab": section}, bounds()))["latency"]
    assert latency.status == INCONCLUSIVE
    assert "still holds 1.050 when sampling stopped (max pairs)" in latency.detail
    verdict = Verdict("tiny-sd", "fp32", "cpu-x", (latency,))
    assert verdict.passed and verdict.status == INCONCLUSIVE and verdict.inconclusive == (latency,)
    assert "inconclusive" not in verdict.message("pytest x")  # reported, not failed, without --perf-strict
    strict = verdict.message("pytest x", strict=True)
    assert "latency (ab): INCONCLUSIVE" in strict and "--perf-ab-max-pairs" in strict


def test_an_inconclusive_comparison_names_the_cap_that_stopped_it():
    section = {**ab_section(1.05, noise=0.03, max_pairs=20), "max_pairs": 20, "max_seconds": 900.0}
    latency = by_field(check_ab({"ab": section}, bounds()))["latency"]
    assert "when sampling stopped (max pairs 20)" in latency.detail
    section = {**section, "stopped": "max seconds"}
    latency = by_field(check_ab({"ab": section}, bounds()))["latency"]
    assert latency.status == INCONCLUSIVE and "when sampling stopped (max seconds 900 s)" in latency.detail


def test_too_few_pairs_for_the_confidence_are_inconclusive():
    section = {**ab_section(1.0), "coverage": 0.0, "confidence": 0.993}
    latency = by_field(check_ab({"ab": section}, bounds()))["latency"]
    assert latency.status == INCONCLUSIVE and "too few attempts" in latency.detail


def test_the_tolerance_comes_from_the_policy():
    section = ab_section(1.10)
    assert by_field(check_ab({"ab": section}, bounds(ab_tolerance=0.20)))["latency"].status == PASS


def test_memory_and_image_compare_head_with_base():
    checks = by_field(check_ab({"ab": ab_section(1.0, head_peak=700 * 2**20, ssim=0.9)}, bounds()))
    memory, image = checks["peak memory"], checks["ssim"]
    assert memory.status == FAIL and memory.detail == "+27.3% vs the base"
    assert memory.obtained.startswith("head 700.0 MiB") and memory.expected.startswith("base 550.0 MiB")
    assert image.status == FAIL and image.obtained.startswith("SSIM 0.9000")
    assert image.expected.startswith("the base environment's image")


def test_missing_numbers_are_not_compared_rather_than_guessed():
    section = {**ab_section(1.0), "fidelity": {"non_finite": "the base output holds 3 NaN"},
               "base_peak_mem_kind": "cuda-allocated"}  # fmt: skip
    checks = by_field(check_ab({"ab": section}, bounds()))
    assert checks["ssim"].status == NOT_COMPARED and "3 NaN" in checks["ssim"].detail
    assert checks["peak memory"].status == NOT_COMPARED
    ratio_less = {key: value for key, value in ab_section(1.0).items() if key != "ratio"}
    assert by_field(check_ab({"ab": ratio_less}, bounds()))["latency"].status == NOT_COMPARED


def test_judge_adds_the_ab_checks_to_policy_and_history():
    measurement = {"speedup": 1.0, "speedup_ci": [0.9, 1.1], "ab": ab_section(1.10)}
    verdict = judge("tiny-sd", "fp32", "cpu-x", measurement, bounds(), None)
    kinds = {(c.field, c.kind) for c in verdict.checks}
    assert {("speedup", "policy"), ("latency", "ab"), ("peak memory", "ab"), ("ssim", "ab")} <= kinds
    assert verdict.status == FAIL
    assert "an ab check compares this environment (head) with the base one" in verdict.message("pytest x")
    assert Verdict.from_dict(verdict.to_dict()) == verdict


def test_the_shipped_policy_sets_ab_tolerance_per_profile(tmp_path):
    from pathlib import Path

    policy = load_policy(Path(__file__).resolve().parents[2] / "baselines" / "policy.toml")
    assert policy.bounds_for("tiny-sd", "fp32", "cpu-intel-xeon-2c").ab_tolerance == 0.05
    assert policy.bounds_for("sd15", "bf16", "cuda-nvidia-h200").ab_tolerance == 0.02
    older = tmp_path / "policy.toml"  # a policy written before ab_tolerance existed still loads
    older.write_text(
        "schema_version = 1\n[defaults]\nmin_ssim = 0.9\nlatency_tolerance = 0.1\nmemory_tolerance = 0.1\n"
        "speedup_tolerance = 0.1\n"
    )
    assert load_policy(older).bounds_for("m", "fp32", "cpu-x").ab_tolerance == 0.05
