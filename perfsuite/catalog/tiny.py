"""Tiny, offline Stable Diffusion and SDXL pipelines with seeded random weights.

The tiny models keep the *shape* of the real pipelines, so every optimization has something to act
on, while one call takes well under a second on a small CPU:

* the UNet has real cross-attention blocks (``Transformer2DModel`` / ``BasicTransformerBlock``), so
  SDPA backends, fused QKV projections and ``compile_repeated_blocks`` apply;
* the VAE has the real four-level layout (8x spatial compression) with a mid-block attention;
* both are convolutional, so ``channels_last`` applies;
* the SDXL variant has two text encoders (the second with a projection) and ``text_time``
  conditioning whose input size matches the pooled embedding and the six size/crop ids.

Weights come from ``torch.manual_seed(weight_seed)`` inside a forked RNG (global RNG untouched) and are
allocated directly on the target device, then cast to the target dtype. The same seed on the same
device gives bit-identical weights. The tokenizer is generated offline (:mod:`.tokenizer`).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from ._build import (
    GUIDE_PROMPT,
    assemble_sd_pipeline,
    assemble_sdxl_pipeline,
    finish_module,
    seeded_on_device,
)
from .base import ModelSpec

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

__all__ = [
    "TINY_IMAGE_SIZE",
    "build_tiny_sd",
    "build_tiny_sdxl",
    "tiny_clip_text_encoder",
    "tiny_sd_spec",
    "tiny_sdxl_spec",
]

#: Side of the generated image, in pixels. With the VAE's 8x compression the latents are 16x16.
TINY_IMAGE_SIZE = 128
_VAE_SCALE_FACTOR = 8
_LATENT_SIZE = TINY_IMAGE_SIZE // _VAE_SCALE_FACTOR

#: Offsets added to the weight seed for each component, so that changing one component's
#: architecture leaves the weights of the others unchanged.
_SEED_OFFSETS = {"text_encoder": 0, "text_encoder_2": 1, "unet": 2, "vae": 3}


def tiny_clip_text_encoder(*, hidden_size: int, projection: bool, tokenizer: Any) -> Any:
    """A two-layer CLIP text encoder sized for the generated tokenizer (``WithProjection`` if asked)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from .tokenizer import MODEL_MAX_LENGTH, tokenizer_vocab_size

    config = CLIPTextConfig(
        vocab_size=tokenizer_vocab_size(),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MODEL_MAX_LENGTH,
        projection_dim=hidden_size,
        hidden_act="gelu" if projection else "quick_gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model_class = CLIPTextModelWithProjection if projection else CLIPTextModel
    return model_class(config)


def _vae(*, scaling_factor: float) -> Any:
    """A four-level AutoencoderKL (8x compression, mid-block attention) with few channels."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=TINY_IMAGE_SIZE,
        scaling_factor=scaling_factor,
        mid_block_add_attention=True,
    )


def _scheduler() -> Any:
    """EulerDiscreteScheduler with the Stable Diffusion training schedule (as in the SD/SDXL repos)."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        timestep_spacing="leading",
        steps_offset=1,
    )


def build_tiny_sd(device: torch.device, dtype: torch.dtype, *, weight_seed: int = 0) -> DiffusionPipeline:
    """Build the tiny Stable Diffusion 1.x-shaped pipeline on ``device`` in ``dtype``."""
    import torch
    from diffusers import UNet2DConditionModel

    from .tokenizer import build_clip_tokenizer

    device = torch.device(device)
    tokenizer = build_clip_tokenizer()
    with seeded_on_device(device, weight_seed + _SEED_OFFSETS["text_encoder"]):
        text_encoder = tiny_clip_text_encoder(hidden_size=32, projection=False, tokenizer=tokenizer)
    with seeded_on_device(device, weight_seed + _SEED_OFFSETS["unet"]):
        unet = UNet2DConditionModel(
            sample_size=_LATENT_SIZE,
            in_channels=4,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            block_out_channels=(32, 64, 128),
            layers_per_block=2,
            norm_num_groups=8,
            cross_attention_dim=32,
            attention_head_dim=2,  # diffusers' legacy name for the number of heads (head dim 16, 32, 64)
        )
    with seeded_on_device(device, weight_seed + _SEED_OFFSETS["vae"]):
        vae = _vae(scaling_factor=0.18215)
    return assemble_sd_pipeline(
        unet=finish_module(unet, dtype),
        vae=finish_module(vae, dtype),
        text_encoder=finish_module(text_encoder, dtype),
        tokenizer=tokenizer,
        scheduler=_scheduler(),
    )


