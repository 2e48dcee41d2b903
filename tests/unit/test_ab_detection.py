"""scripts/ab-detection.py: the outcome of each A/B case, the per-run and per-case tables, and a
measurement split over sittings with --max-minutes and --resume."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ab-detection.py"


@pytest.fixture
def script():
    spec = importlib.util.spec_from_file_location("ab_detection", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def ab_case(combo: str, status: str, ratio: float) -> dict:
    """One case of results.json as an A/B run writes it, reduced to what the script reads."""
    return {
        "model": "tiny-sd",
        "combo": combo,
        "measurement": {
            "ab": {
                "decision": status,
                "ratio": ratio,
                "ratio_ci": [ratio - 0.02, ratio + 0.02],
                "pairs": 40,
                "attempts": 4,
                "seconds": 50.0,
            }
        },
        "verdict": {"checks": [{"field": "latency", "kind": "ab", "status": status}]},
    }


def write_results(folder: Path, statuses: dict[str, str], ratio: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cases = [ab_case(combo, status, ratio) for combo, status in statuses.items()]
    cases.append({"model": "tiny-sd", "combo": "fp32+tf32", "measurement": None, "verdict": None})
    (folder / "results.json").write_text(json.dumps({"cases": cases}))


def test_outcomes_read_the_ab_check_and_leave_out_cases_without_a_comparison(script, tmp_path):
    write_results(tmp_path, {"fp32": "fail", "bf16": "inconclusive", "fp16": "pass"}, 1.1)
    found = script.outcomes(tmp_path / "results.json")
    assert [(c["case"], c["outcome"]) for c in found] == [
        ("tiny-sd/fp32", "caught"),
        ("tiny-sd/bf16", "inconclusive"),
        ("tiny-sd/fp16", "passed"),
    ]


def record(level: float, run: int, outcomes: dict[str, str], ratio: float = 1.0) -> dict:
    cases = [
        {"case": f"tiny-sd/{combo}", "outcome": outcome, "ratio": ratio, "ci": [ratio - 0.02, ratio + 0.02]}
        | {"pairs": 40 * run, "attempts": 4, "seconds": 50.0 * run}
        for combo, outcome in outcomes.items()
    ]
    return {"level": level, "run": run, "exit_code": 0, "seconds": 300.0, "cases": cases}


def test_a_run_is_a_false_alarm_with_any_case_caught_and_caught_only_with_every_case(script):
    aa = script.summarize(
        0.0,
        [
            record(0, 1, {"fp32": "passed", "bf16": "caught"}),
            record(0, 2, {"fp32": "passed", "bf16": "passed"}),
        ],
        asked=20,
    )
    assert (aa["runs"], aa["runs_asked"], aa["cases"], aa["caught"]) == (2, 20, 4, 1)
    assert (aa["runs_any_caught"], aa["runs_all_caught"], aa["runs_any_inconclusive"]) == (1, 0, 0)
    slow = script.summarize(
        10.0,
        [
            record(10, 1, {"fp32": "caught", "bf16": "caught"}, 1.1),
            record(10, 2, {"fp32": "caught", "bf16": "inconclusive"}, 1.08),
        ],
        asked=2,
    )
    assert (slow["runs_any_caught"], slow["runs_all_caught"], slow["runs_any_inconclusive"]) == (2, 1, 1)
    assert (slow["pairs_median"], slow["pairs_max"], slow["ratio_min"], slow["ratio_max"]) == (
        60,
        80,
        1.08,
        1.1,
    )
    table = script.table([aa, slow])
    assert "| 0% | 2 of 20 | 4 | 1 (25%) false alarms |" in table
    assert "| 10% | 2 | 2 | 1 | 1 | 5.0 / 10 |" in table


def test_the_case_table_counts_each_combo_per_level(script):
    rows = script.per_case(
        [
            record(10, 1, {"fp32": "caught", "bf16": "caught"}, 1.1),
            record(10, 2, {"fp32": "caught", "bf16": "inconclusive"}, 1.06),
        ]
    )
    assert [(r["case"], r["runs"], r["caught"], r["inconclusive"], r["passed"]) for r in rows] == [
        ("tiny-sd/bf16", 2, 1, 1, 0),
        ("tiny-sd/fp32", 2, 2, 0, 0),
    ]
    assert rows[0]["lower_min"] == pytest.approx(1.04) and rows[0]["upper_max"] == pytest.approx(1.12)
    assert "| 10% | `tiny-sd/bf16` | 2 | 1 | 1 | 0 | 1.060 to 1.100 |" in script.case_table(rows)


def fake_suite(script, monkeypatch, calls: list):
    """Replace the pytest run: write a results.json whose verdict follows the planted level."""

    def run_suite(out, base, slowdown, where, rounds, extra):
        calls.append((out.name, slowdown))
        status = "fail" if slowdown else "pass"
        write_results(out, {"fp32": status, "bf16": status}, 1.0 + slowdown)
        return (1 if slowdown else 0), 12.0

    monkeypatch.setattr(script, "run_suite", run_suite)


def test_levels_interleave_run_by_run_and_resume_measures_only_the_missing_runs(
    script, monkeypatch, tmp_path
):
    calls: list = []
    fake_suite(script, monkeypatch, calls)
    out = tmp_path / "ab"
    assert script.main(["--levels", "0,10", "--runs", "2", "--out", str(out)]) == 0
    assert calls == [
        ("level-0-run-01", 0.0),
        ("level-10-run-01", 0.1),
        ("level-0-run-02", 0.0),
        ("level-10-run-02", pytest.approx(0.1)),
    ]
    document = json.loads((out / "detection.json").read_text())
    assert [(r["slowdown_percent"], r["runs"], r["runs_all_caught"]) for r in document["levels"]] == [
        (0.0, 2, 0),
        (10.0, 2, 2),
    ]
    assert not list(out.glob("*.partial"))

    # A run lost mid-way (its record gone) is measured again; the finished ones are kept.
    (out / "level-10-run-02.json").unlink()
    calls.clear()
    assert script.main(["--levels", "0,10", "--runs", "3", "--out", str(out), "--resume"]) == 0
    assert [name for name, _ in calls] == ["level-10-run-02", "level-0-run-03", "level-10-run-03"]
    document = json.loads((out / "detection.json").read_text())
    assert [r["runs"] for r in document["levels"]] == [3, 3]
    assert "| 10% | 3 | 6 | 6 (100%) |" in (out / "detection.md").read_text()


def test_without_resume_a_folder_with_finished_runs_is_refused(script, monkeypatch, tmp_path, capsys):
    calls: list = []
    fake_suite(script, monkeypatch, calls)
    assert script.main(["--levels", "0", "--runs", "1", "--out", str(tmp_path)]) == 0
    with pytest.raises(SystemExit):
        script.main(["--levels", "0", "--runs", "1", "--out", str(tmp_path)])
    assert "pass --resume to keep them" in capsys.readouterr().err


def test_max_minutes_stops_between_runs_and_says_how_to_continue(script, monkeypatch, tmp_path, capsys):
    calls: list = []
    fake_suite(script, monkeypatch, calls)
    clock = iter([0.0, 0.0, 30.0, 61.0, 61.0])  # start, then before each run
    monkeypatch.setattr(script, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    code = script.main(["--levels", "0,10", "--runs", "5", "--out", str(tmp_path), "--max-minutes", "1"])
    assert code == 3
    assert len(calls) == 2
    out = capsys.readouterr().out
    assert "stopped after 1 min with 2 of 10 runs" in out and "--resume" in out
    assert "| 0% | 1 of 5 |" in (tmp_path / "detection.md").read_text()


def test_an_aa_false_alarm_is_the_exit_status(script, monkeypatch, tmp_path):
    def run_suite(out, base, slowdown, where, rounds, extra):
        write_results(out, {"fp32": "fail"}, 1.06)
        return 1, 5.0

    monkeypatch.setattr(script, "run_suite", run_suite)
    assert script.main(["--levels", "0", "--runs", "1", "--out", str(tmp_path)]) == 1


PROBE = "import diffusers; print(getattr(diffusers.StableDiffusionPipeline.__call__, 'planted', None))"


def test_the_head_workers_interpreter_plants_the_slowdown(script, tmp_path, monkeypatch):
    import subprocess

    python = script.planting_python(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.setenv("PERFSUITE_PLANT_WHERE", "pipeline")
    seen = {}
    for slowdown in ("0", "0.1"):
        monkeypatch.setenv("PERFSUITE_PLANT_SLOWDOWN", slowdown)
        done = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, check=True)
        seen[slowdown] = done.stdout.strip()
    assert seen == {"0": "None", "0.1": "0.1"}
    monkeypatch.setenv("PERFSUITE_PLANT_SLOWDOWN", "lots")
    bad = subprocess.run([str(python), "-c", "print('ran')"], capture_output=True, text=True)
    assert bad.returncode != 0 and "ran" not in bad.stdout
    assert "PERFSUITE_PLANT_SLOWDOWN='lots': expected a fraction" in bad.stderr


def attempts_record(level: float, series: list[list[float]]) -> dict:
    cases = [
        record(level, 1, {f"combo{i}": "passed"})["cases"][0]
        | {"case": f"tiny-sd/combo{i}", "attempt_ratios": s}
        for i, s in enumerate(series)
    ]
    return {"level": level, "run": 1, "exit_code": 0, "seconds": 300.0, "cases": cases}


def test_neighbouring_attempts_that_share_an_offset_are_told_from_shuffled_ones(script):
    # Each case's attempts in two stretches, 4% apart: neighbours agree far more than chance.
    stretches = [[0.97] * 6 + [1.01] * 6, [1.02] * 6 + [0.98] * 6, [0.99] * 6 + [1.03] * 6]
    shared = script.neighbours(0, [attempts_record(0, stretches)])
    assert shared["cases"] == 3 and shared["lags"] == 33
    assert shared["lag1"] > 0.5 and shared["p"] < 0.01
    assert shared["shuffled_mean"] == pytest.approx(-1 / 12, abs=0.05)
    # The same values alternating: neighbours disagree, nothing to flag.
    alternating = [[s[i // 2] if i % 2 == 0 else s[6 + i // 2] for i in range(12)] for s in stretches]
    apart = script.neighbours(0, [attempts_record(0, alternating)])
    assert apart["lag1"] < 0 and apart["p"] > 0.5
    # Runs recorded before attempt_ratios was kept say so instead of a number.
    empty = script.neighbours(10, [record(10, 1, {"fp32": "caught"}, 1.1)])
    assert empty["lag1"] is None
    assert "| 10% | 0 | 0 | not recorded | not recorded | not recorded |" in script.neighbour_table([empty])


def test_the_report_carries_the_neighbouring_attempts_table(script, tmp_path):
    records = [attempts_record(0, [[1.0, 1.02, 0.99, 1.01, 0.98]]), attempts_record(10, [[1.1, 1.12, 1.09]])]
    report = script.write_report(tmp_path, "call", [0, 10], 20, records)
    assert "Neighbouring attempts of a case" in report
    document = json.loads((tmp_path / "detection.json").read_text())
    assert [(row["slowdown_percent"], row["lags"]) for row in document["neighbours"]] == [(0, 4), (10, 2)]
    # Each run alone as well, in level order, numbered.
    alone = [(row["slowdown_percent"], row["run"], row["lags"]) for row in document["neighbours_per_run"]]
    assert alone == [(0, 1, 4), (10, 1, 2)]
    assert "The same, each run alone:" in report
    assert "| head slower by | run | cases | lags |" in report
