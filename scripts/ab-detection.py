#!/usr/bin/env python
"""Measure what an A/B run catches: plant a slowdown in the head only, run the A/B suite N times
per level, and write the detection table.

Each run is ``python -m pytest tests/perf --perf-ab-base=BASE -p ab_plant ...`` with the slowdown
planted by ``scripts/ab_plant.py`` in the head (the pytest process); the base worker runs the same
code without it. Level 0 is an A/A run: every failure there is a false alarm. Per level the table
gives the share of compared cases caught (``latency (ab)`` failed), left inconclusive and passed,
and the pairs and seconds each case took (from ``results.json``).

    python scripts/ab-detection.py --levels 0,3,5,10,15 --runs 10 --out ab-detection
    python scripts/ab-detection.py --levels 10 --runs 2 --where bf16-unet -- -k "bf16]"

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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent


def run_suite(
    out: Path, base: str, slowdown: float, where: str, rounds: int, extra: list[str]
) -> tuple[int, float]:
    """One A/B run into ``out``; returns (exit code, wall seconds)."""
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
        f"--perf-report={out}",
        *extra,
    ]
    started = time.monotonic()
    with open(out.with_suffix(".log"), "w", encoding="utf-8") as log:
        code = subprocess.run(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=False
        ).returncode
    return code, time.monotonic() - started


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
                "seconds": ab["seconds"],
            }
        )
    return found


def summarize(level: float, cases: list[dict[str, Any]], runs: int, wall_s: list[float]) -> dict[str, Any]:
    count = len(cases)

    def share(outcome: str) -> int:
        return sum(1 for c in cases if c["outcome"] == outcome)

    pairs = [c["pairs"] for c in cases] or [0]
    seconds = [c["seconds"] for c in cases] or [0.0]
    return {
        "slowdown_percent": level,
        "runs": runs,
        "cases": count,
        "caught": share("caught"),
        "inconclusive": share("inconclusive"),
        "passed": share("passed"),
        "pairs_median": statistics.median(pairs),
        "pairs_max": max(pairs),
        "seconds_median": statistics.median(seconds),
        "seconds_max": max(seconds),
        "run_seconds_median": statistics.median(wall_s) if wall_s else 0.0,
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| head slower by | runs | cases | caught | inconclusive | passed | pairs per case (median / max) "
        "| seconds per case (median / max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        n = r["cases"] or 1
        caught = f"{r['caught']} ({r['caught'] / n:.0%})" + (
            " false alarms" if r["slowdown_percent"] == 0 else ""
        )
        lines.append(
            f"| {r['slowdown_percent']:g}% | {r['runs']} | {r['cases']} | {caught} | "
            f"{r['inconclusive']} ({r['inconclusive'] / n:.0%}) | {r['passed']} ({r['passed'] / n:.0%}) | "
            f"{r['pairs_median']:g} / {r['pairs_max']:g} | "
            f"{r['seconds_median']:.0f} / {r['seconds_max']:.0f} |"
        )
    return "\n".join(lines)


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
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    try:
        levels = [float(level) for level in args.levels.split(",")]
    except ValueError:
        parser.error(f"--levels: expected comma-separated percentages, got {args.levels!r}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows, details = [], []
    for level in levels:
        cases: list[dict[str, Any]] = []
        wall_s: list[float] = []
        for index in range(1, args.runs + 1):
            folder = args.out / f"level-{level:g}-run-{index:02d}"
            code, seconds = run_suite(
                folder, args.base, level / 100, args.where, args.rounds, args.pytest_args
            )
            found = outcomes(folder / "results.json")
            if not found:
                print(f"{level:g}% run {index}: no A/B case was measured (exit {code}); see {folder}.log")
                return 2
            cases.extend(found)
            wall_s.append(seconds)
            details.append(
                {"level": level, "run": index, "exit_code": code, "seconds": seconds, "cases": found}
            )
            text = ", ".join(
                f"{c['case'].split('/')[-1]} {c['outcome']} {c['ratio']:.3f} "
                f"[{c['ci'][0]:.3f}, {c['ci'][1]:.3f}] ({c['pairs']} pairs, {c['seconds']:.0f} s)"
                for c in found
            )
            print(f"{level:g}% run {index}/{args.runs} ({seconds:.0f} s): {text}", flush=True)
        rows.append(summarize(level, cases, args.runs, wall_s))
    report = table(rows)
    (args.out / "detection.md").write_text(report + "\n", encoding="utf-8")
    (args.out / "detection.json").write_text(
        json.dumps({"where": args.where, "levels": rows, "runs": details}, indent=2) + "\n"
    )
    print(report)
    false_alarms = sum(r["caught"] for r in rows if r["slowdown_percent"] == 0)
    return 1 if false_alarms else 0


if __name__ == "__main__":
    sys.exit(main())
