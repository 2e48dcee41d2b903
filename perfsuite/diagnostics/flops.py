"""FLOPs of one call (``FlopCounterMode``), achieved TFLOP/s, and its fraction of the GPU's peak.

The count runs under ``torch.compiler.set_stance("force_eager")``. A dispatch mode cannot see inside
compiled code, and torch.compile marks the frames it meets under one as never-to-compile, which
would leave a compiled pipeline silently eager afterwards; with the eager stance the compiled
modules run their eager path for the count (the same matmuls and convolutions) and keep their
compiled code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from perfsuite.catalog.families import family_of
from perfsuite.diagnostics.hooks import Event, require_stages, stage_hooks

__all__ = [
    "PEAK_DENSE_TFLOPS",
    "FlopCount",
    "Throughput",
    "compute_dtype",
    "count_flops",
    "peak_tflops",
    "throughput",
]

_HOPPER = {"bf16": 989.5, "fp16": 989.5, "tf32": 494.5, "fp32": 67.0}

#: Peak dense (no structured sparsity) throughput in TFLOP/s by GPU and compute dtype. Sources:
#: NVIDIA datasheets (H200 and H100 SXM: "H100 Tensor Core GPU" and "H200 Tensor Core GPU"; A100:
#: "A100 Tensor Core GPU"; L40S, L4 and A10: their product datasheets). The datasheets give tensor-core
#: figures with sparsity; the dense figure is half of it. fp32 is the non-tensor-core figure. The
#: AWS A10G has no published NVIDIA figure and is left out rather than guessed. Patterns are matched
#: in order against ``torch.cuda.get_device_name``.
PEAK_DENSE_TFLOPS: tuple[tuple[str, str, Mapping[str, float]], ...] = (
    (r"\bH200\b(?!.*\bNVL\b)", "H200 SXM", _HOPPER),
    (r"\bH100\b.*\bPCIe\b", "H100 PCIe", {"bf16": 756.5, "fp16": 756.5, "tf32": 378.0, "fp32": 51.0}),
    (r"\bH100\b(?!.*\b(?:PCIe|NVL)\b)", "H100 SXM", _HOPPER),
    (r"\bA100\b", "A100", {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    (r"\bL40S\b", "L40S", {"bf16": 362.1, "fp16": 362.1, "tf32": 183.0, "fp32": 91.6}),
    (r"\bL4\b", "L4", {"bf16": 121.0, "fp16": 121.0, "tf32": 60.0, "fp32": 30.3}),
    (r"\bA10\b", "A10", {"bf16": 125.0, "fp16": 125.0, "tf32": 62.5, "fp32": 31.2}),
)


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one call (matmuls, convolutions and attention, as ``FlopCounterMode`` counts them).

    ``None`` figures come with ``unavailable_reason``; ``note`` says how the count was taken.
    """

    total_flop: int | None
    text_encoding_flop: int | None = None
    denoise_flop: int | None = None
    vae_decode_flop: int | None = None
    unavailable_reason: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_flop": self.total_flop,
            "text_encoding_flop": self.text_encoding_flop,
            "denoise_flop": self.denoise_flop,
            "vae_decode_flop": self.vae_decode_flop,
            "unavailable_reason": self.unavailable_reason,
            "note": self.note,
        }


def _modules(pipe: Any) -> Iterator[tuple[str, torch.nn.Module]]:
    for name, component in getattr(pipe, "components", {}).items():
        if isinstance(component, torch.nn.Module):
            yield name, component


def _subclass_weights(pipe: Any) -> dict[str, int]:
    """``{tensor class name: count}`` of parameters that are tensor subclasses (quantized weights)."""
    found: dict[str, int] = {}
    for _, module in _modules(pipe):
        for param in module.parameters():
            kind = type(param)
            if kind not in (torch.Tensor, torch.nn.Parameter):
                found[kind.__name__] = found.get(kind.__name__, 0) + 1
    return found


def _is_compiled(pipe: Any) -> bool:
    for _, module in _modules(pipe):
        for sub in module.modules():
            if getattr(sub, "_compiled_call_impl", None) is not None or hasattr(sub, "_orig_mod"):
                return True
            if any(callable(getattr(v, "_torchdynamo_orig_callable", None)) for v in vars(sub).values()):
                return True
    return False


_COMPILED_NOTE = "compiled modules counted on their eager path (the same matmuls and convolutions)"


