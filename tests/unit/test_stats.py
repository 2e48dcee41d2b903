"""Tests of perfsuite.stats: summaries, median CI, bootstrap speedup, Mann-Whitney U."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perfsuite.stats import (
    NOISY_REL_IQR,
    MannWhitney,
    Ratio,
    Summary,
    is_noisy,
    is_significantly_greater,
    mann_whitney_u,
    median_ci,
    relative_change,
    speedup,
)

# --- Summary ---------------------------------------------------------------------------------------


def test_summary_hand_computed() -> None:
    s = Summary.from_samples([5.0, 1.0, 4.0, 2.0, 3.0])
    assert s.n == 5
    assert (s.median, s.q1, s.q3, s.iqr) == (3.0, 2.0, 4.0, 2.0)
    assert s.mean == 3.0
    assert s.stdev == pytest.approx(math.sqrt(2.5))
    assert (s.min, s.max) == (1.0, 5.0)
    assert s.rel_iqr == pytest.approx(2.0 / 3.0)
    assert s.samples == (5.0, 1.0, 4.0, 2.0, 3.0)  # raw order kept


def test_summary_keeps_full_precision() -> None:
    samples = [0.1 + 0.2, 1e-9 / 3.0, 0.123456789012345678]
    s = Summary.from_samples(samples)
    assert s.samples == tuple(samples)
    assert (s.min, s.median, s.max) == (samples[1], samples[2], samples[0])  # not rounded


def test_single_sample() -> None:
    s = Summary.from_samples([0.5])
    assert (s.median, s.stdev, s.iqr, s.rel_iqr) == (0.5, 0.0, 0.0, 0.0)
    assert (s.ci_low, s.ci_high) == (0.5, 0.5)
    assert not s.ci_reaches_confidence


@pytest.mark.parametrize(
    ("n", "low", "high", "coverage", "reaches"),
    [
        (5, 1.0, 5.0, 1 - 2 / 32, False),  # too few: widest interval, flagged
        (6, 1.0, 6.0, 1 - 2 / 64, True),
        (10, 2.0, 9.0, 1 - 2 * 11 / 1024, True),  # classic [x(2), x(9)] at 97.9 %
        (20, 6.0, 15.0, 1 - 2 * 21700 / 2**20, True),  # P(B <= 5) = 21700 / 2**20
    ],
)
def test_median_ci_order_statistics(n: int, low: float, high: float, coverage: float, reaches: bool) -> None:
    s = Summary.from_samples(range(1, n + 1))
    assert (s.ci_low, s.ci_high) == (low, high)
    assert s.ci_coverage == pytest.approx(coverage)
    assert s.ci_reaches_confidence is reaches


def test_median_ci_narrows_with_lower_confidence() -> None:
    data = tuple(float(x) for x in range(1, 51))
    low99, high99, _ = median_ci(data, 0.99)
    low50, high50, cov50 = median_ci(data, 0.5)
    assert low99 < low50 <= 25.5 <= high50 < high99
    assert cov50 >= 0.5


def test_median_ci_covers_true_median_at_nominal_rate() -> None:
    rng = np.random.default_rng(1234)
    true_median = math.log(2.0)  # median of Exp(1)
    trials, covered, nominal = 1000, 0, []
    for _ in range(trials):
        s = Summary.from_samples(rng.exponential(1.0, size=25))
        covered += s.ci_low <= true_median <= s.ci_high
        nominal.append(s.ci_coverage)
    assert min(nominal) >= 0.95
    # exact coverage for n = 25 is 0.957; 1000 trials -> standard error ~0.0065
    assert 0.93 <= covered / trials <= 0.985


def test_noisy_flag() -> None:
    quiet = Summary.from_samples([1.00, 1.01, 0.99, 1.02, 0.98])
    noisy = Summary.from_samples([1.0, 1.5, 0.7, 1.3, 0.9])
    assert NOISY_REL_IQR == 0.10
    assert not quiet.is_noisy and not is_noisy(quiet)
    assert noisy.is_noisy and is_noisy(noisy)
    assert not is_noisy(noisy, threshold=1.0)


def test_zero_median_rel_iqr() -> None:
    assert Summary.from_samples([0.0, 0.0, 0.0, 1.0]).rel_iqr == math.inf
    assert Summary.from_samples([0.0, 0.0]).rel_iqr == 0.0


@pytest.mark.parametrize(
    ("samples", "match"),
    [
        ([], "empty"),
        ([1.0, math.nan], r"samples\[1\] is nan: samples must be finite"),
        ([math.inf], "finite"),
        ([1.0, -0.5], r"samples\[1\] is -0.5: samples must be non-negative"),
    ],
)
def test_summary_validation(samples: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Summary.from_samples(samples)


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.1, 95.0])
def test_confidence_validation(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence must be strictly between 0 and 1"):
        Summary.from_samples([1.0, 2.0], confidence=confidence)


# --- speedup ---------------------------------------------------------------------------------------


def _lognormal(rng: np.random.Generator, n: int, scale: float, sigma: float = 0.05) -> list[float]:
    return list(scale * rng.lognormal(mean=0.0, sigma=sigma, size=n))


def test_speedup_contains_true_ratio() -> None:
    rng = np.random.default_rng(7)
    reference = _lognormal(rng, 30, 1.25)
    candidate = _lognormal(rng, 30, 1.0)
    ratio = speedup(reference, candidate)
    assert isinstance(ratio, Ratio)
    assert ratio.ci_low <= 1.25 <= ratio.ci_high
    assert ratio.ci_low <= ratio.estimate <= ratio.ci_high
    assert ratio.estimate == pytest.approx(np.median(reference) / np.median(candidate))
    assert ratio.ci_low > 1.0  # clearly faster
    assert (ratio.confidence, ratio.n_boot, ratio.seed) == (0.95, 2000, 0)


def test_speedup_coverage_over_repeats() -> None:
    rng = np.random.default_rng(99)
    hits = 0
    for _ in range(40):
        ratio = speedup(_lognormal(rng, 25, 1.25), _lognormal(rng, 25, 1.0), n_boot=500)
        hits += ratio.ci_low <= 1.25 <= ratio.ci_high
    assert hits >= 33  # nominal 95 %; percentile bootstrap of medians is a bit liberal


def test_speedup_is_deterministic_per_seed() -> None:
    rng = np.random.default_rng(3)
    ref, cand = _lognormal(rng, 15, 2.0, 0.2), _lognormal(rng, 12, 1.0, 0.2)
    assert speedup(ref, cand, seed=5) == speedup(ref, cand, seed=5)
    assert speedup(ref, cand, seed=5) != speedup(ref, cand, seed=6)
    assert speedup(ref, cand, seed=5).estimate == speedup(ref, cand, seed=6).estimate


def test_speedup_validation() -> None:
    with pytest.raises(ValueError, match="reference_samples is empty"):
        speedup([], [1.0])
    with pytest.raises(ValueError, match="strictly positive"):
        speedup([1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="n_boot"):
        speedup([1.0], [1.0], n_boot=0)
    with pytest.raises(ValueError, match=r"candidate_samples\[0\] is nan"):
        speedup([1.0], [math.nan])


# --- Mann-Whitney U --------------------------------------------------------------------------------


def test_mann_whitney_hand_computed_no_ties() -> None:
    # a entirely above b: U = 9 of 9 pairs; var = 3*3/12 * 7 = 5.25; z = (9 - 4.5 - 0.5) / sqrt(5.25)
    r = mann_whitney_u([4.0, 5.0, 6.0], [1.0, 2.0, 3.0])
    assert isinstance(r, MannWhitney)
    assert (r.u, r.u_b, r.n_a, r.n_b, r.prob_greater) == (9.0, 0.0, 3, 3, 1.0)
    assert r.p_greater == pytest.approx(0.0404277991850, rel=1e-9)
    assert r.p_two_sided == pytest.approx(2 * 0.0404277991850, rel=1e-9)
    assert r.p_less == pytest.approx(0.985451834129, rel=1e-9)


def test_mann_whitney_hand_computed_with_ties() -> None:
    # pairs a > b: 1 vs {2,3}: 0; 2 vs {2,3}: 0.5 twice -> U = 1. Ties {2,2,2}: t^3 - t = 24,
    # var = 6/12 * (6 - 24/20) = 2.4; p_greater = sf((1 - 3 - 0.5) / sqrt(2.4)).
    r = mann_whitney_u([1.0, 2.0, 2.0], [2.0, 3.0])
    assert (r.u, r.u_b) == (1.0, 5.0)
    assert r.p_greater == pytest.approx(0.5 * math.erfc(-2.5 / math.sqrt(2.4) / math.sqrt(2.0)))
    assert r.p_less == pytest.approx(0.5 * math.erfc(1.5 / math.sqrt(2.4) / math.sqrt(2.0)))
    assert r.p_two_sided == pytest.approx(2 * r.p_less)


def test_mann_whitney_all_tied() -> None:
    r = mann_whitney_u([1.0, 1.0], [1.0, 1.0, 1.0])
    assert (r.u, r.p_two_sided, r.p_greater, r.p_less) == (3.0, 1.0, 1.0, 1.0)


def test_mann_whitney_matches_scipy() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(11)
    for n_a, n_b in [(8, 8), (20, 13), (3, 30)]:
        a = np.round(rng.normal(1.0, 0.1, n_a), 2).tolist()  # rounding makes ties
        b = np.round(rng.normal(1.05, 0.1, n_b), 2).tolist()
        ours = mann_whitney_u(a, b)
        for alternative, p in [
            ("two-sided", ours.p_two_sided),
            ("greater", ours.p_greater),
            ("less", ours.p_less),
        ]:
            ref = scipy_stats.mannwhitneyu(a, b, alternative=alternative, method="asymptotic")
            assert ours.u == pytest.approx(float(ref.statistic))
            assert p == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-15)


def test_detects_ten_percent_slowdown() -> None:
    rng = np.random.default_rng(2024)
    old = _lognormal(rng, 20, 1.0, sigma=0.02)
    new = _lognormal(rng, 20, 1.10, sigma=0.02)
    assert is_significantly_greater(new, old)
    assert not is_significantly_greater(old, new)
    assert mann_whitney_u(new, old).p_greater < 1e-6


def test_does_not_flag_identical_distributions() -> None:
    rng = np.random.default_rng(5)
    same = _lognormal(rng, 20, 1.0, sigma=0.02)
    assert not is_significantly_greater(same, same)
    false_positives = sum(
        is_significantly_greater(_lognormal(rng, 20, 1.0, 0.02), _lognormal(rng, 20, 1.0, 0.02))
        for _ in range(300)
    )
    assert false_positives <= 30  # nominal 5 % = 15 of 300


def test_mann_whitney_validation() -> None:
    with pytest.raises(ValueError, match="b is empty"):
        mann_whitney_u([1.0], [])
    with pytest.raises(ValueError, match=r"a\[0\] is inf"):
        mann_whitney_u([math.inf], [1.0])
    assert mann_whitney_u([-1.0], [1.0]).u == 0.0  # any sign is fine for a rank test
    with pytest.raises(ValueError, match="alpha"):
        is_significantly_greater([1.0], [2.0], alpha=0.0)


# --- relative_change -------------------------------------------------------------------------------


def test_relative_change() -> None:
    assert relative_change(2.0, 2.2) == pytest.approx(0.1)
    assert relative_change(2.0, 1.0) == -0.5
    with pytest.raises(ValueError, match="old is 0"):
        relative_change(0.0, 1.0)
    with pytest.raises(ValueError, match="finite"):
        relative_change(1.0, math.nan)
