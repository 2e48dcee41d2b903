"""Robust statistics for timing samples: summaries, confidence intervals and significance tests.

Plain data in, plain data out, no torch. Samples are raw timings in seconds (or any other
non-negative unit; every statistic of a :class:`Summary` is in the unit of its samples) and are kept
at full precision: nothing is rounded here.

* :class:`Summary` -- median, quartiles, IQR, mean, standard deviation, and a distribution-free
  confidence interval for the median from order statistics.
* :func:`speedup` -- ratio of medians with a seeded BCa bootstrap confidence interval
  (``scipy.stats.bootstrap``).
* :func:`mann_whitney_u` / :func:`is_significantly_greater` -- rank test for "is this slower than
  that" (``scipy.stats.mannwhitneyu``: exact without ties, normal approximation with them).
* :func:`relative_change` -- ``(new - old) / old``.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "EXACT_MAX_PAIRS",
    "NOISY_REL_IQR",
    "MannWhitney",
    "Ratio",
    "Summary",
    "is_noisy",
    "is_significantly_greater",
    "mann_whitney_u",
    "median_ci",
    "relative_change",
    "speedup",
]

#: A summary whose IQR is more than this fraction of its median is noisy: callers should warn.
NOISY_REL_IQR = 0.10


def _check_confidence(confidence: float) -> float:
    confidence = float(confidence)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    return confidence


def _as_samples(samples: Iterable[float], what: str, *, allow_negative: bool = False) -> tuple[float, ...]:
    """Return ``samples`` as a tuple of floats, or raise ValueError naming ``what`` and the bad value."""
    values = tuple(float(x) for x in samples)
    if not values:
        raise ValueError(f"{what} is empty: at least one sample is needed")
    for i, x in enumerate(values):
        if not math.isfinite(x):
            raise ValueError(f"{what}[{i}] is {x!r}: samples must be finite")
        if x < 0.0 and not allow_negative:
            raise ValueError(f"{what}[{i}] is {x!r}: samples must be non-negative (they are durations)")
    return values


def median_ci(sorted_samples: tuple[float, ...], confidence: float = 0.95) -> tuple[float, float, float]:
    """Distribution-free confidence interval for the median of already sorted samples.

    The interval is ``[x(j), x(n+1-j)]`` (1-based order statistics) with the largest ``j`` whose
    exact binomial coverage ``1 - 2 * P(B <= j - 1)``, ``B ~ Binomial(n, 1/2)``, is at least
    ``confidence``. It assumes only independent, identically distributed samples.

    Returns ``(low, high, coverage)``. When ``n`` is too small for any interval to reach
    ``confidence`` (``n <= 5`` at 95 %), the widest one, ``(min, max)``, is returned with its
    coverage, which is then below ``confidence``.
    """
    confidence = _check_confidence(confidence)
    n = len(sorted_samples)
    if n == 0:
        raise ValueError("sorted_samples is empty: at least one sample is needed")
    alpha = 1.0 - confidence
    log_comb_n = math.lgamma(n + 1) - n * math.log(2.0)
    j = 1  # 1-based rank of the lower bound; j = 1 is (min, max)
    tail = 0.0  # P(B <= j - 1)
    cdf = 0.0
    for i in range(0, (n - 1) // 2 + 1):
        cdf += math.exp(log_comb_n - math.lgamma(i + 1) - math.lgamma(n - i + 1))
        if i == 0:
            tail = cdf
        if 2.0 * cdf > alpha:
            break
        j, tail = i + 1, cdf
    coverage = max(0.0, 1.0 - 2.0 * tail)
    return sorted_samples[j - 1], sorted_samples[n - j], coverage


@dataclass(frozen=True)
class Summary:
    """Robust summary of raw samples; every statistic is in the unit of the samples (seconds).

    ``ci_low``/``ci_high`` bound the median at ``ci_coverage`` (exact, distribution-free, from order
    statistics). ``ci_reaches_confidence`` is False when there are too few samples for any
    order-statistic interval to reach ``confidence``: the interval is then ``(min, max)`` and its
    true coverage ``ci_coverage`` is lower than asked.
    """

    samples: tuple[float, ...]
    n: int
    median: float
    q1: float
    q3: float
    iqr: float
    mean: float
    stdev: float
    min: float
    max: float
    rel_iqr: float
    ci_low: float
    ci_high: float
    confidence: float
    ci_coverage: float
    ci_reaches_confidence: bool

    @classmethod
    def from_samples(cls, samples: Iterable[float], confidence: float = 0.95) -> Summary:
        """Summarize raw non-negative, finite samples (at least one).

        Quartiles use linear interpolation between order statistics (numpy's default). ``stdev``
        is the sample standard deviation (``ddof=1``), 0 for a single sample. ``rel_iqr`` is
        ``iqr / median``; it is 0 when the IQR is 0 and infinite when only the median is 0.
        """
        values = _as_samples(samples, "samples")
        confidence = _check_confidence(confidence)
        arr = np.asarray(values, dtype=np.float64)
        q1, median, q3 = (float(q) for q in np.quantile(arr, [0.25, 0.5, 0.75]))
        iqr = q3 - q1
        if iqr == 0.0:
            rel_iqr = 0.0
        elif median == 0.0:
            rel_iqr = math.inf
        else:
            rel_iqr = iqr / median
        low, high, coverage = median_ci(tuple(sorted(values)), confidence)
        return cls(
            samples=values,
            n=len(values),
            median=median,
            q1=q1,
            q3=q3,
            iqr=iqr,
            mean=float(arr.mean()),
            stdev=float(arr.std(ddof=1)) if len(values) > 1 else 0.0,
            min=float(arr.min()),
            max=float(arr.max()),
            rel_iqr=rel_iqr,
            ci_low=low,
            ci_high=high,
            confidence=confidence,
            ci_coverage=coverage,
            ci_reaches_confidence=coverage >= confidence,
        )

    @property
    def is_noisy(self) -> bool:
        """True when ``rel_iqr`` is above :data:`NOISY_REL_IQR`."""
        return is_noisy(self)


def is_noisy(summary: Summary, threshold: float = NOISY_REL_IQR) -> bool:
    """True when the summary's IQR is more than ``threshold`` times its median."""
    return summary.rel_iqr > threshold


@dataclass(frozen=True)
class Ratio:
    """A ratio of medians with a bootstrap confidence interval at ``confidence``.

    ``method`` names how the interval was made: ``"BCa"``, or ``"percentile"`` when the BCa
    interval is undefined for these samples (see :func:`speedup`).
    """

    estimate: float
    ci_low: float
    ci_high: float
    confidence: float
    n_boot: int
    seed: int
    method: str = "BCa"


def _ratio_of_medians(reference: np.ndarray, candidate: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(reference, axis=axis) / np.median(candidate, axis=axis)


def speedup(
    reference_samples: Iterable[float],
    candidate_samples: Iterable[float],
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> Ratio:
    """Speedup of a candidate over a reference: ``median(reference) / median(candidate)``.

    Above 1 means the candidate is faster. The interval is ``scipy.stats.bootstrap`` with
    ``method="BCa"`` (bias-corrected and accelerated) over two independent samples
    (``paired=False``: each resample draws both sets with replacement, each at its own size), with
    ``n_boot`` resamples from ``numpy.random.default_rng(seed)``, so the result is deterministic for a
    given ``seed``. Candidate samples must be strictly positive.

    BCa is undefined when its acceleration is 0/0: every leave-one-out median of both samples is the
    same (ties, as in ``[1, 1, 1, 2]``, or constant samples). scipy then returns NaN with a warning;
    here the percentile interval of the same bootstrap distribution is used instead, and
    :attr:`Ratio.method` says so. A constant bootstrap distribution gives ``[estimate, estimate]``.
    Samples of a single value have no bootstrap at all: the interval is ``[estimate, estimate]``.
    """
    from scipy import stats

    reference = _as_samples(reference_samples, "reference_samples")
    candidate = _as_samples(candidate_samples, "candidate_samples")
    confidence = _check_confidence(confidence)
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot!r}")
    if min(candidate) <= 0.0:
        raise ValueError("candidate_samples must be strictly positive: a zero time has no ratio")
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    estimate = float(np.median(ref) / np.median(cand))

    def ratio(low: float, high: float, method: str) -> Ratio:
        return Ratio(estimate, float(low), float(high), confidence, int(n_boot), int(seed), method)

    if ref.size < 2 or cand.size < 2:  # scipy resamples only samples of two or more
        return ratio(estimate, estimate, "none (a sample of one value)")
    options = {"n_resamples": n_boot, "confidence_level": confidence, "vectorized": True, "paired": False}
    with warnings.catch_warnings():
        # The undefined-BCa case is handled below; scipy's warning about it would only be noise.
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        found = stats.bootstrap(
            (ref, cand), _ratio_of_medians, method="BCa", rng=np.random.default_rng(seed), **options
        )
        low, high = found.confidence_interval
        if math.isfinite(low) and math.isfinite(high):
            return ratio(low, high, "BCa")
        # The same resamples, read as a percentile interval (n_resamples=0 reuses the distribution).
        options["n_resamples"] = 0
        again = stats.bootstrap((ref, cand), _ratio_of_medians, method="percentile", bootstrap_result=found,
                                rng=np.random.default_rng(seed), **options)  # fmt: skip
    low, high = again.confidence_interval
    return ratio(low, high, "percentile (BCa undefined: constant leave-one-out medians)")


@dataclass(frozen=True)
class MannWhitney:
    """Result of a two-sample Mann-Whitney U test of ``a`` against ``b``.

    ``u`` counts the pairs ``(a_i, b_j)`` with ``a_i > b_j``, ties counting one half; ``u_b`` is
    ``n_a * n_b - u``. ``prob_greater`` is ``u / (n_a * n_b)``, an estimate of
    ``P(a > b) + P(a = b) / 2``. ``p_greater`` tests "a is stochastically greater than b",
    ``p_less`` the opposite, ``p_two_sided`` either. ``method`` is scipy's: ``"exact"`` or
    ``"asymptotic"`` (see :func:`mann_whitney_u`).
    """

    u: float
    u_b: float
    n_a: int
    n_b: int
    prob_greater: float
    p_two_sided: float
    p_greater: float
    p_less: float
    method: str = "exact"


#: Above this many pairs (``n_a * n_b``), the exact null distribution of U gets slow to compute in
#: scipy (measured with scipy 1.17: 100 x 100 samples 0.2 s, 150 x 150 5 s, 200 x 200 23 s), and the
#: normal approximation is within 1e-3 of it; the asymptotic method is used there.
EXACT_MAX_PAIRS = 10_000


def mann_whitney_u(a: Iterable[float], b: Iterable[float]) -> MannWhitney:
    """Mann-Whitney U test of ``a`` against ``b`` (finite values, any sign, at least one each), by
    ``scipy.stats.mannwhitneyu``.

    The method is chosen here, not by scipy's ``"auto"`` (which takes the normal approximation as
    soon as both samples exceed 8 values, so at every size the suite uses):

    * ``"exact"``, the exact null distribution of U, when no value is tied and
      ``n_a * n_b <= EXACT_MAX_PAIRS``: timing samples at full precision, 3 to 100 per side;
    * ``"asymptotic"`` (normal approximation with tie and continuity correction) otherwise: the exact
      distribution assumes no ties, and is slow for very large samples. Every value tied gives p = 1.
    """
    from scipy import stats

    xs = _as_samples(a, "a", allow_negative=True)
    ys = _as_samples(b, "b", allow_negative=True)
    n_a, n_b = len(xs), len(ys)
    distinct = len(set(xs + ys))
    if distinct == 1:  # scipy's asymptotic test divides by a zero variance here
        u = n_a * n_b / 2.0
        return MannWhitney(u, u, n_a, n_b, 0.5, 1.0, 1.0, 1.0, "asymptotic")
    tied = distinct < n_a + n_b
    method = "asymptotic" if tied or n_a * n_b > EXACT_MAX_PAIRS else "exact"
    found = {
        alternative: stats.mannwhitneyu(xs, ys, alternative=alternative, method=method)
        for alternative in ("two-sided", "greater", "less")
    }
    p = {alternative: float(result.pvalue) for alternative, result in found.items()}
    u = float(found["greater"].statistic)
    return MannWhitney(
        u=u,
        u_b=n_a * n_b - u,
        n_a=n_a,
        n_b=n_b,
        prob_greater=u / (n_a * n_b),
        p_two_sided=min(1.0, p["two-sided"]),
        p_greater=p["greater"],
        p_less=p["less"],
        method=method,
    )


def is_significantly_greater(a: Iterable[float], b: Iterable[float], alpha: float = 0.05) -> bool:
    """True when ``a`` is stochastically greater than ``b`` (one-sided Mann-Whitney, p < ``alpha``).

    With timings, ``is_significantly_greater(new, old)`` asks "is new slower than old beyond noise".
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    return mann_whitney_u(a, b).p_greater < alpha


def relative_change(old: float, new: float) -> float:
    """``(new - old) / old``: 0.1 means 10 % more than before. ``old`` must be finite and non-zero."""
    old, new = float(old), float(new)
    if not (math.isfinite(old) and math.isfinite(new)):
        raise ValueError(f"relative_change needs finite values, got old={old!r}, new={new!r}")
    if old == 0.0:
        raise ValueError("relative_change: old is 0, so a relative change is undefined")
    return (new - old) / old


# --- paired ratios: base and head measured call by call (A/B) ----------------------------------------
#
# Each pair holds one base call and one head call timed back to back. The statistic is the log of
# head/base per pair: the machine's drift (a 2x swing between minutes) multiplies both calls of a
# pair alike and cancels out of the ratio. The estimate is the Hodges-Lehmann pseudo-median of the
# log-ratios, and its interval the exact distribution-free interval that inverts the one-sample
# Wilcoxon signed-rank test (Hollander & Wolfe, "Nonparametric Statistical Methods", sec. 3.3). It
# assumes only that the log-ratios are independent and symmetric about their centre, which the ABBA
# order (pairs alternate which side goes first) gives by design when base and head do the same work.
#
# An A/B run takes its pairs in attempts, both sides prepared again between them, and uses
# :func:`attempt_ratio` (the attempt is the unit of the interval); :func:`paired_ratio` is the interval
# for pairs that are independent draws on their own.
#
# Sampling is sequential: look at the interval after a first batch of pairs, double the pairs while
# it is undecided, stop at a cap. Each look is a chance of a wrong decision, so the overall error
# rate alpha is split evenly over the planned looks (Bonferroni): at most alpha across all looks,
# for each direction (a false alarm, and a false pass).

__all__ += [
    "ATTEMPT_METHOD",
    "LocationInterval",
    "PairedRatio",
    "SequentialPlan",
    "attempt_ratio",
    "hodges_lehmann",
    "paired_ratio",
    "sequential_plan",
    "signed_rank_cdf",
]

_EXACT_SIGNED_RANK_MAX_N = 400


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must be strictly between 0 and 0.5, got {alpha!r}")
    return alpha


def signed_rank_cdf(n: int) -> np.ndarray:
    """``P(T <= t)`` for ``t = 0 .. n(n+1)/2`` under the null hypothesis, where ``T`` is the
    Wilcoxon signed-rank statistic of ``n`` untied, non-zero values.

    scipy computes this distribution only inside :func:`scipy.stats.wilcoxon` (no public function
    returns it), and a confidence interval needs its quantiles, so it is counted here: the number of
    subsets of ``{1..n}`` with each sum, one rank at a time, in probabilities (halved at each step) so
    that no count overflows.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n!r}")
    return _signed_rank_cdf(n).copy()


@functools.lru_cache(maxsize=64)
def _signed_rank_cdf(n: int) -> np.ndarray:
    total = n * (n + 1) // 2
    pmf = np.zeros(total + 1, dtype=np.float64)
    pmf[0] = 1.0
    for rank in range(1, n + 1):
        shifted = np.zeros_like(pmf)
        shifted[rank:] = pmf[:-rank]
        pmf = 0.5 * (pmf + shifted)
    cdf = np.minimum(np.cumsum(pmf), 1.0)
    cdf.flags.writeable = False
    return cdf


def _signed_rank_lower_tail(n: int, t: int) -> float:
    """``P(T <= t)`` for the signed-rank statistic of ``n`` values: exact up to
    :data:`_EXACT_SIGNED_RANK_MAX_N`, beyond that the normal approximation with continuity correction."""
    if t < 0:
        return 0.0
    if n <= _EXACT_SIGNED_RANK_MAX_N:
        cdf = _signed_rank_cdf(n)
        return float(cdf[min(t, cdf.size - 1)])
    from scipy.stats import norm

    mean = n * (n + 1) / 4.0
    sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24.0)
    return float(norm.cdf((t + 0.5 - mean) / sd))


