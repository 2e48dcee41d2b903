"""Architecture-faithful FLUX.1-dev, SD3.5 Medium and Wan2.1 T2V 1.3B pipelines with random weights.

The component configs in ``configs/flux``, ``configs/sd3`` and ``configs/wan`` follow the published
diffusers-format ones (``black-forest-labs/FLUX.1-dev``, ``stabilityai/stable-diffusion-3.5-medium``,
``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``): transformer, VAE, text encoders (CLIP ViT-L/14, OpenCLIP bigG,
T5 v1.1 XXL, UMT5 XXL) and scheduler. Only the tokenizers differ: they are the small generated ones
(:mod:`.tokenizer`, :mod:`.t5_tokenizer`), which change which ids a prompt maps to but not the compute,
since every prompt is padded to a fixed length (77 CLIP tokens, ``max_sequence_length`` T5 tokens).

As for :mod:`.fullsize`, modules are constructed directly on the target device (nothing is
materialised on the CPU first), from seeded float32 initialisation, and then cast. Building on
``meta`` allocates nothing and is how the tests check the parameter counts. These models are meant
for GPUs: FLUX.1-dev alone holds 16.9B parameters with its text encoders.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from ._build import GUIDE_PROMPT, assemble_pipeline, finish_module, seeded_on_device
from .base import ModelSpec
from .families import get_family
from .fullsize import FULLSIZE_COMPONENTS, load_component_config

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

__all__ = [
    "TRANSFORMER_MODELS",
    "build_flux",
    "build_fullsize_transformer_pipeline",
    "build_sd3",
    "build_wan",
    "flux_spec",
    "sd3_spec",
    "wan_spec",
]

#: Catalog name -> (family, diffusers pipeline class).
TRANSFORMER_MODELS: dict[str, tuple[str, str]] = {
    "flux": ("flux", "FluxPipeline"),
    "sd3": ("sd3", "StableDiffusion3Pipeline"),
    "wan": ("wan", "WanPipeline"),
}

_SEED_OFFSETS = {"text_encoder": 0, "text_encoder_2": 1, "transformer": 2, "vae": 3, "text_encoder_3": 4}
_T5_ARCHITECTURES = ("T5EncoderModel", "UMT5EncoderModel")


def _diffusers_component(model: str, component: str) -> Any:
    import diffusers

    config = load_component_config(model, component)
    return getattr(diffusers, config["_class_name"]).from_config(config)


def _text_encoder(model: str, component: str) -> tuple[Any, str]:
    """The text encoder of ``model`` and the name of its architecture (a transformers class)."""
    import transformers

    config = dict(load_component_config(model, component))
    architecture = config.pop("architectures")[0]
    model_type = config.pop("model_type")
    model_class = getattr(transformers, architecture)
    module = model_class(transformers.AutoConfig.for_model(model_type, **config))
    if architecture in _T5_ARCHITECTURES:
        # transformers 5.0 leaves the (U)MT5 encoder's embedding untied from `shared` when the model
        # is built from its config (later releases tie them): a second vocabulary x d_model table.
        # set_input_embeddings installs `shared` in both places, as the published models have it.
        module.set_input_embeddings(module.get_input_embeddings())
    return module, architecture


def _tokenizer_for(architecture: str) -> Any:
    from .t5_tokenizer import build_t5_tokenizer
    from .tokenizer import build_clip_tokenizer

    return build_t5_tokenizer() if architecture in _T5_ARCHITECTURES else build_clip_tokenizer()


def build_fullsize_transformer_pipeline(
    model: str, device: torch.device, dtype: torch.dtype, *, weight_seed: int = 0
) -> DiffusionPipeline:
    """Build the full-size ``model`` (``flux``, ``sd3`` or ``wan``) on ``device`` in ``dtype``.

    Each weighted component is constructed on ``device`` from its own seed (float32), then cast.
    Every text encoder gets the generated tokenizer of its kind, at the family's tokenizer attribute.
    """
    import torch

    family_name, pipeline_class = TRANSFORMER_MODELS[model]
    family = get_family(family_name)
    device = torch.device(device)
    parts: dict[str, Any] = {}
    for component in FULLSIZE_COMPONENTS[model]:
        if component == "scheduler":
            parts[component] = _diffusers_component(model, component)
            continue
        with seeded_on_device(device, weight_seed + _SEED_OFFSETS[component]):
            if component in family.text_encoders:
                module, architecture = _text_encoder(model, component)
                parts[family.tokenizers[family.text_encoders.index(component)]] = _tokenizer_for(architecture)
            else:
                module = _diffusers_component(model, component)
        parts[component] = finish_module(module, dtype)
    return assemble_pipeline(pipeline_class, **parts)


build_flux = partial(build_fullsize_transformer_pipeline, "flux")
build_sd3 = partial(build_fullsize_transformer_pipeline, "sd3")
build_wan = partial(build_fullsize_transformer_pipeline, "wan")


def flux_spec(*, weight_seed: int = 0) -> ModelSpec:
    """Catalog entry ``flux``: FLUX.1-dev at 1024x1024, 28 steps, embedded guidance 3.5 (its usual use)."""
    return ModelSpec(
        name="flux",
        family="flux",
        description=(
            "FLUX.1-dev architecture (11.9B-parameter transformer, CLIP-L + T5-XXL), random weights, "
            "1024x1024"
        ),
        build=partial(build_fullsize_transformer_pipeline, "flux", weight_seed=weight_seed),
        call_kwargs={
            "prompt": GUIDE_PROMPT,
            "num_inference_steps": 28,
            "height": 1024,
            "width": 1024,
            "guidance_scale": 3.5,
            "max_sequence_length": 512,
        },
    )


def sd3_spec(*, weight_seed: int = 0) -> ModelSpec:
    """Catalog entry ``sd3``: SD3.5 Medium at 1024x1024, 40 steps, CFG 4.5 (the model card's settings)."""
    return ModelSpec(
        name="sd3",
        family="sd3",
        description=(
            "SD3.5 Medium architecture (2.5B-parameter MMDiT-X, CLIP-L + bigG + T5-XXL), random weights, "
            "1024x1024"
        ),
        build=partial(build_fullsize_transformer_pipeline, "sd3", weight_seed=weight_seed),
        call_kwargs={
            "prompt": GUIDE_PROMPT,
            "num_inference_steps": 40,
            "height": 1024,
            "width": 1024,
            "guidance_scale": 4.5,
            "max_sequence_length": 256,
        },
    )


def wan_spec(*, weight_seed: int = 0) -> ModelSpec:
    """Catalog entry ``wan``: Wan2.1 T2V 1.3B, 81 frames of 480x832, 50 steps, CFG 5.0 (its card's 480P)."""
    return ModelSpec(
        name="wan",
        family="wan",
        description=(
            "Wan2.1 T2V 1.3B architecture (1.4B-parameter 3-D transformer, UMT5-XXL, Wan VAE), random "
            "weights, 81 frames of 480x832"
        ),
        build=partial(build_fullsize_transformer_pipeline, "wan", weight_seed=weight_seed),
        call_kwargs={
            "prompt": GUIDE_PROMPT,
            "num_inference_steps": 50,
            "height": 480,
            "width": 832,
            "num_frames": 81,
            "guidance_scale": 5.0,
            "max_sequence_length": 512,
        },
    )
