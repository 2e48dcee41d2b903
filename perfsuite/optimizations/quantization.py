"""torchao dynamic quantization of the Linear layers: int8 (the guide) and float8 (flux-fast).

* ``int8-dq``: int8 activations per token, int8 weights per channel. The guide's
  ``from torchao import apply_dynamic_quant`` no longer exists; the current API is
  ``torchao.quantization.quantize_(module, Int8DynamicActivationInt8WeightConfig(), filter_fn=...)``.
* ``fp8-dq``: ``Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())``, float8 e4m3
  activations and weights with one scale per row, as flux-fast quantizes the Flux transformer. It
  needs hardware float8 matmuls (compute capability 8.9: Ada, Hopper and newer).
"""

from __future__ import annotations

from typing import Any, cast

import torch

from perfsuite.catalog.families import get_family
from perfsuite.optimizations.base import Target, Technique, fail, needs_package

__all__ = [
    "FP8_DTYPES",
    "MIN_QUANT_FEATURES",
    "TECHNIQUES",
    "dynamic_quant_filter",
    "float8_quant_filter",
    "is_fp8_weight",
    "is_int8_weight",
]

#: Linear layers narrower than this on either side are left in floating point: for them the cost of
#: quantizing the activation on the fly outweighs the faster int8 matmul (the same reasoning as the
#: guide's ``dynamic_quant_filter_fn``, expressed as a size rule instead of a list of SDXL shapes).
MIN_QUANT_FEATURES = 16


def dynamic_quant_filter(module: torch.nn.Module, fqn: str = "") -> bool:
    """Whether ``quantize_`` should quantize ``module``: a Linear at least :data:`MIN_QUANT_FEATURES` wide."""
    return (
        isinstance(module, torch.nn.Linear)
        and module.in_features >= MIN_QUANT_FEATURES
        and module.out_features >= MIN_QUANT_FEATURES
    )


def is_int8_weight(weight: torch.Tensor) -> bool:
    """Whether a weight is a torchao tensor subclass that stores int8 data."""
    qdata = getattr(weight, "qdata", None)
    return isinstance(qdata, torch.Tensor) and qdata.dtype == torch.int8


def _targets(pipe: Any, target: Target) -> list[tuple[str, torch.nn.Module]]:
    """The denoiser and the VAE, the components the guide quantizes."""
    family = get_family(target.family)
    return [(family.denoiser, family.denoiser_of(pipe)), (family.vae, family.vae_of(pipe))]


def _requires(target: Target) -> str | None:
    return needs_package("torchao", "torchao")


#: The float8 formats a quantized weight may store.
FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


def float8_quant_filter(module: torch.nn.Module, fqn: str = "") -> bool:
    """Whether ``fp8-dq`` quantizes ``module``: a Linear whose both sides are multiples of 16.

    ``torch._scaled_mm`` (the float8 matmul) takes only such shapes; torchao leaves any other
    Linear in its dtype without saying so, so the filter states the rule and ``verify`` holds every
    layer it accepts to it.
    """
    return (
        isinstance(module, torch.nn.Linear) and module.in_features % 16 == 0 and module.out_features % 16 == 0
    )


def is_fp8_weight(weight: torch.Tensor) -> bool:
    """Whether a weight is a torchao tensor subclass (``Float8Tensor``) that stores float8 data."""
    qdata = getattr(weight, "qdata", None)
    return isinstance(qdata, torch.Tensor) and qdata.dtype in FP8_DTYPES


def _fp8_requires(target: Target) -> str | None:
    missing = needs_package("torchao", "torchao")
    if missing:
        return missing
    caps = target.capabilities
    if not caps.supports_fp8_matmul:
        return f"float8 matmuls need an NVIDIA GPU of compute capability >= 8.9 (this is {caps.name})"
    if target.dtype != "bf16":
        return f"row-wise float8 scales (flux-fast's PerRow) quantize bf16 weights only, not {target.dtype}"
    return None


def _fp8_apply(pipe: Any, target: Target) -> None:
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    # set_inductor_config=False for the same reason as int8-dq: the inductor flags are their own step.
    config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow(), set_inductor_config=False)
    quantize_(get_family(target.family).denoiser_of(pipe), config, filter_fn=float8_quant_filter)


def _fp8_verify(pipe: Any, target: Target) -> list[str]:
    family = get_family(target.family)
    denoiser = family.denoiser_of(pipe)
    linears = [m for m in denoiser.modules() if isinstance(m, torch.nn.Linear)]
    eligible = [m for m in linears if float8_quant_filter(m)]
    if not eligible:
        raise fail("fp8-dq", f"the {family.denoiser} has no Linear layer with both sides a multiple of 16")
    quantized = [m for m in eligible if is_fp8_weight(m.weight)]
    if len(quantized) != len(eligible):
        raise fail(
            "fp8-dq",
            f"{len(eligible) - len(quantized)} of {len(eligible)} eligible Linear layers of the "
            f"{family.denoiser} do not hold float8 weights",
        )
    formats = sorted({str(cast(Any, m.weight).qdata.dtype).removeprefix("torch.") for m in quantized})
    return [
        f"{len(quantized)} of {len(linears)} Linear layers of the {family.denoiser} hold "
        f"{'/'.join(formats)} weights with row-wise scales"
    ]


def _apply(pipe: Any, target: Target) -> None:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    from torchao.utils import should_reduce_range

    # set_inductor_config=False: torchao would otherwise switch on coordinate-descent tuning
    # process-wide. The guide's inductor flags are their own technique (inductor-flags), so each
    # effect is measured on its own.
    config = Int8DynamicActivationInt8WeightConfig(
        set_inductor_config=False, reduce_range=should_reduce_range(target.device)
    )
    for _, module in _targets(pipe, target):
        quantize_(module, config, filter_fn=dynamic_quant_filter)


def _verify(pipe: Any, target: Target) -> list[str]:
    evidence = []
    denoiser = get_family(target.family).denoiser
    for comp_name, module in _targets(pipe, target):
        linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
        eligible = [m for m in linears if dynamic_quant_filter(m)]
        quantized = [m for m in eligible if is_int8_weight(m.weight)]
        if comp_name == denoiser and not eligible:
            raise fail("int8-dq", f"the {comp_name} has no Linear layer the quantization filter accepts")
        if len(quantized) != len(eligible):
            raise fail(
                "int8-dq",
                f"{len(eligible) - len(quantized)} of {len(eligible)} eligible Linear layers "
                f"of {comp_name} do not hold int8 weights",
            )
        evidence.append(f"{len(quantized)} of {len(linears)} Linear layers of {comp_name} hold int8 weights")
    return evidence


TECHNIQUES = (
    Technique(
        name="int8-dq",
        group="quant",
        summary="torchao dynamic int8 quantization of the denoiser's and VAE's Linear layers",
        rank=40,
        requires=_requires,
        apply=_apply,
        verify=_verify,
        slow_on_cpu=True,
    ),
    Technique(
        name="fp8-dq",
        group="quant",
        summary="torchao dynamic float8 quantization (row-wise scales) of the denoiser's Linear layers",
        rank=40,
        requires=_fp8_requires,
        apply=_fp8_apply,
        verify=_fp8_verify,
        markers=("gpu",),
    ),
)
