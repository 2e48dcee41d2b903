"""Memory layout: channels-last convolution weights in the family's convolutional components.

The convolutional components are family data (``Family.conv_components`` in
:mod:`perfsuite.catalog.families`): the UNet and the VAE of a UNet family, only the VAE of a
transformer family, whose denoiser is made of matmuls. 2-D convolution weights go to
``torch.channels_last`` (NHWC); the 3-D convolutions of a video VAE (Wan's causal ``Conv3d``) go to
``torch.channels_last_3d`` (NDHWC), the same layout one dimension up: ``channels_last`` itself is
defined only for 4-D tensors.
"""

from __future__ import annotations

from typing import Any

import torch

from perfsuite.catalog.families import get_family
from perfsuite.optimizations.base import Target, Technique, fail

__all__ = ["TECHNIQUES", "channels_last_format"]


_LAYOUTS = {4: torch.channels_last, 5: torch.channels_last_3d}


def channels_last_format(weight: torch.Tensor) -> torch.memory_format | None:
    """The channels-last layout of a convolution weight of this rank, or ``None`` if it has none."""
    return _LAYOUTS.get(weight.dim())


def _conv_weights(module: torch.nn.Module) -> list[torch.Tensor]:
    """The weights of ``module``'s convolutions that have a channels-last layout (2-D and 3-D)."""
    weights: list[torch.Tensor] = [
        m.weight for m in module.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)
    ]
    return [w for w in weights if w.dim() in _LAYOUTS]


def _apply(pipe: Any, target: Target) -> None:
    for _, component in get_family(target.family).conv_components_of(pipe):
        for conv in component.modules():
            if isinstance(conv, torch.nn.modules.conv._ConvNd) and conv.weight.dim() in _LAYOUTS:
                conv.to(memory_format=_LAYOUTS[conv.weight.dim()])  # type: ignore[call-overload]


def _verify(pipe: Any, target: Target) -> list[str]:
    evidence = []
    for comp_name, component in get_family(target.family).conv_components_of(pipe):
        # A 1x1 (1x1x1) kernel is contiguous in both layouts, so only larger kernels prove anything.
        weights = [w for w in _conv_weights(component) if max(w.shape[2:]) > 1]
        if not weights:
            raise fail("channels-last", f"{comp_name} has no convolution with a kernel above 1x1")
        bad = sum(not w.is_contiguous(memory_format=_LAYOUTS[w.dim()]) for w in weights)
        if bad:
            what = f"{bad} of {len(weights)} conv weights of {comp_name}"
            raise fail("channels-last", f"{what} are not channels-last (NHWC; NDHWC for 3-D convolutions)")
        ranks = sorted({"NHWC" if w.dim() == 4 else "NDHWC" for w in weights})
        evidence.append(f"{len(weights)} conv weights of {comp_name} are channels_last ({'/'.join(ranks)})")
    return evidence


TECHNIQUES = (
    Technique(
        name="channels-last",
        group="layout",
        summary="channels-last memory format for the convolutional components (UNet and VAE; the VAE only "
        "for transformer families; NDHWC for 3-D convolutions)",
        rank=20,
        apply=_apply,
        verify=_verify,
    ),
)
