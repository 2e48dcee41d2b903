"""Run one combo of one model: apply, verify, warm up, trace, time against the in-run reference.

The reference (fp32, eager, same model, same process) is timed *interleaved* with the candidate,
alternating which goes first in each round, so drift of a shared, noisy machine cancels out of the
speedup. While the reference runs, every process-wide setting is put back to what it was before
the candidate's techniques were switched on, so an SDPA or TF32 restriction never leaks into it.
"""

from __future__ import annotations

import dataclasses
import gc
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from perfsuite.catalog import ModelSpec
from perfsuite.diagnostics import collect
from perfsuite.failure import CaseFailed, dynamo_failure, verify_failure
from perfsuite.globalstate import GlobalSnapshot, reset_compiler_state
from perfsuite.matrix import Combo
from perfsuite.measure import (
    CaseMemory,
    MemoryReading,
    ProfiledCall,
    counting_dynamo,
    profile_call,
    time_call,
)
from perfsuite.optimizations import NotActiveError, RunTrace, Target, get_technique
from perfsuite.stats import Ratio, Summary, speedup

__all__ = [
    "CaseResult",
    "CaseSlot",
    "PreparedCase",
    "Reference",
    "RoundRunner",
    "RunSettings",
    "open_case",
    "output_image",
    "prepare_case",
    "run_case",
]

#: ``RoundRunner(candidate, reference, rounds)`` -> (candidate_samples_s, reference_samples_s).
#: ``candidate`` and ``reference`` each run one timed call and return its seconds.
RoundRunner = Callable[[Callable[[], float], Callable[[], float], int], tuple[list[float], list[float]]]


@dataclass(frozen=True)
class RunSettings:
    warmup: int = 2
    rounds: int = 10
    trace: bool = True
    confidence: float = 0.95
    diagnostics: bool = True

    def __post_init__(self) -> None:
        if self.warmup < 1:
            raise ValueError(
                f"warmup must be at least 1 (the first call is the cold start), got {self.warmup}"
            )
        if self.rounds < 3:
            raise ValueError(f"rounds must be at least 3 for a median and an interval, got {self.rounds}")


def output_image(output: Any) -> np.ndarray:
    """The first image of a pipeline output as float32 HxWxC in [0, 1] (``output_type="np"``).

    For a video pipeline (an output with ``frames``), the first video's frames, T x H x W x C:
    :mod:`perfsuite.fidelity` compares them frame by frame and stores them side by side.
    """
    if hasattr(output, "frames"):
        frames = np.asarray(output.frames[0], dtype=np.float32)
        if frames.ndim != 4:
            raise ValueError(f"expected TxHxWxC video frames, got shape {frames.shape}")
        return frames
    images = output.images if hasattr(output, "images") else output[0]
    image = np.asarray(images[0], dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"expected an HxWxC image, got shape {image.shape}")
    return image


def interleaved_rounds(
    candidate: Callable[[], float], reference: Callable[[], float], rounds: int
) -> tuple[list[float], list[float]]:
    """Time ``rounds`` rounds, the reference first in even rounds and second in odd ones."""
    cand, ref = [], []
    for i in range(rounds):
        if i % 2 == 0:
            ref.append(reference())
            cand.append(candidate())
        else:
            cand.append(candidate())
            ref.append(reference())
    return cand, ref


_NO_MEMORY = MemoryReading(None, "unavailable", None, None, None)


@dataclass
class Reference:
    """The fp32 eager pipeline of one model, kept for the whole session and timed beside each combo."""

    spec: ModelSpec
    pipe: Any
    device: torch.device
    image: np.ndarray = field(repr=False)
    baseline: GlobalSnapshot = field(repr=False)
    #: The reference's own peak, read as a case's is (:class:`perfsuite.measure.CaseMemory`).
    memory: MemoryReading = field(default_factory=lambda: _NO_MEMORY)

    @classmethod
    def build(
        cls,
        spec: ModelSpec,
        pipe: Any,
        device: torch.device,
        warmup: int,
        memory: CaseMemory | None = None,
        trace: bool = True,
    ) -> Reference:
        """Warm ``pipe`` up and keep its image. ``memory``, opened before ``pipe`` was built, reads
        its peak the way a case's is read (warm-up, then one profiled call when ``trace``), so that
        a case's peak can be compared with the reference's (``max_memory_ratio``)."""
        baseline = GlobalSnapshot.take()
        memory = memory or CaseMemory(device)
        memory.start()

        def call() -> Any:
            return pipe(**spec.call_arguments())

        image = None
        for _ in range(max(1, warmup)):
            _, output = time_call(call, device)
            image = output_image(output)
        assert image is not None
        transient = profile_call(call, device).transient_peak_bytes if trace else None
        return cls(spec, pipe, device, image, baseline, memory.reading(pipe, transient))

    def timed_call(self) -> float:
        """One timed reference call, with the globals as they were when the reference was built."""
        with self._baseline_globals():
            seconds, _ = time_call(lambda: self.pipe(**self.spec.call_arguments()), self.device)
        return seconds

    @contextmanager
    def _baseline_globals(self) -> Any:
        current = GlobalSnapshot.take()
        self.baseline.restore()
        try:
            yield
        finally:
            current.restore()


