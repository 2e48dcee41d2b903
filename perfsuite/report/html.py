"""``report.html``: one self-contained page for a results document. Nothing is fetched: the style is
inline, there is no script, and every chart and image is embedded as a ``data:`` URI; a
Content-Security-Policy tells the browser to load nothing else.

The page holds the headline, the failed checks, a table of all cases (failed rows in red), bar charts
of latency, speedup and peak memory, and an image grid: per case its obtained image beside the
reference and the difference image. An image that is missing or unreadable shows a labelled
placeholder saying why.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import Any

from perfsuite.report.ab import ab_chart, ab_rows, base_label, peak_text, version_lines
from perfsuite.report.charts import charts
from perfsuite.report.digest import case_rows, count_cases, failed_checks, update_hint
from perfsuite.report.results import IMAGE_KINDS, case_key, fidelity_of

__all__ = ["embedded_image", "render_html"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IMAGE_TITLES = {"obtained": "obtained", "reference": "reference", "diff": "difference (x10)"}
_CHART_TITLES = {"latency": "Latency", "speedup": "Speedup", "memory": "Peak memory"}

#: The browser itself refuses anything but embedded images and the inline style: nothing is fetched.
_CSP = (
    '<meta http-equiv="Content-Security-Policy" '
    "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
)
_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1f2328;
       background: #ffffff; }
h1 { font-size: 22px; margin: 0 0 4px 0; }
h2 { font-size: 18px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; margin-top: 28px; }
.meta { color: #57606a; font-size: 13px; }
.headline { font-size: 16px; padding: 8px 12px; border-radius: 6px; display: inline-block; margin: 8px 0; }
.headline.ok { background: #dafbe1; border: 1px solid #4ac26b; }
.headline.bad { background: #ffebe9; border: 1px solid #cf222e; font-weight: 600; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.fail td { background: #ffebe9; }
tr.fail td:first-child { border-left: 4px solid #cf222e; }
.badge { font-weight: 700; padding: 1px 6px; border-radius: 10px; font-size: 12px; white-space: nowrap; }
.badge.pass { background: #dafbe1; color: #116329; }
.badge.fail, .badge.error { background: #cf222e; color: #ffffff; }
.badge.missing { background: #fff8c5; color: #7d4e00; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: 12px; }
.charts img { display: block; max-width: 100%; margin: 12px 0; border: 1px solid #d0d7de; }
.case { border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 12px; margin: 12px 0; }
.case.fail { border: 2px solid #cf222e; background: #fff5f5; }
.case h3 { font-size: 14px; margin: 0 0 8px 0; }
.grid { display: flex; gap: 12px; flex-wrap: wrap; }
.grid figure { margin: 0; text-align: center; font-size: 12px; color: #57606a; }
.grid img, .placeholder { width: 256px; height: 256px; object-fit: contain; image-rendering: pixelated;
       border: 1px solid #d0d7de; background: #f6f8fa; box-sizing: border-box; }
.placeholder { display: flex; align-items: center; justify-content: center; text-align: center;
       color: #57606a; font-size: 12px; padding: 8px; box-sizing: border-box; }
.hint { color: #57606a; font-size: 13px; max-width: 900px; }
details.log pre { max-height: 400px; overflow: auto; font-size: 11px; white-space: pre-wrap; }
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def embedded_image(base_dir: str | os.PathLike[str], relpath: str | None) -> tuple[str | None, str]:
    """``(data URI, "")`` of a PNG at ``relpath`` under ``base_dir``, or ``(None, why not)``."""
    if not relpath:
        return None, "not recorded"
    path = Path(base_dir) / relpath
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, f"file not found: {relpath}"
    except OSError as exc:
        return None, f"cannot read {relpath}: {exc.strerror or exc}"
    if not data.startswith(_PNG_SIGNATURE):
        return None, f"not a PNG: {relpath}"
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Exception as exc:  # Pillow raises many kinds for a damaged file
        return None, f"damaged PNG {relpath}: {exc}"
    return _data_uri(data), ""


def _badge(status: str) -> str:
    labels = {"pass": "pass", "fail": "FAIL", "missing": "no baseline", "inconclusive": "inconclusive"}
    text = {**labels, "error": "ERROR"}.get(status, status)
    return f'<span class="badge {escape(status)}">{escape(text)}</span>'


def _header(document: Mapping[str, Any]) -> list[str]:
    counts = count_cases(document)
    commit = document["commit"]
    machine = document["machine"]
    hardware = machine.get("gpu_name") or machine.get("cpu_model") or "unknown hardware"
    meta = (
        f"profile <code>{escape(document['profile'])}</code> · device <code>{escape(document['device'])}"
        f"</code> · preset <code>{escape(document['preset'])}</code> · {escape(str(hardware))} · "
        + (f"commit <code>{escape(commit[:12])}</code>" if commit else "no commit")
        + f" · created {escape(document['created'][:19].replace('T', ' '))} UTC"
    )
    state, word = ("ok", "passed") if counts.ok else ("bad", "FAILED")
    return [
        "<h1>perfsuite report</h1>",
        f'<div class="meta">{meta}</div>',
        f'<div class="headline {state}" id="headline">{word}: {escape(counts.headline())}</div>',
    ]


def _failures(document: Mapping[str, Any]) -> list[str]:
    failures = failed_checks(document)
    if not failures:
        return []
    lines = [
        f'<h2 id="regressions">Regressions ({len(failures)} failed checks)</h2>',
        '<table class="failures"><tr><th>case</th><th>check</th><th>obtained</th><th>expected</th>'
        "<th>bound</th><th>source</th><th>why</th></tr>",
    ]
    for f in failures:
        cells = (f.obtained, f.expected or "-", f.bound or "-", f.source)
        why = escape(f.detail or "-")
        if f.log:
            why += f'<details class="log"><summary>full error</summary><pre>{escape(f.log)}</pre></details>'
        lines.append(
            f'<tr class="fail"><td><code>{escape(f.case_id)}</code></td><td>{escape(f.field)} '
            f"({escape(f.kind)})</td>"
            + "".join(f"<td>{escape(c)}</td>" for c in cells)
            + f"<td>{why}</td></tr>"
        )
    lines.append("</table>")
    return lines


def _cases_table(document: Mapping[str, Any]) -> list[str]:
    rows = case_rows(document)
    lines = [
        f'<h2 id="cases">All cases ({len(rows)})</h2>',
        '<table class="cases"><tr><th>case</th><th>latency (median ± IQR)</th><th>speedup [95% CI]</th>'
        "<th>peak mem</th><th>compile</th><th>warm-up compile</th><th>SSIM</th><th>status</th></tr>",
    ]
    for r in rows:
        numbers = (
            r.latency + (" ~" if r.noisy else ""),
            r.speedup,
            r.peak_mem,
            r.compile,
            r.warmup_compile,
            r.ssim,
        )
        lines.append(
            f'<tr class="{"fail" if r.failed else "ok"}"><td><code>{escape(r.case_id)}</code></td>'
            + "".join(f'<td class="num">{escape(n)}</td>' for n in numbers)
            + f"<td>{_badge(r.status)}</td></tr>"
        )
    lines.append("</table>")
    if any(r.noisy for r in rows):
        lines.append('<p class="hint">~ marks a noisy measurement (IQR above 10% of the median).</p>')
    if any(r.warmup_compile != "-" for r in rows):
        lines.append(
            '<p class="hint">warm-up compile: graphs and recompiles during warm-up (not gated; recompiles '
            "after warm-up and graph breaks are).</p>"
        )
    return lines


def _charts(document: Mapping[str, Any]) -> list[str]:
    lines = ['<h2 id="charts">Charts</h2>', '<div class="charts">']
    for metric, png in charts(document).items():
        title = _CHART_TITLES[metric]
        if png is None:
            lines.append(
                f'<div class="placeholder" id="chart-{metric}">{title}: no case has this number</div>'
            )
        else:
            lines.append(
                f'<img class="chart" id="chart-{metric}" alt="{title} chart" src="{_data_uri(png)}">'
            )
    lines.append("</div>")
    return lines


def _ab_section(document: Mapping[str, Any]) -> list[str]:
    """Head vs base (``--perf-ab-base``): a table, then each case's paired samples over time."""
    rows = ab_rows(document["cases"])
    if not rows:
        return []
    lines = [
        f'<h2 id="ab">A/B: head vs base <code>{escape(base_label(document["cases"]) or "")}</code></h2>',
        '<table class="ab"><tr><th>case</th><th>head</th><th>base</th><th>head/base [CI]</th><th>pairs</th>'
        "<th>seconds</th><th>peak mem</th><th>SSIM</th><th>A/B</th></tr>",
    ]
    for r in rows:
        numbers = (r.head, r.base, r.ratio, r.pairs, r.seconds, r.memory, r.ssim)
        lines.append(
            f'<tr class="{"fail" if r.failed else "ok"}"><td><code>{escape(r.case_id)}</code></td>'
            + "".join(f'<td class="num">{escape(n)}</td>' for n in numbers)
            + f"<td>{escape(r.outcome)}</td></tr>"
        )
    lines.append("</table>")
    changes = version_lines(document["cases"])
    text = "versions that differ (base -> head): " + "; ".join(changes) if changes else "same versions"
    lines.append(f'<p class="hint">{escape(text)}</p><div class="charts">')
    for case in document["cases"]:
        ab = (case.get("measurement") or {}).get("ab")
        png = ab_chart(case_key(case), ab) if isinstance(ab, Mapping) else None
        if png is not None and isinstance(ab, Mapping):
            label = escape(f"{case_key(case)}: {peak_text(ab)}")
            lines.append(f'<img class="chart ab-chart" alt="A/B samples of {label}" src="{_data_uri(png)}">')
    lines.append("</div>")
    return lines