def build_tiny_sdxl(device: torch.device, dtype: torch.dtype, *, weight_seed: int = 0) -> DiffusionPipeline:
    """Build the tiny SDXL-shaped pipeline on ``device`` in ``dtype``."""
    import torch
    from diffusers import UNet2DConditionModel

    from .tokenizer import build_clip_tokenizer

    device = torch.device(device)
    tokenizer = build_clip_tokenizer()
    tokenizer_2 = build_clip_tokenizer()
    hidden_1, hidden_2, time_embed_dim = 32, 64, 8
    with seeded_on_device(device, weight_seed + _SEED_OFFSETS["text_encoder"]):
        text_encoder = tiny_clip_text_encoder(hidden_size=hidden_1, projection=False, tokenizer=tokenizer)
    with seeded_on_device(device, weight_seed + _SEED_OFFSETS["text_encoder_2"]):
        text_encoder_2 = tiny_clip_text_encoder(hidden_size=hidden_2, projection=True, tokenizer=tokenizer_2)
    with seeded_on_device(device, weight_seed + _SEED_OFFSETS["unet"]):
        unet = UNet2DConditionModel(
            sample_size=_LATENT_SIZE,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(32, 64, 128),
            layers_per_block=2,
            transformer_layers_per_block=(1, 1, 2),
            norm_num_groups=8,
            cross_attention_dim=hidden_1 + hidden_2,  # the two encoders' hidden states, concatenated
            attention_head_dim=(2, 4, 8),  # legacy name: heads per level (head dim 16, as SDXL's is 64)
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=time_embed_dim,
            # six micro-conditioning ids (original size, crop, target size) + pooled text embedding
            projection_class_embeddings_input_dim=6 * time_embed_dim + hidden_2,
        )
    with seeded_on_device(device, weight_seed + _SEED_OFFSETS["vae"]):
        vae = _vae(scaling_factor=0.13025)
    return assemble_sdxl_pipeline(
        unet=finish_module(unet, dtype),
        vae=finish_module(vae, dtype),
        text_encoder=finish_module(text_encoder, dtype),
        text_encoder_2=finish_module(text_encoder_2, dtype),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        scheduler=_scheduler(),
    )


def _tiny_call_kwargs(*, guidance_scale: float) -> dict[str, Any]:
    """Call arguments of the tiny models: the guide's prompt, few steps, CFG on (batch of 2)."""
    return {
        "prompt": GUIDE_PROMPT,
        "num_inference_steps": 8,
        "height": TINY_IMAGE_SIZE,
        "width": TINY_IMAGE_SIZE,
        "guidance_scale": guidance_scale,
    }


def tiny_sd_spec(*, weight_seed: int = 0) -> ModelSpec:
    """Catalog entry ``tiny-sd``."""
    return ModelSpec(
        name="tiny-sd",
        family="sd",
        description=(
            f"tiny Stable Diffusion 1.x-shaped pipeline, seeded random weights (seed {weight_seed}), "
            f"offline tokenizer, {TINY_IMAGE_SIZE}x{TINY_IMAGE_SIZE}"
        ),
        build=partial(build_tiny_sd, weight_seed=weight_seed),
        call_kwargs=_tiny_call_kwargs(guidance_scale=7.5),
        tiny=True,
    )


def tiny_sdxl_spec(*, weight_seed: int = 0) -> ModelSpec:
    """Catalog entry ``tiny-sdxl``."""
    return ModelSpec(
        name="tiny-sdxl",
        family="sdxl",
        description=(
            f"tiny SDXL-shaped pipeline (two text encoders, text_time conditioning), seeded random "
            f"weights (seed {weight_seed}), offline tokenizer, {TINY_IMAGE_SIZE}x{TINY_IMAGE_SIZE}"
        ),
        build=partial(build_tiny_sdxl, weight_seed=weight_seed),
        call_kwargs=_tiny_call_kwargs(guidance_scale=5.0),
        tiny=True,
    )