@dataclass
class CaseResult:
    """Everything measured for one model x combo. Times in seconds, memory in bytes."""

    model: str
    combo: str
    techniques: tuple[str, ...]
    device: str
    latency: Summary
    reference_latency: Summary
    speedup: Ratio
    cold_start_s: float
    warmup_s: tuple[float, ...]
    compile_s: float | None
    #: Peak bytes held by this case's tensors (:class:`perfsuite.measure.CaseMemory`) and its kind.
    peak_mem_bytes: int | None
    peak_mem_kind: str
    evidence: tuple[str, ...]
    #: Graphs dynamo captured during warm-up (information).
    unique_graphs: int
    #: Graph breaks, in warm-up or after it (gated: a graph break is never benign).
    graph_breaks: int
    #: Recompilations after warm-up: the profiled call, the timed rounds, a re-measure (gated).
    recompiles: int
    image: np.ndarray = field(repr=False, compare=False)
    #: Recompilations during warm-up (information: regional compilation recompiles its blocks there).
    warmup_recompiles: int = 0
    #: ``peak_mem_bytes`` split: tensors held across calls, and the most one call adds on top.
    resident_mem_bytes: int | None = None
    transient_mem_bytes: int | None = None
    #: The process's resident-set high-water mark over warm-up and the profiled call (information).
    rss_hwm_bytes: int | None = None
    #: The in-run reference's peak, read the same way (``max_memory_ratio`` divides by it).
    reference_peak_mem_bytes: int | None = None
    reference_peak_mem_kind: str = "unavailable"
    #: The first timing pass when the case was re-measured to confirm a suspected regression.
    first_attempt: dict[str, Any] | None = None
    #: :func:`perfsuite.fidelity.assess` of the image against the references (filled by the caller).
    fidelity: dict[str, Any] | None = None
    #: The call settings that shape the work (steps, size, guidance): results compare only when equal.
    call: dict[str, Any] = field(default_factory=dict)
    #: :meth:`perfsuite.diagnostics.Diagnostics.to_dict`: per-stage times, host syncs, FLOPs.
    diagnostics: dict[str, Any] | None = None

    @property
    def case_id(self) -> str:
        return f"{self.model}/{self.combo}"

    #: The comparison with the base environment under ``--perf-ab-base`` (see :mod:`perfsuite.ab`).
    ab: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (raw samples at full precision; the image stays out)."""
        return {
            "model": self.model,
            "combo": self.combo,
            "techniques": list(self.techniques),
            "device": self.device,
            "latency_samples_s": list(self.latency.samples),
            "reference_samples_s": list(self.reference_latency.samples),
            "latency_median_s": self.latency.median,
            "latency_iqr_s": self.latency.iqr,
            "latency_ci_s": [self.latency.ci_low, self.latency.ci_high],
            "speedup": self.speedup.estimate,
            "speedup_ci": [self.speedup.ci_low, self.speedup.ci_high],
            "cold_start_s": self.cold_start_s,
            "warmup_s": list(self.warmup_s),
            "compile_s": self.compile_s,
            "peak_mem_bytes": self.peak_mem_bytes,
            "peak_mem_kind": self.peak_mem_kind,
            "resident_mem_bytes": self.resident_mem_bytes,
            "transient_mem_bytes": self.transient_mem_bytes,
            "rss_hwm_bytes": self.rss_hwm_bytes,
            "reference_peak_mem_bytes": self.reference_peak_mem_bytes,
            "reference_peak_mem_kind": self.reference_peak_mem_kind,
            "evidence": list(self.evidence),
            "unique_graphs": self.unique_graphs,
            "warmup_recompiles": self.warmup_recompiles,
            "graph_breaks": self.graph_breaks,
            "recompiles": self.recompiles,
            "first_attempt": self.first_attempt,
            "fidelity": self.fidelity,
            "call": self.call,
            "diagnostics": self.diagnostics,
            **({"ab": self.ab} if self.ab is not None else {}),
        }


def _apply_and_verify(pipe: Any, combo: Combo, target: Target, stack: ExitStack) -> list[str]:
    techniques = sorted((get_technique(n) for n in combo.techniques), key=lambda t: t.rank)
    for technique in techniques:
        stack.enter_context(technique.enter(target))
    for technique in techniques:
        if technique.apply is not None:
            technique.apply(pipe, target)
    evidence: list[str] = []
    for technique in techniques:
        try:
            evidence.extend(technique.verify(pipe, target))
        except NotActiveError as exc:
            raise CaseFailed(verify_failure(technique, exc, "verify, after apply")) from exc
    return evidence


def _verify_trace(combo: Combo, trace: RunTrace, target: Target) -> list[str]:
    evidence: list[str] = []
    for name in combo.techniques:
        technique = get_technique(name)
        if technique.verify_trace is not None:
            try:
                evidence.extend(technique.verify_trace(trace, target))
            except NotActiveError as exc:
                stage = "verify_trace, on the profiled call after warm-up"
                raise CaseFailed(verify_failure(technique, exc, stage)) from exc
    return evidence


@contextmanager
def _probes(pipe: Any, combo: Combo, target: Target) -> Iterator[dict[str, Any]]:
    """Hold every technique's ``probe`` around one call; yields ``{technique: what it recorded}``."""
    found: dict[str, Any] = {}
    with ExitStack() as stack:
        for name in combo.techniques:
            technique = get_technique(name)
            if technique.probe is not None:
                found[name] = stack.enter_context(technique.probe(pipe, target))
        yield found


