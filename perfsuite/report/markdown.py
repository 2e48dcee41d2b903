"""``summary.md``: a results document as GitHub-flavoured Markdown, for a pull-request comment or
``$GITHUB_STEP_SUMMARY``. The headline comes first, then every failed check (regressions before
anything else), then a compact table of all cases, errors, and the skipped combos."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from perfsuite.report.ab import ab_rows, base_label, version_lines
from perfsuite.report.digest import case_rows, count_cases, failed_checks, update_hint

__all__ = ["render_markdown"]

_STATUS = {
    "pass": "pass",
    "fail": "**FAIL**",
    "missing": "no baseline",
    "inconclusive": "inconclusive",
    "error": "**ERROR**",
}


def _cell(text: Any) -> str:
    """Text safe inside a table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|") or " "


def _code(text: str) -> str:
    return f"`{text.replace('`', '')}`"


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines.extend("| " + " | ".join(_cell(value) for value in row) + " |" for row in rows)
    return lines


def _meta(document: Mapping[str, Any]) -> str:
    commit = document["commit"]
    parts = [
        f"profile {_code(document['profile'])}",
        f"device {_code(document['device'])}",
        f"preset {_code(document['preset'])}",
        f"commit {_code(commit[:12])}" if commit else "no commit",
        f"created {document['created'][:19].replace('T', ' ')} UTC",
    ]
    return " · ".join(parts)


def _errors(document: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(case id, first line of the message) of every combo that raised."""
    found = {f"{e['model']}/{e['combo']}": e["message"] for e in document["errors"]}
    for case in document["cases"]:
        if case["status"] == "error":
            found.setdefault(f"{case['model']}/{case['combo']}", "(status error, no message recorded)")
    return [
        (case_id, (message.strip().splitlines() or ["(no message)"])[0]) for case_id, message in found.items()
    ]


def _ab_section(document: Mapping[str, Any]) -> list[str]:
    """Head vs base, for a run with ``--perf-ab-base``; nothing otherwise."""
    rows = ab_rows(document["cases"])
    if not rows:
        return []
    lines = ["", f"### A/B: head vs base {_code(base_label(document['cases']) or '')}", ""]
    lines += _table(
        ("case", "head", "base", "head/base [CI]", "pairs", "seconds", "peak mem", "SSIM", "A/B"),
        (
            (_code(r.case_id), r.head, r.base, r.ratio, r.pairs, r.seconds, r.memory, r.ssim,
             f"**{r.outcome}**" if r.failed else r.outcome)
            for r in rows
        ),
    )  # fmt: skip
    changes = version_lines(document["cases"])
    lines += ["", "Versions that differ (base -> head): " + "; ".join(map(_code, changes)) if changes
              else "Base and head have the same versions."]  # fmt: skip
    return lines


def render_markdown(document: Mapping[str, Any], *, title: str = "perfsuite") -> str:
    """The Markdown summary of a (validated) results document."""
    counts = count_cases(document)
    mark = "passed" if counts.ok else "FAILED"
    lines = [f"## {title}: {mark} — {counts.headline()}", "", _meta(document), ""]
    failures = failed_checks(document)
    if failures:
        lines += [f"### Regressions ({len(failures)} failed checks)", ""]
        lines += _table(
            ("case", "check", "obtained", "expected", "bound", "source", "why"),
            (
                (
                    _code(f.case_id),
                    f"{f.field} ({f.kind})",
                    f.obtained,
                    f.expected or "-",
                    f.bound or "-",
                    f.source,
                    f.detail or "-",
                )
                for f in failures
            ),
        )
        lines.append("")
    missing = failed_checks(document, status="missing")
    if missing:
        lines += [f"### Missing baselines ({len(missing)})", ""]
        lines += [f"- {_code(m.case_id)}: {_cell(m.source)} ({_cell(m.detail)})" for m in missing]
        lines.append("")
    errors = _errors(document)
    if errors:
        lines += [f"### Errors ({len(errors)})", ""]
        lines += [f"- {_code(case_id)}: {_cell(message)}" for case_id, message in errors]
        lines.append("")
    rows = case_rows(document)
    lines += [f"### All cases ({len(rows)})", ""]
    headers = ("case", "latency (median ± IQR)", "speedup [95% CI]", "peak mem", "compile",
               "warm-up compile", "SSIM", "status")  # fmt: skip
    lines += _table(
        headers,
        (
            (
                _code(r.case_id),
                r.latency + (" ~" if r.noisy else ""),
                r.speedup,
                r.peak_mem,
                r.compile,
                r.warmup_compile,
                r.ssim,
                _STATUS.get(r.status, r.status),
            )
            for r in rows
        ),
    )
    if any(r.noisy for r in rows):
        lines += ["", "~ marks a noisy measurement (IQR above 10% of the median)."]
    if any(r.warmup_compile != "-" for r in rows):
        lines += ["", "warm-up compile: graphs and recompiles during warm-up (not gated; recompiles after "
                  "warm-up and graph breaks are)."]  # fmt: skip
    lines += _ab_section(document)
    skipped = document["skipped"]
    if skipped:
        lines += ["", f"<details><summary>Skipped combos ({len(skipped)})</summary>", ""]
        lines += [f"- {_code(s['model'] + '/' + s['combo'])}: {_cell(s['reason'])}" for s in skipped]
        lines += ["", "</details>"]
    lines += ["", update_hint(document["profile"]), ""]
    return "\n".join(lines)
