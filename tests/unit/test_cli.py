"""The ``perfsuite`` command: compare, report, merge, baselines show/diff, help and exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import results_factory as factory

from perfsuite.baselines import write_baseline
from perfsuite.cli import EXIT_ERROR, EXIT_OK, EXIT_REGRESSION, main
from perfsuite.report import load_results

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "perfsuite.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
    )


def _main(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(args), out=out), out.getvalue()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """old.json, new.json (bf16 20% slower, every other combo identical), same.json and policy.toml."""
    return {
        "old": factory.write_json(tmp_path / "old.json", factory.document()),
        "new": factory.write_json(
            tmp_path / "new.json",
            factory.document(slowdown={"bf16": 1.2}, created="2025-02-01T00:00:00+00:00"),
        ),
        "same": factory.write_json(tmp_path / "same.json", factory.document()),
        "policy": factory.write_policy(tmp_path),
    }


def test_compare_exits_1_and_names_the_slower_combo_first(files):
    done = _run("compare", str(files["old"]), str(files["new"]), "--policy", str(files["policy"]))
    assert done.returncode == EXIT_REGRESSION, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    named = [line for line in lines if "tiny-sd/" in line]
    assert named[0].startswith("!! tiny-sd/bf16: latency +20.0%"), done.stdout
    assert "REGRESSIONS (1 case(s), the most worsened first):" in lines
    assert "   latency (history): FAIL" in lines and "   speedup (history): FAIL" in lines
    assert any(line.startswith("     bound:    at most ") for line in lines)
    assert lines[-1] == "result: 1 case(s) regressed (exit 1)"
    assert "within bounds (4 case(s)):" in lines


def test_compare_orders_regressions_by_how_much_worse(files, tmp_path):
    worse = factory.document(slowdown={"bf16": 1.2, "fp32+sdpa-math": 1.5})
    path = factory.write_json(tmp_path / "worse.json", worse)
    code, out = _main("compare", str(files["old"]), str(path), "--policy", str(files["policy"]))
    assert code == EXIT_REGRESSION
    flagged = [line.split(":")[0] for line in out.splitlines() if line.startswith("!! ")]
    assert flagged == ["!! tiny-sd/fp32+sdpa-math", "!! tiny-sd/bf16"]


def test_compare_of_identical_files_exits_0(files):
    code, out = _main("compare", str(files["old"]), str(files["same"]), "--policy", str(files["policy"]))
    assert code == EXIT_OK, out
    assert "REGRESSIONS" not in out and out.splitlines()[-1] == "result: no regression in 5 case(s) (exit 0)"


def test_compare_lists_cases_only_in_one_file(files, tmp_path):
    fewer = factory.write_json(tmp_path / "fewer.json", factory.document(combos=["fp32", "bf16"]))
    code, out = _main("compare", str(fewer), str(files["same"]), "--policy", str(files["policy"]))
    assert code == EXIT_OK
    flat = " ".join(out.split())
    assert (
        f"only in {files['same']} (3, policy checks only): tiny-sd/fp32+sdpa-math, tiny-sd/bf16+sdpa-flash, "
        in flat
    )
    assert "within bounds (2 case(s)):" in out
    code, out = _main("compare", str(files["same"]), str(fewer), "--policy", str(files["policy"]))
    assert code == EXIT_OK
    flat = " ".join(out.split())
    only = f"only in {files['same']} (3): tiny-sd/fp32+sdpa-math, tiny-sd/bf16+sdpa-flash, tiny-sd/"
    assert only + factory.LONG_COMBO in flat


def test_compare_refuses_an_unknown_schema_with_exit_2(files, tmp_path):
    data = json.loads(files["new"].read_text())
    data["schema_version"] = 7
    bad = factory.write_json(tmp_path / "future.json", data)
    done = _run("compare", str(files["old"]), str(bad), "--policy", str(files["policy"]))
    assert done.returncode == EXIT_ERROR
    assert f"perfsuite compare: error: {bad}: schema_version 7 is newer" in done.stderr
    assert "upgrade perfsuite" in done.stderr and done.stdout == ""


def test_compare_without_a_policy_uses_the_shipped_default_and_says_so(files, tmp_path, monkeypatch):
    from perfsuite.baselines import default_policy_path

    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    assert main(["compare", str(files["old"]), str(files["new"])], out=out) in (EXIT_OK, EXIT_REGRESSION)
    text = " ".join(out.getvalue().split())
    assert f"policy: {default_policy_path()}" in text
    assert "no policy.toml in baselines; using the default policy shipped with perfsuite" in text
    assert "`perfsuite init`" in text
    (tmp_path / "baselines").mkdir()
    factory.write_policy(tmp_path / "baselines")
    out = io.StringIO()
    assert main(["compare", str(files["old"]), str(files["new"])], out=out) == EXIT_REGRESSION
    assert "policy: baselines/policy.toml" in out.getvalue()
    assert "shipped with perfsuite" not in out.getvalue()


def test_missing_file_and_bad_usage_exit_2(files, capsys):
    assert (
        main(["compare", "nowhere.json", str(files["new"]), "--policy", str(files["policy"])]) == EXIT_ERROR
    )
    assert "nowhere.json: no such results file" in capsys.readouterr().err
    assert main(["compare", str(files["old"])]) == EXIT_ERROR
    assert "the following arguments are required: NEW.json" in capsys.readouterr().err
    assert main(["frobnicate"]) == EXIT_ERROR


@pytest.mark.parametrize(
    "command", [[], ["compare"], ["report"], ["merge"], ["baselines"], ["baselines", "diff"]]
)
def test_every_command_has_help_with_exit_codes(command, capsys):
    assert main([*command, "--help"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "exit codes:" in text and "  2  usage error" in text
    if command == ["compare"]:
        assert "1  at least one case regressed" in text and "--policy PATH" in text


def test_report_rebuilds_summary_and_html_next_to_the_results(files, tmp_path):
    code, out = _main("report", str(files["new"]))
    assert code == EXIT_OK and (tmp_path / "summary.md").is_file() and (tmp_path / "report.html").is_file()
    assert "wrote" in out
    code, _ = _main("report", str(files["new"]), "-o", str(tmp_path / "elsewhere"))
    assert (tmp_path / "elsewhere" / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_merge_writes_the_union(tmp_path):
    one = factory.write_json(tmp_path / "s1" / "results.json", factory.document(combos=["fp32"]))
    two_doc = factory.document(combos=["bf16"])
    two_doc["cases"][0]["images"] = {"obtained": "images/bf16.png"}
    two = factory.write_json(tmp_path / "s2" / "results.json", two_doc)
    code, out = _main("merge", str(one), str(two), "-o", str(tmp_path / "all.json"))
    assert code == EXIT_OK, out
    merged = load_results(tmp_path / "all.json")
    assert [c["combo"] for c in merged["cases"]] == ["fp32", "bf16"]
    assert merged["cases"][1]["images"] == {"obtained": "s2/images/bf16.png"}
    code, _ = _main("merge", str(one), str(one), "-o", str(tmp_path / "dup.json"))
    assert code == EXIT_ERROR and not (tmp_path / "dup.json").exists()


def test_baselines_show_and_diff(files, tmp_path):
    root = tmp_path / "baselines"
    old = json.loads(files["old"].read_text())
    for case in old["cases"][:3]:
        write_baseline(
            root,
            factory.PROFILE,
            case["model"],
            case["combo"],
            measurement=case["measurement"],
            machine=old["machine"],
            commit="abcdef0123456789",
            created="2025-01-02T03:04:05+00:00",
        )
    write_baseline(
        root,
        factory.PROFILE,
        factory.MODEL,
        "fp16",
        measurement={"latency_median_s": 0.2},
        machine=old["machine"],
        created="2025-01-02T03:04:05+00:00",
    )
    code, out = _main("baselines", "show", "--dir", str(root))
    assert code == EXIT_OK
    assert out.splitlines()[:2] == [f"4 baseline(s) under {root}", f"profile {factory.PROFILE}"]
    row = next(line for line in out.splitlines() if line.startswith("    bf16 "))
    assert "59.9 ms" in row and "1.67x" in row and "210.0 MiB" in row and "2025-01-02  abcdef0123" in row
    assert max(len(line) for line in out.splitlines()) <= 100

    code, out = _main("baselines", "diff", str(files["new"]), "--dir", str(root))
    assert code == EXIT_OK
    lines = out.splitlines()
    assert "  tiny-sd/fp32: unchanged" in lines
    assert any(
        line.startswith("  tiny-sd/bf16: latency_median_s: 0.05987") and "(+20.0%)" in line for line in lines
    )
    assert any(line.startswith("  tiny-sd/bf16+sdpa-flash: new,") for line in lines)
    assert "kept as they are (not in these results): tiny-sd/fp16" in lines
    assert lines[-1].startswith("2 new, 1 changed, 2 unchanged")


def test_baselines_show_of_a_missing_folder_exits_2(tmp_path, capsys):
    assert main(["baselines", "show", "--dir", str(tmp_path / "none")]) == EXIT_ERROR
    assert "perfsuite baselines show: error: no baselines folder" in capsys.readouterr().err


def test_importing_the_cli_does_not_import_torch():
    code = "import sys, perfsuite.cli; print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.stdout.split() == ["False", "False"], done.stderr
