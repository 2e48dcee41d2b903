#!/usr/bin/env python
"""Measure what an A/B run catches: plant a slowdown in the head only, run the A/B suite N times
per level, and write the detection table.

Each run is ``python -m pytest tests/perf --perf-ab-base=BASE --perf-ab-head=HEAD -p ab_plant ...``
with the slowdown planted by ``scripts/ab_plant.py`` in the head: the pytest process, and the head's
workers through HEAD, this Python with a site hook that plants it; the base workers run the same
code without it. Level 0 is an A/A run: every failure there is a false alarm. Per level the table
gives the share of compared cases caught (``latency (ab)`` failed), left inconclusive and passed,
and the pairs and seconds each case took (from ``results.json``).

    python scripts/ab-detection.py --levels 0,3,5,10,15 --runs 10 --out ab-detection
    python scripts/ab-detection.py --levels 10 --runs 2 --where bf16-unet -- -k "bf16]"
    python scripts/ab-detection.py --levels 0,10 --runs 20 --out ab-single --max-minutes 120 --resume

The runs go run-major: run 1 of every level, then run 2 of every level, and so on, so that the
levels share the machine's slow and fast phases instead of one level taking all of one phase. Each
finished run leaves ``level-L-run-NN.json`` (its exit code and seconds) beside its report folder;
``--resume`` keeps those runs and measures only the missing ones, and ``--max-minutes`` starts no new
run after that long. Together they split a measurement of many hours over several sittings: the
table is written after every run, and says how many of the asked runs each level has. The report
ends with a test of the interval's premise that a case's attempts are independent: whether
neighbouring attempts agree more than shuffled ones (``neighbours()``).

Exit status: 0 when every asked run is measured and no A/A run had a false alarm, 1 on a false alarm,
2 when a run measured no A/B case (its log says why), 3 when ``--max-minutes`` stopped it early.

The base defaults to this Python (an A/A comparison of one environment with itself). Extra pytest
arguments go after ``--``; the default selection is the eager combos of the ``single`` preset on
tiny-sd on the CPU (``-m "not compile"``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent


# Python reports an exception in sitecustomize and goes on; SystemExit stops it, so that a head worker
# never runs without the plant it was asked for.
SITE_HOOK = """import sys

import ab_plant

try:
    ab_plant.install_from_env()
except ValueError as exc:
    sys.exit(f"ab_plant: {exc}")
"""


def planting_python(folder: Path) -> Path:
    """An interpreter for the head's workers: this Python, with a sitecustomize that plants the slowdown
    of the environment (``ab_plant.install_from_env``) before the worker runs."""
    hooks = folder / "head-site"
    hooks.mkdir(parents=True, exist_ok=True)
    (hooks / "sitecustomize.py").write_text(SITE_HOOK)
    wrapper = folder / "head-python"
    path = os.pathsep.join([str(hooks), str(SCRIPTS)])
    wrapper.write_text(
        f'#!/bin/sh\nexport PYTHONPATH={path}${{PYTHONPATH:+:$PYTHONPATH}}\nexec {sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


def run_suite(
    out: Path, base: str, slowdown: float, where: str, rounds: int, extra: list[str]
) -> tuple[int, float]:
    """One A/B run into ``out``; returns (exit code, wall seconds)."""
    head = planting_python(out.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SCRIPTS), env.get("PYTHONPATH", "")]))
    env["PERFSUITE_PLANT_SLOWDOWN"] = str(slowdown)
    env["PERFSUITE_PLANT_WHERE"] = where
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/perf",
        "-p",
        "ab_plant",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        "--benchmark-disable",
        "-q",
        "--perf-device=cpu",
        "--perf-preset=single",
        "-m",
        "not compile",
        f"--perf-rounds={rounds}",
        f"--perf-ab-base={base}",
        f"--perf-ab-head={head}",
        f"--perf-report={out}",
        *extra,
    ]
    started = time.monotonic()
    with open(out.with_suffix(".log"), "w", encoding="utf-8") as log:
        code = subprocess.run(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
        ).returncode
    return code, time.monotonic() - started


def record_path(out: Path, level: float, index: int) -> Path:
    """Where a finished run's record (level, run, exit code, seconds, cases) is kept."""
    return out / f"level-{level:g}-run-{index:02d}.json"


def load_record(out: Path, level: float, index: int) -> dict[str, Any] | None:
    """The record of a finished run, or None when the run is missing or left no A/B case."""
    path = record_path(out, level, index)
    if not path.exists():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    return record if record.get("cases") else None


