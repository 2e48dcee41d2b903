"""Device-synchronized timing, the tensor memory of one case, and the trace of one profiled call.

On CUDA a call is timed with CUDA events recorded around it and a synchronize after it, so queued
kernels are counted. On CPU it is timed with ``time.perf_counter``. Memory is the peak bytes held
by the case's own tensors (:class:`CaseMemory`), on CUDA from the caching allocator's counters, on
CPU from the case pipeline's weights and the profiler's memory events of one call; the process's
resident-set high-water mark (``VmHWM``) is kept beside it as information.
"""

from __future__ import annotations

import contextlib
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

__all__ = [
    "CaseMemory",
    "MemoryReading",
    "ProfiledCall",
    "case_tensor_bytes",
    "counting_dynamo",
    "dynamo_counts",
    "profile_call",
    "synchronize",
    "time_call",
    "trace_call",
]


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


def _storages(tensor: torch.Tensor, found: dict[tuple[str, int], int]) -> None:
    """Record the storage of ``tensor``, or of each inner tensor of a tensor subclass (torchao's
    quantized weights hold an int8 tensor and its scales, reached through ``__tensor_flatten__``)."""
    if hasattr(tensor, "__tensor_flatten__"):
        names, _ = tensor.__tensor_flatten__()
        for name in names:
            _storages(getattr(tensor, name), found)
        return
    storage = tensor.untyped_storage()
    if storage.device.type != "meta":
        found[(str(storage.device), storage.data_ptr())] = storage.nbytes()


def case_tensor_bytes(pipe: Any) -> int:
    """Bytes of the unique storages of every parameter and buffer of the pipeline's components.

    Tied or shared weights count once; a tensor subclass counts the storages of its inner tensors.
    """
    found: dict[tuple[str, int], int] = {}
    modules = getattr(pipe, "components", None) or {}
    for module in modules.values():
        if isinstance(module, torch.nn.Module):
            for tensor in (*module.parameters(), *module.buffers()):
                _storages(tensor, found)
    return sum(found.values())


@dataclass(frozen=True)
class MemoryReading:
    """One case's memory, in bytes. ``peak_mem_bytes`` = ``resident_mem_bytes`` +
    ``transient_mem_bytes``: the case's tensors held across calls plus the most that one call adds.

    ``peak_mem_kind`` names what it covers (peaks of different kinds are never compared):
    ``cpu-case-tensors``, ``cuda-case-tensors`` or ``unavailable``. ``rss_hwm_bytes`` is the
    process's resident-set high-water mark over the same window: information, never gated.
    """

    peak_mem_bytes: int | None
    peak_mem_kind: str
    resident_mem_bytes: int | None
    transient_mem_bytes: int | None
    rss_hwm_bytes: int | None


@dataclass
class CaseMemory:
    """The peak bytes held by one case's tensors over its warm-up and profiled calls.

    * CUDA: ``torch.cuda.max_memory_allocated`` over the window opened by :meth:`start` minus
      ``torch.cuda.memory_allocated`` taken by :meth:`before_build` (just before the case's
      pipeline is built), so the resident reference pipeline and other models do not count, and
      CUDA-graph pools captured in warm-up do.
    * CPU: :func:`case_tensor_bytes` of the case's pipeline plus the transient peak of the profiled
      call after warm-up (:func:`profile_call`: the running sum of the profiler's CPU memory events).
      It does not depend on what ran before in the process, nor on the torch build's libraries.
    """

    device: torch.device
    _base_bytes: int = 0
    _resident_bytes: int = 0
    _rss_reset: bool = False

    def before_build(self) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            self._base_bytes = int(torch.cuda.memory_allocated(self.device))

    def start(self) -> None:
        """Open the window (before the first warm-up call)."""
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._resident_bytes = int(torch.cuda.memory_allocated(self.device)) - self._base_bytes
        self._rss_reset = False
        with contextlib.suppress(OSError):  # no /proc (not Linux): rss_hwm_bytes is then None
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self._rss_reset = True

    def reading(self, pipe: Any, transient_peak_bytes: int | None) -> MemoryReading:
        """Close the window. ``transient_peak_bytes`` is :attr:`ProfiledCall.transient_peak_bytes`
        of the profiled call (CPU), or None when no call was profiled."""
        rss = _status_kib(_HWM) if self._rss_reset else None
        if self.device.type == "cuda":
            synchronize(self.device)
            peak = int(torch.cuda.max_memory_allocated(self.device)) - self._base_bytes
            resident = self._resident_bytes
            return MemoryReading(peak, "cuda-case-tensors", resident, peak - resident, rss)
        if transient_peak_bytes is None:
            return MemoryReading(None, "unavailable", None, None, rss)
        resident = case_tensor_bytes(pipe)
        return MemoryReading(
            resident + transient_peak_bytes, "cpu-case-tensors", resident, transient_peak_bytes, rss
        )


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


@dataclass(frozen=True)
class ProfiledCall:
    """What :func:`profile_call` saw. ``transient_peak_bytes`` (CPU only, else None) is the most
    that the call held at once in tensors it allocated itself."""

    trace: RunTrace
    transient_peak_bytes: int | None


def _transient_peak_bytes(prof: Any) -> int:
    """The running sum of the profiler's memory events (allocations positive, frees negative) in
    time order, at its highest.

    torch reports a CPU free only for a block allocated while the profiler ran, so memory that was
    there before the call (the weights, an earlier output) never makes the sum fall: the figure is
    what the call itself allocated and held at once. The events come from ``kineto_results``: the
    public ``events()`` list folds memory events into the ops around them and loses their order.
    """
    results = getattr(prof.profiler, "kineto_results", None)
    if results is None:
        raise RuntimeError(
            f"torch {torch.__version__}: the profiler result has no kineto_results, so the CPU memory "
            "events of the profiled call cannot be read"
        )
    events = sorted(
        (event.start_ns(), event.nbytes())
        for event in results.events()
        if event.name() == "[memory]" and event.device_type() == torch.autograd.DeviceType.CPU
    )
    running = peak = 0
    for _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    return peak


def profile_call(
    fn: Callable[[], Any], device: torch.device, compiled: Counter[str] | None = None
) -> ProfiledCall:
    """Run ``fn`` once under the profiler: the aten ops it ran and, on CPU, its tensor memory."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    cpu = device.type == "cpu"
    if not cpu:
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities, profile_memory=cpu) as prof:
        fn()
        synchronize(device)
    names = frozenset(event.name for event in prof.events())
    compiled = compiled or Counter()
    trace = RunTrace(
        op_names=names,
        unique_graphs=compiled["unique_graphs"],
        graph_breaks=compiled["graph_breaks"],
        recompiles=compiled["recompiles"],
    )
    return ProfiledCall(trace, _transient_peak_bytes(prof) if cpu else None)


def trace_call(fn: Callable[[], Any], device: torch.device, compiled: Counter[str] | None = None) -> RunTrace:
    """Run ``fn`` once under the profiler and return the aten ops it ran."""
    return profile_call(fn, device, compiled).trace
