"""The head-versus-base view of a run with ``--perf-ab-base``: rows, the terminal table and the chart.

Reads the ``ab`` section of each case's measurement (see :mod:`perfsuite.report.results`) and the
``ab`` checks of its verdict; cases without the section are left out, so a plain run shows nothing.
The chart draws one case's paired samples over time, base and head on one axis, and the per-pair
ratio with its interval and the bound below, so that a reader sees the machine's drift move both
sides together while the ratio stays put. No torch here; matplotlib is imported only for a chart.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from perfsuite.gate import interval, number
from perfsuite.report.units import format_bytes, format_seconds, format_ssim

__all__ = ["ABRow", "ab_chart", "ab_rows", "ab_terminal_lines", "base_label", "peak_text", "version_lines"]

_HEADERS = ("combo", "head", "base", "head/base [CI]", "pairs", "secs", "mem", "SSIM", "A/B")
_WIDTH = 100


@dataclass(frozen=True)
class ABRow:
    """One case's A/B numbers as display strings (``-`` where absent)."""

    case_id: str
    model: str
    combo: str
    head: str
    base: str
    ratio: str
    pairs: str
    seconds: str
    memory: str
    ssim: str
    outcome: str
    failed: bool


def _outcome(verdict: Mapping[str, Any] | None, ab: Mapping[str, Any]) -> tuple[str, bool]:
    """``pass``, ``inconclusive`` or ``FAIL (latency, ssim)`` from the verdict's ab checks (or, for a
    case without a verdict, the sampling's own decision)."""
    checks = [c for c in (verdict or {}).get("checks", ()) if c.get("kind") == "ab"]
    if not checks:
        return str(ab.get("decision") or "-"), False
    failed = [str(c.get("field")) for c in checks if c.get("status") == "fail"]
    if failed:
        return f"FAIL ({', '.join(failed)})", True
    if any(c.get("status") == "inconclusive" for c in checks):
        return "inconclusive", False
    return "pass", False


def _ratio_text(ab: Mapping[str, Any]) -> str:
    ratio, ci = number(ab, "ratio"), interval(ab, "ratio_ci")
    if ratio is None:
        return "-"
    return f"{ratio:.3f}" + (f" [{ci[0]:.3f},{ci[1]:.3f}]" if ci else "")


def _memory_text(ab: Mapping[str, Any]) -> str:
    head, base = number(ab, "head_peak_mem_bytes"), number(ab, "base_peak_mem_bytes")
    if head is None or not base:
        return "-"
    return f"{head / base - 1.0:+.1%}"


def ab_rows(cases: Iterable[Mapping[str, Any]]) -> list[ABRow]:
    """One row per case entry (``model``, ``combo``, ``measurement``, ``verdict``) with an ``ab`` section."""
    rows = []
    for case in cases:
        ab = (case.get("measurement") or {}).get("ab")
        if not isinstance(ab, Mapping):
            continue
        fidelity: Mapping[str, Any] = ab["fidelity"] if isinstance(ab.get("fidelity"), Mapping) else {}
        outcome, failed = _outcome(case.get("verdict"), ab)
        pairs = number(ab, "pairs")
        rows.append(
            ABRow(
                case_id=f"{case['model']}/{case['combo']}",
                model=str(case["model"]),
                combo=str(case["combo"]),
                head=format_seconds(number(ab, "head_latency_median_s")),
                base=format_seconds(number(ab, "base_latency_median_s")),
                ratio=_ratio_text(ab),
                pairs="-" if pairs is None else f"{pairs:.0f}",
                seconds=f"{number(ab, 'seconds') or 0.0:.0f}",
                memory=_memory_text(ab),
                ssim=format_ssim(fidelity.get("ssim") if isinstance(fidelity.get("ssim"), float) else None),
                outcome=outcome,
                failed=failed,
            )
        )
    return rows


def base_label(cases: Iterable[Mapping[str, Any]]) -> str | None:
    """``/path/python (commit 1a2b3c4d5e, perfsuite 0.1.0)`` of the base, from the first A/B section."""
    for case in cases:
        ab = (case.get("measurement") or {}).get("ab")
        if isinstance(ab, Mapping) and isinstance(ab.get("base"), Mapping):
            base = ab["base"]
            commit = str(base.get("commit") or "no git checkout")[:10]
            python = base.get("python_command") or base.get("executable")
            return f"{python} (commit {commit}, perfsuite {base.get('perfsuite')})"
    return None


def version_lines(cases: Iterable[Mapping[str, Any]]) -> list[str]:
    """Each version that differs between base and head (``name base -> head``), once."""
    found: dict[str, None] = {}
    for case in cases:
        ab = (case.get("measurement") or {}).get("ab")
        if isinstance(ab, Mapping):
            found.update(dict.fromkeys(str(change) for change in ab.get("version_changes") or []))
    return list(found)