def count_flops(pipe: Any, call_kwargs: Mapping[str, Any]) -> FlopCount:
    """Count the FLOPs of one ``pipe(**call_kwargs)`` call, split by stage.

    Weights that are tensor subclasses (torchao quantization) dispatch to kernels that
    ``FlopCounterMode`` does not count (int8 matmuls count as zero), so such a pipeline gets no figure
    and the reason; count an unquantized pipeline of the same model instead (the same shapes do the
    same work). Compiled modules are counted on their eager path (see the module docstring).
    """
    from torch.utils.flop_counter import FlopCounterMode

    subclasses = _subclass_weights(pipe)
    if subclasses:
        kinds = ", ".join(f"{count} {name}" for name, count in sorted(subclasses.items()))
        return FlopCount(
            None,
            unavailable_reason=f"weights are tensor subclasses ({kinds}) whose kernels FlopCounterMode "
            "does not count; count the unquantized pipeline of the same model instead",
        )
    compiled = _is_compiled(pipe)
    counter = FlopCounterMode(display=False)
    marks: dict[str, int] = {}
    seen: set[str] = set()

    def listener(event: Event) -> None:
        seen.add(event)
        if event == "step_end":
            marks["last_step_end"] = counter.get_total_flops()
        else:
            marks.setdefault(event, counter.get_total_flops())

    with (
        torch.compiler.set_stance("force_eager"),
        stage_hooks(pipe, call_kwargs, listener) as kwargs,
        counter,
    ):
        pipe(**kwargs)
    require_stages(seen, pipe)
    return FlopCount(
        total_flop=counter.get_total_flops(),
        text_encoding_flop=marks["encode_end"] - marks["encode_start"],
        denoise_flop=marks["last_step_end"] - marks["loop_start"],
        vae_decode_flop=marks["decode_end"] - marks["decode_start"],
        note="compiled modules counted on their eager path (same matmuls and convolutions)"
        if compiled
        else None,
    )


# --- throughput ------------------------------------------------------------------------------------------


def compute_dtype(pipe: Any) -> str | None:
    """The dtype of the denoiser's matmuls: ``fp32``, ``tf32``, ``bf16``, ``fp16``; ``None`` if quantized."""
    if _subclass_weights(pipe):
        return None
    denoiser = family_of(pipe).denoiser_of(pipe)
    params = [p for p in denoiser.parameters() if p.is_floating_point()]
    if not params:
        return None
    names = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    name = names.get(params[0].dtype)
    if name == "fp32":
        matmul = torch.backends.cuda.matmul.fp32_precision
        generic = torch.backends.fp32_precision  # type: ignore[attr-defined]
        if matmul == "tf32" or (matmul == "none" and generic == "tf32"):
            return "tf32"
    return name


def peak_tflops(device_name: str, dtype: str) -> tuple[str, float] | None:
    """``(GPU label, dense peak TFLOP/s)`` of a CUDA device name in ``dtype``, or ``None`` if unknown."""
    for pattern, label, peaks in PEAK_DENSE_TFLOPS:
        if re.search(pattern, device_name) and dtype in peaks:
            return label, peaks[dtype]
    return None


@dataclass(frozen=True)
class Throughput:
    """Achieved TFLOP/s over a latency and, where the device's peak is known, the fraction of it."""

    latency_s: float
    latency_source: str
    achieved_tflop_per_s: float | None
    peak_tflop_per_s: float | None
    peak_of: str | None
    peak_fraction: float | None
    unavailable_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency_s": self.latency_s,
            "latency_source": self.latency_source,
            "achieved_tflop_per_s": self.achieved_tflop_per_s,
            "peak_tflop_per_s": self.peak_tflop_per_s,
            "peak_of": self.peak_of,
            "peak_fraction": self.peak_fraction,
            "unavailable_reason": self.unavailable_reason,
        }


def throughput(
    flop: int | None, latency_s: float, latency_source: str, device: torch.device, dtype: str | None
) -> Throughput:
    """Achieved TFLOP/s (``flop / latency_s``) and its fraction of the device's dense peak."""
    device = torch.device(device)
    achieved = None if flop is None else flop / latency_s / 1e12
    reason = None
    peak = None
    if flop is None:
        reason = "no FLOP count"
    elif device.type != "cuda":
        reason = f"no peak figure for {device.type} devices"
    elif dtype is None:
        reason = "quantized or mixed-precision weights: no single peak applies"
    else:
        name = torch.cuda.get_device_name(device)
        peak = peak_tflops(name, dtype)
        if peak is None:
            reason = f"no peak figure for {name!r} in {dtype} (see perfsuite.diagnostics.PEAK_DENSE_TFLOPS)"
    return Throughput(
        latency_s=latency_s,
        latency_source=latency_source,
        achieved_tflop_per_s=achieved,
        peak_tflop_per_s=None if peak is None else peak[1],
        peak_of=None if peak is None else f"{peak[0]} {dtype}",
        peak_fraction=None if peak is None or achieved is None else achieved / peak[1],
        unavailable_reason=reason,
    )
