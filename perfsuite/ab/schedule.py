"""ABBA order, attempts and adaptive sampling: time base and head call by call until the ratio is decided.

Pair ``i`` times one base call and one head call back to back, the base first in even pairs and the
head first in odd ones (A B, B A, A B, ...: the ABBA order), so each side runs first as often as
second and the cost of switching between the two processes falls on both alike.

Pairs are taken in **attempts** of ``plan.attempt_pairs`` pairs. Between two attempts ``refresh()``
re-prepares both sides (untimed; :mod:`perfsuite.ab.head` starts a new process for each side): two
processes keep an offset of a few percent for as long as they live (now and then one of 10%), so
the attempt, not the pair, is the unit of the interval (:func:`perfsuite.stats.attempt_ratio`), and
each attempt draws its offsets anew.

The attempts are taken in batches given by a :class:`~perfsuite.stats.SequentialPlan`: after each
batch the head/base ratio and its interval are computed, and sampling stops as soon as the interval
lies wholly above the bound (a regression) or wholly below it (a pass). Undecided at the last look,
or when the next attempt would overrun the time cap, the outcome is ``inconclusive``, never a pass.
The first batch always runs whole. The cap counts the pairs and the preparations between attempts,
except what a preparation reports as the session's start-up (starting the workers that a session
keeps for every case): that is paid once, by whichever case comes first, and charging it to that
case would leave it the fewest pairs. No torch here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from perfsuite.stats import PairedRatio, SequentialPlan, attempt_ratio

__all__ = ["INCONCLUSIVE", "PASS", "REGRESSION", "Outcome", "Pair", "run_pairs"]

REGRESSION, PASS, INCONCLUSIVE = "regression", "pass", "inconclusive"


@dataclass(frozen=True)
class Pair:
    """One base call and one head call, timed back to back; ``started_s`` counts from the first pair,
    ``attempt`` numbers the attempt (from 0)."""

    head_s: float
    base_s: float
    head_first: bool
    started_s: float
    attempt: int = 0


@dataclass(frozen=True)
class Outcome:
    """What the pairs said. ``stopped`` is ``"decided"``, ``"max pairs"`` or ``"max seconds"``."""

    pairs: tuple[Pair, ...]
    ratio: PairedRatio
    decision: str
    stopped: str
    looks: tuple[int, ...]
    plan: SequentialPlan
    bound: float
    seconds: float
    #: Whether the sides were re-prepared between attempts (False: the attempts are blocks of pairs).
    refreshed: bool = False
    #: Seconds spent re-preparing between attempts (included in ``seconds``).
    refresh_s: float = 0.0
    #: The part of ``refresh_s`` that was the session's start-up, left out of the time cap.
    startup_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "pairs": len(self.pairs),
            "head_samples_s": [p.head_s for p in self.pairs],
            "base_samples_s": [p.base_s for p in self.pairs],
            "head_first": [p.head_first for p in self.pairs],
            "started_s": [p.started_s for p in self.pairs],
            "attempt": [p.attempt for p in self.pairs],
            "attempts": self.ratio.attempts,
            "attempt_pairs": self.plan.attempt_pairs,
            "attempt_ratios": list(self.ratio.attempt_estimates),
            "refreshed": self.refreshed,
            "refresh_s": self.refresh_s,
            "startup_s": self.startup_s,
            "ratio": self.ratio.estimate,
            "ratio_ci": [self.ratio.ci_low, self.ratio.ci_high],
            "confidence": self.ratio.confidence,
            "coverage": self.ratio.coverage,
            "method": self.ratio.method,
            "decision": self.decision,
            "stopped": self.stopped,
            "looks": list(self.looks),
            "planned_looks": list(self.plan.looks),
            "alpha": self.plan.alpha,
            "alpha_per_look": self.plan.alpha_per_look,
            "bound": self.bound,
            "pairs_s": self.seconds,
        }


def _decision(ratio: PairedRatio, bound: float) -> str:
    position = ratio.position(bound)
    return REGRESSION if position == "above" else PASS if position == "below" else INCONCLUSIVE


def run_pairs(
    head_call: Callable[[], float],
    base_call: Callable[[], float],
    plan: SequentialPlan,
    bound: float,
    max_seconds: float,
    clock: Callable[[], float] = time.monotonic,
    refresh: Callable[[], float | None] | None = None,
) -> Outcome:
    """Time pairs in ABBA order, in attempts, along ``plan`` until the head/base ratio's interval lies
    wholly above or below ``bound`` (e.g. ``1 + ab_tolerance``), the last look, or ``max_seconds``.

    ``head_call`` and ``base_call`` each run one timed call and return its seconds. ``refresh``, when
    given, re-prepares both sides between two attempts; its time counts towards ``max_seconds``,
    except the seconds it returns: the session's start-up, which no case should pay for alone.
    """
    if max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds!r}")
    size = plan.attempt_pairs
    start = clock()
    pairs: list[Pair] = []
    looks: list[int] = []
    ratio: PairedRatio | None = None
    stopped = "max pairs"
    refresh_s = startup_s = 0.0
    for look in plan.looks:
        capped = False
        while len(pairs) < look:
            attempt = len(pairs) // size
            if len(pairs) % size == 0 and attempt > 0:
                elapsed = clock() - start - startup_s
                # Past the first batch, an attempt starts only if one more, at the mean cost so far,
                # ends within the cap.
                if looks and elapsed + elapsed / attempt > max_seconds:
                    capped = True
                    break
                if refresh is not None:
                    began = clock()
                    startup = refresh()
                    spent = clock() - began
                    refresh_s += spent
                    startup_s += min(max(float(startup or 0.0), 0.0), spent)
            elapsed = clock() - start
            head_first = len(pairs) % 2 == 1
            if head_first:
                head_s = head_call()
                base_s = base_call()
            else:
                base_s = base_call()
                head_s = head_call()
            pairs.append(Pair(head_s, base_s, head_first, elapsed, attempt))
        if not looks or len(pairs) > looks[-1]:
            looks.append(len(pairs))
            head, base = [p.head_s for p in pairs], [p.base_s for p in pairs]
            ratio = attempt_ratio(head, base, [p.attempt for p in pairs], plan.confidence_per_look)
            if _decision(ratio, bound) != INCONCLUSIVE:
                stopped = "decided"
                break
        if capped:
            stopped = "max seconds"
            break
    assert ratio is not None
    return Outcome(
        pairs=tuple(pairs),
        ratio=ratio,
        decision=_decision(ratio, bound),
        stopped=stopped,
        looks=tuple(looks),
        plan=plan,
        bound=bound,
        seconds=clock() - start,
        refreshed=refresh is not None,
        refresh_s=refresh_s,
        startup_s=startup_s,
    )
