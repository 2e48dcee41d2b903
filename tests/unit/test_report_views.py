"""The views of the results: the terminal table, summary.md, report.html, and write_report."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import results_factory as factory
from PIL import Image

from perfsuite.baselines import Baseline
from perfsuite.compare import compare_results
from perfsuite.gate import Verdict, judge, judge_failure
from perfsuite.report import (
    append_step_summary,
    case_entry,
    load_results,
    render_markdown,
    summary_lines,
    write_report,
)
from perfsuite.report.html import render_html
from perfsuite.report.results import validate_results
from perfsuite.report.terminal import WIDTH

SLOW = "bf16"


def _failing_document(**kwargs: Any) -> dict[str, Any]:
    """``bf16`` 20% slower than in :func:`factory.document`, judged against it by the gate's checks."""
    with_policy = factory.bounds()
    old = factory.document()
    new = factory.document(slowdown={SLOW: 1.2})
    verdicts = {}
    for old_case, new_case in zip(old["cases"], new["cases"], strict=True):
        baseline = Baseline(
            factory.PROFILE,
            old_case["model"],
            old_case["combo"],
            old["created"],
            old["commit"],
            old["machine"],
            old_case["measurement"],
            Path("baselines/old.json"),
        )
        verdicts[f"{new_case['model']}/{new_case['combo']}"] = judge(
            new_case["model"],
            new_case["combo"],
            factory.PROFILE,
            new_case["measurement"],
            with_policy,
            baseline,
            machine=new["machine"],
        )
    return factory.document(slowdown={SLOW: 1.2}, verdicts=verdicts, **kwargs)


# --- terminal ----------------------------------------------------------------------------------------


def _case_results(document: dict[str, Any]) -> list[Any]:
    from perfsuite.runner import CaseResult
    from perfsuite.stats import Ratio, Summary

    results = []
    for case in document["cases"]:
        m = case["measurement"]
        results.append(
            CaseResult(
                model=m["model"],
                combo=m["combo"],
                techniques=tuple(m["techniques"]),
                device="cpu",
                latency=Summary.from_samples(m["latency_samples_s"]),
                reference_latency=Summary.from_samples(m["reference_samples_s"]),
                speedup=Ratio(m["speedup"], *m["speedup_ci"], confidence=0.95, n_boot=2000, seed=0),
                cold_start_s=m["cold_start_s"],
                warmup_s=tuple(m["warmup_s"]),
                compile_s=m["compile_s"],
                peak_mem_bytes=m["peak_mem_bytes"],
                peak_mem_kind="rss",
                evidence=(),
                unique_graphs=m.get("unique_graphs", 0),
                graph_breaks=0,
                recompiles=0,
                warmup_recompiles=m.get("warmup_recompiles", 0),
                image=np.zeros((2, 2, 3), np.float32),
                fidelity=m.get("fidelity"),
            )
        )
    return results


def _summary(document: dict[str, Any], verdicts: dict[str, Any] | None = None) -> list[str]:
    import torch

    from perfsuite.gate import Verdict
    from perfsuite.matrix import Plan, Pruned, parse_combo

    results = _case_results(document)
    if verdicts is None:
        verdicts = {f"{c['model']}/{c['combo']}": Verdict.from_dict(c["verdict"]) for c in document["cases"]}
    pruned = tuple(Pruned(parse_combo("fp32+tf32"), f"tf32: reason {i}") for i in range(23))
    plans = {factory.MODEL: Plan("ladder", tuple(parse_combo(r.combo) for r in results), pruned)}
    return summary_lines(results, plans, torch.device("cpu"), factory.PROFILE, verdicts)


