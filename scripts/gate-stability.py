#!/usr/bin/env python
"""Run the gated suite N times in a row on unchanged code and count the verdicts it gives.

A gate that fails unchanged code cries wolf. This runs ``python -m pytest tests/perf --perf-strict``
(plus any extra pytest arguments) ``--runs`` times against the committed baselines, reads each run's
JUnit XML, and reports, per run, which checks failed, split into timing checks (latency, speedup),
fidelity checks (ssim, image) and the rest. It exits 1 when any run failed a check.

    python scripts/gate-stability.py --runs 10 --out stability/ [-- extra pytest args]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

CHECK_LINE = re.compile(r"^\s+(?P<field>[a-z ]+) \((?P<kind>policy|history)\): (?P<status>FAIL|MISSING)")
TIMING = {"latency", "speedup"}
FIDELITY = {"ssim", "image"}


def failed_checks(junit: Path) -> list[tuple[str, str]]:
    """(test id, "field (kind)") for every failed check named in the run's failure messages."""
    found = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        for failure in (*case.iter("failure"), *case.iter("error")):
            text = (failure.get("message") or "") + "\n" + (failure.text or "")
            name = case.get("name", "?")
            checks = {f"{m['field']} ({m['kind']})" for m in map(CHECK_LINE.match, text.splitlines()) if m}
            found.extend((name, check) for check in sorted(checks) or ["error (not a gate check)"])
    return found


def category(check: str) -> str:
    field = check.split(" (")[0]
    return "timing" if field in TIMING else "fidelity" if field in FIDELITY else "other"


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--runs", type=int, default=10, help="how many runs in a row (default 10)")
    parser.add_argument("--out", type=Path, default=Path("stability"), help="folder for logs and XML")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.out.mkdir(parents=True, exist_ok=True)
    runs = []
    for index in range(1, args.runs + 1):
        junit = args.out / f"run-{index:02d}.xml"
        command = [sys.executable, "-m", "pytest", "tests/perf", "--perf-strict", f"--junitxml={junit}",
                   "-p", "no:randomly", "-q", *args.pytest_args]  # fmt: skip
        started = time.monotonic()
        with open(args.out / f"run-{index:02d}.log", "w", encoding="utf-8") as log:
            code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
        checks = failed_checks(junit) if junit.exists() else [("session", "error (no JUnit XML)")]
        seconds = time.monotonic() - started
        by_category = Counter(category(check) for _, check in checks)
        runs.append({"run": index, "exit_code": code, "seconds": seconds, "failed": checks,
                     "timing": by_category["timing"], "fidelity": by_category["fidelity"],
                     "other": by_category["other"]})  # fmt: skip
        verdict = "clean" if not checks else ", ".join(f"{name}: {check}" for name, check in checks)
        print(f"run {index:2d}/{args.runs}: exit {code}, {seconds:.0f} s, {verdict}", flush=True)
    (args.out / "summary.json").write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")
    for kind in ("timing", "fidelity", "other"):
        bad = sum(1 for run in runs if run[kind])
        print(f"runs with a {kind} failure: {bad} of {len(runs)}")
    return 1 if any(run["failed"] for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