def _signed_rank_critical(n: int, alpha_one_sided: float) -> int:
    """The largest ``k >= 0`` with ``P(T <= k - 1) <= alpha_one_sided`` (0 when even ``k = 1`` fails)."""
    if n <= _EXACT_SIGNED_RANK_MAX_N:
        return int(np.searchsorted(_signed_rank_cdf(n), alpha_one_sided, side="right"))
    from scipy.stats import norm

    mean = n * (n + 1) / 4.0
    sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24.0)
    k = math.floor(mean + norm.ppf(alpha_one_sided) * sd + 0.5) + 1  # P(T <= k-1) ~ alpha
    while k > 0 and _signed_rank_lower_tail(n, k - 1) > alpha_one_sided:
        k -= 1
    while _signed_rank_lower_tail(n, k) <= alpha_one_sided:
        k += 1
    return k


@dataclass(frozen=True)
class LocationInterval:
    """Hodges-Lehmann estimate of a centre and its Wilcoxon signed-rank confidence interval.

    ``coverage`` is the exact coverage of ``[low, high]`` (the distribution is discrete, so it is at
    least ``confidence`` rather than equal to it). ``reaches_confidence`` is False when there are too
    few values for any such interval to reach ``confidence``: ``[low, high]`` is then ``[min, max]``
    and its coverage is below what was asked.
    """

    estimate: float
    low: float
    high: float
    confidence: float
    coverage: float
    reaches_confidence: bool
    n: int