def outcomes(results: Path) -> list[dict[str, Any]]:
    """Per compared case: its A/B outcome (caught / inconclusive / passed), pairs and seconds."""
    if not results.exists():
        return []
    document = json.loads(results.read_text(encoding="utf-8"))
    found = []
    for case in document["cases"]:
        ab = (case.get("measurement") or {}).get("ab")
        if not isinstance(ab, dict):
            continue
        checks = [
            c
            for c in (case.get("verdict") or {}).get("checks", [])
            if c["field"] == "latency" and c["kind"] == "ab"
        ]
        status = checks[0]["status"] if checks else ab["decision"]
        outcome = {"fail": "caught", "inconclusive": "inconclusive", "pass": "passed"}.get(status, status)
        found.append(
            {
                "case": f"{case['model']}/{case['combo']}",
                "outcome": outcome,
                "ratio": ab["ratio"],
                "ci": ab["ratio_ci"],
                "pairs": ab["pairs"],
                "attempts": ab.get("attempts"),
                # In the order they ran: do neighbouring attempts share an offset (neighbours())?
                "attempt_ratios": ab.get("attempt_ratios"),
                "seconds": ab["seconds"],
                "stopped": ab.get("stopped"),
                "max_pairs": ab.get("max_pairs"),  # the caps it ran under (options, policy)
                "max_seconds": ab.get("max_seconds"),
            }
        )
    return found


def summarize(level: float, records: list[dict[str, Any]], asked: int) -> dict[str, Any]:
    """One level's row: per compared case, and per run (a run is one pytest session of every case).

    At level 0 a run is a false alarm when any of its cases was caught; above 0 a run is caught when
    every one of its cases was caught, the strict reading of "the run caught the slowdown".
    """
    cases = [c for r in records for c in r["cases"]]
    count = len(cases)
    tally = Counter(c["outcome"] for c in cases)

    def runs_where(test: Any) -> int:
        return sum(1 for r in records if test([c["outcome"] for c in r["cases"]]))

    pairs = [c["pairs"] for c in cases] or [0]
    seconds = [c["seconds"] for c in cases] or [0.0]
    ratios = [c["ratio"] for c in cases] or [float("nan")]
    wall_s = [r["seconds"] for r in records]
    return {
        "slowdown_percent": level,
        "runs": len(records),
        "runs_asked": asked,
        "cases": count,
        "caught": tally["caught"],
        "inconclusive": tally["inconclusive"],
        "passed": tally["passed"],
        "runs_any_caught": runs_where(lambda o: "caught" in o),
        "runs_all_caught": runs_where(lambda o: all(x == "caught" for x in o)),
        "runs_any_inconclusive": runs_where(lambda o: "inconclusive" in o),
        "pairs_median": statistics.median(pairs),
        "pairs_max": max(pairs),
        "seconds_median": statistics.median(seconds),
        "seconds_max": max(seconds),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "run_seconds_median": statistics.median(wall_s) if wall_s else 0.0,
        "run_seconds_total": sum(wall_s),
    }


