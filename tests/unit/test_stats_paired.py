"""Paired ratios for A/B runs: the exact signed-rank distribution, the Hodges-Lehmann interval, the
ratio of paired samples and the sequential plan, against known values and scipy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from perfsuite.stats import attempt_ratio, hodges_lehmann, paired_ratio, sequential_plan, signed_rank_cdf


def brute_force_cdf(n: int) -> np.ndarray:
    """Every one of the 2**n sign patterns of the ranks 1..n, counted."""
    sums = [sum(r for r, s in zip(range(1, n + 1), signs, strict=True) if s) for signs in
            itertools.product((0, 1), repeat=n)]  # fmt: skip
    counts = np.bincount(sums, minlength=n * (n + 1) // 2 + 1)
    return np.cumsum(counts) / 2**n


@pytest.mark.parametrize("n", [1, 2, 5, 8, 12])
def test_the_signed_rank_distribution_counts_every_sign_pattern(n):
    np.testing.assert_allclose(signed_rank_cdf(n), brute_force_cdf(n), rtol=0, atol=1e-15)


def test_the_signed_rank_distribution_matches_the_printed_tables():
    # n = 10: P(T <= 8) = 25/1024 and P(T <= 9) = 33/1024, so 8 is the two-sided 5% critical value;
    # n = 20: the two-sided 5% critical value is 52 (any table of Wilcoxon signed-rank critical values).
    cdf = signed_rank_cdf(10)
    assert cdf[8] * 1024 == pytest.approx(25) and cdf[9] * 1024 == pytest.approx(33)
    cdf = signed_rank_cdf(20)
    assert cdf[52] <= 0.025 < cdf[53]
    assert signed_rank_cdf(30)[-1] == pytest.approx(1.0)


def test_hodges_lehmann_estimate_is_the_median_of_the_walsh_averages():
    # Walsh averages of (1, 2, 9): 1, 1.5, 2, 5, 5.5, 9 -> median (2 + 5) / 2.
    assert hodges_lehmann([1.0, 2.0, 9.0], 0.5).estimate == pytest.approx(3.5)
    # An outlier barely moves it: (1, 2, 3, 4, 100) -> 3.0, where the mean is 22.
    assert hodges_lehmann([1.0, 2.0, 3.0, 4.0, 100.0], 0.5).estimate == pytest.approx(3.0)


@pytest.mark.parametrize("confidence", [0.95, 0.996])
def test_the_interval_excludes_a_value_exactly_when_scipys_wilcoxon_test_rejects_it(confidence):
    rng = np.random.default_rng(7)
    alpha = (1 - confidence) / 2
    for _ in range(15):
        n = int(rng.integers(10, 45))
        values = rng.normal(0.02, 0.05, n)
        found = hodges_lehmann(values, confidence)
        assert found.reaches_confidence and found.coverage >= confidence
        for mu in rng.normal(0.02, 0.05, 3):
            greater = scipy_stats.wilcoxon(values - mu, alternative="greater", method="exact").pvalue
            less = scipy_stats.wilcoxon(values - mu, alternative="less", method="exact").pvalue
            assert (found.low > mu) == (greater <= alpha)
            assert (found.high < mu) == (less <= alpha)


def test_too_few_values_give_the_full_range_and_say_the_confidence_is_not_reached():
    found = hodges_lehmann([0.1, 0.2, 0.3, 0.4, 0.5], 0.99)  # 2 * 2**-5 > 1%: no interval reaches it
    assert not found.reaches_confidence
    assert (found.low, found.high) == (0.1, 0.5)
    assert found.coverage == pytest.approx(1 - 2 / 32)


def test_large_samples_use_the_normal_approximation_and_stay_close_to_the_exact_interval():
    values = np.random.default_rng(3).normal(0.0, 1.0, 401).tolist()
    approx = hodges_lehmann(values, 0.996)
    exact = hodges_lehmann(values[:400], 0.996)
    assert approx.reaches_confidence and approx.coverage == pytest.approx(0.996, abs=5e-4)
    assert approx.low == pytest.approx(exact.low, abs=0.05) and approx.high == pytest.approx(
        exact.high, abs=0.05
    )


def test_a_paired_ratio_is_taken_on_the_log_scale_and_cancels_a_common_drift():
    # The machine doubles in speed halfway; the head stays 10% slower than the base in every pair.
    base = [1.0] * 10 + [0.5] * 10
    head = [b * 1.1 * (1 + 0.002 * ((i % 3) - 1)) for i, b in enumerate(base)]
    ratio = paired_ratio(head, base, 0.99)
    assert ratio.n_pairs == 20 and ratio.reaches_confidence
    assert ratio.estimate == pytest.approx(1.1, rel=1e-3)
    assert 1.09 < ratio.ci_low <= ratio.estimate <= ratio.ci_high < 1.11
    assert ratio.position(1.05) == "above" and ratio.position(1.2) == "below"
    assert ratio.position(1.1) == "straddles"


def test_a_ratio_whose_interval_cannot_reach_its_confidence_never_decides():
    ratio = paired_ratio([2.0] * 4, [1.0] * 4, 0.996)
    assert not ratio.reaches_confidence and ratio.position(1.05) == "straddles"


@pytest.mark.parametrize(
    ("head", "base", "message"),
    [
        ([1.0, 2.0], [1.0], "equal lengths"),
        ([1.0, 0.0], [1.0, 1.0], "strictly positive"),
        ([1.0, math.nan], [1.0, 1.0], "finite"),
        ([], [], "empty"),
    ],
)
def test_bad_paired_samples_are_refused_with_the_reason(head, base, message):
    with pytest.raises(ValueError, match=message):
        paired_ratio(head, base)


def test_the_sequential_plan_doubles_up_to_the_cap_and_splits_alpha_over_its_looks():
    plan = sequential_plan(40, 160, 0.01)
    assert plan.looks == (40, 80, 160) and plan.attempt_pairs == 10
    assert plan.alpha_per_look == pytest.approx(0.01 / 3)
    assert plan.confidence_per_look == pytest.approx(1 - 0.02 / 3)
    assert sequential_plan(10, 160, 0.01, attempt_pairs=2).looks == (10, 20, 40, 80, 160)
    assert sequential_plan(40, 100).looks == (40, 80, 100)
    assert sequential_plan(7, 7, attempt_pairs=2).looks == (6,)  # whole attempts of an even size
    assert sequential_plan(25, 95).looks == (20, 40, 80, 90)
    for bad in ((1, 10), (40, 30), (19, 40)):
        with pytest.raises(ValueError, match="min_pairs"):
            sequential_plan(*bad)
    with pytest.raises(ValueError, match="even number"):
        sequential_plan(40, 160, attempt_pairs=3)
    with pytest.raises(ValueError, match="alpha"):
        sequential_plan(40, 80, 0.6)


def test_the_false_alarm_rate_over_all_looks_stays_below_alpha():
    """Simulated A/A comparisons (no difference, heavy-tailed call noise, and an offset drawn anew in
    each attempt) stopped at the first decided look: the share that ever reads 'above 1.0' must stay
    near alpha = 1% (at most 1.5% of 1000 runs: a true 1% rate reads above that about 6% of the time;
    10,000 such runs read 0.81% above and 0.73% below)."""
    rng = np.random.default_rng(123)
    plan = sequential_plan(40, 160, 0.01)
    size = plan.attempt_pairs
    alarms = 0
    runs = 1000
    for _ in range(runs):
        n = plan.looks[-1]
        offsets = np.repeat(rng.normal(0, 0.02, n // size), size)
        logs = rng.standard_t(3, n) * 0.03 + offsets
        attempts = np.arange(n) // size
        for look in plan.looks:
            ratio = attempt_ratio(
                np.exp(logs[:look]), np.ones(look), attempts[:look], plan.confidence_per_look
            )
            if ratio.position(1.0) != "straddles":
                alarms += ratio.position(1.0) == "above"
                break
    assert alarms / runs <= 0.015


def test_an_attempt_ratio_counts_attempts_not_pairs():
    """Four attempts whose pairs agree closely within each attempt, but whose attempts disagree: the
    interval is as wide as the attempts' spread, where a pair-level interval would be narrow."""
    offsets = [1.04, 0.97, 1.02, 0.99]
    head = [o * (1.0 + 0.001 * (i % 3)) for o in offsets for i in range(10)]
    base = [1.0] * 40
    attempts = [a for a in range(4) for _ in range(10)]
    found = attempt_ratio(head, base, attempts, 0.95)
    assert found.attempts == 4 and found.n_pairs == 40
    assert [round(e, 3) for e in found.attempt_estimates] == [1.041, 0.971, 1.021, 0.991]
    assert found.ci_low < 0.98 and found.ci_high > 1.03  # the attempts' spread, not the pairs'
    assert found.ci_low < 1.0 < found.ci_high
    assert paired_ratio(head, base, 0.95).ci_high - paired_ratio(head, base, 0.95).ci_low < 0.07
    from scipy.stats import t

    logs = [math.log(e) for e in found.attempt_estimates]
    half = t.ppf(0.975, 3) * np.std(logs, ddof=1) / 2
    assert math.log(found.ci_high) == pytest.approx(np.mean(logs) + half)


