#!/usr/bin/env python
"""Run the gated suite N times in a row on unchanged code and count the false alarms, per combo.

A gate that fails unchanged code cries wolf. This runs ``python -m pytest tests/perf --perf-strict``
(plus any extra pytest arguments, such as ``--perf-preset single``) ``--runs`` times, reads each
run's JUnit XML, and reports per run which checks failed, then one table: per combo, how many runs
judged it, how many failed, and the failures by check (timing: latency and speedup; fidelity: ssim
and image; the rest: memory, compile health, verify, dynamo, errors). It exits 1 when any gated run
failed a check.

By default the runs gate against the committed baselines. ``--record-first`` first records fresh
baselines into ``OUT/baselines`` (a copy of ``baselines/policy.toml``) with one extra run, and then
gates the ``--runs`` runs against them: the stability bar for a profile or preset with no committed
baselines. The recording run's policy failures are listed too, but it is not one of the counted runs.

    python scripts/gate-stability.py --runs 5 --record-first --out stability/ -- --perf-preset single
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

CHECK_LINE = re.compile(r"^\s+(?P<field>[a-z ]+) \((?P<kind>policy|history)\): (?P<status>FAIL|MISSING)")
CASE_NAME = re.compile(r"\[(?P<case>.+)\]$")
TIMING = {"latency", "speedup"}
FIDELITY = {"ssim", "image"}
NOT_A_CHECK = "error (not a gate check)"
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class CaseRuns:
    """One case over the gated runs: how many judged it, and the failed checks of each failure."""

    judged: int = 0
    failed: int = 0
    checks: Counter[str] = field(default_factory=Counter)


def case_id(testcase: ET.Element) -> str:
    name = testcase.get("name", "?")
    match = CASE_NAME.search(name)
    return match["case"] if match else name


def outcomes(junit: Path) -> dict[str, list[str] | None]:
    """Per case of one run: None when it was skipped, else its failed checks (empty when it passed)."""
    found: dict[str, list[str] | None] = {}
    for testcase in ET.parse(junit).getroot().iter("testcase"):
        if testcase.find("skipped") is not None:
            found[case_id(testcase)] = None
            continue
        checks: set[str] = set()
        failures = [*testcase.iter("failure"), *testcase.iter("error")]
        for failure in failures:
            text = (failure.get("message") or "") + "\n" + (failure.text or "")
            checks.update(
                f"{m['field']} ({m['kind']})" for m in map(CHECK_LINE.match, text.splitlines()) if m
            )
        found[case_id(testcase)] = sorted(checks) or ([NOT_A_CHECK] if failures else [])
    return found


def category(check: str) -> str:
    name = check.split(" (")[0]
    return "timing" if name in TIMING else "fidelity" if name in FIDELITY else "other"


def table(cases: dict[str, CaseRuns]) -> list[str]:
    """The per-combo table: case, runs that judged it, failed runs, and the failures by check."""
    width = max([len("combo"), *map(len, cases)])
    lines = [f"{'combo':<{width}}  runs  failed  failures by check"]
    for name in sorted(cases):
        runs = cases[name]
        by_check = ", ".join(f"{check} x{count}" for check, count in sorted(runs.checks.items())) or "-"
        lines.append(f"{name:<{width}}  {runs.judged:>4}  {runs.failed:>6}  {by_check}")
    return lines


def run_suite(out: Path, label: str, args: list[str]) -> tuple[int, float, dict[str, list[str] | None]]:
    junit = out / f"{label}.xml"
    command = [sys.executable, "-m", "pytest", "tests/perf", f"--junitxml={junit}", "-p", "no:randomly",
               "-q", *args]  # fmt: skip
    started = time.monotonic()
    with open(out / f"{label}.log", "w", encoding="utf-8") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False, cwd=ROOT).returncode
    found = outcomes(junit) if junit.exists() else {"session": [f"{NOT_A_CHECK}: no JUnit XML"]}
    return code, time.monotonic() - started, found


def failed_text(found: dict[str, list[str] | None]) -> str:
    failed = {case: checks for case, checks in found.items() if checks}
    return ", ".join(f"{case}: {'; '.join(checks)}" for case, checks in failed.items()) or "clean"


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--runs", type=int, default=10, help="how many gated runs in a row (default 10)")
    parser.add_argument("--out", type=Path, default=Path("stability"), help="folder for logs and XML")
    parser.add_argument(
        "--record-first",
        action="store_true",
        help="record fresh baselines into OUT/baselines with one extra run, then gate against them",
    )
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    extra = list(args.pytest_args)
    if args.record_first:
        folder = out / "baselines"
        if folder.exists():
            parser.error(f"{folder} exists: remove it, or choose another --out, so the record is fresh")
        folder.mkdir()
        shutil.copy(ROOT / "baselines" / "policy.toml", folder / "policy.toml")
        extra.append(f"--perf-baselines-dir={folder}")
        code, seconds, found = run_suite(out, "record", [*extra, "--perf-update-baselines"])
        print(f"record: exit {code}, {seconds:.0f} s, {failed_text(found)}", flush=True)
    cases: dict[str, CaseRuns] = {}
    runs = []
    for index in range(1, args.runs + 1):
        code, seconds, found = run_suite(out, f"run-{index:02d}", [*extra, "--perf-strict"])
        checks = [check for case_checks in found.values() for check in case_checks or ()]
        by_category = Counter(category(check) for check in checks)
        for case, case_checks in found.items():
            if case_checks is None:
                continue
            entry = cases.setdefault(case, CaseRuns())
            entry.judged += 1
            entry.failed += bool(case_checks)
            entry.checks.update(case_checks)
        runs.append({"run": index, "exit_code": code, "seconds": seconds,
                     "failed": {case: c for case, c in found.items() if c},
                     "timing": by_category["timing"], "fidelity": by_category["fidelity"],
                     "other": by_category["other"]})  # fmt: skip
        print(f"run {index:2d}/{args.runs}: exit {code}, {seconds:.0f} s, {failed_text(found)}", flush=True)
    per_combo = {
        case: {"runs": c.judged, "failed": c.failed, "checks": dict(c.checks)} for case, c in cases.items()
    }
    summary = {"runs": runs, "per_combo": per_combo, "pytest_args": extra}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print()
    for line in table(cases):
        print(line)
    print()
    for kind in ("timing", "fidelity", "other"):
        bad = sum(1 for run in runs if run[kind])
        print(f"runs with a {kind} failure: {bad} of {len(runs)}")
    return 1 if any(run["failed"] for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
