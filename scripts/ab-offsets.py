#!/usr/bin/env python
"""How much of an A/B interval is the processes' own offset: attempts of ABBA pairs between two
workers of this Python, with the processes kept or started anew per attempt.

    python scripts/ab-offsets.py --combo bf16 --attempts 8 --pairs 10 --new none
    python scripts/ab-offsets.py --combo bf16 --attempts 8 --pairs 10 --new base
    python scripts/ab-offsets.py --combo bf16 --attempts 8 --pairs 10 --new both

Both sides are the same environment (an A/A comparison), so every attempt ratio away from 1.0 is
the machine's noise or an offset of the processes. ``--new none`` keeps both processes and prepares
the case again in each per attempt (what A/B did before each attempt had new processes); ``base``
starts a new base process per attempt; ``both`` (what A/B does now) starts both anew. The spread of
the attempt ratios (standard deviation of their logs) and their mean are printed: a process offset
that preparing again does not redraw shows as a smaller spread with ``none`` and a mean away from 1.0.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

from perfsuite.ab.client import BaseWorker

SETUP = {"device": "cpu", "warmup": 1, "num_threads": 2, "call_overrides": {}, "trace": False}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny-sd")
    parser.add_argument("--combo", default="fp32")
    parser.add_argument("--attempts", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=10, help="pairs per attempt (even)")
    parser.add_argument("--new", choices=("none", "base", "both"), default="both")
    args = parser.parse_args()
    if args.attempts < 2 or args.pairs < 2 or args.pairs % 2:
        parser.error("need --attempts >= 2 and an even --pairs >= 2")
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the plugin sets it for both sides
    case = {"model": args.model, "combo": args.combo, "trace": False}
    workers: dict[str, BaseWorker] = {}

    def fresh(role: str) -> None:
        if role in workers:
            workers.pop(role).close()
        worker = BaseWorker.start(sys.executable, env=env)
        workers[role] = worker
        worker.request("setup", SETUP, timeout_s=600)

    started = time.monotonic()
    estimates = []
    try:
        for attempt in range(args.attempts):
            for role in ("base", "head"):
                if role not in workers or (attempt and args.new in (role, "both")):
                    fresh(role)
                workers[role].request("open_case", case, timeout_s=3600)
            logs = []
            for index in range(args.pairs):
                order = ("base", "head") if index % 2 == 0 else ("head", "base")
                seconds = {role: workers[role].request("call", timeout_s=600)["seconds"] for role in order}
                logs.append(math.log(seconds["head"] / seconds["base"]))
            estimates.append(statistics.mean(logs))  # whole ABBA blocks: the order effect cancels
            print(f"attempt {attempt + 1}: head/base {math.exp(estimates[-1]):.3f}", flush=True)
    finally:
        for worker in workers.values():
            worker.close()
    print(
        f"{args.model}/{args.combo}, new processes per attempt: {args.new}; {args.attempts} attempts of "
        f"{args.pairs} pairs: mean head/base {math.exp(statistics.mean(estimates)):.3f}, standard "
        f"deviation of the attempts' log ratios {statistics.stdev(estimates):.4f}; "
        f"{time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
