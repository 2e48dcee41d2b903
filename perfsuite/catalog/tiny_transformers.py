"""Tiny, offline Flux, SD3 and Wan pipelines with seeded random weights.

Like the tiny UNet models (:mod:`.tiny`), they keep the *structure* of the real pipelines, so every
technique has something to act on, while one eager float32 call takes well under a second on a
small CPU:

* ``tiny-flux``: a CLIP and a T5 text encoder, a ``FluxTransformer2DModel`` with two double-stream
  (``FluxTransformerBlock``) and two single-stream (``FluxSingleTransformerBlock``) blocks, rotary
  position embeddings and the embedded-guidance input of FLUX.1-dev, and a four-level 16->4-channel
  ``AutoencoderKL`` without quant convolutions, as Flux's;
* ``tiny-sd3``: two CLIP text encoders with projections and a T5, an ``SD3Transformer2DModel`` of two
  ``JointTransformerBlock`` s, the first with SD3.5's second (dual) attention, RMS QK-norm, and the
  same kind of VAE; classifier-free guidance doubles the batch;
* ``tiny-wan``: a UMT5 text encoder, a ``WanTransformer3DModel`` of two 3-D blocks (self-attention with
  3-D rotary embeddings, cross-attention, feed-forward) and the causal 3-D ``AutoencoderKLWan``
  (temporal 4x, spatial 8x compression); it makes a few frames at a small size.

Weights come from ``torch.manual_seed(weight_seed + offset)`` inside a forked RNG (global RNG untouched),
are allocated directly on the target device in float32, and are then cast. The tokenizers are generated
offline (:mod:`.tokenizer`, :mod:`.t5_tokenizer`).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from ._build import GUIDE_PROMPT, assemble_pipeline, finish_module, seeded_on_device
from .base import ModelSpec
from .tiny import TINY_IMAGE_SIZE, tiny_clip_text_encoder

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

__all__ = [
    "TINY_T5_SEQUENCE_LENGTH",
    "TINY_VIDEO_FRAMES",
    "TINY_VIDEO_SIZE",
    "build_tiny_flux",
    "build_tiny_sd3",
    "build_tiny_wan",
    "tiny_flux_spec",
    "tiny_sd3_spec",
    "tiny_wan_spec",
]

#: Tokens every prompt is padded to for the T5 / UMT5 encoders (the real pipelines use 256-512).
TINY_T5_SEQUENCE_LENGTH = 32
#: Side of each video frame in pixels (a multiple of 16: the VAE's 8x times the 2x2 patches).
TINY_VIDEO_SIZE = 64
#: Frames per video: 4k + 1, so the VAE's 4x temporal compression gives 2 latent frames.
TINY_VIDEO_FRAMES = 5
_STEPS = 8
_LATENT_CHANNELS = 4

#: Offsets added to the weight seed for each component (changing one leaves the others' weights).
_SEED_OFFSETS = {"text_encoder": 0, "text_encoder_2": 1, "transformer": 2, "vae": 3, "text_encoder_3": 4}


def _t5_config(*, d_model: int, model_type: str = "t5") -> Any:
    """A two-layer gated-GELU T5 / UMT5 encoder config sized for the generated tokenizer."""
    from transformers import T5Config, UMT5Config

    from .t5_tokenizer import t5_tokenizer_vocab_size

    config_class: Any = UMT5Config if model_type == "umt5" else T5Config
    return config_class(
        vocab_size=t5_tokenizer_vocab_size(),
        d_model=d_model,
        d_kv=d_model // 4,
        d_ff=d_model * 2,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        tie_word_embeddings=False,
    )


def _t5_encoder(*, d_model: int) -> Any:
    from transformers import T5EncoderModel

    return T5EncoderModel(_t5_config(d_model=d_model))


def _umt5_encoder(*, d_model: int) -> Any:
    from transformers import UMT5EncoderModel

    return UMT5EncoderModel(_t5_config(d_model=d_model, model_type="umt5"))


def _flow_vae(*, scaling_factor: float, shift_factor: float) -> Any:
    """A four-level AutoencoderKL (8x) without quant convolutions, as Flux's and SD3's, with few channels."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 32, 32),
        layers_per_block=1,
        latent_channels=_LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=TINY_IMAGE_SIZE,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        use_quant_conv=False,
        use_post_quant_conv=False,
        mid_block_add_attention=True,
    )


def _flow_match_scheduler(**config: Any) -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, **config)


