"""Views of the results: the terminal table, ``results.json``, ``summary.md`` and ``report.html``.

* :mod:`~perfsuite.report.terminal` -- the end-of-session table (:func:`summary_lines`).
* :mod:`~perfsuite.report.results` -- the versioned results document: build, validate, write, load.
* :mod:`~perfsuite.report.merge` -- one document from the results of several shards.
* :mod:`~perfsuite.report.markdown` -- ``summary.md`` for a pull request or ``$GITHUB_STEP_SUMMARY``.
* :mod:`~perfsuite.report.html` -- ``report.html``, self-contained, with charts and an image grid.

:func:`write_report` writes all three files of a run into one folder. No torch here; matplotlib and
Pillow are imported only when a page or an image is made.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfsuite.baselines import atomic_write_text, model_slug
from perfsuite.report.markdown import render_markdown
from perfsuite.report.merge import ResultsMergeError, merge_results
from perfsuite.report.results import (
    IMAGE_KINDS,
    ResultsFileError,
    case_entry,
    case_key,
    load_results,
    results_document,
    skipped_entries,
    validate_results,
    write_results,
)
from perfsuite.report.terminal import summary_lines
from perfsuite.report.units import format_bytes, format_seconds

__all__ = [
    "HTML_NAME",
    "RESULTS_NAME",
    "SUMMARY_NAME",
    "ReportFiles",
    "ResultsFileError",
    "ResultsMergeError",
    "append_step_summary",
    "case_entry",
    "format_bytes",
    "format_seconds",
    "load_results",
    "merge_results",
    "render_markdown",
    "results_document",
    "skipped_entries",
    "summary_lines",
    "write_pages",
    "write_report",
    "write_results",
]

RESULTS_NAME, SUMMARY_NAME, HTML_NAME = "results.json", "summary.md", "report.html"
IMAGES_FOLDER = "images"
STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


@dataclass(frozen=True)
class ReportFiles:
    """The files one report is made of."""

    results: Path | None
    summary: Path
    html: Path


def write_pages(
    directory: str | os.PathLike[str],
    document: Mapping[str, Any],
    base_dir: str | os.PathLike[str] | None = None,
) -> tuple[Path, Path]:
    """Write ``summary.md`` and ``report.html`` for a results document into ``directory``.

    Image paths of the document are read relative to ``base_dir`` (default: ``directory``).
    """
    from perfsuite.report.html import render_html

    folder = Path(directory)
    document = validate_results(dict(document), "results document")
    summary, page = folder / SUMMARY_NAME, folder / HTML_NAME
    atomic_write_text(summary, render_markdown(document))
    atomic_write_text(page, render_html(document, folder if base_dir is None else base_dir))
    return summary, page


def _save_images(
    folder: Path, document: dict[str, Any], images: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    from perfsuite.fidelity import save_png

    cases = {case_key(case): i for i, case in enumerate(document["cases"])}
    unknown = sorted(set(images) - set(cases))
    if unknown:
        raise ValueError(f"images given for case(s) not in the document: {', '.join(unknown)}")
    document = {**document, "cases": [dict(case) for case in document["cases"]]}
    for case_id, arrays in images.items():
        case = document["cases"][cases[case_id]]
        wrong = sorted(set(arrays) - set(IMAGE_KINDS))
        if wrong:
            raise ValueError(f"{case_id}: unknown image kind(s) {wrong}; accepted: {', '.join(IMAGE_KINDS)}")
        paths = dict(case.get("images") or {})
        for kind, array in arrays.items():
            relpath = f"{IMAGES_FOLDER}/{model_slug(case['model'])}/{case['combo']}.{kind}.png"
            save_png(folder / relpath, array)
            paths[kind] = relpath
        case["images"] = paths
    return document


def write_report(
    directory: str | os.PathLike[str],
    document: Mapping[str, Any],
    images: Mapping[str, Mapping[str, Any]] | None = None,
) -> ReportFiles:
    """Write ``results.json``, ``summary.md`` and ``report.html`` into ``directory`` (created).

    ``images`` maps a case id ``model/combo`` to ``{"obtained" | "reference" | "diff": HxWx3 array}``
    (uint8, or float in [0, 1]); each is saved as ``images/<model slug>/<combo>.<kind>.png`` and its
    path recorded in the case's ``images``. ``document`` itself is not modified.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    full = validate_results(dict(document), "results document")
    if images:
        full = _save_images(folder, full, images)
    results = write_results(folder / RESULTS_NAME, full)
    summary, page = write_pages(folder, full)
    return ReportFiles(results, summary, page)


def append_step_summary(markdown_text: str) -> Path | None:
    """Append ``markdown_text`` to the file named by ``$GITHUB_STEP_SUMMARY``; None when it is unset."""
    target = os.environ.get(STEP_SUMMARY_ENV)
    if not target:
        return None
    path = Path(target)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(markdown_text if markdown_text.endswith("\n") else markdown_text + "\n")
    return path