def test_terminal_table_fits_100_columns_and_marks_the_failure():
    lines = _summary(_failing_document())
    text = "\n".join(lines)
    assert max(len(line) for line in lines) <= WIDTH, text
    assert "perfsuite results on cpu (profile cpu-test-cpu-2c)" in text
    header = next(line for line in lines if "latency med ± IQR" in line)
    assert all(h in header for h in ("speedup [95% CI]", "peak mem", "compile", "SSIM", "verdict"))
    failed = [line for line in lines if line.startswith("!! ")]
    assert re.match(
        r"!! bf16 +71\.9 ± 0\.\d ms +1\.39x \[1\.\d\d,1\.\d\d\] +210\.0 MiB +- +0\.9900 +FAIL$", failed[0]
    )
    assert "!! tiny-sd/bf16 FAILED:" in failed[1]
    assert "latency (history) fail" in text and "speedup (history) fail" in text
    # the long ladder combo is a key in the table, spelled out below it
    assert re.search(r"^ {3}#1 …\+fuse-qkv\+int8-dq +30\.\d ± 0\.\d ms", text, re.M), text
    assert f"   #1 = {factory.LONG_COMBO}" in lines
    assert re.search(r"^ {3}fp32\+sdpa-math +\d+\.\d ± .* 1\.\d\dx \[", text, re.M)


def test_terminal_keeps_pruned_noisy_and_remark_lines():
    document = factory.document()
    document["cases"][0]["measurement"] = factory.measurement("fp32", seed=0, noise=0.3)
    lines = _summary(document)
    text = "\n".join(lines)
    assert "   pruned (23), each shown as a skipped test:" in lines
    assert "     ... and 3 more (pytest -rs lists them all)" in lines
    assert "~ marks a noisy measurement (IQR above 10% of the median)." in lines
    assert re.search(r"^ {3}fp32 +\d+\.\d ± \d+\.\d ms~ ", text, re.M)
    assert "ok* passed with a remark:" in lines
    assert "ssim (history) not compared: no stored reference image (5 cases):" in text
    assert "--perf-update-baselines rewrites the measurements and reference images" in text
    assert "policy.toml (speed and SSIM floors, tolerances) is only edited by" in text
    assert max(len(line) for line in lines) <= WIDTH


def test_the_plugin_imports_keep_working():
    from perfsuite.report import format_bytes, format_seconds

    assert (format_seconds(0.0123), format_seconds(2.5), format_seconds(None)) == ("12.3 ms", "2.50 s", "-")
    assert (format_bytes(512), format_bytes(3 * 2**20), format_bytes(None)) == ("512 B", "3.0 MiB", "-")


def test_terminal_shows_a_dash_without_fidelity_or_verdict():
    document = factory.document(combos=["fp32"])
    del document["cases"][0]["measurement"]["fidelity"]
    lines = _summary(document, verdicts={})
    row = next(line for line in lines if line.startswith("   fp32 "))
    assert row.endswith("  -  -"), row


# --- markdown ----------------------------------------------------------------------------------------


def test_markdown_puts_regressions_first():
    document = _failing_document()
    document["cases"][3]["status"] = "missing"
    text = render_markdown(document)
    assert text.startswith("## perfsuite: FAILED — 3 passed, 1 failed, 1 missing baselines, 1 skipped")
    regressions, all_cases = text.index("### Regressions (2 failed checks)"), text.index("### All cases (5)")
    assert regressions < all_cases
    first_row = text[regressions:].splitlines()[4]
    assert first_row.startswith("| `tiny-sd/bf16` | latency (history) | 71.9 ms median"), first_row
    for needle in ("at most 68.9 ms (+15%)", "latency_tolerance from policy.toml [defaults]", "Mann-Whitney"):
        assert needle in text[regressions:all_cases]
    assert (
        "| `tiny-sd/bf16` | 71.9 ± 0.7 ms | 1.39x [1.38,1.40] | 210.0 MiB | - | - | 0.9900 | **FAIL** |"
        in text
    )
    assert "--perf-update-baselines" in text and "baselines/cpu-test-cpu-2c/" in text


def test_markdown_of_a_passing_run_has_no_regression_section():
    text = render_markdown(factory.document())
    assert text.startswith("## perfsuite: passed — 5 passed, 0 failed, 0 missing baselines")
    assert "Regressions" not in text and "<summary>Skipped combos (1)</summary>" in text


# --- html --------------------------------------------------------------------------------------------


def _images() -> dict[str, dict[str, np.ndarray]]:
    found = {
        f"{factory.MODEL}/{combo}": {
            kind: factory.image(i * 3 + j) for j, kind in enumerate(("obtained", "reference", "diff"))
        }
        for i, combo in enumerate(factory.COMBOS)
    }
    del found[f"{factory.MODEL}/bf16+sdpa-flash"]["diff"]
    return found


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    write_report(folder, _failing_document(), _images())
    return folder