def run_case(
    spec: ModelSpec,
    combo: Combo,
    make_pipe: Callable[[str], Any],
    reference: Reference,
    target: Target,
    settings: RunSettings,
    rounds_runner: RoundRunner = interleaved_rounds,
    remeasure: Callable[[CaseResult], bool] | None = None,
    during: Callable[[CaseSlot, CaseResult], CaseResult] | None = None,
) -> CaseResult:
    """Measure one combo. A technique that cannot prove it is active, or a model that dynamo refuses
    to compile as asked, raises :class:`~perfsuite.failure.CaseFailed`; any other failure to build,
    apply, verify or run propagates with its real error.

    When ``remeasure(result)`` is true (a suspected timing regression), the timed rounds run once
    more on the same warmed-up pipeline, and the second pass is the result; the first is kept in
    :attr:`CaseResult.first_attempt`. ``during(slot, result)``, when given, runs last, while the
    combo is still built and its techniques active (``slot.prepared``), and returns the result to
    keep: the A/B comparison times more calls there, and may re-prepare the case (``slot.reopen()``).
    """
    with CaseSlot(lambda s: open_case(spec, combo, make_pipe, target, s), settings) as slot:
        assert slot.prepared is not None
        result = _measure(slot.prepared, reference, settings, rounds_runner, remeasure)
        if during is not None:
            result = during(slot, result)
    return result


class CaseSlot:
    """The case a block holds open, which can be prepared again from scratch: :meth:`reopen` releases
    the prepared case (its techniques undone, the process-wide settings checked, as at the end of
    :func:`open_case`) and builds, applies, verifies and warms up a fresh one."""

    def __init__(
        self, opener: Callable[[RunSettings], AbstractContextManager[PreparedCase]], settings: RunSettings
    ) -> None:
        self._opener = opener
        self.settings = settings
        self._stack: ExitStack | None = None
        self.prepared: PreparedCase | None = None

    def _open(self, settings: RunSettings) -> PreparedCase:
        stack = ExitStack()
        self.prepared = stack.enter_context(self._opener(settings))
        self._stack = stack
        return self.prepared

    def reopen(self, *, trace: bool = False) -> PreparedCase:
        """Release the case and prepare it again (without the profiled call unless ``trace``)."""
        stack, self._stack, self.prepared = self._stack, None, None
        if stack is not None:
            stack.close()
        return self._open(dataclasses.replace(self.settings, trace=trace))

    def __enter__(self) -> CaseSlot:
        self._open(self.settings)
        return self

    def __exit__(self, *exc_info: Any) -> bool:
        stack, self._stack, self.prepared = self._stack, None, None
        return bool(stack.__exit__(*exc_info)) if stack is not None else False


