"""Human-readable views of the results: the end-of-session terminal table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from perfsuite.gate import Verdict
    from perfsuite.matrix import Plan
    from perfsuite.runner import CaseResult

__all__ = ["format_bytes", "format_seconds", "summary_lines"]

_NOISY_MARK = "~"


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.1f} ms"


def format_bytes(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _verdict_cell(verdict: Verdict | None) -> str:
    if verdict is None:
        return "-"
    if verdict.failures:
        return "FAIL " + ",".join(sorted({c.field for c in verdict.failures}))
    if verdict.missing:
        return "no baseline"
    return "ok" + ("*" if _remarks(verdict) else "")


def _remarks(verdict: Verdict) -> list[str]:
    """What a reader of a passing verdict should still know: notes, and checks that did not run."""
    from perfsuite.gate import NOT_COMPARED

    skipped = [
        f"{c.field} ({c.kind}) not compared: {c.detail}" for c in verdict.checks if c.status == NOT_COMPARED
    ]
    return [*verdict.notes, *skipped]


def _row(result: CaseResult, width: int, verdict: Verdict | None) -> str:
    lat = result.latency
    noisy = _NOISY_MARK if lat.is_noisy else " "
    latency = f"{format_seconds(lat.median)} ± {format_seconds(lat.iqr)}{noisy}"
    sp = result.speedup
    speedup = f"{sp.estimate:.2f}x [{sp.ci_low:.2f}, {sp.ci_high:.2f}]"
    return (
        f"  {result.combo:<{width}} {latency:>22} {speedup:>20} "
        f"{format_bytes(result.peak_mem_bytes):>10} {format_seconds(result.compile_s):>9}  "
        f"{_verdict_cell(verdict)}"
    )


def summary_lines(
    results: Iterable[CaseResult],
    plans: Mapping[str, Plan],
    device: torch.device,
    profile: str,
    verdicts: Mapping[str, Verdict] | None = None,
) -> list[str]:
    """The end-of-session table: per model, one row per measured combo, then the pruned combos."""
    results = list(results)
    lines = ["", f"perfsuite results on {device} (profile {profile})"]
    models = list(dict.fromkeys([*plans, *(r.model for r in results)]))
    for model in models:
        rows = [r for r in results if r.model == model]
        plan = plans.get(model)
        title = f"{model}" + (f" - preset {plan.preset}" if plan else "")
        lines.append(title)
        if rows:
            width = max(24, *(len(r.combo) for r in rows))
            lines.append(
                f"  {'combo':<{width}} {'latency (median ± IQR)':>22} {'speedup vs fp32 [95% CI]':>20} "
                f"{'peak mem':>10} {'compile':>9}  verdict"
            )
            lines.extend(_row(r, width, (verdicts or {}).get(r.case_id)) for r in rows)
        else:
            lines.append("  no combo was measured")
        if plan and plan.pruned:
            lines.append(f"  pruned ({len(plan.pruned)}), each shown as a skipped test:")
            lines.extend(f"    {p.combo.id}: {p.reason}" for p in plan.pruned[:20])
            if len(plan.pruned) > 20:
                lines.append(f"    ... and {len(plan.pruned) - 20} more (pytest -rs lists them all)")
    if any(r.latency.is_noisy for r in results):
        lines.append(f"{_NOISY_MARK} marks a noisy measurement (IQR above 10% of the median).")
    noted = [v for v in (verdicts or {}).values() if v.passed and _remarks(v)]
    if noted:
        lines.append("ok* passed with a remark:")
        lines.extend(f"  {v.case_id}: {remark}" for v in noted for remark in _remarks(v))
    return lines