def _embedded_pngs(html: str) -> list[Image.Image]:
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    return [Image.open(io.BytesIO(base64.b64decode(uri))) for uri in uris]


def test_write_report_writes_three_files_and_the_images(report_dir):
    assert {p.name for p in report_dir.iterdir()} == {"results.json", "summary.md", "report.html", "images"}
    document = load_results(report_dir / "results.json")
    images = {f"{c['model']}/{c['combo']}": c.get("images", {}) for c in document["cases"]}
    assert images["tiny-sd/bf16"] == {
        kind: f"images/tiny-sd/bf16.{kind}.png" for kind in ("obtained", "reference", "diff")
    }
    assert "diff" not in images["tiny-sd/bf16+sdpa-flash"]
    saved = np.asarray(Image.open(report_dir / images["tiny-sd/fp32"]["obtained"]))
    assert np.array_equal(saved, factory.image(0))


def test_html_is_self_contained(report_dir):
    html = (report_dir / "report.html").read_text()
    assert "http://" not in html and "https://" not in html
    for tag, attribute in re.findall(r"<(\w+)[^>]*?\s(src|href)=", html):
        assert attribute == "src" and tag == "img", (tag, attribute)
    sources = re.findall(r'\ssrc="([^"]*)"', html)
    assert sources and all(source.startswith("data:image/png;base64,") for source in sources)
    assert "<script" not in html and "<link" not in html and "@import" not in html and "url(" not in html
    assert "Content-Security-Policy" in html and "default-src 'none'; img-src data:" in html


def test_html_embeds_the_charts_and_the_image_grid(report_dir):
    html = (report_dir / "report.html").read_text()
    for metric in ("latency", "speedup", "memory"):
        assert re.search(
            rf'<img class="chart" id="chart-{metric}" alt="[^"]+" src="data:image/png;base64,', html
        )
    assert html.count('<img class="sample"') == 14  # 5 cases x 3 images, one diff missing
    pngs = _embedded_pngs(html)
    assert len(pngs) == 17 and all(p.width > 0 for p in pngs)
    assert [p.width for p in pngs[:3]] == [900, 900, 900]  # the charts come first, 9 in at 100 dpi
    assert "no difference (x10) image<br>(not recorded)" in html
    assert html.count("SSIM 0.9900 · PSNR 40.0 dB") == 5


def test_html_highlights_the_failed_case(report_dir):
    html = (report_dir / "report.html").read_text()
    assert '<div class="headline bad" id="headline">FAILED: 4 passed, 1 failed' in html
    assert '<tr class="fail"><td><code>tiny-sd/bf16</code></td>' in html
    assert '<div class="case fail"><h3><code>tiny-sd/bf16</code> <span class="badge fail">FAIL</span>' in html
    assert html.index('id="regressions"') < html.index('id="cases"') < html.index('id="charts"')


def test_html_shows_a_placeholder_for_missing_or_broken_images(tmp_path):
    document = factory.document(combos=["fp32", "bf16"])
    document["cases"][0]["images"] = {"obtained": "gone.png", "reference": "text.png", "diff": "cut.png"}
    (tmp_path / "text.png").write_text("not a picture")
    good = io.BytesIO()
    Image.fromarray(factory.image(1)).save(good, format="PNG")
    (tmp_path / "cut.png").write_bytes(good.getvalue()[:60])
    html = render_html(document, tmp_path)
    assert "no obtained image<br>(file not found: gone.png)" in html
    assert "no reference image<br>(not a PNG: text.png)" in html
    assert "no difference (x10) image<br>(damaged PNG cut.png" in html
    assert html.count('class="placeholder"') == 6  # three for fp32, three for bf16 (none recorded)


def test_html_without_numbers_shows_chart_placeholders(tmp_path):
    document = factory.document(combos=["fp32"])
    document["cases"][0].update(status="error", measurement=None, verdict=None)
    html = render_html(document, tmp_path)
    assert '<div class="placeholder" id="chart-latency">Latency: no case has this number</div>' in html


# --- write_report and the step summary ---------------------------------------------------------------