def test_one_attempt_cannot_reach_a_confidence_and_bad_attempts_are_refused():
    found = attempt_ratio([1.1, 1.2], [1.0, 1.0], [0, 0], 0.95)
    assert found.attempts == 1 and not found.reaches_confidence and found.position(1.0) == "straddles"
    same = attempt_ratio([2.0] * 4, [1.0] * 4, [0, 0, 1, 1], 0.95)
    assert same.ci_low == same.ci_high == pytest.approx(2.0) and same.position(1.5) == "above"
    with pytest.raises(ValueError, match="equal lengths"):
        attempt_ratio([1.0, 1.0], [1.0, 1.0], [0])


def test_the_order_effect_within_pairs_cancels_in_abba_blocks():
    """The first call of a pair runs 5% slower than the second: head-first pairs read 1.05, base-first
    pairs 1/1.05. Each ABBA block holds one of each, so every attempt reads 1.0 and the interval is
    tight, where the pairs alone spread by 10%."""
    rng = np.random.default_rng(3)
    head, base, attempts = [], [], []
    for pair in range(40):
        first = 1.05 if pair % 2 else 1 / 1.05  # odd pairs: the head goes first
        noise = float(np.exp(rng.normal(0, 0.002)))
        head.append(0.3 * first * noise)
        base.append(0.3)
        attempts.append(pair // 10)
    found = attempt_ratio(head, base, attempts, 0.99)
    assert all(abs(e - 1.0) < 0.005 for e in found.attempt_estimates)
    assert 0.99 < found.ci_low <= found.ci_high < 1.01