def _fidelity_text(numbers: Mapping[str, Any]) -> str:
    """`` · SSIM 0.9987 · PSNR 41.2 dB`` against the in-run reference; empty when not measured."""
    ssim, psnr = numbers.get("ssim"), numbers.get("psnr_db")
    if not isinstance(ssim, int | float):
        return ""
    if "psnr_db" in numbers and psnr is None:
        return f" · SSIM {ssim:.4f} · identical"
    return f" · SSIM {ssim:.4f}" + (f" · PSNR {psnr:.1f} dB" if isinstance(psnr, int | float) else "")


def _grid(document: Mapping[str, Any], base_dir: Path) -> list[str]:
    lines = ['<h2 id="images">Images</h2>']
    for case in document["cases"]:
        status = case["status"]
        failed = status in ("fail", "error")
        ssim_text = _fidelity_text(fidelity_of(case["measurement"]))
        lines.append(
            f'<div class="case {"fail" if failed else "ok"}"><h3><code>{escape(case_key(case))}</code> '
            f"{_badge(status)}{escape(ssim_text)}</h3>"
            '<div class="grid">'
        )
        images = case.get("images") or {}
        for kind in IMAGE_KINDS:
            uri, why = embedded_image(base_dir, images.get(kind))
            label = escape(_IMAGE_TITLES[kind])
            if uri is None:
                body = f'<div class="placeholder">no {label} image<br>({escape(why)})</div>'
            else:
                body = f'<img class="sample" alt="{label} image of {escape(case_key(case))}" src="{uri}">'
            lines.append(f"<figure>{body}<figcaption>{label}</figcaption></figure>")
        lines.append("</div></div>")
    if not document["cases"]:
        lines.append("<p>No case was measured.</p>")
    return lines


