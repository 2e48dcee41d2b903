#!/usr/bin/env python
"""The wall-clock cost of an A/B run against the plain run of the same selection.

Runs the suite (default: the default ladder, ``tests/perf`` on the CPU) once plainly and once with
``--perf-ab-base`` (default: this Python, an A/A comparison), alternating which goes first over
``--repeats``, and reports each run's wall time and, per case, the seconds the A/B comparison added
(the base's preparation and the pairs; from ``results.json``).

    python scripts/ab-cost.py --out ab-cost
    python scripts/ab-cost.py --repeats 1 -- -k "fp32]"
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run(out: Path, extra: list[str]) -> tuple[int, float]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/perf",
        "-q",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        "--perf-device=cpu",
        f"--perf-report={out}",
        *extra,
    ]
    started = time.monotonic()
    with open(out.with_suffix(".log"), "w", encoding="utf-8") as log:
        code = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    return code, time.monotonic() - started


def ab_seconds(results: Path) -> dict[str, dict[str, Any]]:
    document = json.loads(results.read_text(encoding="utf-8"))
    found = {}
    for case in document["cases"]:
        ab = (case.get("measurement") or {}).get("ab") or {}
        if ab:
            found[f"{case['model']}/{case['combo']}"] = {
                "seconds": ab["seconds"],
                "base_open_s": ab["base_open_s"],
                "pairs": ab["pairs"],
                "pairs_s": ab["pairs_s"],
            }
    return found


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--base", default=sys.executable, help="the base interpreter (default: this one)")
    parser.add_argument("--repeats", type=int, default=1, help="plain and A/B runs each (default 1)")
    parser.add_argument("--out", type=Path, default=Path("ab-cost"), help="folder for reports and logs")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    args.out.mkdir(parents=True, exist_ok=True)
    walls: dict[str, list[float]] = {"plain": [], "ab": []}
    cases: list[dict[str, dict[str, Any]]] = []
    for index in range(1, args.repeats + 1):
        order = ("plain", "ab") if index % 2 else ("ab", "plain")
        for kind in order:
            folder = args.out / f"{kind}-{index:02d}"
            extra = [*args.pytest_args, *([f"--perf-ab-base={args.base}"] if kind == "ab" else [])]
            code, seconds = run(folder, extra)
            if not (folder / "results.json").exists():
                print(f"{kind} run {index}: no results (exit {code}); see {folder}.log")
                return 2
            walls[kind].append(seconds)
            if kind == "ab":
                cases.append(ab_seconds(folder / "results.json"))
            print(f"{kind} run {index}: {seconds:.0f} s (exit {code})", flush=True)
    plain, ab = statistics.median(walls["plain"]), statistics.median(walls["ab"])
    lines = [
        f"plain run: {plain:.0f} s; A/B run: {ab:.0f} s ({ab / plain:.2f}x, +{ab - plain:.0f} s) "
        f"(medians of {args.repeats})",
        "",
        "| case | A/B seconds (base preparation + pairs) | pairs |",
        "|---|---|---|",
    ]
    for case_id in cases[0] if cases else {}:
        seen = [run_cases[case_id] for run_cases in cases if case_id in run_cases]
        seconds = statistics.median(c["seconds"] for c in seen)
        opened = statistics.median(c["base_open_s"] for c in seen)
        pairs = statistics.median(c["pairs"] for c in seen)
        lines.append(f"| `{case_id}` | {seconds:.0f} ({opened:.0f} + {seconds - opened:.0f}) | {pairs:g} |")
    text = "\n".join(lines)
    (args.out / "cost.md").write_text(text + "\n", encoding="utf-8")
    (args.out / "cost.json").write_text(json.dumps({"walls_s": walls, "cases": cases}, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