def build_tiny_flux(device: torch.device, dtype: torch.dtype, *, weight_seed: int = 0) -> DiffusionPipeline:
    """Build the tiny FLUX.1-dev-shaped pipeline on ``device`` in ``dtype``."""
    import torch
    from diffusers import FluxTransformer2DModel

    from .t5_tokenizer import build_t5_tokenizer
    from .tokenizer import build_clip_tokenizer

    device = torch.device(device)
    tokenizer = build_clip_tokenizer()
    clip_dim, t5_dim = 32, 32
    with seeded_on_device(device, weight_seed + _SEED_OFFSETS["text_encoder"]):
        text_encoder = tiny_clip_text_encoder(hidden_size=clip_dim, projection=False, tokenizer=tokenizer)
    with seeded_on_device(device, weight_seed + _SEED_OFFSETS["text_encoder_2"]):
        text_encoder_2 = _t5_encoder(d_model=t5_dim)
    with seeded_on_device(device, weight_seed + _SEED_OFFSETS["transformer"]):
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=_LATENT_CHANNELS * 4,  # latents are packed into 2x2 patches
            num_layers=2,
            num_single_layers=2,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=t5_dim,
            pooled_projection_dim=clip_dim,
            guidance_embeds=True,
            axes_dims_rope=(4, 6, 6),  # sums to the head dim, as (16, 56, 56) sums to 128
        )
    with seeded_on_device(device, weight_seed + _SEED_OFFSETS["vae"]):
        vae = _flow_vae(scaling_factor=0.3611, shift_factor=0.1159)
    return assemble_pipeline(
        "FluxPipeline",
        scheduler=_flow_match_scheduler(
            shift=3.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=1.15,
            base_image_seq_len=256,
            max_image_seq_len=4096,
        ),
        vae=finish_module(vae, dtype),
        text_encoder=finish_module(text_encoder, dtype),
        tokenizer=tokenizer,
        text_encoder_2=finish_module(text_encoder_2, dtype),
        tokenizer_2=build_t5_tokenizer(),
        transformer=finish_module(transformer, dtype),
        image_encoder=None,
        feature_extractor=None,
    )


def build_tiny_sd3(device: torch.device, dtype: torch.dtype, *, weight_seed: int = 0) -> DiffusionPipeline:
    """Build the tiny SD3.5-shaped pipeline on ``device`` in ``dtype``."""
    import torch
    from diffusers import SD3Transformer2DModel

    from .t5_tokenizer import build_t5_tokenizer
    from .tokenizer import build_clip_tokenizer

    device = torch.device(device)
    tokenizer, tokenizer_2 = build_clip_tokenizer(), build_clip_tokenizer()
    clip_1, clip_2 = 32, 64
    t5_dim = clip_1 + clip_2  # the pipeline pads the concatenated CLIP states to the T5 width
    with seeded_on_device(device, weight_seed + _SEED_OFFSETS["text_encoder"]):
        text_encoder = tiny_clip_text_encoder(hidden_size=clip_1, projection=True, tokenizer=tokenizer)
    with seeded_on_device(device, weight_seed + _SEED_OFFSETS["text_encoder_2"]):
        text_encoder_2 = tiny_clip_text_encoder(hidden_size=clip_2, projection=True, tokenizer=tokenizer_2)
    with seeded_on_device(device, weight_seed + _SEED_OFFSETS["text_encoder_3"]):
        text_encoder_3 = _t5_encoder(d_model=t5_dim)
    heads, head_dim = 2, 16
    with seeded_on_device(device, weight_seed + _SEED_OFFSETS["transformer"]):
        transformer = SD3Transformer2DModel(
            sample_size=TINY_IMAGE_SIZE // 8,
            patch_size=2,
            in_channels=_LATENT_CHANNELS,
            out_channels=_LATENT_CHANNELS,
            num_layers=2,
            attention_head_dim=head_dim,
            num_attention_heads=heads,
            joint_attention_dim=t5_dim,
            caption_projection_dim=heads * head_dim,
            pooled_projection_dim=clip_1 + clip_2,
            pos_embed_max_size=TINY_IMAGE_SIZE // 8,
            dual_attention_layers=(0,),  # SD3.5 Medium's MMDiT-X: a second self-attention in early blocks
            qk_norm="rms_norm",
        )
    with seeded_on_device(device, weight_seed + _SEED_OFFSETS["vae"]):
        vae = _flow_vae(scaling_factor=1.5305, shift_factor=0.0609)
    return assemble_pipeline(
        "StableDiffusion3Pipeline",
        transformer=finish_module(transformer, dtype),
        scheduler=_flow_match_scheduler(shift=3.0),
        vae=finish_module(vae, dtype),
        text_encoder=finish_module(text_encoder, dtype),
        tokenizer=tokenizer,
        text_encoder_2=finish_module(text_encoder_2, dtype),
        tokenizer_2=tokenizer_2,
        text_encoder_3=finish_module(text_encoder_3, dtype),
        tokenizer_3=build_t5_tokenizer(),
        image_encoder=None,
        feature_extractor=None,
    )