def hodges_lehmann(values: Iterable[float], confidence: float = 0.95) -> LocationInterval:
    """The Hodges-Lehmann estimate (median of the ``n(n+1)/2`` Walsh averages ``(x_i + x_j) / 2``,
    ``i <= j``) and the two-sided confidence interval ``[W_(k), W_(M+1-k)]`` of the sorted Walsh
    averages, ``k`` from the exact signed-rank distribution (:func:`signed_rank_cdf`).

    The interval excludes a value ``mu`` exactly when the one-sided Wilcoxon signed-rank test of
    ``values - mu`` rejects at ``(1 - confidence) / 2`` (for untied data), so "the interval lies above
    ``mu``" and "the test says greater than ``mu``" are the same decision.
    """
    xs = np.asarray(_as_samples(values, "values", allow_negative=True), dtype=np.float64)
    confidence = _check_confidence(confidence)
    n = xs.size
    i, j = np.triu_indices(n)
    walsh = np.sort((xs[i] + xs[j]) / 2.0)
    estimate = float(np.median(walsh))
    k = _signed_rank_critical(n, (1.0 - confidence) / 2.0)
    if k < 1:
        coverage = 1.0 - 2.0 * _signed_rank_lower_tail(n, 0)
        return LocationInterval(estimate, float(walsh[0]), float(walsh[-1]), confidence, coverage, False, n)
    coverage = 1.0 - 2.0 * _signed_rank_lower_tail(n, k - 1)
    low, high = float(walsh[k - 1]), float(walsh[walsh.size - k])
    return LocationInterval(estimate, low, high, confidence, coverage, True, n)


