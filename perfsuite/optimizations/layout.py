"""Memory layout: channels_last (NHWC) weights for the UNet and VAE convolutions."""

from __future__ import annotations

from typing import Any

import torch

from perfsuite.optimizations.base import Target, Technique, components, fail

__all__ = ["TECHNIQUES"]


def _apply(pipe: Any, target: Target) -> None:
    for _, module in components(pipe, "unet", "vae"):
        module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def _verify(pipe: Any, target: Target) -> list[str]:
    evidence = []
    for comp_name, module in components(pipe, "unet", "vae"):
        # A 1x1 kernel is contiguous in both layouts, so only larger kernels prove anything.
        weights = [
            m.weight for m in module.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] > 1
        ]
        if not weights:
            raise fail("channels-last", f"{comp_name} has no 2-D convolution with a kernel above 1x1")
        bad = sum(not w.is_contiguous(memory_format=torch.channels_last) for w in weights)
        if bad:
            raise fail("channels-last", f"{bad} of {len(weights)} conv weights of {comp_name} are not NHWC")
        evidence.append(f"{len(weights)} conv weights of {comp_name} are channels_last")
    return evidence


TECHNIQUES = (
    Technique(
        name="channels-last",
        group="layout",
        summary="channels_last memory format for the UNet and VAE",
        rank=20,
        apply=_apply,
        verify=_verify,
    ),
)
