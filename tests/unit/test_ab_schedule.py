"""ABBA order and adaptive sampling, with synthetic timings and a fake clock (no pipeline)."""

from __future__ import annotations

import numpy as np
import pytest

from perfsuite.ab.schedule import INCONCLUSIVE, PASS, REGRESSION, run_pairs
from perfsuite.stats import sequential_plan


class Machine:
    """Two sides on a drifting machine: each call costs ``work * speed(t) * noise`` seconds of a fake
    clock; the machine's speed doubles every other minute, as on a shared runner."""

    def __init__(self, head_work: float, base_work: float, noise: float, seed: int = 0) -> None:
        self.now = 0.0
        self.work = {"head": head_work, "base": base_work}
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.order: list[str] = []

    def clock(self) -> float:
        return self.now

    def call(self, side: str) -> float:
        slow = 2.0 if int(self.now // 60) % 2 else 1.0
        seconds = self.work[side] * slow * float(np.exp(self.rng.normal(0, self.noise)))
        self.now += seconds
        self.order.append(side)
        return seconds

    def run(self, bound: float = 1.05, max_seconds: float = 1e9, min_pairs: int = 10, max_pairs: int = 160):
        plan = sequential_plan(min_pairs, max_pairs, 0.01)
        return run_pairs(
            lambda: self.call("head"), lambda: self.call("base"), plan, bound, max_seconds, self.clock
        )


def test_pairs_alternate_which_side_goes_first():
    machine = Machine(0.3, 0.3, 0.01)
    outcome = machine.run()
    assert machine.order[:8] == ["base", "head", "head", "base", "base", "head", "head", "base"]
    assert [p.head_first for p in outcome.pairs[:4]] == [False, True, False, True]
    assert len(outcome.pairs) % 2 == 0


def test_a_same_speed_comparison_passes_at_the_first_look_despite_a_2x_drift():
    outcome = Machine(0.3, 0.3, 0.01).run()
    assert outcome.decision == PASS and outcome.stopped == "decided"
    assert outcome.looks == (10,) and len(outcome.pairs) == 10
    assert 0.98 < outcome.ratio.estimate < 1.02


def test_a_10_percent_slower_head_is_a_regression():
    outcome = Machine(0.33, 0.3, 0.02).run()
    assert outcome.decision == REGRESSION
    assert outcome.ratio.ci_low > 1.05 and outcome.ratio.estimate == pytest.approx(1.1, rel=0.02)


def test_noisy_pairs_double_until_decided():
    outcome = Machine(0.3, 0.3, 0.05, seed=2).run()
    assert outcome.decision == PASS
    assert outcome.looks[0] == 10 and len(outcome.looks) > 1
    assert list(outcome.looks) == [10 * 2**i for i in range(len(outcome.looks))]


def test_a_head_right_at_the_bound_is_inconclusive_at_the_cap_never_a_pass():
    outcome = Machine(0.315, 0.3, 0.03).run(max_pairs=40)
    assert outcome.decision == INCONCLUSIVE and outcome.stopped == "max pairs"
    assert outcome.looks == (10, 20, 40)


def test_the_time_cap_stops_sampling_after_the_first_batch():
    outcome = Machine(0.315, 0.3, 0.03).run(max_seconds=15.0)
    assert outcome.decision == INCONCLUSIVE and outcome.stopped == "max seconds"
    assert len(outcome.pairs) % 2 == 0 and len(outcome.pairs) >= 10
    assert outcome.pairs[-1].started_s < 15.0
    # The first batch always runs whole, even when it alone overruns the cap.
    short = Machine(0.315, 0.3, 0.03).run(max_seconds=1.0)
    assert len(short.pairs) == 10 and short.looks == (10,)


def test_the_outcome_serializes_every_pair_and_the_design():
    outcome = Machine(0.3, 0.3, 0.01).run()
    data = outcome.to_dict()
    assert data["pairs"] == 10 and len(data["head_samples_s"]) == len(data["started_s"]) == 10
    assert data["planned_looks"] == [10, 20, 40, 80, 160] and data["alpha_per_look"] == pytest.approx(0.002)
    assert data["decision"] == PASS and data["bound"] == 1.05
    with pytest.raises(ValueError, match="max_seconds"):
        Machine(0.3, 0.3, 0.01).run(max_seconds=0)


def test_settings_and_option_values_are_checked():
    import argparse

    from perfsuite.ab.head import ABSettings
    from perfsuite.options import positive_float

    assert ABSettings("python").min_pairs == 10 and ABSettings("python").max_pairs == 160
    with pytest.raises(ValueError, match="min_pairs <= max_pairs"):
        ABSettings("python", min_pairs=20, max_pairs=10)
    with pytest.raises(ValueError, match="max_seconds must be positive"):
        ABSettings("python", max_seconds=0)
    assert positive_float("2.5") == 2.5
    for bad, message in (("soon", "expected a number of seconds"), ("0", "positive"), ("inf", "finite")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            positive_float(bad)