@dataclass
class PreparedCase:
    """One combo built, its techniques applied and verified, warmed up and profiled: ready for timed
    calls.

    Every side of a measurement times its calls through :meth:`timed_call`: the case's rounds
    against the in-run reference, and each side of an A/B comparison. ``memory`` covers the warm-up
    (the first call, with any compile, included) and the profiled call after it. ``compiled`` is what
    dynamo did in warm-up (information); ``steady`` what it did after (gated).
    """

    spec: ModelSpec
    combo: Combo
    device: torch.device
    pipe: Any = field(repr=False)
    evidence: list[str] = field(default_factory=list)
    warmup_s: list[float] = field(default_factory=list)
    memory: MemoryReading = field(
        default_factory=lambda: MemoryReading(None, "unavailable", None, None, None)
    )
    compiled: Counter[str] = field(default_factory=Counter)
    steady: Counter[str] = field(default_factory=Counter)
    last_output: Any = field(default=None, repr=False)

    @property
    def peak_mem_bytes(self) -> int | None:
        return self.memory.peak_mem_bytes

    @property
    def peak_mem_kind(self) -> str:
        return self.memory.peak_mem_kind

    def call(self) -> Any:
        """One untimed pipeline call with the model's fixed arguments."""
        return self.pipe(**self.spec.call_arguments())

    def timed_call(self) -> float:
        """One call timed with the device clock; its output is kept for :meth:`image`."""
        seconds, output = time_call(self.call, self.device)
        self.last_output = output
        return seconds

    def image(self) -> np.ndarray:
        """The image of the last timed call."""
        if self.last_output is None:
            raise RuntimeError(f"{self.spec.name}/{self.combo.id}: no timed call has run yet")
        return output_image(self.last_output)


def prepare_case(
    spec: ModelSpec,
    combo: Combo,
    pipe: Any,
    target: Target,
    settings: RunSettings,
    stack: ExitStack,
    memory: CaseMemory | None = None,
) -> PreparedCase:
    """Apply and verify the combo's techniques on ``pipe`` (their contexts enter ``stack``), warm up,
    then verify from one profiled call; ``memory`` (opened before the pipeline was built) reads the
    case's peak over the warm-up and the profiled call."""
    device = target.device
    if target.call_arguments is None:
        target = dataclasses.replace(target, call_arguments=spec.call_arguments)
    memory = memory or CaseMemory(device)
    prepared = PreparedCase(spec, combo, device, pipe)
    prepared.evidence = _apply_and_verify(pipe, combo, target, stack)
    memory.start()
    with counting_dynamo() as compiled:
        for _ in range(settings.warmup):
            seconds, _ = time_call(prepared.call, device)
            prepared.warmup_s.append(seconds)
    prepared.compiled = compiled
    # Compile health is gated on what happens after warm-up: this profiled call and the rounds.
    with counting_dynamo() as steady:
        profiled: ProfiledCall | None = None
        if settings.trace:
            with _probes(pipe, combo, target) as probed:
                profiled = profile_call(prepared.call, device, compiled)
            trace = dataclasses.replace(profiled.trace, probes=probed)
            prepared.evidence.extend(_verify_trace(combo, trace, target))
    prepared.steady = steady
    # Closed before any timed round: the reference's calls must not count on CUDA.
    prepared.memory = memory.reading(pipe, profiled.transient_peak_bytes if profiled else None)
    return prepared


@contextmanager
def open_case(
    spec: ModelSpec, combo: Combo, make_pipe: Callable[[str], Any], target: Target, settings: RunSettings
) -> Iterator[PreparedCase]:
    """Build ``make_pipe(combo.dtype)`` and :func:`prepare_case` it for the block. On exit the
    techniques' settings are restored, the pipeline released, and every process-wide setting checked
    against what it was before (a leak raises, naming the setting)."""
    snapshot = GlobalSnapshot.take()
    held: list[PreparedCase] = []
    try:
        with ExitStack() as stack:
            memory = CaseMemory(target.device)
            memory.before_build()
            held.append(prepare_case(spec, combo, make_pipe(combo.dtype), target, settings, stack, memory))
            yield held[0]
    except BaseException as exc:
        _drop(held)
        _release(combo, target.device)
        snapshot.restore()
        failure = None if isinstance(exc, CaseFailed) else dynamo_failure(combo.techniques, exc)
        if failure is not None:
            raise CaseFailed(failure) from exc
        raise
    _drop(held)
    _release(combo, target.device)
    snapshot.assert_unchanged(f"combo {combo.id}")