def _other(document: Mapping[str, Any]) -> list[str]:
    lines = []
    if document["errors"]:
        lines.append(f'<h2 id="errors">Errors ({len(document["errors"])})</h2><ul>')
        for error in document["errors"]:
            case_id = escape(f"{error['model']}/{error['combo']}")
            lines.append(f"<li><code>{case_id}</code><pre>{escape(error['message'])}</pre></li>")
        lines.append("</ul>")
    if document["skipped"]:
        lines.append(f"<details><summary>Skipped combos ({len(document['skipped'])})</summary><ul>")
        for skip in document["skipped"]:
            case_id = escape(f"{skip['model']}/{skip['combo']}")
            lines.append(f"<li><code>{case_id}</code>: {escape(skip['reason'])}</li>")
        lines.append("</ul></details>")
    return lines


def render_html(document: Mapping[str, Any], base_dir: str | os.PathLike[str]) -> str:
    """The page for a (validated) results document; image paths are read relative to ``base_dir``."""
    title = escape(f"perfsuite report: {document['profile']}")
    body = [
        *_header(document),
        *_failures(document),
        *_cases_table(document),
        *_charts(document),
        *_ab_section(document),
        *_grid(document, Path(base_dir)),
        *_other(document),
        f'<p class="hint">{escape(update_hint(document["profile"]))}</p>',
    ]
    head = f'<meta charset="utf-8">{_CSP}<title>{title}</title><style>{_STYLE}</style>'
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head>{head}</head><body>\n'
        + "\n".join(body)
        + "\n</body></html>\n"
    )