@dataclass(frozen=True)
class PairedRatio:
    """``numerator / denominator`` from paired samples: the Hodges-Lehmann estimate of the per-pair
    ratio (on the log scale, transformed back) with its signed-rank confidence interval."""

    estimate: float
    ci_low: float
    ci_high: float
    confidence: float
    coverage: float
    reaches_confidence: bool
    n_pairs: int
    method: str = "hodges-lehmann / wilcoxon signed-rank on log ratios"
    #: Independent attempts the pairs were taken in (see :func:`attempt_ratio`); 1 for plain pairs.
    attempts: int = 1
    #: Each attempt's own estimate of the ratio, in order (empty for plain pairs).
    attempt_estimates: tuple[float, ...] = ()

    def position(self, bound: float) -> str:
        """``"above"`` when the whole interval lies above ``bound``, ``"below"`` when it lies wholly
        below, else ``"straddles"`` (also whenever the interval could not reach its confidence)."""
        if not self.reaches_confidence:
            return "straddles"
        if self.ci_low > bound:
            return "above"
        if self.ci_high < bound:
            return "below"
        return "straddles"


def paired_ratio(
    numerator_samples: Iterable[float], denominator_samples: Iterable[float], confidence: float = 0.95
) -> PairedRatio:
    """The ratio of paired samples (``numerator[i]`` was measured beside ``denominator[i]``), e.g.
    head/base latency, with a distribution-free interval at ``confidence`` (see :func:`hodges_lehmann`)."""
    num = _as_samples(numerator_samples, "numerator_samples")
    den = _as_samples(denominator_samples, "denominator_samples")
    if len(num) != len(den):
        raise ValueError(f"paired samples need equal lengths, got {len(num)} and {len(den)}")
    if min(num) <= 0.0 or min(den) <= 0.0:
        raise ValueError("paired samples must be strictly positive: a zero time has no ratio")
    logs = np.log(np.asarray(num, dtype=np.float64)) - np.log(np.asarray(den, dtype=np.float64))
    found = hodges_lehmann(logs.tolist(), confidence)
    return PairedRatio(
        estimate=math.exp(found.estimate),
        ci_low=math.exp(found.low),
        ci_high=math.exp(found.high),
        confidence=found.confidence,
        coverage=found.coverage,
        reaches_confidence=found.reaches_confidence,
        n_pairs=found.n,
    )