def per_case(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (level, case): how often that case was caught, left inconclusive or passed."""
    groups: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for record in records:
        for case in record["cases"]:
            groups.setdefault((record["level"], case["case"]), []).append(case)
    rows = []
    for (level, name), cases in sorted(groups.items()):
        tally = Counter(c["outcome"] for c in cases)
        rows.append(
            {
                "slowdown_percent": level,
                "case": name,
                "runs": len(cases),
                "caught": tally["caught"],
                "inconclusive": tally["inconclusive"],
                "passed": tally["passed"],
                "ratio_min": min(c["ratio"] for c in cases),
                "ratio_max": max(c["ratio"] for c in cases),
                "lower_min": min(c["ci"][0] for c in cases),
                "upper_max": max(c["ci"][1] for c in cases),
                "pairs_median": statistics.median(c["pairs"] for c in cases),
                "seconds_median": statistics.median(c["seconds"] for c in cases),
            }
        )
    return rows


def _pooled_lag1(series: list[np.ndarray]) -> float:
    """Lag-1 autocorrelation pooled over series, each about its own mean (a case's own ratio)."""
    centred = [x - x.mean() for x in series]
    spread = sum(float(d @ d) for d in centred)
    return sum(float(d[:-1] @ d[1:]) for d in centred) / spread if spread > 0 else 0.0


def neighbours(level: float, records: list[dict[str, Any]], shuffles: int = 2000) -> dict[str, Any]:
    """Do neighbouring attempts of a case share an offset? The interval treats a case's attempts as
    independent draws; if attempts close in time agree more than chance, it is too narrow.

    The statistic is the lag-1 autocorrelation of each case's attempt log-ratios in the order they
    ran, pooled over the cases of the level's runs. Its value with no dependence is below 0 (about
    -1/attempts, from centring each case on its own mean), so it is compared with the same statistic
    over ``shuffles`` random orders of each case's attempts: ``p`` is the share of orders that agree
    at least as much as the order measured. Written here because scipy.stats.permutation_test
    permutes across samples or pairs samples of equal length, not the order within each of many
    series of different lengths.
    """
    series = [
        np.log(np.asarray(c["attempt_ratios"], dtype=float))
        for r in records
        if r["level"] == level
        for c in r["cases"]
        if len(c.get("attempt_ratios") or []) >= 3
    ]
    row: dict[str, Any] = {"slowdown_percent": level, "cases": len(series)}
    if not series:
        return row | {"lags": 0, "lag1": None, "shuffled_mean": None, "p": None}
    rng = np.random.default_rng(0)
    observed = _pooled_lag1(series)
    null = np.array([_pooled_lag1([rng.permutation(x) for x in series]) for _ in range(shuffles)])
    return row | {
        "lags": sum(len(x) - 1 for x in series),
        "lag1": observed,
        "shuffled_mean": float(null.mean()),
        "p": float((1 + np.count_nonzero(null >= observed)) / (shuffles + 1)),
    }


def neighbour_table(rows: list[dict[str, Any]]) -> str:
    """Pooled rows (one per level), or rows of one run each when they carry ``run``."""
    per_run = any("run" in r for r in rows)
    cells = [
        [f"{r['slowdown_percent']:g}%"]
        + ([f"{r['run']}"] if per_run else [])
        + [f"{r['cases']}", f"{r['lags']}"]
        + (
            ["not recorded"] * 3
            if r["lag1"] is None
            else [f"{r['lag1']:.3f}", f"{r['shuffled_mean']:.3f}", f"{r['p']:.3f}"]
        )
        for r in rows
    ]
    header = [
        "head slower by",
        *(["run"] if per_run else []),
        "cases",
        "lags",
        "lag-1 correlation",
        "shuffled (mean)",
        "p (neighbours agree)",
    ]
    return "\n".join(markdown(header, cells))


def markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table's lines: the header, its separator, then one line per row."""
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(cells) + " |" for cells in rows),
    ]


def table(rows: list[dict[str, Any]]) -> str:
    per_level = []
    for r in rows:
        n = r["cases"] or 1
        caught = f"{r['caught']} ({r['caught'] / n:.0%})" + (
            " false alarms" if r["slowdown_percent"] == 0 else ""
        )
        runs = f"{r['runs']}" if r["runs"] == r["runs_asked"] else f"{r['runs']} of {r['runs_asked']}"
        per_level.append(
            [
                f"{r['slowdown_percent']:g}%",
                runs,
                f"{r['cases']}",
                caught,
                f"{r['inconclusive']} ({r['inconclusive'] / n:.0%})",
                f"{r['passed']} ({r['passed'] / n:.0%})",
                f"{r['pairs_median']:g} / {r['pairs_max']:g}",
                f"{r['seconds_median']:.0f} / {r['seconds_max']:.0f}",
            ]
        )
    per_run = [
        [
            f"{r['slowdown_percent']:g}%",
            f"{r['runs']}",
            f"{r['runs_any_caught']}",
            f"{r['runs_all_caught']}",
            f"{r['runs_any_inconclusive']}",
            f"{r['run_seconds_median'] / 60:.1f} / {r['run_seconds_total'] / 60:.0f}",
        ]
        for r in rows
    ]
    lines = markdown(
        [
            "head slower by",
            "runs",
            "cases",
            "caught",
            "inconclusive",
            "passed",
            "pairs per case (median / max)",
            "seconds per case (median / max)",
        ],
        per_level,
    )
    lines.append("")
    lines += markdown(
        [
            "head slower by",
            "runs",
            "runs with a case caught",
            "runs with every case caught",
            "runs with a case inconclusive",
            "minutes per run (median / all)",
        ],
        per_run,
    )
    return "\n".join(lines)


def case_table(rows: list[dict[str, Any]]) -> str:
    cells = [
        [
            f"{r['slowdown_percent']:g}%",
            f"`{r['case']}`",
            f"{r['runs']}",
            f"{r['caught']}",
            f"{r['inconclusive']}",
            f"{r['passed']}",
            f"{r['ratio_min']:.3f} to {r['ratio_max']:.3f}",
            f"{r['lower_min']:.3f} to {r['upper_max']:.3f}",
            f"{r['pairs_median']:g}",
            f"{r['seconds_median']:.0f}",
        ]
        for r in rows
    ]
    header = [
        "head slower by",
        "case",
        "runs",
        "caught",
        "inconclusive",
        "passed",
        "estimates",
        "interval bounds",
        "pairs (median)",
        "seconds (median)",
    ]
    return "\n".join(markdown(header, cells))


