"""Architecture-faithful Stable Diffusion 1.5 and SDXL base 1.0 pipelines with random weights.

Latency and memory do not depend on weight values, so these entries time the real architectures
without any download: the component configs in ``configs/sd15`` and ``configs/sdxl`` follow the
published ones (UNet, VAE, CLIP ViT-L/14 and OpenCLIP bigG text encoders, Euler scheduler). Only the
tokenizer differs: it is the small generated one (:mod:`.tokenizer`), which changes which ids a
prompt maps to but not the compute, since every prompt is padded to 77 tokens.

Modules are constructed directly on the target device (``torch.device`` context), so a 2.6B-parameter
UNet is never materialised on the CPU first when the target is a GPU; building on ``meta`` allocates
nothing and is how the tests check the architectures. Weights are initialised in float32 (seeded,
global RNG untouched) and then cast, so that every dtype holds the same weights up to rounding.
These models are meant for GPUs: on a CPU, building SDXL takes tens of seconds and one call minutes.
"""

from __future__ import annotations

import json
from functools import partial
from importlib import resources
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
    "FULLSIZE_COMPONENTS",
    "build_sd15",
    "build_sdxl",
    "load_component_config",
    "sd15_spec",
    "sdxl_spec",
]

#: The component configs shipped for each full-size model (``configs/<model>/<component>.json``).
FULLSIZE_COMPONENTS: dict[str, tuple[str, ...]] = {
    "sd15": ("unet", "vae", "text_encoder", "scheduler"),
    "sdxl": ("unet", "vae", "text_encoder", "text_encoder_2", "scheduler"),
    "flux": ("transformer", "vae", "text_encoder", "text_encoder_2", "scheduler"),
    "sd3": ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3", "scheduler"),
    "wan": ("transformer", "vae", "text_encoder", "scheduler"),
}

_SEED_OFFSETS = {"text_encoder": 0, "text_encoder_2": 1, "unet": 2, "vae": 3}


def load_component_config(model: str, component: str) -> dict[str, Any]:
    """The JSON config of one component of a full-size model, e.g. ``("sdxl", "unet")``."""
    if component not in FULLSIZE_COMPONENTS.get(model, ()):
        known = ", ".join(f"{m}/{c}" for m, cs in FULLSIZE_COMPONENTS.items() for c in cs)
        raise KeyError(f"no shipped config {model}/{component}; known configs: {known}")
    path = resources.files("perfsuite.catalog") / "configs" / model / f"{component}.json"
    config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return config


def _unet(model: str) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_config(load_component_config(model, "unet"))


def _vae(model: str) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_config(load_component_config(model, "vae"))


def _scheduler(model: str) -> Any:
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler.from_config(load_component_config(model, "scheduler"))


def _text_encoder(model: str, component: str) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = dict(load_component_config(model, component))
    architecture = config.pop("architectures", ["CLIPTextModel"])[0]
    config.pop("model_type", None)
    classes = {"CLIPTextModel": CLIPTextModel, "CLIPTextModelWithProjection": CLIPTextModelWithProjection}
    return classes[architecture](CLIPTextConfig(**config))


def _build(model: str, device: torch.device, weight_seed: int, components: tuple[str, ...]) -> dict[str, Any]:
    """Construct the weighted components of ``model`` on ``device``, each from its own seed (float32)."""
    built: dict[str, Any] = {}
    for component in components:
        with seeded_on_device(device, weight_seed + _SEED_OFFSETS[component]):
            if component == "unet":
                built[component] = _unet(model)
            elif component == "vae":
                built[component] = _vae(model)
            else:
                built[component] = _text_encoder(model, component)
    return built


def build_sd15(device: torch.device, dtype: torch.dtype, *, weight_seed: int = 0) -> DiffusionPipeline:
    """Stable Diffusion 1.5 architecture, random weights, built on ``device`` in ``dtype``."""
    import torch

    from .tokenizer import build_clip_tokenizer

    parts = _build("sd15", torch.device(device), weight_seed, ("text_encoder", "unet", "vae"))
    return assemble_sd_pipeline(
        unet=finish_module(parts["unet"], dtype),
        vae=finish_module(parts["vae"], dtype),
        text_encoder=finish_module(parts["text_encoder"], dtype),
        tokenizer=build_clip_tokenizer(),
        scheduler=_scheduler("sd15"),
    )


def build_sdxl(device: torch.device, dtype: torch.dtype, *, weight_seed: int = 0) -> DiffusionPipeline:
    """SDXL base 1.0 architecture, random weights, built on ``device`` in ``dtype``."""
    import torch

    from .tokenizer import build_clip_tokenizer

    components = ("text_encoder", "text_encoder_2", "unet", "vae")
    parts = _build("sdxl", torch.device(device), weight_seed, components)
    return assemble_sdxl_pipeline(
        unet=finish_module(parts["unet"], dtype),
        vae=finish_module(parts["vae"], dtype),
        text_encoder=finish_module(parts["text_encoder"], dtype),
        text_encoder_2=finish_module(parts["text_encoder_2"], dtype),
        tokenizer=build_clip_tokenizer(),
        tokenizer_2=build_clip_tokenizer(),
        scheduler=_scheduler("sdxl"),
    )


def sd15_spec(*, weight_seed: int = 0) -> ModelSpec:
    """Catalog entry ``sd15``: 512x512, 30 steps, guidance 7.5 (the reference guide's settings)."""
    return ModelSpec(
        name="sd15",
        family="sd",
        description="Stable Diffusion 1.5 architecture (860M-parameter UNet), random weights, 512x512",
        build=partial(build_sd15, weight_seed=weight_seed),
        call_kwargs={
            "prompt": GUIDE_PROMPT,
            "num_inference_steps": 30,
            "height": 512,
            "width": 512,
            "guidance_scale": 7.5,
        },
    )


def sdxl_spec(*, weight_seed: int = 0) -> ModelSpec:
    """Catalog entry ``sdxl``: 1024x1024, 30 steps, the SDXL pipeline's default guidance 5.0."""
    return ModelSpec(
        name="sdxl",
        family="sdxl",
        description="SDXL base 1.0 architecture (2.6B-parameter UNet), random weights, 1024x1024",
        build=partial(build_sdxl, weight_seed=weight_seed),
        call_kwargs={
            "prompt": GUIDE_PROMPT,
            "num_inference_steps": 30,
            "height": 1024,
            "width": 1024,
            "guidance_scale": 5.0,
        },
    )
