"""The head-vs-base view in every output of a run with --perf-ab-base: terminal table, results.json,
summary.md, report.html with each case's paired samples over time, and `perfsuite compare`."""

from __future__ import annotations

import io

import results_factory as factory
from ab_factory import ab_section
from PIL import Image

from perfsuite.compare import compare_results
from perfsuite.gate import judge
from perfsuite.report import load_results, render_markdown, write_report
from perfsuite.report.ab import ab_chart, ab_rows, ab_terminal_lines
from perfsuite.report.html import render_html
from perfsuite.report.results import case_entry, results_document
from perfsuite.report.terminal import WIDTH

SECTIONS = {
    "fp32": ab_section(1.0),
    "bf16": ab_section(1.10, seed=1),
    "bf16+sdpa-flash": ab_section(1.05, max_pairs=20),
}


def ab_document() -> dict:
    """Three compared cases (same speed, 10% slower, undecided) and one without an A/B section."""
    cases = []
    for seed, combo in enumerate(("fp32", "bf16", "bf16+sdpa-flash", "fp32+sdpa-math")):
        measurement = factory.measurement(combo, seed=seed)
        if combo in SECTIONS:
            measurement["ab"] = SECTIONS[combo]
        verdict = judge(factory.MODEL, combo, factory.PROFILE, measurement, factory.bounds(), None)
        cases.append(case_entry(measurement, verdict))
    return results_document(
        machine=factory.machine(), profile=factory.PROFILE, device="cpu", preset="single",
        models=[factory.MODEL], cases=cases, commit=None,
    )  # fmt: skip


def test_rows_show_each_compared_case_with_its_outcome():
    document = ab_document()
    rows = {row.combo: row for row in ab_rows(document["cases"])}
    assert set(rows) == {"fp32", "bf16", "bf16+sdpa-flash"}  # the case without a base is left out
    assert rows["fp32"].outcome == "pass" and not rows["fp32"].failed
    assert rows["bf16"].outcome == "FAIL (latency)" and rows["bf16"].failed
    assert rows["bf16+sdpa-flash"].outcome == "inconclusive"
    assert rows["fp32"].ratio.startswith("1.0") and rows["fp32"].pairs == "40"
    assert rows["fp32"].memory == "+1.8%" and rows["fp32"].ssim == "0.9999"
    statuses = {case["combo"]: case["status"] for case in document["cases"]}
    assert statuses == {
        "fp32": "pass",
        "bf16": "fail",
        "bf16+sdpa-flash": "inconclusive",
        "fp32+sdpa-math": "pass",
    }


def test_the_terminal_table_fits_and_names_the_base_and_the_versions_that_differ():
    lines = ab_terminal_lines(ab_document()["cases"])
    text = "\n".join(lines)
    assert all(len(line) <= WIDTH for line in lines), max(lines, key=len)
    assert "perfsuite A/B: head (this environment) vs base /base/.venv/bin/python (commit aaaaaaaaaa" in text
    assert any(line.startswith("!! bf16 ") and line.endswith("FAIL") for line in lines)
    assert "versions that differ (base -> head): torch 2.12.0+cpu -> 2.13.0+cpu" in text
    assert ab_terminal_lines(factory.document()["cases"]) == []  # a plain run shows no A/B block


def test_results_json_keeps_the_ab_section_and_older_readers_fields(tmp_path):
    files = write_report(tmp_path, ab_document())
    loaded = load_results(files.results)
    section = loaded["cases"][0]["measurement"]["ab"]
    assert section["pairs"] == 40 and len(section["head_samples_s"]) == 40 and section["ratio_ci"][0] < 1.05
    assert loaded["schema_version"] == 1 and loaded["cases"][2]["status"] == "inconclusive"


def test_summary_md_has_a_head_vs_base_table():
    markdown = render_markdown(ab_document())
    assert "2 passed, 1 failed, 0 missing baselines, 1 inconclusive" in markdown.splitlines()[0]
    assert "### A/B: head vs base `/base/.venv/bin/python (commit aaaaaaaaaa, perfsuite 0.1.0)`" in markdown
    assert "| `tiny-sd/bf16` |" in markdown and "**FAIL (latency)**" in markdown
    assert "Versions that differ (base -> head): `torch 2.12.0+cpu -> 2.13.0+cpu`" in markdown
    assert "A/B" not in render_markdown(factory.document())


def test_report_html_draws_each_compared_case_over_time(tmp_path):
    html = render_html(ab_document(), tmp_path)
    assert html.count('class="chart ab-chart"') == 3 and 'id="ab"' in html
    assert "head 560.0 MiB vs base 550.0 MiB" in html
    assert 'id="ab"' not in render_html(factory.document(), tmp_path)


def test_the_chart_is_a_png_with_both_sides_and_refuses_mismatched_samples():
    png = ab_chart("tiny-sd/fp32", SECTIONS["fp32"])
    assert png is not None
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (720, 336)
    broken = {**SECTIONS["fp32"], "base_samples_s": [0.3]}
    assert ab_chart("tiny-sd/fp32", broken) is None


def test_perfsuite_compare_still_reads_results_with_ab_sections():
    old, new = ab_document(), ab_document()
    comparison = compare_results(old, new, _policy())
    assert not comparison.regressions and len(comparison.cases) == 4


def _policy():
    import tempfile
    from pathlib import Path

    from perfsuite.baselines import load_policy

    with tempfile.TemporaryDirectory() as folder:
        return load_policy(factory.write_policy(Path(folder)))
