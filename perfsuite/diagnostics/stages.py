"""Time per stage of one call, and host-device syncs per denoising step on CUDA.

The device is synchronized at every stage boundary. On CUDA, ``torch.cuda.set_sync_debug_mode("warn")``
is on from the start of the first denoising step to the start of the VAE decode, and torch's
warnings are counted between step ends (explicit ``torch.cuda.synchronize`` calls, such as the ones at
the boundaries, are not reported by torch and so not counted).
"""

from __future__ import annotations

import itertools
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch

from perfsuite.diagnostics.hooks import Event, require_stages, stage_hooks
from perfsuite.measure import synchronize

__all__ = [
    "SYNC_WARNING",
    "HostSyncs",
    "InstrumentedCall",
    "StageTimes",
    "SyncWarningCounter",
    "instrumented_call",
]

#: The text of torch's warning for an implicit host-device sync (c10/cuda/CUDAFunctions.cpp,
#: ``warn_or_error_on_sync``). torch appends "(Triggered internally at ...)" to it.
SYNC_WARNING = "called a synchronizing CUDA operation"


class SyncWarningCounter:
    """Count torch's implicit-sync warnings raised inside the block; every other warning passes through.

    :meth:`mark` returns the count since the previous mark (or since entry), so a caller can split the
    block into windows (one per denoising step). Warnings other than torch's are re-issued on exit,
    in order, to the filters that were active outside.
    """

    def __init__(self) -> None:
        self._catcher = warnings.catch_warnings(record=True)
        self._log: list[warnings.WarningMessage] = []
        self._marked = 0

    def __enter__(self) -> SyncWarningCounter:
        log = self._catcher.__enter__()
        assert log is not None  # catch_warnings(record=True) yields its list
        self._log = log
        warnings.simplefilter("always")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._catcher.__exit__(kind, exc, tb)
        for message in self._log:
            if not _is_sync_warning(message):
                warnings.warn_explicit(message.message, message.category, message.filename, message.lineno)

    @property
    def count(self) -> int:
        return sum(1 for message in self._log if _is_sync_warning(message))

    def mark(self) -> int:
        now = self.count
        window, self._marked = now - self._marked, now
        return window


def _is_sync_warning(message: warnings.WarningMessage) -> bool:
    return issubclass(message.category, UserWarning) and SYNC_WARNING in str(message.message)


@contextmanager
def _cuda_sync_debug(mode: str) -> Iterator[None]:
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


@dataclass(frozen=True)
class HostSyncs:
    """Implicit host-device syncs in each denoising step (``None`` with a reason where not measured)."""

    per_step: tuple[int, ...] | None
    unavailable_reason: str | None = None

    @property
    def total(self) -> int | None:
        return None if self.per_step is None else sum(self.per_step)

    def to_dict(self) -> dict[str, Any]:
        return {
            "denoise_syncs": self.total,
            "per_step_syncs": None if self.per_step is None else list(self.per_step),
            "unavailable_reason": self.unavailable_reason,
        }


# --- stage times -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StageTimes:
    """Wall time of each stage of one call, device-synchronized at every boundary, in seconds.

    ``denoise_s`` runs from the start of the first step to the end of the last; ``per_step_s`` splits
    it. ``other_s`` is the rest of the call (latent preparation, post-processing, safety checker).
    """

    text_encoding_s: float
    denoise_s: float
    per_step_s: tuple[float, ...]
    vae_decode_s: float
    other_s: float
    total_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "text_encoding_s": self.text_encoding_s,
            "denoise_s": self.denoise_s,
            "per_step_s": list(self.per_step_s),
            "vae_decode_s": self.vae_decode_s,
            "other_s": self.other_s,
            "total_s": self.total_s,
        }


@dataclass(frozen=True)
class InstrumentedCall:
    """What one instrumented call measured."""

    stage_times: StageTimes
    host_syncs: HostSyncs


