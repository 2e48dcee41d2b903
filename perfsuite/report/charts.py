"""Bar charts of a results document, drawn by matplotlib (Agg, no display) and returned as PNG bytes.

One horizontal bar per case: latency (median, its confidence interval as the error bar), speedup over
the in-run fp32 eager reference (its interval, and a dashed line at 1.0), and peak memory. Failed cases
are drawn in red. Cases without the number are left out of that chart.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from perfsuite.gate import interval, number
from perfsuite.report.results import case_key

__all__ = ["Bar", "bar_chart", "bars", "charts"]

PASS_COLOR = "#4c72b0"
FAIL_COLOR = "#c44e52"
_LABEL_CHARS = 38
_WIDTH_IN = 9.0


@dataclass(frozen=True)
class Bar:
    """One bar: ``value`` with an optional interval ``[low, high]`` around it."""

    label: str
    value: float
    low: float | None = None
    high: float | None = None
    failed: bool = False


def _label(case: Mapping[str, Any], with_model: bool) -> str:
    text = case_key(case) if with_model else case["combo"]
    # break long combo ids after a '+', never inside a technique name
    lines = textwrap.wrap(
        text.replace("+", "+ "), _LABEL_CHARS, break_long_words=False, break_on_hyphens=False
    )
    return "\n".join(lines).replace("+ ", "+")


def bars(document: Mapping[str, Any], metric: str) -> list[Bar]:
    """The bars of ``metric``: ``"latency"`` (ms), ``"speedup"`` (x) or ``"memory"`` (MiB)."""
    with_model = len({case["model"] for case in document["cases"]}) > 1
    found = []
    for case in document["cases"]:
        m = case["measurement"]
        failed = case["status"] in ("fail", "error")
        label = _label(case, with_model)
        if metric == "latency":
            value, ci, scale = number(m, "latency_median_s"), interval(m, "latency_ci_s"), 1e3
        elif metric == "speedup":
            value, ci, scale = number(m, "speedup"), interval(m, "speedup_ci"), 1.0
        elif metric == "memory":
            value, ci, scale = number(m, "peak_mem_bytes"), None, 1.0 / 2**20
        else:
            raise ValueError(f"unknown metric {metric!r}: use latency, speedup or memory")
        if value is None:
            continue
        low, high = (ci[0] * scale, ci[1] * scale) if ci else (None, None)
        found.append(Bar(label, value * scale, low, high, failed))
    return found


def bar_chart(items: Sequence[Bar], title: str, xlabel: str, *, reference_line: float | None = None) -> bytes:
    """A horizontal bar chart as PNG bytes (first item on top), error bars where an interval is known."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lines = sum(max(1, item.label.count("\n") + 1) for item in items)
    height_in = 1.3 + 0.22 * lines + 0.12 * len(items)
    figure = Figure(figsize=(_WIDTH_IN, height_in), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = list(range(len(items)))
    values = [item.value for item in items]
    errors = [
        [max(0.0, item.value - item.low) if item.low is not None else 0.0 for item in items],
        [max(0.0, item.high - item.value) if item.high is not None else 0.0 for item in items],
    ]
    has_errors = any(item.low is not None for item in items)
    colors = [FAIL_COLOR if item.failed else PASS_COLOR for item in items]
    axes.barh(
        positions,
        values,
        color=colors,
        xerr=errors if has_errors else None,
        error_kw={"ecolor": "#222222", "capsize": 3, "linewidth": 1},
    )
    axes.set_yticks(positions, [item.label for item in items], fontsize=8)
    axes.invert_yaxis()
    for position, item in zip(positions, items, strict=True):
        if item.failed:
            axes.get_yticklabels()[position].set_color(FAIL_COLOR)
    if reference_line is not None:
        axes.axvline(reference_line, color="#555555", linestyle="--", linewidth=1)
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(xlabel, fontsize=9)
    axes.grid(axis="x", color="#dddddd", linewidth=0.6)
    axes.set_axisbelow(True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def charts(document: Mapping[str, Any]) -> dict[str, bytes | None]:
    """``{"latency": png, "speedup": png, "memory": png}``; None where no case has the number."""
    specs = {
        "latency": ("Latency per combo (median, 95% CI)", "milliseconds (lower is better)", None),
        "speedup": ("Speedup over fp32 eager (95% CI); dashed line: 1.0", "x (higher is better)", 1.0),
        "memory": ("Peak memory per combo", "MiB (lower is better)", None),
    }
    found: dict[str, bytes | None] = {}
    for metric, (title, xlabel, line) in specs.items():
        items = bars(document, metric)
        found[metric] = bar_chart(items, title, xlabel, reference_line=line) if items else None
    return found
