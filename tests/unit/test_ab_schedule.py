"""ABBA order, attempts and adaptive sampling, with synthetic timings and a fake clock (no pipeline)."""

from __future__ import annotations

import numpy as np
import pytest

from perfsuite.ab.schedule import INCONCLUSIVE, PASS, REGRESSION, run_pairs
from perfsuite.stats import paired_ratio, sequential_plan


class Machine:
    """Two sides on a drifting machine: each call costs ``work * speed(t) * offset * noise`` seconds
    of a fake clock; the machine's speed doubles every other minute, as on a shared runner. Each side
    keeps an ``offset`` (log-normal, sd ``offset_sd``) for as long as its case is prepared: a refresh
    (``refresh_s`` of the clock) draws new offsets, as a process keeps its memory layout until then."""

    def __init__(
        self, head_work: float, base_work: float, noise: float, seed: int = 0, offset_sd: float = 0.0
    ) -> None:
        self.now = 0.0
        self.work = {"head": head_work, "base": base_work}
        self.noise = noise
        self.offset_sd = offset_sd
        self.rng = np.random.default_rng(seed)
        self.order: list[str] = []
        self.refreshes = 0
        self.refresh_s = 0.0
        #: How much of each refresh it reports as the session's start-up (left out of the time cap).
        self.startup_s = 0.0
        self.offset = {"head": 1.0, "base": 1.0}
        self.draw()

    def draw(self) -> None:
        for side in self.offset:
            self.offset[side] = float(np.exp(self.rng.normal(0, self.offset_sd)))

    def clock(self) -> float:
        return self.now

    def call(self, side: str) -> float:
        slow = 2.0 if int(self.now // 60) % 2 else 1.0
        seconds = self.work[side] * slow * self.offset[side] * float(np.exp(self.rng.normal(0, self.noise)))
        self.now += seconds
        self.order.append(side)
        return seconds

    def refresh(self) -> float:
        self.refreshes += 1
        self.now += self.refresh_s
        self.draw()
        return self.startup_s

    def run(
        self,
        bound: float = 1.05,
        max_seconds: float = 1e9,
        min_pairs: int = 40,
        max_pairs: int = 160,
        attempt_pairs: int = 10,
        refresh: bool = True,
    ):
        plan = sequential_plan(min_pairs, max_pairs, 0.01, attempt_pairs)
        return run_pairs(
            lambda: self.call("head"),
            lambda: self.call("base"),
            plan,
            bound,
            max_seconds,
            self.clock,
            refresh=self.refresh if refresh else None,
        )


def test_pairs_alternate_which_side_goes_first():
    machine = Machine(0.3, 0.3, 0.01)
    outcome = machine.run()
    assert machine.order[:8] == ["base", "head", "head", "base", "base", "head", "head", "base"]
    assert [p.head_first for p in outcome.pairs[:4]] == [False, True, False, True]
    assert len(outcome.pairs) % 2 == 0


def test_both_sides_are_prepared_again_between_attempts_never_within_one():
    machine = Machine(0.3, 0.3, 0.01)
    machine.refresh_s = 2.0
    outcome = machine.run()
    assert len(outcome.pairs) == 40 and outcome.ratio.attempts == 4
    assert machine.refreshes == 3  # between the four attempts, not after the last
    assert [p.attempt for p in outcome.pairs] == [a for a in range(4) for _ in range(10)]
    assert outcome.refreshed and outcome.refresh_s == pytest.approx(6.0)
    data = outcome.to_dict()
    assert data["attempts"] == 4 and data["attempt_pairs"] == 10 and len(data["attempt_ratios"]) == 4
    assert data["attempt"][:11] == [0] * 10 + [1] and data["refreshed"] is True


def test_a_same_speed_comparison_passes_at_the_first_look_despite_a_2x_drift():
    outcome = Machine(0.3, 0.3, 0.01).run()
    assert outcome.decision == PASS and outcome.stopped == "decided"
    assert outcome.looks == (40,) and len(outcome.pairs) == 40
    assert 0.98 < outcome.ratio.estimate < 1.02


def test_a_10_percent_slower_head_is_a_regression():
    outcome = Machine(0.33, 0.3, 0.02).run()
    assert outcome.decision == REGRESSION
    assert outcome.ratio.ci_low > 1.05 and outcome.ratio.estimate == pytest.approx(1.1, rel=0.02)


def test_an_offset_that_lasts_as_long_as_a_process_is_counted_by_the_attempts():
    """The same work on both sides, but each prepared case runs 3% (sd) slower or faster for as long
    as it lives. Pairs between the same two cases narrow around their offset: a pair-level interval
    declares a difference that is not there. Attempts draw the offsets anew, and their interval
    holds the truth."""
    machine = Machine(0.3, 0.3, 0.01, seed=5, offset_sd=0.03)
    stuck = machine.run(refresh=False, bound=1.10)
    pair_level = paired_ratio([p.head_s for p in stuck.pairs], [p.base_s for p in stuck.pairs], 0.99)
    assert pair_level.position(1.0) != "straddles"  # a confident, wrong difference
    missed = 0
    for seed in range(20):
        outcome = Machine(0.3, 0.3, 0.01, seed=seed, offset_sd=0.03).run(bound=1.10)
        missed += not outcome.ratio.ci_low <= 1.0 <= outcome.ratio.ci_high
    assert missed <= 1


def test_noisy_attempts_double_until_decided():
    outcome = Machine(0.3, 0.3, 0.05, seed=1, offset_sd=0.02).run()
    assert outcome.decision == PASS
    assert outcome.looks[0] == 40 and len(outcome.looks) > 1
    assert list(outcome.looks) == [40 * 2**i for i in range(len(outcome.looks))]


def test_a_head_right_at_the_bound_is_inconclusive_at_the_cap_never_a_pass():
    outcome = Machine(0.315, 0.3, 0.03).run(max_pairs=80)
    assert outcome.decision == INCONCLUSIVE and outcome.stopped == "max pairs"
    assert outcome.looks == (40, 80)


def test_the_time_cap_stops_sampling_at_an_attempt_after_the_first_batch():
    outcome = Machine(0.315, 0.3, 0.03).run(max_seconds=40.0)
    assert outcome.decision == INCONCLUSIVE and outcome.stopped == "max seconds"
    assert len(outcome.pairs) % 10 == 0 and len(outcome.pairs) >= 40
    assert outcome.pairs[-1].started_s < 40.0
    # The first batch always runs whole, even when it alone overruns the cap.
    short = Machine(0.315, 0.3, 0.03).run(max_seconds=1.0)
    assert len(short.pairs) == 40 and short.looks == (40,)


def test_the_time_cap_leaves_out_the_start_up_a_refresh_reports():
    """A session's first case starts the workers that later cases keep. Charged to it, those starts
    stop its sampling early; reported as start-up, they leave it the pairs a later case gets."""

    def run(startup_s: float):
        machine = Machine(0.315, 0.3, 0.03)
        machine.refresh_s = 20.0
        machine.startup_s = startup_s
        return machine.run(max_seconds=100.0)

    charged, spared = run(0.0), run(20.0)
    assert charged.stopped == spared.stopped == "max seconds"
    assert charged.startup_s == 0.0 and spared.startup_s == pytest.approx(spared.refresh_s)
    assert len(spared.pairs) > len(charged.pairs)
    # What the cap saw: the pairs alone, within the cap, once the start-up is left out.
    capped_s = spared.seconds - spared.startup_s
    assert capped_s < 100.0 + capped_s / spared.ratio.attempts
    assert spared.to_dict()["startup_s"] == spared.startup_s
    # A refresh cannot report more start-up than the time it took.
    machine = Machine(0.3, 0.3, 0.01)
    machine.refresh_s, machine.startup_s = 2.0, 50.0
    assert machine.run().startup_s == pytest.approx(6.0)


def test_the_outcome_serializes_every_pair_and_the_design():
    outcome = Machine(0.3, 0.3, 0.01).run(refresh=False)
    data = outcome.to_dict()
    assert data["pairs"] == 40 and len(data["head_samples_s"]) == len(data["started_s"]) == 40
    assert data["planned_looks"] == [40, 80, 160] and data["alpha_per_look"] == pytest.approx(0.01 / 3)
    assert data["decision"] == PASS and data["bound"] == 1.05
    assert data["refreshed"] is False and data["refresh_s"] == 0.0
    with pytest.raises(ValueError, match="max_seconds"):
        Machine(0.3, 0.3, 0.01).run(max_seconds=0)


def test_settings_and_option_values_are_checked():
    import argparse

    from perfsuite.ab.head import ABSettings
    from perfsuite.options import positive_float

    settings = ABSettings("python")
    assert (settings.min_pairs, settings.max_pairs, settings.attempt_pairs) == (40, 160, 10)
    assert settings.plan().looks == (40, 80, 160)
    with pytest.raises(ValueError, match="min_pairs <= max_pairs"):
        ABSettings("python", min_pairs=40, max_pairs=20)
    with pytest.raises(ValueError, match="2 attempts"):
        ABSettings("python", min_pairs=10)
    with pytest.raises(ValueError, match="even number"):
        ABSettings("python", attempt_pairs=5)
    with pytest.raises(ValueError, match="max_seconds must be positive"):
        ABSettings("python", max_seconds=0)
    assert positive_float("2.5") == 2.5
    for bad, message in (("soon", "expected a number of seconds"), ("0", "positive"), ("inf", "finite")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            positive_float(bad)


def test_settings_take_one_cases_caps():
    from perfsuite.ab.head import ABSettings

    settings = ABSettings("python")
    assert settings.capped() == settings
    capped = settings.capped(max_pairs=320, max_seconds=900.0)
    assert (capped.max_pairs, capped.max_seconds, capped.min_pairs) == (320, 900.0, 40)
    assert capped.plan().looks == (40, 80, 160, 320) and settings.plan().looks == (40, 80, 160)
    with pytest.raises(ValueError, match="min_pairs <= max_pairs"):
        settings.capped(max_pairs=20)


class _Options:
    """A pytest.Config stand-in that answers getoption from a dict."""

    def __init__(self, **values):
        self.values = values

    def getoption(self, name, default=None):
        return self.values.get(name, default)


def test_policy_caps_apply_per_case_unless_the_command_line_gives_them(tmp_path):
    from perfsuite.ab.head import ABSettings
    from perfsuite.baselines import load_policy
    from perfsuite.plugin import _ab_case_settings

    policy = tmp_path / "policy.toml"
    policy.write_text(
        "schema_version = 1\n[defaults]\nmin_ssim = 0.9\nlatency_tolerance = 0.1\n"
        "memory_tolerance = 0.1\nspeedup_tolerance = 0.1\n"
        "[[rule]]\ncombo = 'fp16'\nab_max_pairs = 320\nab_max_seconds = 900\n"
        "[[rule]]\ncombo = 'tight'\nab_max_pairs = 20\n"
    )
    bounds = load_policy(policy).bounds_for
    case = type("Case", (), {"id": "tiny-sd/fp16"})()
    session = ABSettings("python")
    none = _Options(perf_ab_max_pairs=None, perf_ab_max_seconds=None)
    fp16 = _ab_case_settings(none, session, bounds("tiny-sd", "fp16", "cpu-x"), case)
    assert (fp16.max_pairs, fp16.max_seconds) == (320, 900.0)
    fp32 = _ab_case_settings(none, session, bounds("tiny-sd", "fp32", "cpu-x"), case)
    assert fp32 == session  # no rule: the options' defaults
    given = ABSettings("python", max_pairs=80, max_seconds=60.0)
    options = _Options(perf_ab_max_pairs=80, perf_ab_max_seconds=60.0)
    assert _ab_case_settings(options, given, bounds("tiny-sd", "fp16", "cpu-x"), case) == given
    with pytest.raises(
        pytest.fail.Exception,
        match=r"ab_max_pairs = 20 from policy.toml rule #2 .*"
        r"min_pairs <= max_pairs.*raise ab_max_pairs there, or lower --perf-ab-min-pairs",
    ):
        _ab_case_settings(none, session, bounds("tiny-sd", "tight", "cpu-x"), case)