def _drop(held: list[PreparedCase]) -> None:
    for prepared in held:
        prepared.pipe = prepared.last_output = None
    held.clear()


def _release(combo: Combo, device: torch.device) -> None:
    if combo.compiles:
        reset_compiler_state()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _measure(
    prepared: PreparedCase,
    reference: Reference,
    settings: RunSettings,
    rounds_runner: RoundRunner,
    remeasure: Callable[[CaseResult], bool] | None = None,
) -> CaseResult:
    spec, combo, device, mem = prepared.spec, prepared.combo, prepared.device, prepared.memory
    warmup_s, compiled = prepared.warmup_s, prepared.compiled
    with counting_dynamo() as rounds:
        cand_s, ref_s = rounds_runner(prepared.timed_call, reference.timed_call, settings.rounds)
    steady = prepared.steady + rounds
    latency = Summary.from_samples(cand_s, settings.confidence)
    result = CaseResult(
        model=spec.name,
        combo=combo.id,
        techniques=combo.techniques,
        device=str(device),
        latency=latency,
        reference_latency=Summary.from_samples(ref_s, settings.confidence),
        speedup=speedup(ref_s, cand_s, settings.confidence),
        cold_start_s=warmup_s[0],
        warmup_s=tuple(warmup_s),
        compile_s=max(0.0, warmup_s[0] - latency.median) if combo.compiles else None,
        peak_mem_bytes=mem.peak_mem_bytes,
        peak_mem_kind=mem.peak_mem_kind,
        resident_mem_bytes=mem.resident_mem_bytes,
        transient_mem_bytes=mem.transient_mem_bytes,
        rss_hwm_bytes=mem.rss_hwm_bytes,
        reference_peak_mem_bytes=reference.memory.peak_mem_bytes,
        reference_peak_mem_kind=reference.memory.peak_mem_kind,
        evidence=tuple(prepared.evidence),
        unique_graphs=compiled["unique_graphs"],
        warmup_recompiles=compiled["recompiles"],
        graph_breaks=compiled["graph_breaks"] + steady["graph_breaks"],
        recompiles=steady["recompiles"],
        image=prepared.image(),
        call=call_settings(spec),
    )
    if settings.diagnostics:
        # Two extra, untimed calls (stages and syncs; FLOPs). Quantized weights defeat the FLOP
        # counter, so a quantized combo is counted on the reference pipeline: the same math.
        quantized = any(get_technique(t).group == "quant" for t in combo.techniques)
        flops_pipe = reference.pipe if quantized else None
        found = collect(prepared.pipe, spec.call_arguments(), device, latency.median, flops_pipe=flops_pipe)
        result = dataclasses.replace(result, diagnostics=found.to_dict())
    if remeasure is not None and remeasure(result):
        with counting_dynamo() as again:
            cand_s, ref_s = interleaved_rounds(prepared.timed_call, reference.timed_call, settings.rounds)
        latency = Summary.from_samples(cand_s, settings.confidence)
        first = {key: value for key, value in result.to_dict().items() if key in _TIMING_KEYS}
        result = dataclasses.replace(
            result,
            latency=latency,
            reference_latency=Summary.from_samples(ref_s, settings.confidence),
            speedup=speedup(ref_s, cand_s, settings.confidence),
            recompiles=result.recompiles + again["recompiles"],
            graph_breaks=result.graph_breaks + again["graph_breaks"],
            image=prepared.image(),
            first_attempt=first,
        )
    return result


def call_settings(spec: ModelSpec) -> dict[str, Any]:
    """The call arguments that shape the work of one call (everything but the prompt text)."""
    keys = ("num_inference_steps", "height", "width", "num_frames", "guidance_scale", "max_sequence_length")
    return {key: spec.call_kwargs[key] for key in keys if key in spec.call_kwargs}


_TIMING_KEYS = (
    "latency_samples_s",
    "reference_samples_s",
    "latency_median_s",
    "latency_ci_s",
    "speedup",
    "speedup_ci",
)
