"""Diagnostics of one pipeline call: time per stage, host-device syncs, FLOPs, achieved throughput.

Each figure comes from an extra call made outside the suite's timed rounds (:func:`collect` makes
two: one instrumented, one under the FLOP counter):

* **stage times** (:mod:`.stages`): text encoding, the denoising loop (total and per step), VAE
  decode and the rest, device-synchronized at every boundary, through Python-level hooks
  (:mod:`.hooks`) that sit outside any compiled module and are removed when the call ends, also
  when it raises;
* **host-device syncs** (CUDA only): torch's sync debug mode during the denoising steps, per step;
* **FLOPs** (:mod:`.flops`): ``FlopCounterMode`` on the eager path of the pipeline, split by stage;
  achieved TFLOP/s over a latency, and its fraction of the GPU's dense peak where it is known.

A figure that cannot be had is ``None`` next to the reason. Plain functions on plain data; no pytest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from perfsuite.diagnostics.flops import (
    PEAK_DENSE_TFLOPS,
    FlopCount,
    Throughput,
    compute_dtype,
    count_flops,
    peak_tflops,
    throughput,
)
from perfsuite.diagnostics.hooks import MissingStageError
from perfsuite.diagnostics.stages import (
    SYNC_WARNING,
    HostSyncs,
    InstrumentedCall,
    StageTimes,
    SyncWarningCounter,
    instrumented_call,
)

__all__ = [
    "PEAK_DENSE_TFLOPS",
    "SYNC_WARNING",
    "Diagnostics",
    "FlopCount",
    "HostSyncs",
    "InstrumentedCall",
    "MissingStageError",
    "StageTimes",
    "SyncWarningCounter",
    "Throughput",
    "collect",
    "compute_dtype",
    "count_flops",
    "instrumented_call",
    "peak_tflops",
    "throughput",
]


@dataclass(frozen=True)
class Diagnostics:
    """Stage times, host syncs, FLOPs and throughput of one pipeline, JSON-ready through :meth:`to_dict`."""

    stage_times: StageTimes
    host_syncs: HostSyncs
    flops: FlopCount
    throughput: Throughput

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage_times": self.stage_times.to_dict(),
            "host_syncs": self.host_syncs.to_dict(),
            "flops": self.flops.to_dict(),
            "throughput": self.throughput.to_dict(),
        }


def collect(
    pipe: Any,
    call_kwargs: Mapping[str, Any],
    device: torch.device,
    latency_s: float | None = None,
    *,
    flops_pipe: Any = None,
) -> Diagnostics:
    """Two extra calls of ``pipe``: one instrumented (stages, syncs), one under the FLOP counter.

    ``latency_s`` is the latency that throughput is computed over (the suite's median); without it,
    the instrumented call's total is used, and ``latency_source`` says so. ``flops_pipe``, when
    given, is counted instead of ``pipe`` (an unquantized pipeline of the same model, for a quantized
    ``pipe``). The generator in ``call_kwargs``, if any, advances with each call.
    """
    device = torch.device(device)
    measured = instrumented_call(pipe, call_kwargs, device)
    flops = count_flops(pipe if flops_pipe is None else flops_pipe, call_kwargs)
    if flops_pipe is not None and flops.total_flop is not None:
        flops = dataclasses.replace(flops, note="counted on another pipeline of the same model")
    if latency_s is None:
        latency_s, source = measured.stage_times.total_s, "the instrumented call (synchronized per stage)"
    else:
        source = "given"
    rate = throughput(flops.total_flop, latency_s, source, device, compute_dtype(pipe))
    return Diagnostics(measured.stage_times, measured.host_syncs, flops, rate)
