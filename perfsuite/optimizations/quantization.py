"""torchao dynamic int8 quantization (int8 activations per token, int8 weights per channel).

The guide's ``from torchao import apply_dynamic_quant`` no longer exists; the current API is
``torchao.quantization.quantize_(module, Int8DynamicActivationInt8WeightConfig(), filter_fn=...)``.
"""

from __future__ import annotations

from typing import Any

import torch

from perfsuite.catalog.families import get_family
from perfsuite.optimizations.base import Target, Technique, fail, needs_package

__all__ = ["MIN_QUANT_FEATURES", "TECHNIQUES", "dynamic_quant_filter", "is_int8_weight"]

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
)
