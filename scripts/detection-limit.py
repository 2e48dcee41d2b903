#!/usr/bin/env python
"""Find the smallest UNet slowdown the latency history check catches on this machine.

Records a baseline of one case (default: tiny-sd fp32) into a scratch baselines folder, then runs
the same case again with the UNet forward made slower by each level (it sleeps for that fraction of
the time the real forward took, so the extra time scales with the model), ``--repeats`` times per
level, and counts how often the gate fails the case on ``latency (history)``. The policy is the
shipped one plus one rule that sets ``latency_tolerance`` (``--tolerance``), because the shipped
``cpu-*`` tolerance is sized for comparisons across sessions, not for a machine compared with itself.

    python scripts/detection-limit.py --levels 5,10,15,20,25,30 --repeats 3 --tolerance 0.10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SLOWER_UNET = """
import os
import time

import diffusers

_forward = diffusers.UNet2DConditionModel.forward
_extra = float(os.environ["PERFSUITE_PLANTED_SLOWDOWN"])


def forward(self, *args, **kwargs):
    started = time.perf_counter()
    out = _forward(self, *args, **kwargs)
    time.sleep(_extra * (time.perf_counter() - started))
    return out


diffusers.UNet2DConditionModel.forward = forward
"""

SUITE = """
def test_combo(perf_case, perf_run):
    perf_run(perf_case)
"""


def run(folder: Path, args: list[str], slowdown: float | None) -> tuple[int, str]:
    env = dict(os.environ)
    conftest = folder / "conftest.py"
    if slowdown is None:
        conftest.unlink(missing_ok=True)
    else:
        conftest.write_text(SLOWER_UNET, encoding="utf-8")
        env["PERFSUITE_PLANTED_SLOWDOWN"] = str(slowdown)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-disable", *args]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, check=False)
    return done.returncode, done.stdout + done.stderr


def main(argv: list[str] | None = None) -> int:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--levels", default="5,10,15,20,25,30", help="slowdowns in percent, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="runs per level (default 3)")
    parser.add_argument("--tolerance", type=float, default=0.10, help="latency_tolerance (default 0.10)")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds per run (default 10)")
    parser.add_argument("--combo", default="fp32", help="the combo of the single preset to use")
    args = parser.parse_args(argv)
    levels = [float(level) / 100 for level in args.levels.split(",")]
    with tempfile.TemporaryDirectory(prefix="perfsuite-detection-") as scratch:
        folder = Path(scratch)
        (folder / "baselines").mkdir()
        policy = (ROOT / "baselines" / "policy.toml").read_text(encoding="utf-8")
        rule = f"\n[[rule]]\ncombo = '*'\nlatency_tolerance = {args.tolerance}\nnote = 'detection-limit'\n"
        (folder / "baselines" / "policy.toml").write_text(policy + rule, encoding="utf-8")
        (folder / "test_suite.py").write_text(SUITE, encoding="utf-8")
        common = ["--perf-device=cpu", "--perf-preset=single", f"--perf-rounds={args.rounds}",
                  "-k", f"{args.combo}]"]  # fmt: skip
        code, output = run(folder, [*common, "--perf-update-baselines"], None)
        if code != 0:
            print(output[-3000:])
            return 2
        table = []
        for level in levels:
            caught = 0
            for _ in range(args.repeats):
                code, output = run(folder, common, level)
                caught += int(code == 1 and "latency (history): FAIL" in output)
            table.append({"slowdown": level, "caught": caught, "runs": args.repeats})
            print(f"+{level:.0%} UNet time: caught in {caught} of {args.repeats} runs", flush=True)
    print(json.dumps({"tolerance": args.tolerance, "rounds": args.rounds, "levels": table}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