class _StageClock:
    """Listener that synchronizes the device and timestamps every stage event."""

    def __init__(self, device: torch.device, syncs: SyncWarningCounter | None, stack: ExitStack) -> None:
        self.device = device
        self.syncs = syncs
        self.stack = stack
        self.seen: set[str] = set()
        self.opened: dict[str, float] = {}
        self.text_encoding_s = 0.0
        self.vae_decode_s = 0.0
        self.loop_start_s: float | None = None
        self.step_ends_s: list[float] = []
        self.syncs_per_step: list[int] = []

    def __call__(self, event: Event) -> None:
        synchronize(self.device)
        now = time.perf_counter()
        self.seen.add(event)
        if event in ("encode_start", "decode_start"):
            self.opened[event] = now
        elif event == "encode_end":
            self.text_encoding_s += now - self.opened.pop("encode_start")
        elif event == "decode_end":
            self.vae_decode_s += now - self.opened.pop("decode_start")
        elif event == "loop_start" and self.loop_start_s is None:
            self.loop_start_s = now
            if self.syncs is not None:
                self.syncs.mark()
                if self.device.type == "cuda":
                    self.stack.enter_context(_cuda_sync_debug("warn"))
        elif event == "step_end":
            self.step_ends_s.append(now)
            if self.syncs is not None:
                self.syncs_per_step.append(self.syncs.mark())
        if event == "decode_start" and self.syncs is not None:
            self.stack.close()  # sync debug mode off before the VAE: only denoising steps are counted


def instrumented_call(
    pipe: Any, call_kwargs: Mapping[str, Any], device: torch.device, *, count_syncs: bool | None = None
) -> InstrumentedCall:
    """Run ``pipe(**call_kwargs)`` once with the stage hooks: time per stage, and syncs per step.

    ``count_syncs`` defaults to ``True`` on CUDA, where torch's sync debug mode is switched to
    ``"warn"`` for the denoising steps; elsewhere there is no host-device sync to count (passing
    ``True`` there counts only the sync warnings that the call itself raises). Everything the hooks
    change (instance attributes of the pipeline and its VAE, the sync debug mode) is restored when
    the call returns or raises.
    """
    device = torch.device(device)
    if count_syncs is None:
        count_syncs = device.type == "cuda"
    with ExitStack() as outer:
        syncs = outer.enter_context(SyncWarningCounter()) if count_syncs else None
        debug_mode = outer.enter_context(ExitStack())
        clock = _StageClock(device, syncs, debug_mode)
        kwargs = outer.enter_context(stage_hooks(pipe, call_kwargs, clock))
        synchronize(device)
        start_s = time.perf_counter()
        pipe(**kwargs)
        synchronize(device)
        total_s = time.perf_counter() - start_s
    require_stages(clock.seen, pipe)
    assert clock.loop_start_s is not None
    edges = [clock.loop_start_s, *clock.step_ends_s]
    per_step = tuple(b - a for a, b in itertools.pairwise(edges))
    denoise_s = clock.step_ends_s[-1] - clock.loop_start_s
    times = StageTimes(
        text_encoding_s=clock.text_encoding_s,
        denoise_s=denoise_s,
        per_step_s=per_step,
        vae_decode_s=clock.vae_decode_s,
        other_s=total_s - clock.text_encoding_s - denoise_s - clock.vae_decode_s,
        total_s=total_s,
    )
    return InstrumentedCall(times, _host_syncs(clock, device, count_syncs))


def _host_syncs(clock: _StageClock, device: torch.device, counted: bool) -> HostSyncs:
    if counted:
        return HostSyncs(tuple(clock.syncs_per_step))
    if device.type == "cpu":
        return HostSyncs(None, "no host-device sync on CPU")
    if device.type == "cuda":
        return HostSyncs(None, "sync counting was switched off (count_syncs=False)")
    return HostSyncs(None, f"torch's sync debug mode exists only on CUDA, not on {device.type}")
