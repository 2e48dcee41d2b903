"""Tests of perfsuite.stats: summaries, median CI, BCa bootstrap speedup, Mann-Whitney U, each
against values computed independently (by hand, by enumeration, or from a published example)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from perfsuite.stats import (
    EXACT_MAX_PAIRS,
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
    assert (ratio.confidence, ratio.n_boot, ratio.seed, ratio.method) == (0.95, 2000, 0, "BCa")


def test_speedup_coverage_over_repeats() -> None:
    rng = np.random.default_rng(99)
    hits = 0
    for _ in range(40):
        ratio = speedup(_lognormal(rng, 25, 1.25), _lognormal(rng, 25, 1.0), n_boot=500)
        hits += ratio.ci_low <= 1.25 <= ratio.ci_high
    assert hits >= 33  # nominal 95 %; a bootstrap of medians of 25 is a bit liberal


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


def _bca_by_hand(ref: np.ndarray, cand: np.ndarray, seed: int, n_boot: int, confidence: float):
    """The BCa interval of the ratio of medians from Efron and Tibshirani (1993, ch. 14), written out:
    the bias correction z0 from the share of resampled ratios below the estimate, the acceleration
    from leave-one-out (jackknife) ratios of each sample, then the adjusted percentiles. Only the
    resampled ratios come from scipy (the same seeded resamples, read as a percentile bootstrap)."""
    from scipy import stats

    def ratio(r, c, axis=-1):
        return np.median(r, axis=axis) / np.median(c, axis=axis)

    resampled = stats.bootstrap(
        (ref, cand), ratio, method="percentile", n_resamples=n_boot, rng=np.random.default_rng(seed)
    ).bootstrap_distribution
    estimate = ratio(ref, cand)
    # Resampled medians often equal the estimate exactly; such ties count one half.
    z0 = stats.norm.ppf((np.sum(resampled < estimate) + np.sum(resampled <= estimate)) / (2 * n_boot))
    numerator = denominator = 0.0
    for which, sample in enumerate((ref, cand)):
        n = sample.size
        loo = np.array([
            ratio(np.delete(ref, i) if which == 0 else ref, np.delete(cand, i) if which == 1 else cand)
            for i in range(n)
        ])  # fmt: skip
        u = (n - 1) * (loo.mean() - loo)
        numerator += np.sum(u**3) / n**3
        denominator += np.sum(u**2) / n**2
    a = numerator / (6 * denominator**1.5)
    z = stats.norm.ppf([(1 - confidence) / 2, (1 + confidence) / 2])
    levels = stats.norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))
    return np.percentile(resampled, levels * 100)


def test_speedup_interval_is_the_bca_interval() -> None:
    rng = np.random.default_rng(21)
    ref, cand = np.array(_lognormal(rng, 12, 1.3, 0.1)), np.array(_lognormal(rng, 10, 1.0, 0.1))
    ratio = speedup(ref, cand, confidence=0.9, n_boot=999, seed=4)
    low, high = _bca_by_hand(ref, cand, seed=4, n_boot=999, confidence=0.9)
    assert ratio.method == "BCa"
    assert (ratio.ci_low, ratio.ci_high) == pytest.approx((low, high), rel=1e-9)


def test_speedup_falls_back_to_percentile_where_bca_is_undefined() -> None:
    # Every leave-one-out median of [1, 1, 1, 2] is 1, and of [0.5, 0.5, 0.5, 0.6] is 0.5: the BCa
    # acceleration is 0/0. The percentile interval of the same resamples stands in, and says so.
    ratio = speedup([1.0, 1.0, 1.0, 2.0], [0.5, 0.5, 0.5, 0.6])
    assert ratio.method.startswith("percentile (BCa undefined")
    assert ratio.estimate == 2.0
    assert ratio.ci_low <= 2.0 <= ratio.ci_high
    assert math.isfinite(ratio.ci_low) and math.isfinite(ratio.ci_high)
    constant = speedup([1.0, 1.0, 1.0], [0.5, 0.5, 0.5])
    assert (constant.estimate, constant.ci_low, constant.ci_high) == (2.0, 2.0, 2.0)
    single = speedup([1.0], [0.5])
    assert (single.ci_low, single.ci_high) == (2.0, 2.0) and single.method.startswith("none")


# --- Mann-Whitney U --------------------------------------------------------------------------------


def _exact_p_by_enumeration(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """(p_greater, p_less, p_two_sided) of U from first principles: under the null hypothesis every
    choice of which len(a) of the pooled values belong to a is equally likely; enumerate them all."""
    pooled = a + b
    u_of = [
        sum(1.0 for x in (pooled[i] for i in chosen) for y in (pooled[j] for j in range(len(pooled))
            if j not in chosen) if x > y)
        for chosen in map(set, itertools.combinations(range(len(pooled)), len(a)))
    ]  # fmt: skip
    observed = sum(1.0 for x in a for y in b if x > y)
    total = len(u_of)
    greater = sum(u >= observed for u in u_of) / total
    less = sum(u <= observed for u in u_of) / total
    return greater, less, min(1.0, 2 * min(greater, less))


def test_mann_whitney_published_example_is_exact() -> None:
    # Shier (2004), "Statistics: 2.3 The Mann-Whitney U Test": ages at diagnosis, U_males = 17,
    # U_females = 3, two-sided p = 0.11 from the exact table (14 of the 126 splits are as extreme).
    males, females = [19.0, 22.0, 16.0, 29.0, 24.0], [20.0, 11.0, 17.0, 12.0]
    r = mann_whitney_u(males, females)
    assert isinstance(r, MannWhitney)
    assert (r.u, r.u_b, r.n_a, r.n_b, r.method) == (17.0, 3.0, 5, 4, "exact")
    assert r.p_two_sided == pytest.approx(14 / 126, rel=1e-12)
    assert r.p_greater == pytest.approx(7 / 126, rel=1e-12)


def test_mann_whitney_exact_matches_enumeration() -> None:
    rng = np.random.default_rng(11)
    for n_a, n_b in [(3, 3), (6, 5), (4, 8)]:
        a, b = rng.normal(1.0, 0.1, n_a).tolist(), rng.normal(1.05, 0.1, n_b).tolist()
        r = mann_whitney_u(a, b)
        greater, less, two_sided = _exact_p_by_enumeration(a, b)
        assert r.method == "exact"
        assert (r.p_greater, r.p_less, r.p_two_sided) == pytest.approx((greater, less, two_sided), rel=1e-12)
    r = mann_whitney_u([4.0, 5.0, 6.0], [1.0, 2.0, 3.0])  # a above b: 1 split of C(6, 3) = 20
    assert (r.u, r.prob_greater, r.p_greater, r.p_less) == (9.0, 1.0, pytest.approx(1 / 20), 1.0)


def test_mann_whitney_hand_computed_with_ties() -> None:
    # Ties: the exact null distribution assumes none, so the normal approximation is used.
    # pairs a > b: 1 vs {2,3}: 0; 2 vs {2,3}: 0.5 twice -> U = 1. Ties {2,2,2}: t^3 - t = 24,
    # var = 6/12 * (6 - 24/20) = 2.4; p_greater = sf((1 - 3 - 0.5) / sqrt(2.4)).
    r = mann_whitney_u([1.0, 2.0, 2.0], [2.0, 3.0])
    assert (r.u, r.u_b, r.method) == (1.0, 5.0, "asymptotic")
    assert r.p_greater == pytest.approx(0.5 * math.erfc(-2.5 / math.sqrt(2.4) / math.sqrt(2.0)))
    assert r.p_less == pytest.approx(0.5 * math.erfc(1.5 / math.sqrt(2.4) / math.sqrt(2.0)))
    assert r.p_two_sided == pytest.approx(2 * r.p_less)


def test_mann_whitney_all_tied() -> None:
    r = mann_whitney_u([1.0, 1.0], [1.0, 1.0, 1.0])
    assert (r.u, r.p_two_sided, r.p_greater, r.p_less) == (3.0, 1.0, 1.0, 1.0)


def test_mann_whitney_large_samples_use_the_normal_approximation() -> None:
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=101).tolist(), rng.normal(size=100).tolist()
    assert EXACT_MAX_PAIRS < 101 * 100
    r = mann_whitney_u(a, b)
    u = sum(1.0 for x in a for y in b if x > y)
    mu, sigma = 101 * 100 / 2, math.sqrt(101 * 100 * 202 / 12)  # no ties
    assert (r.u, r.method) == (u, "asymptotic")
    assert r.p_greater == pytest.approx(0.5 * math.erfc((u - mu - 0.5) / sigma / math.sqrt(2.0)), rel=1e-9)


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