def write_report(
    out: Path, where: str, levels: list[float], asked: int, records: list[dict[str, Any]]
) -> str:
    """Write detection.md and detection.json from every finished run; returns the markdown."""
    rows = [summarize(level, [r for r in records if r["level"] == level], asked) for level in levels]
    cases = per_case(records)
    near = [neighbours(level, records) for level in levels]
    # Each run alone too: a shared offset confined to one run (one phase of the machine) is diluted
    # in the pooled row.
    ordered = sorted(records, key=lambda r: (levels.index(r["level"]), r["run"]))
    alone = [neighbours(r["level"], [r]) | {"run": r["run"]} for r in ordered]
    report = (
        table(rows)
        + "\n\nPer case:\n\n"
        + case_table(cases)
        + "\n\nNeighbouring attempts of a case (their log-ratios in the order they ran), pooled over"
        " the cases of each level:\n\n"
        + neighbour_table(near)
        + "\n\nThe same, each run alone:\n\n"
        + neighbour_table(alone)
    )
    (out / "detection.md").write_text(report + "\n", encoding="utf-8")
    document = {
        "where": where,
        "levels": rows,
        "cases": cases,
        "neighbours": near,
        "neighbours_per_run": alone,
        "runs": records,
    }
    (out / "detection.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--levels", default="0,3,5,10,15", help="planted slowdowns in percent (0 = A/A)")
    parser.add_argument("--runs", type=int, default=10, help="runs per level (default 10)")
    parser.add_argument(
        "--where",
        default="pipeline",
        choices=("pipeline", "unet", "bf16-unet"),
        help="what is slowed in the head (default: every pipeline call)",
    )
    parser.add_argument("--base", default=sys.executable, help="the base interpreter (default: this one)")
    parser.add_argument("--rounds", type=int, default=3, help="the head's own rounds per case (default 3)")
    parser.add_argument("--out", type=Path, default=Path("ab-detection"), help="folder for reports and logs")
    parser.add_argument(
        "--resume", action="store_true", help="keep the runs already finished in --out; measure the rest"
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="start no new run after this many minutes; --resume continues later",
    )
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.max_minutes is not None and args.max_minutes <= 0:
        parser.error("--max-minutes must be positive")
    try:
        levels = [float(level) for level in args.levels.split(",")]
    except ValueError:
        parser.error(f"--levels: expected comma-separated percentages, got {args.levels!r}")
    if len(set(levels)) != len(levels):
        parser.error(f"--levels: each level once, got {args.levels!r}")
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.resume and any(args.out.glob("level-*-run-*.json")):
        parser.error(f"{args.out} holds finished runs: pass --resume to keep them, or choose another --out")
    started = time.monotonic()
    records: list[dict[str, Any]] = []
    stopped = False
    for index in range(1, args.runs + 1):
        for level in levels:
            kept = load_record(args.out, level, index) if args.resume else None
            if kept is not None:
                records.append(kept)
                continue
            if args.max_minutes is not None and time.monotonic() - started > args.max_minutes * 60:
                stopped = True
                break
            folder = args.out / f"level-{level:g}-run-{index:02d}"
            code, seconds = run_suite(
                folder, args.base, level / 100, args.where, args.rounds, args.pytest_args
            )
            found = outcomes(folder / "results.json")
            if not found:
                print(f"{level:g}% run {index}: no A/B case was measured (exit {code}); see {folder}.log")
                return 2
            record = {"level": level, "run": index, "exit_code": code, "seconds": seconds, "cases": found}
            # Written whole, then renamed: a run cut off mid-write is measured again on --resume.
            partial = record_path(args.out, level, index).with_suffix(".json.partial")
            partial.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            partial.replace(record_path(args.out, level, index))
            records.append(record)
            text = ", ".join(
                f"{c['case'].split('/')[-1]} {c['outcome']} {c['ratio']:.3f} "
                f"[{c['ci'][0]:.3f}, {c['ci'][1]:.3f}] ({c['pairs']} pairs, {c['seconds']:.0f} s)"
                for c in found
            )
            print(f"{level:g}% run {index}/{args.runs} ({seconds:.0f} s): {text}", flush=True)
            write_report(args.out, args.where, levels, args.runs, records)
        if stopped:
            break
    report = write_report(args.out, args.where, levels, args.runs, records)
    print(report)
    if stopped:
        done = len(records)
        print(
            f"stopped after {args.max_minutes:g} min with {done} of {args.runs * len(levels)} runs; "
            f"continue with the same arguments and --resume"
        )
    false_alarms = sum(1 for r in records if r["level"] == 0 for c in r["cases"] if c["outcome"] == "caught")
    if false_alarms:
        return 1
    return 3 if stopped else 0


if __name__ == "__main__":
    sys.exit(main())
