"""Compare two results documents with the gate's own checks: OLD plays the stored baseline.

Every measured case of NEW gets the checks the gate makes without a baseline
(:func:`perfsuite.gate.check_policy` and :func:`perfsuite.gate.check_fidelity`, which read NEW's own
numbers). For a case that OLD also holds, :func:`perfsuite.gate.check_history` then runs against OLD's
measurement, as a :class:`~perfsuite.baselines.Baseline` with OLD's time, commit and machine. The bounds come
from ``policy.toml`` for NEW's hardware profile. Regressions are ordered by how much worse they got.
No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfsuite.baselines import Baseline, Policy
from perfsuite.gate import Check, Verdict, check_fidelity, check_history, check_policy, number
from perfsuite.report.results import case_key

__all__ = ["CaseComparison", "ResultsComparison", "compare_results", "worsening"]


@dataclass(frozen=True)
class CaseComparison:
    """The verdict on one case of NEW; ``old`` is None when OLD has no measurement of it.

    ``severity`` is the largest :func:`worsening` among the failed checks (0 when none failed).
    """

    verdict: Verdict
    old: Mapping[str, Any] | None
    new: Mapping[str, Any]
    severity: float

    @property
    def case_id(self) -> str:
        return self.verdict.case_id

    @property
    def regressed(self) -> bool:
        return bool(self.verdict.failures)

    def changes(self) -> dict[str, float]:
        """Relative change of latency, peak memory and speedup (only those both sides have)."""
        found = {}
        for key, label in (
            ("latency_median_s", "latency"),
            ("peak_mem_bytes", "peak mem"),
            ("speedup", "speedup"),
        ):
            before, after = number(self.old, key), number(self.new, key)
            if before and after is not None:
                found[label] = after / before - 1.0
        return found


@dataclass(frozen=True)
class ResultsComparison:
    cases: tuple[CaseComparison, ...]
    only_old: tuple[str, ...]
    only_new: tuple[str, ...]

    @property
    def regressions(self) -> tuple[CaseComparison, ...]:
        """Cases with a failed check, the most worsened first."""
        failed = [c for c in self.cases if c.regressed]
        return tuple(sorted(failed, key=lambda c: -c.severity))

    @property
    def unchanged(self) -> tuple[CaseComparison, ...]:
        return tuple(c for c in self.cases if not c.regressed)


def worsening(check: Check, old: Mapping[str, Any] | None, new: Mapping[str, Any], floor: float) -> float:
    """How much worse, relatively, the field of a failed check got (0.2 = 20% worse); 0 when unknown.

    Latency and peak memory: ``new / old - 1``. Speedup: ``old / new - 1`` against the baseline, or
    ``floor / new - 1`` against the policy floor, so a combo 20% slower scores 0.2 either way.
    """
    keys = {"latency": "latency_median_s", "peak memory": "peak_mem_bytes", "speedup": "speedup"}
    key = keys.get(check.field)
    after = number(new, key) if key else None
    if key is None or not after:
        return 0.0
    if check.field == "speedup":
        before = floor if check.kind == "policy" else number(old, key)
        return before / after - 1.0 if before else 0.0
    before = number(old, key)
    return after / before - 1.0 if before else 0.0


def _baseline(document: Mapping[str, Any], case: Mapping[str, Any], path: Path) -> Baseline:
    return Baseline(
        profile=document["profile"],
        model=case["model"],
        combo=case["combo"],
        created=document["created"],
        commit=document["commit"],
        machine=dict(document["machine"]),
        measurement=dict(case["measurement"]),
        path=path,
    )


def compare_results(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    policy: Policy,
    *,
    old_path: str | Path = "OLD",
) -> ResultsComparison:
    """Judge every measured case of ``new`` against ``old`` (two validated results documents)."""
    measured_old = {case_key(c): c for c in old["cases"] if c["measurement"] is not None}
    compared: list[CaseComparison] = []
    only_new: list[str] = []
    for case in new["cases"]:
        measurement = case["measurement"]
        if measurement is None:
            continue
        key = case_key(case)
        bounds = policy.bounds_for(case["model"], case["combo"], new["profile"])
        checks = [*check_policy(measurement, bounds), *check_fidelity(measurement, bounds)]
        previous = measured_old.get(key)
        if previous is None:
            only_new.append(key)
        else:
            baseline = _baseline(old, previous, Path(old_path))
            checks.extend(check_history(measurement, baseline, bounds, machine=new["machine"]))
        verdict = Verdict(case["model"], case["combo"], new["profile"], tuple(checks))
        old_measurement = previous["measurement"] if previous else None
        severity = max(
            (worsening(c, old_measurement, measurement, bounds.min_speedup) for c in verdict.failures),
            default=0.0,
        )
        compared.append(CaseComparison(verdict, old_measurement, measurement, severity))
    new_keys = {case_key(c) for c in new["cases"] if c["measurement"] is not None}
    only_old = tuple(key for key in measured_old if key not in new_keys)
    return ResultsComparison(tuple(compared), only_old, tuple(only_new))