ATTEMPT_METHOD = "per-attempt hodges-lehmann of abba-block log ratios, student t interval over attempts"


def attempt_ratio(
    numerator_samples: Iterable[float],
    denominator_samples: Iterable[float],
    attempts: Iterable[int],
    confidence: float = 0.95,
) -> PairedRatio:
    """The ratio of paired samples taken in independent attempts (``attempts[i]`` numbers the attempt
    of pair ``i``), with an interval that counts the attempt, not the pair, as the unit.

    Two processes that do the same work keep an offset of a few percent for as long as they live (a
    memory layout, a page placement), which no number of pairs between the same two averages away:
    the pair-level interval of :func:`paired_ratio` then narrows around the offset. An attempt
    re-prepares both sides, so each draws its offset anew.

    Within an attempt the pairs come in ABBA order (base first, then head first, ...), and which call
    of a pair goes first moves the ratio by a few percent either way; so consecutive pairs are
    averaged into blocks (one of each order: the order effect cancels in each block), and the
    attempt's estimate is the Hodges-Lehmann pseudo-median of its blocks' log ratios (robust to a
    stray slow call). Across attempts the interval is Student's t on those estimates
    (``scipy.stats.ttest_1samp``), whose spread holds the offsets and the call noise alike; the
    estimates are averages, which the t interval needs to be near-normal, and it needs two attempts.
    An attempt with an odd number of pairs keeps its last pair as a block of its own.
    """
    num = _as_samples(numerator_samples, "numerator_samples")
    den = _as_samples(denominator_samples, "denominator_samples")
    groups = [int(a) for a in attempts]
    if not len(num) == len(den) == len(groups):
        got = f"{len(num)}, {len(den)} and {len(groups)}"
        raise ValueError(f"paired samples and their attempts need equal lengths, got {got}")
    if min(num) <= 0.0 or min(den) <= 0.0:
        raise ValueError("paired samples must be strictly positive: a zero time has no ratio")
    confidence = _check_confidence(confidence)
    logs = np.log(np.asarray(num, dtype=np.float64)) - np.log(np.asarray(den, dtype=np.float64))
    keyed = np.asarray(groups)
    estimates = []
    for attempt in dict.fromkeys(groups):
        mine = logs[keyed == attempt]
        blocks = [float(np.mean(mine[i : i + 2])) for i in range(0, mine.size, 2)]
        estimates.append(hodges_lehmann(blocks).estimate)
    centre = float(np.mean(estimates))
    reaches = len(estimates) >= 2
    if not reaches:
        low = high = centre
    elif float(np.ptp(estimates)) == 0.0:
        low = high = centre  # every attempt agrees exactly: nothing is left to vary
    else:
        from scipy.stats import ttest_1samp

        found = ttest_1samp(estimates, 0.0).confidence_interval(confidence)
        low, high = float(found.low), float(found.high)
    return PairedRatio(
        estimate=math.exp(centre),
        ci_low=math.exp(low),
        ci_high=math.exp(high),
        confidence=confidence,
        coverage=confidence if reaches else 0.0,
        reaches_confidence=reaches,
        n_pairs=len(num),
        method=ATTEMPT_METHOD,
        attempts=len(estimates),
        attempt_estimates=tuple(math.exp(e) for e in estimates),
    )


