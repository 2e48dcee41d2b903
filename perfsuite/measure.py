"""Device-synchronized timing, peak memory, and the trace of one profiled call.

On CUDA a call is timed with CUDA events recorded around it and a synchronize after it, so queued
kernels are counted. On CPU it is timed with ``time.perf_counter``. Peak memory on CUDA is
``torch.cuda.max_memory_allocated`` after a reset; on CPU it is the process's resident-set
high-water mark (``VmHWM``), which Linux lets us reset through ``/proc/self/clear_refs``.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from perfsuite.optimizations import RunTrace

__all__ = ["PeakMemory", "dynamo_counts", "synchronize", "time_call", "trace_call"]


def synchronize(device: torch.device) -> None:
    """Wait for every kernel queued on ``device``."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Run ``fn`` once and return ``(seconds, result)``, synchronized with the device."""
    if device.type == "cuda":
        synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        result = fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0, result
    start_s = time.perf_counter()
    result = fn()
    return time.perf_counter() - start_s, result


_HWM = re.compile(r"^VmHWM:\s+(\d+)\s+kB", re.MULTILINE)


def _status_kib(pattern: re.Pattern[str]) -> int | None:
    try:
        match = pattern.search(Path("/proc/self/status").read_text())
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


@dataclass
class PeakMemory:
    """The peak memory of one device over a window opened by :meth:`reset`.

    ``kind`` says what the figure covers: ``cuda-allocated`` (bytes held by torch's CUDA caching
    allocator for tensors), ``cpu-rss-hwm`` (the whole process's resident set), or ``unavailable``.
    """

    device: torch.device
    kind: str = "unavailable"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = "cuda-allocated"
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.kind = "unavailable"
        else:
            self.kind = "cpu-rss-hwm"

    def peak_bytes(self) -> int | None:
        if self.kind == "cuda-allocated":
            return int(torch.cuda.max_memory_allocated(self.device))
        if self.kind == "cpu-rss-hwm":
            return _status_kib(_HWM)
        return None


def dynamo_counts() -> Counter[str]:
    """A flat copy of the dynamo counters that tell whether and how much it compiled."""
    from torch._dynamo.utils import counters

    flat: Counter[str] = Counter()
    flat["unique_graphs"] = counters["stats"]["unique_graphs"]
    flat["graph_breaks"] = sum(counters["graph_break"].values())
    return flat


@contextmanager
def counting_dynamo() -> Iterator[Counter[str]]:
    """Yield a Counter that holds, on exit, what dynamo did inside the block: ``unique_graphs``,
    ``graph_breaks`` and ``recompiles``.

    Recompiles are counted from dynamo's end-of-compile callbacks: a compile id reads
    ``<frame>/<attempt>``, and an attempt above 0 is a recompilation of a frame compiled before
    (torch 2.13 keeps no counter for them).
    """
    from torch._dynamo.callback import CallbackTrigger, callback_handler

    delta: Counter[str] = Counter()
    recompiles = [0]

    def on_end(args: Any) -> None:
        compile_id = str(getattr(args, "compile_id", ""))
        if args.callback_trigger is CallbackTrigger.DYNAMO and not compile_id.endswith("/0"):
            recompiles[0] += 1

    callback_handler.register_end_callback(on_end)
    before = dynamo_counts()
    try:
        yield delta
    finally:
        after = dynamo_counts()
        for key in after:
            delta[key] = after[key] - before[key]
        delta["recompiles"] = recompiles[0]
        # torch.compiler.reset() inside the block drops every callback, this one included.
        if on_end in callback_handler.end_callbacks:
            callback_handler.remove_end_callback(on_end)


def trace_call(fn: Callable[[], Any], device: torch.device, compiled: Counter[str] | None = None) -> RunTrace:
    """Run ``fn`` once under the profiler and return the aten ops it ran."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        fn()
        synchronize(device)
    names = frozenset(event.name for event in prof.events())
    compiled = compiled or Counter()
    return RunTrace(
        op_names=names,
        unique_graphs=compiled["unique_graphs"],
        graph_breaks=compiled["graph_breaks"],
        recompiles=compiled["recompiles"],
    )
