"""The end-of-session terminal table: one row per measured combo, at most 100 columns wide.

Per model: a row per combo with latency (median ± IQR), speedup over the in-run fp32 eager
reference with its confidence interval, peak memory, compile time, SSIM and the verdict. A failed
row starts with ``!!`` and says ``FAIL``; the failed checks follow the table. A combo id too long for
its column is shown as a key (``#1 …+fuse-qkv+int8-dq``) and spelled out below the table.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from perfsuite.report.results import ssim_of
from perfsuite.report.units import format_bytes, format_latency, format_seconds, format_speedup, format_ssim

if TYPE_CHECKING:
    import torch

    from perfsuite.gate import Verdict
    from perfsuite.matrix import Plan
    from perfsuite.runner import CaseResult

__all__ = ["FAIL_MARK", "WIDTH", "summary_lines"]

#: Every line of the summary fits in this many columns.
WIDTH = 100
#: Starts the row of a failed case.
FAIL_MARK = "!!"
_NOISY_MARK = "~"
_PRUNED_SHOWN = 20
_HEADERS = ("combo", "latency med ± IQR", "speedup [95% CI]", "peak mem", "compile", "SSIM", "verdict")
_MIN_COMBO_WIDTH = 16
_GAP = "  "


def _verdict_cell(verdict: Verdict | None) -> str:
    if verdict is None:
        return "-"
    if verdict.failures:
        return "FAIL"
    if verdict.inconclusive:
        return "inconclusive"
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


def _remark_lines(verdicts: Mapping[str, Verdict]) -> list[str]:
    """``ok*`` explained: each remark once, with the passing cases it applies to."""
    cases: dict[str, list[str]] = {}
    for verdict in verdicts.values():
        if verdict.passed:
            for remark in _remarks(verdict):
                cases.setdefault(remark, []).append(verdict.case_id)
    if not cases:
        return []
    lines = ["ok* passed with a remark:"]
    for remark, ids in cases.items():
        if len(ids) == 1:
            lines.extend(_wrap(f"{ids[0]}: {remark}", "  "))
        else:
            lines.extend(_wrap(f"{remark} ({len(ids)} cases):", "  "))
            lines.extend(_wrap(", ".join(ids), "    ", ""))
    return lines


def _cells(result: CaseResult, verdict: Verdict | None) -> list[str]:
    """The cells after the combo: latency, speedup, peak memory, compile, SSIM, verdict."""
    lat, sp = result.latency, result.speedup
    noisy = _NOISY_MARK if lat.is_noisy else ""
    return [
        format_latency(lat.median, lat.iqr) + noisy,
        format_speedup(sp.estimate, (sp.ci_low, sp.ci_high)),
        format_bytes(result.peak_mem_bytes),
        format_seconds(result.compile_s),
        format_ssim(ssim_of(result.to_dict())),
        _verdict_cell(verdict),
    ]


def _wrap(text: str, indent: str, hanging: str = "    ") -> list[str]:
    return textwrap.wrap(
        text, WIDTH, initial_indent=indent, subsequent_indent=indent + hanging, break_on_hyphens=False
    ) or [indent]


def _tail(combo: str, width: int) -> str:
    """``…+fuse-qkv+int8-dq``: the last whole techniques of ``combo`` that fit in ``width``."""
    tail = ""
    for name in reversed(combo.split("+")):
        candidate = f"+{name}{tail}"
        if len(candidate) + 1 > width:
            break
        tail = candidate
    return f"…{tail}" if tail else combo[: width - 1] + "…"


def _table(rows: Sequence[tuple[str, list[str], bool]]) -> tuple[list[str], list[str]]:
    """The table lines and the legend of the combos shown as keys. ``rows``: (combo, cells, failed)."""
    widths = [max(len(h), *(len(cells[i]) for _, cells, _ in rows)) for i, h in enumerate(_HEADERS[1:])]
    # the mark, the combo, then each number and the verdict after a gap; the verdict is not padded
    fixed = len(FAIL_MARK) + 1 + sum(w + len(_GAP) for w in widths)
    longest = max(len(_HEADERS[0]), *(len(combo) for combo, _, _ in rows))
    combo_width = max(_MIN_COMBO_WIDTH, min(longest, WIDTH - fixed))

    def line(mark: str, combo: str, cells: Sequence[str]) -> str:
        numbers = "".join(
            _GAP + cell.rjust(width) for cell, width in zip(cells[:-1], widths[:-1], strict=True)
        )
        return f"{mark:<{len(FAIL_MARK)}} {combo:<{combo_width}}{numbers}{_GAP}{cells[-1]}".rstrip()

    lines = [line("", _HEADERS[0], _HEADERS[1:])]
    legend: list[str] = []
    for combo, cells, failed in rows:
        label = combo
        if len(combo) > combo_width:
            key = f"#{len(legend) + 1}"
            label = f"{key} {_tail(combo, combo_width - len(key) - 1)}"
            legend.extend(_wrap(f"{key} = {combo}", "   "))
        lines.append(line(FAIL_MARK if failed else "", label, cells))
    return lines, legend


def _failed_checks(verdicts: Iterable[Verdict]) -> list[str]:
    lines: list[str] = []
    for verdict in verdicts:
        if verdict.failures:
            lines.append(f"{FAIL_MARK} {verdict.case_id} FAILED:")
            for check in verdict.failures:
                lines.extend(_wrap(check.line(), "     "))
    return lines


def _warmup_lines(rows: Iterable[CaseResult]) -> list[str]:
    """Cases that recompiled during warm-up (regional compilation meets blocks of other shapes there):
    information, since only recompiles after warm-up are gated."""
    lines = []
    for r in rows:
        if r.warmup_recompiles:
            text = (f"{r.combo}: warm-up compiled {r.unique_graphs} graphs with {r.warmup_recompiles} "
                    f"recompiles (not gated; {r.recompiles} after warm-up)")  # fmt: skip
            lines.extend(_wrap(text, "   "))
    return lines


def _model_lines(
    model: str,
    rows: list[CaseResult],
    plan: Plan | None,
    verdicts: Mapping[str, Verdict],
    unmeasured: Sequence[Verdict] = (),
) -> list[str]:
    lines = [model + (f" - preset {plan.preset}" if plan else "")]
    if rows or unmeasured:
        found = [(r, verdicts.get(r.case_id)) for r in rows]
        table_rows = [(r.combo, _cells(r, v), bool(v and v.failures)) for r, v in found]
        # A case that ended before it was measured (verify, dynamo) has no numbers, only its verdict.
        table_rows += [(v.combo, [*("-" * 5), f"FAIL ({v.failures[0].field})"], True) for v in unmeasured]
        table, legend = _table(table_rows)
        lines.extend(table)
        lines.extend(legend)
        lines.extend(_failed_checks([*(v for _, v in found if v is not None), *unmeasured]))
        lines.extend(_warmup_lines(rows))
    else:
        lines.append("   no combo was measured")
    if plan and plan.pruned:
        lines.append(f"   pruned ({len(plan.pruned)}), each shown as a skipped test:")
        for pruned in plan.pruned[:_PRUNED_SHOWN]:
            lines.extend(_wrap(f"{pruned.combo.id}: {pruned.reason}", "     "))
        if len(plan.pruned) > _PRUNED_SHOWN:
            more = len(plan.pruned) - _PRUNED_SHOWN
            lines.append(f"     ... and {more} more (pytest -rs lists them all)")
    return lines


def _ab_lines(results: Sequence[CaseResult], verdicts: Mapping[str, Verdict]) -> list[str]:
    from perfsuite.report.ab import ab_terminal_lines

    cases = [
        {"model": r.model, "combo": r.combo, "measurement": r.to_dict(),
         "verdict": verdicts[r.case_id].to_dict() if r.case_id in verdicts else None}
        for r in results if r.ab is not None
    ]  # fmt: skip
    return ab_terminal_lines(cases)


def summary_lines(
    results: Iterable[CaseResult],
    plans: Mapping[str, Plan],
    device: torch.device,
    profile: str,
    verdicts: Mapping[str, Verdict] | None = None,
) -> list[str]:
    """The end-of-session summary: per model a table of the measured combos, the failed checks and the
    pruned combos; then what the marks mean and which flag updates what. No line exceeds :data:`WIDTH`."""
    results = list(results)
    verdicts = verdicts or {}
    measured = {r.case_id for r in results}
    unmeasured = [v for case_id, v in verdicts.items() if case_id not in measured]
    lines = ["", f"perfsuite results on {device} (profile {profile})"]
    for model in dict.fromkeys([*plans, *(r.model for r in results), *(v.model for v in unmeasured)]):
        rows = [r for r in results if r.model == model]
        failed = [v for v in unmeasured if v.model == model]
        lines.extend(_model_lines(model, rows, plans.get(model), verdicts, failed))
    if any(r.latency.is_noisy for r in results):
        lines.append(f"{_NOISY_MARK} marks a noisy measurement (IQR above 10% of the median).")
    lines.extend(_remark_lines(verdicts))
    lines.extend(_ab_lines(results, verdicts))
    if results:
        update = (
            f"--perf-update-baselines rewrites the measurements and reference images stored for profile "
            f"{profile} (baselines/{profile}/, or under --perf-baselines-dir) for the cases that ran; "
            "review them with git diff. policy.toml (speed and SSIM floors, tolerances) is only edited "
            "by hand."
        )
        lines.extend(_wrap(update, "", "  "))
    return lines