@dataclass(frozen=True)
class SequentialPlan:
    """When to look at the data of an adaptive paired comparison, and at what level.

    Pairs are taken in attempts of ``attempt_pairs`` (see :func:`attempt_ratio`). ``looks`` are the
    pair counts at which the interval is computed (a first batch of attempts, doubled up to the cap),
    always whole attempts. Each look uses a two-sided interval at ``1 - 2 * alpha_per_look``,
    ``alpha_per_look = alpha / len(looks)``, so the chance of any wrong decision in either direction
    over all looks is at most ``alpha`` (Bonferroni). Stopping early (a time cap) only removes looks,
    which keeps the bound.
    """

    looks: tuple[int, ...]
    alpha: float
    alpha_per_look: float
    attempt_pairs: int = 2

    @property
    def confidence_per_look(self) -> float:
        return 1.0 - 2.0 * self.alpha_per_look


def sequential_plan(
    min_pairs: int, max_pairs: int, alpha: float = 0.01, attempt_pairs: int = 10
) -> SequentialPlan:
    """Looks at ``min_pairs``, twice that, and so on while below ``max_pairs``, then at ``max_pairs``.

    Pair counts are rounded down to whole attempts of ``attempt_pairs`` (an even number, so that every
    attempt holds as many base-first as head-first pairs), and the first look needs two attempts: an
    interval over attempts needs two of them.
    """
    alpha = _check_alpha(alpha)
    if attempt_pairs < 2 or attempt_pairs % 2:
        raise ValueError(f"attempt_pairs must be an even number of at least 2, got {attempt_pairs!r}")
    if min_pairs < 2 * attempt_pairs or max_pairs < min_pairs:
        got = f"min_pairs={min_pairs}, max_pairs={max_pairs}"
        need = f"need 2 attempts <= min_pairs <= max_pairs, with {attempt_pairs} pairs per attempt"
        raise ValueError(f"{need} ({2 * attempt_pairs} pairs at least), got {got}")
    first = min_pairs - min_pairs % attempt_pairs
    last = max_pairs - max_pairs % attempt_pairs
    looks = [first]
    while looks[-1] * 2 < last:
        looks.append(looks[-1] * 2)
    if looks[-1] != last:
        looks.append(last)
    return SequentialPlan(tuple(looks), alpha, alpha / len(looks), attempt_pairs)