def build_tiny_wan(device: torch.device, dtype: torch.dtype, *, weight_seed: int = 0) -> DiffusionPipeline:
    """Build the tiny Wan2.1-shaped text-to-video pipeline on ``device`` in ``dtype``."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel

    from .fullsize import load_component_config
    from .t5_tokenizer import build_t5_tokenizer

    device = torch.device(device)
    text_dim = 32
    with seeded_on_device(device, weight_seed + _SEED_OFFSETS["text_encoder"]):
        text_encoder = _umt5_encoder(d_model=text_dim)
    with seeded_on_device(device, weight_seed + _SEED_OFFSETS["transformer"]):
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2),
            num_attention_heads=2,
            attention_head_dim=16,
            in_channels=_LATENT_CHANNELS,
            out_channels=_LATENT_CHANNELS,
            text_dim=text_dim,
            freq_dim=32,
            ffn_dim=64,
            num_layers=2,
            cross_attn_norm=True,
            qk_norm="rms_norm_across_heads",
            eps=1e-6,
            rope_max_seq_len=64,
        )
    published_vae = load_component_config("wan", "vae")
    with seeded_on_device(device, weight_seed + _SEED_OFFSETS["vae"]):
        vae = AutoencoderKLWan(
            base_dim=8,
            z_dim=_LATENT_CHANNELS,
            dim_mult=[1, 2, 4, 4],
            num_res_blocks=1,
            attn_scales=[],
            temperal_downsample=[False, True, True],
            latents_mean=published_vae["latents_mean"][:_LATENT_CHANNELS],
            latents_std=published_vae["latents_std"][:_LATENT_CHANNELS],
        )
    scheduler_config = {
        k: v for k, v in load_component_config("wan", "scheduler").items() if k != "_class_name"
    }
    return assemble_pipeline(
        "WanPipeline",
        tokenizer=build_t5_tokenizer(),
        text_encoder=finish_module(text_encoder, dtype),
        vae=finish_module(vae, dtype),
        scheduler=UniPCMultistepScheduler.from_config(scheduler_config),
        transformer=finish_module(transformer, dtype),
    )


def tiny_flux_spec(*, weight_seed: int = 0) -> ModelSpec:
    """Catalog entry ``tiny-flux``: 128x128, 8 steps, embedded guidance 3.5 (no CFG)."""
    return ModelSpec(
        name="tiny-flux",
        family="flux",
        description=(
            f"tiny FLUX.1-dev-shaped pipeline (CLIP + T5, double- and single-stream blocks), seeded random "
            f"weights (seed {weight_seed}), offline tokenizers, {TINY_IMAGE_SIZE}x{TINY_IMAGE_SIZE}"
        ),
        build=partial(build_tiny_flux, weight_seed=weight_seed),
        call_kwargs={
            "prompt": GUIDE_PROMPT,
            "num_inference_steps": _STEPS,
            "height": TINY_IMAGE_SIZE,
            "width": TINY_IMAGE_SIZE,
            "guidance_scale": 3.5,
            "max_sequence_length": TINY_T5_SEQUENCE_LENGTH,
        },
        tiny=True,
    )


def tiny_sd3_spec(*, weight_seed: int = 0) -> ModelSpec:
    """Catalog entry ``tiny-sd3``: 128x128, 8 steps, CFG 4.5 (batch of 2), as SD3.5 Medium's card."""
    return ModelSpec(
        name="tiny-sd3",
        family="sd3",
        description=(
            f"tiny SD3.5-shaped pipeline (two CLIP + T5, joint blocks with dual attention), seeded random "
            f"weights (seed {weight_seed}), offline tokenizers, {TINY_IMAGE_SIZE}x{TINY_IMAGE_SIZE}"
        ),
        build=partial(build_tiny_sd3, weight_seed=weight_seed),
        call_kwargs={
            "prompt": GUIDE_PROMPT,
            "num_inference_steps": _STEPS,
            "height": TINY_IMAGE_SIZE,
            "width": TINY_IMAGE_SIZE,
            "guidance_scale": 4.5,
            "max_sequence_length": TINY_T5_SEQUENCE_LENGTH,
        },
        tiny=True,
    )


def tiny_wan_spec(*, weight_seed: int = 0) -> ModelSpec:
    """Catalog entry ``tiny-wan``: 5 frames of 64x64, 8 steps, CFG 5.0 (two transformer calls a step)."""
    return ModelSpec(
        name="tiny-wan",
        family="wan",
        description=(
            f"tiny Wan2.1-shaped text-to-video pipeline (UMT5, 3-D transformer blocks, the Wan VAE), seeded "
            f"random weights (seed {weight_seed}), offline tokenizer, {TINY_VIDEO_FRAMES} frames of "
            f"{TINY_VIDEO_SIZE}x{TINY_VIDEO_SIZE}"
        ),
        build=partial(build_tiny_wan, weight_seed=weight_seed),
        call_kwargs={
            "prompt": GUIDE_PROMPT,
            "num_inference_steps": _STEPS,
            "height": TINY_VIDEO_SIZE,
            "width": TINY_VIDEO_SIZE,
            "num_frames": TINY_VIDEO_FRAMES,
            "guidance_scale": 5.0,
            "max_sequence_length": TINY_T5_SEQUENCE_LENGTH,
        },
        tiny=True,
    )