def test_write_report_leaves_the_document_alone_and_rejects_unknown_cases(tmp_path):
    document = factory.document(combos=["fp32"])
    before = json.dumps(document, sort_keys=True)
    write_report(tmp_path / "a", document, {"tiny-sd/fp32": {"obtained": factory.image(1)}})
    assert json.dumps(document, sort_keys=True) == before
    with pytest.raises(ValueError, match=r"images given for case\(s\) not in the document: tiny-sd/bf16"):
        write_report(tmp_path / "b", document, {"tiny-sd/bf16": {"obtained": factory.image(1)}})


def test_append_step_summary(tmp_path, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert append_step_summary("## hello") is None
    target = tmp_path / "summary.md"
    target.write_text("earlier\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    assert append_step_summary("## hello") == target
    append_step_summary("more\n")
    assert target.read_text() == "earlier\n## hello\nmore\n"


def test_compare_agrees_with_the_gate_on_the_failing_document(tmp_path):
    from perfsuite.baselines import load_policy

    old, new = factory.document(), factory.document(slowdown={SLOW: 1.2})
    gate_failed = {
        f"{c['model']}/{c['combo']}" for c in _failing_document()["cases"] if c["status"] == "fail"
    }
    compared = compare_results(old, new, load_policy(factory.write_policy(tmp_path)))
    assert {c.case_id for c in compared.regressions} == gate_failed == {f"tiny-sd/{SLOW}"}


# --- a case that ended before it was measured, and warm-up compile counts ------------------------------

UNMEASURED = "fp32+fuse-qkv"
NOT_ACTIVE = {
    "kind": "verify",
    "technique": "fuse-qkv",
    "expected": "fuse-qkv active: fused QKV (self-attention) and KV (cross-attention) projections",
    "found": "unet attention uses AttnProcessor2_0",
    "where": "verify, after apply",
    "log": "Traceback (most recent call last):\n  <the full error text>\nNotActiveError: fuse-qkv: ...",
}


def _with_a_failed_verification() -> dict[str, Any]:
    document = factory.document()
    document["cases"][0]["measurement"].update(unique_graphs=3, warmup_recompiles=2)
    verdict = judge_failure(factory.MODEL, UNMEASURED, factory.PROFILE, NOT_ACTIVE)
    document["cases"].append(case_entry(None, verdict, model=factory.MODEL, combo=UNMEASURED))
    return validate_results(document)


def test_a_failed_verification_is_a_failed_row_in_the_terminal_with_its_reason():
    document = _with_a_failed_verification()
    measured = {**document, "cases": [c for c in document["cases"] if c["measurement"] is not None]}
    verdicts = {f"{c['model']}/{c['combo']}": Verdict.from_dict(c["verdict"]) for c in document["cases"]}
    lines = _summary(measured, verdicts)
    text = "\n".join(lines)
    assert max(len(line) for line in lines) <= WIDTH, text
    assert re.search(r"^!! fp32\+fuse-qkv +- +- +- +- +- +FAIL \(verify\)$", text, re.M), text
    assert f"!! tiny-sd/{UNMEASURED} FAILED:" in text
    assert "verify (policy) fail: fuse-qkv: unet attention uses AttnProcessor2_0" in text
    assert "Traceback" not in text  # the full error is for the report
    assert "   fp32: warm-up compiled 3 graphs with 2 recompiles (not gated; 0 after warm-up)" in lines


def test_a_failed_verification_is_a_failed_case_in_markdown_and_html(tmp_path):
    document = _with_a_failed_verification()
    markdown = render_markdown(document)
    assert "FAILED — 5 passed, 1 failed" in markdown
    assert (
        f"| `tiny-sd/{UNMEASURED}` | verify (policy) | fuse-qkv: unet attention uses AttnProcessor2_0 |"
        in (markdown)
    )
    assert f"| `tiny-sd/{UNMEASURED}` | - | - | - | - | - | - | **FAIL** |" in markdown
    assert "| 3 graphs, 2 recompiles |" in markdown and "Traceback" not in markdown
    page = render_html(document, tmp_path)
    assert '<details class="log"><summary>full error</summary><pre>Traceback (most recent call last):' in page
    assert f'<tr class="fail"><td><code>tiny-sd/{UNMEASURED}</code></td>' in page
    assert '<td class="num">3 graphs, 2 recompiles</td>' in page
