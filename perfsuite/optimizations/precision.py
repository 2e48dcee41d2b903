"""Numeric precision: the pipeline dtype and TF32 math."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from perfsuite.catalog.families import get_family
from perfsuite.optimizations.base import DTYPES, Target, Technique, fail

__all__ = ["TECHNIQUES"]


def _dtype_requires(name: str) -> Callable[[Target], str | None]:
    def check(target: Target) -> str | None:
        caps = target.capabilities
        if name == "bf16" and not caps.supports_bf16:
            return f"bf16 is not supported on {caps.name}"
        if name == "fp16" and not caps.supports_fp16:
            return f"fp16 is not supported on {caps.name}"
        return None

    return check


def _computed_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters that compute in the stored dtype: a layer under diffusers' layerwise casting
    (``layerwise-fp8``) stores float8 and is cast to the pipeline dtype for its forward only."""
    found: list[torch.nn.Parameter] = []
    for sub in module.modules():
        registry = getattr(sub, "_diffusers_hook", None)
        if registry is None or registry.get_hook("layerwise_casting") is None:
            found.extend(sub.parameters(recurse=False))
    return found


def _dtype_verify(name: str) -> Callable[[Any, Target], list[str]]:
    expected = DTYPES[name]

    def verify(pipe: Any, target: Target) -> list[str]:
        evidence = []
        for comp_name, module in get_family(target.family).weighted_components_of(pipe):
            dtypes = {p.dtype for p in _computed_parameters(module) if p.is_floating_point()}
            if dtypes != {expected}:
                raise fail(
                    name, f"{comp_name} parameters are {sorted(map(str, dtypes))}, expected {expected}"
                )
            evidence.append(f"{comp_name} params are {expected}")
        return evidence

    return verify


def _tf32_requires(target: Target) -> str | None:
    if not target.capabilities.supports_tf32:
        return f"TF32 needs an NVIDIA GPU of compute capability >= 8.0 (this is {target.capabilities.name})"
    return None


@contextmanager
def _tf32_context(target: Target) -> Iterator[None]:
    # The fp32_precision properties are torch's current API; the guide's ``allow_tf32`` flags are
    # legacy views of them, and mixing the two styles raises in recent torch.
    matmul, conv = torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision  # type: ignore[attr-defined]
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    torch.backends.cudnn.conv.fp32_precision = "tf32"  # type: ignore[attr-defined]
    try:
        yield
    finally:
        torch.backends.cuda.matmul.fp32_precision = matmul
        torch.backends.cudnn.conv.fp32_precision = conv  # type: ignore[attr-defined]


def _tf32_verify(pipe: Any, target: Target) -> list[str]:
    flags = (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)  # type: ignore[attr-defined]
    if flags != ("tf32", "tf32"):
        raise fail("tf32", f"matmul/conv fp32_precision are {flags}, expected ('tf32', 'tf32')")
    return ["cuda matmul and cudnn conv fp32_precision are tf32"]


TECHNIQUES = (
    Technique(
        name="fp32",
        group="dtype",
        summary="float32 weights and activations (the reference)",
        rank=0,
        verify=_dtype_verify("fp32"),
    ),
    Technique(
        name="bf16",
        group="dtype",
        summary="bfloat16 weights and activations",
        rank=0,
        requires=_dtype_requires("bf16"),
        verify=_dtype_verify("bf16"),
        slow_on_cpu=True,
    ),
    Technique(
        name="fp16",
        group="dtype",
        summary="float16 weights and activations",
        rank=0,
        requires=_dtype_requires("fp16"),
        verify=_dtype_verify("fp16"),
        slow_on_cpu=True,
    ),
    Technique(
        name="tf32",
        group="tf32",
        summary="TensorFloat-32 for fp32 matmuls and convolutions",
        rank=10,
        requires=_tf32_requires,
        context=_tf32_context,
        verify=_tf32_verify,
        markers=("gpu",),
    ),
)
