#!/usr/bin/env python
"""Check that the profiler sees every CPU tensor allocation that perfsuite's memory figure counts.

perfsuite's CPU peak memory is the case pipeline's weights plus the transient peak of one profiled
call: the running sum of the profiler's CPU memory events (``perfsuite.measure.profile_call``). That
figure is only right if every allocation goes through torch's CPU allocator and reaches the profiler,
including inductor-generated code, the SDPA kernels and torchao's quantized ops. This script compares
it, per combo, with an independent figure: glibc's in-use heap bytes (``mallinfo2``: ``uordblks +
hblkhd``) sampled every ~0.1 ms by a thread during an unprofiled call, minus the value before the
call. The heap also holds Python's own objects, so it reads slightly higher; a profiler figure far
below it would mean allocations the profiler misses. Linux with glibc 2.33 or later only.

    python scripts/memory-events-check.py fp32 fp32+sdpa-flash fp32+int8-dq bf16 fp32+compile
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import os
import sys
import threading
import time
from contextlib import ExitStack
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the plugin does: see README, "OpenMP"

import torch

from perfsuite import hardware
from perfsuite.catalog import get_model
from perfsuite.matrix import make_combo
from perfsuite.measure import case_tensor_bytes, profile_call
from perfsuite.optimizations import Target, get_technique, torch_dtype

MIB = 2**20


_MALLINFO2_FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2_FIELDS.split()]


def _heap_in_use() -> Any:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2

    def in_use() -> int:
        info = libc.mallinfo2()
        return int(info.uordblks + info.hblkhd)

    return in_use


def heap_peak_bytes(fn: Any, in_use: Any, period_s: float = 1e-4) -> int:
    """The highest sampled in-use heap during ``fn()``, minus the value before it."""
    gc.collect()
    before = in_use()
    peak = [before]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], in_use())
            time.sleep(period_s)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        fn()
    finally:
        stop.set()
        sampler.join()
    return peak[0] - before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("combos", nargs="+", help="combo ids, e.g. fp32 fp32+compile bf16")
    parser.add_argument("--model", default="tiny-sd", help="catalog model (default tiny-sd)")
    parser.add_argument("--repeats", type=int, default=3, help="unprofiled calls sampled per combo")
    args = parser.parse_args(argv)
    try:
        in_use = _heap_in_use()
    except (OSError, AttributeError) as exc:
        parser.error(f"needs glibc's mallinfo2 (Linux, glibc >= 2.33): {exc}")
    cpu = torch.device("cpu")
    spec = get_model(args.model)
    base = spec.build(cpu, torch.float32)
    print(f"torch {torch.__version__}, {args.model}, {torch.get_num_threads()} threads")
    for combo_id in args.combos:
        combo = make_combo(combo_id.split("+"))
        pipe: Any = copy.deepcopy(base)
        pipe = pipe.to(dtype=torch_dtype(combo.dtype))
        target = Target(
            cpu, hardware.capabilities("cpu"), spec.family, combo.dtype, frozenset(combo.techniques)
        )
        techniques = sorted((get_technique(n) for n in combo.techniques), key=lambda t: t.rank)
        with ExitStack() as stack:
            for technique in techniques:
                stack.enter_context(technique.enter(target))
            for technique in techniques:
                if technique.apply is not None:
                    technique.apply(pipe, target)

            def call(pipe: Any = pipe) -> None:
                pipe(**spec.call_arguments())

            call()  # warm-up: the cold start (compile) and every shape recompile
            call()
            profiled = [profile_call(call, cpu).transient_peak_bytes or 0 for _ in range(2)]
            heap = [heap_peak_bytes(call, in_use) for _ in range(args.repeats)]
            print(
                f"{combo_id:32s} weights {case_tensor_bytes(pipe) / MIB:7.2f} MiB; transient peak: "
                f"profiler {', '.join(f'{p / MIB:.3f}' for p in profiled)} MiB, "
                f"heap {', '.join(f'{h / MIB:.3f}' for h in heap)} MiB",
                flush=True,
            )
        del pipe
        gc.collect()
        torch.compiler.reset()
    return 0


if __name__ == "__main__":
    sys.exit(main())
