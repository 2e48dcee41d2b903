"""A results document digested for people: the counts, the failed checks, one row per case.

Shared by the Markdown and HTML views, which only lay these out. Reads the document defensively:
a measurement without a number shows ``-``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from perfsuite.gate import interval, number
from perfsuite.report.results import case_key, ssim_of
from perfsuite.report.units import format_bytes, format_latency, format_seconds, format_speedup, format_ssim
from perfsuite.stats import NOISY_REL_IQR

__all__ = [
    "CaseRow",
    "Counts",
    "FailedCheck",
    "case_rows",
    "count_cases",
    "failed_checks",
    "update_hint",
    "warmup_compile",
]

_CHECK_TEXT = ("field", "kind", "status", "obtained", "expected", "bound", "source", "detail", "log")


def update_hint(profile: str) -> str:
    """What fixes what, said once at the end of every view."""
    return (
        "If a change is intended, `pytest tests/perf --perf-update-baselines` (with this run's selection "
        f"options) rewrites the stored measurements and reference images under baselines/{profile}/ for "
        "the cases that ran; review the diff in the pull request. baselines/policy.toml (speed and SSIM "
        "floors, tolerances) is never rewritten: it is edited by hand, in review."
    )


@dataclass(frozen=True)
class Counts:
    """How many cases passed, failed, lack a baseline, raised; how many combos were skipped."""

    passed: int
    failed: int
    missing: int
    errors: int
    skipped: int
    #: Cases whose A/B comparison did not decide (``--perf-ab-base``).
    inconclusive: int = 0

    @property
    def ok(self) -> bool:
        return not (self.failed or self.errors)

    def headline(self) -> str:
        """``2 passed, 1 failed, 1 missing baseline`` (errors and skips only when there are some)."""
        parts = [f"{self.passed} passed", f"{self.failed} failed", f"{self.missing} missing baselines"]
        if self.inconclusive:
            parts.append(f"{self.inconclusive} inconclusive")
        if self.errors:
            parts.append(f"{self.errors} errors")
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        return ", ".join(parts)


def count_cases(document: Mapping[str, Any]) -> Counts:
    statuses = [case["status"] for case in document["cases"]]
    errored = {case_key(c) for c in document["cases"] if c["status"] == "error"}
    errored.update(case_key(entry) for entry in document["errors"])
    return Counts(
        passed=statuses.count("pass"),
        failed=statuses.count("fail"),
        missing=statuses.count("missing"),
        errors=len(errored),
        skipped=len(document["skipped"]),
        inconclusive=statuses.count("inconclusive"),
    )


@dataclass(frozen=True)
class CaseRow:
    """One case as display strings (``-`` where there is no value), plus the raw SSIM."""

    case_id: str
    model: str
    combo: str
    status: str
    latency: str
    speedup: str
    peak_mem: str
    compile: str
    ssim: str
    noisy: bool
    #: What dynamo did during warm-up (``3 graphs, 2 recompiles``), or ``-`` when it compiled nothing.
    warmup_compile: str = "-"

    @property
    def failed(self) -> bool:
        return self.status in ("fail", "error")


def case_rows(document: Mapping[str, Any]) -> list[CaseRow]:
    rows = []
    for case in document["cases"]:
        m = case["measurement"]
        median, iqr = number(m, "latency_median_s"), number(m, "latency_iqr_s")
        peak = number(m, "peak_mem_bytes")
        rows.append(
            CaseRow(
                case_id=case_key(case),
                model=case["model"],
                combo=case["combo"],
                status=case["status"],
                latency=format_latency(median, iqr),
                speedup=format_speedup(number(m, "speedup"), interval(m, "speedup_ci")),
                peak_mem=format_bytes(peak),
                compile=format_seconds(number(m, "compile_s")),
                ssim=format_ssim(ssim_of(m)),
                noisy=bool(median and iqr is not None and iqr / median > NOISY_REL_IQR),
                warmup_compile=warmup_compile(m),
            )
        )
    return rows


def warmup_compile(measurement: Mapping[str, Any] | None) -> str:
    """``3 graphs, 2 recompiles``: what dynamo did during warm-up (information, not gated)."""
    graphs, recompiles = number(measurement, "unique_graphs"), number(measurement, "warmup_recompiles")
    if not graphs and not recompiles:
        return "-"
    return f"{graphs or 0:.0f} graphs, {recompiles or 0:.0f} recompiles"


@dataclass(frozen=True)
class FailedCheck:
    """One failed (or, with ``status="missing"``, missing) check of one case: the gate's own words."""

    case_id: str
    field: str
    kind: str
    status: str
    obtained: str
    expected: str
    bound: str
    source: str
    detail: str
    #: The full error text of a ``verify`` or ``dynamo`` failure (report.html shows it folded).
    log: str = ""


def failed_checks(document: Mapping[str, Any], status: str = "fail") -> list[FailedCheck]:
    """Every check with ``status`` (``"fail"`` or ``"missing"``), in case order."""
    found = []
    for case in document["cases"]:
        for check in (case["verdict"] or {}).get("checks", ()):
            if check.get("status") == status:
                texts = {key: str(check.get(key, "")) for key in _CHECK_TEXT}
                found.append(FailedCheck(case_id=case_key(case), **texts))
    return found
