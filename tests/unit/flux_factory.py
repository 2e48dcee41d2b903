"""A tiny seeded FluxPipeline without text encoders, for the technique tests of transformer families.

The pipeline is called with ready prompt embeddings (``prompt_embeds``, ``pooled_prompt_embeds``),
so no tokenizer or text encoder is built. It is registered as family ``flux-test`` for the duration of
a test by the ``flux_family`` fixture of ``tests/unit/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from perfsuite.catalog.families import FAMILIES, Family

FAMILY = "flux-test"
STEPS = 6
SIZE = 32


def build_tiny_flux(seed: int = 0) -> Any:
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        transformer = FluxTransformer2DModel(
            patch_size=1, in_channels=16, num_layers=2, num_single_layers=4, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 6, 6],
        )  # fmt: skip
        vae = AutoencoderKL(
            in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 2,
            up_block_types=["UpDecoderBlock2D"] * 2, block_out_channels=[16, 16], latent_channels=4,
            layers_per_block=1, norm_num_groups=8, use_quant_conv=False, use_post_quant_conv=False,
            scaling_factor=1.5035, shift_factor=0.0609,
        )  # fmt: skip
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=None, tokenizer=None,
        text_encoder_2=None, tokenizer_2=None, transformer=transformer,
    )  # fmt: skip


def call_arguments(steps: int = STEPS) -> dict[str, Any]:
    """One call's arguments: seeded prompt embeddings and latents, a fresh generator each time."""
    return {
        "prompt_embeds": torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(1)),
        "pooled_prompt_embeds": torch.randn(1, 32, generator=torch.Generator().manual_seed(2)),
        "num_inference_steps": steps,
        "height": SIZE,
        "width": SIZE,
        "guidance_scale": 3.5,
        "generator": torch.Generator("cpu").manual_seed(0),
        "output_type": "np",
    }


def register_flux_family(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Register the family of :func:`build_tiny_flux` until ``monkeypatch`` undoes it."""
    family = Family(
        name=FAMILY,
        description="tiny test Flux pipeline without text encoders",
        pipeline_classes=("FluxPipeline",),
        denoiser="transformer",
        denoiser_class="FluxTransformer2DModel",
        text_encoders=(),
        tokenizers=(),
    )
    monkeypatch.setitem(FAMILIES, FAMILY, family)
    yield FAMILY