def _fit(rows: Sequence[ABRow]) -> tuple[list[str], list[str]]:
    # The failed checks are spelled out under the main table: here a failure reads FAIL.
    cells = [
        [r.head, r.base, r.ratio, r.pairs, r.seconds, r.memory, r.ssim, "FAIL" if r.failed else r.outcome]
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(_HEADERS[1:])]
    fixed = 3 + sum(w + 2 for w in widths)  # the mark, then each cell after a gap of two
    longest = max(len(_HEADERS[0]), *(len(r.combo) for r in rows))
    combo_width = max(10, min(longest, _WIDTH - fixed))
    legend: list[str] = []

    def line(mark: str, combo: str, values: Sequence[str]) -> str:
        numbers = "".join("  " + v.rjust(w) for v, w in zip(values[:-1], widths[:-1], strict=True))
        return f"{mark:<2} {combo:<{combo_width}}{numbers}  {values[-1]}".rstrip()

    lines = [line("", _HEADERS[0], _HEADERS[1:])]
    for row, values in zip(rows, cells, strict=True):
        label = row.combo
        if len(label) > combo_width:
            key = f"#{len(legend) + 1}"
            label = f"{key} …{row.combo[-(combo_width - len(key) - 2) :]}"
            legend.extend(_wrap(f"   {key} = {row.combo}"))
        lines.append(line("!!" if row.failed else "", label, values))
    return lines, legend


def ab_terminal_lines(cases: Sequence[Mapping[str, Any]]) -> list[str]:
    """The A/B block of the end-of-session summary; empty when no case was compared with a base."""
    rows = ab_rows(cases)
    if not rows:
        return []
    lines = ["", *_wrap(f"perfsuite A/B: head (this environment) vs base {base_label(cases)}")]
    for model in dict.fromkeys(r.model for r in rows):
        lines.append(model)
        table, legend = _fit([r for r in rows if r.model == model])
        lines.extend(table)
        lines.extend(legend)
    lines.extend(
        _wrap(
            "head/base: Hodges-Lehmann ratio of paired calls (ABBA order) with its interval; mem: head peak "
            "vs base; SSIM: head image vs base image."
        )
    )
    changes = version_lines(cases)
    lines.extend(
        _wrap("versions that differ (base -> head): " + "; ".join(changes) if changes else "same versions")
    )
    return lines


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, _WIDTH, subsequent_indent="  ", break_on_hyphens=False) or [""]


def ab_chart(case_id: str, ab: Mapping[str, Any]) -> bytes | None:
    """PNG bytes: base and head latency per pair over time (top), the per-pair ratio with the
    interval and the bound (bottom), dotted lines where an attempt begins. None when the section
    holds no paired samples."""
    head = [float(v) for v in ab.get("head_samples_s") or []]
    base = [float(v) for v in ab.get("base_samples_s") or []]
    started = [float(v) for v in ab.get("started_s") or []]
    if not head or len(head) != len(base) or len(started) != len(head):
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9.0, 4.2), dpi=80, layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    top.plot(started, [b * 1e3 for b in base], "o-", color="#4c72b0", markersize=3, linewidth=1, label="base")
    top.plot(started, [h * 1e3 for h in head], "s-", color="#dd8452", markersize=3, linewidth=1, label="head")
    top.set_ylabel("ms per call", fontsize=9)
    top.legend(fontsize=8, loc="upper right")
    top.set_title(f"{case_id}: paired calls over time", fontsize=10)
    ratios = [h / b for h, b in zip(head, base, strict=True)]
    bottom.plot(started, ratios, "o", color="#555555", markersize=3, label="head/base per pair")
    ci, bound = interval(ab, "ratio_ci"), number(ab, "bound")
    if ci is not None:
        bottom.axhspan(ci[0], ci[1], color="#8172b3", alpha=0.25, label="interval of the ratio")
    if bound is not None:
        bottom.axhline(bound, color="#c44e52", linestyle="--", linewidth=1, label=f"bound {bound:.3f}")
    bottom.axhline(1.0, color="#999999", linewidth=0.8)
    attempts = list(ab.get("attempt") or [])
    if len(attempts) == len(started):
        # Where both sides were prepared again (or, for a compiled case, a new block of pairs began).
        for index in range(1, len(attempts)):
            if attempts[index] != attempts[index - 1]:
                for axes in (top, bottom):
                    axes.axvline(started[index], color="#bbbbbb", linewidth=0.7, linestyle=":")
    bottom.set_ylabel("head / base", fontsize=9)
    bottom.set_xlabel("seconds since the first pair", fontsize=9)
    bottom.legend(fontsize=7, loc="upper right")
    for axes in (top, bottom):
        axes.grid(color="#dddddd", linewidth=0.6)
        axes.tick_params(labelsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def peak_text(ab: Mapping[str, Any]) -> str:
    """``head 556.1 MiB vs base 551.0 MiB``."""
    return (
        f"head {format_bytes(number(ab, 'head_peak_mem_bytes'))} vs base "
        f"{format_bytes(number(ab, 'base_peak_mem_bytes'))}"
    )
