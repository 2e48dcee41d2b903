"""Helpers shared by the catalog's builders: seeded construction on a device, pipeline assembly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .families import GUIDE_PROMPT

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

__all__ = [
    "GUIDE_PROMPT",
    "assemble_pipeline",
    "assemble_sd_pipeline",
    "assemble_sdxl_pipeline",
    "finish_module",
    "seeded_on_device",
]


def _rng_devices(device: torch.device) -> list[int]:
    """Indices of the accelerator RNGs to save and restore around a seeded build on ``device``.

    ``torch.manual_seed`` reseeds every device of the accelerator type, so all of them are forked,
    not only ``device``. CPU and meta need none (the CPU RNG is always forked).
    """
    import torch

    if device.type in ("cpu", "meta"):
        return []
    device_count = getattr(getattr(torch, device.type, None), "device_count", None)
    if device_count is None:
        raise ValueError(
            f"cannot seed a build on {device}: torch.{device.type} has no device_count(); "
            "build on 'cpu', 'cuda', 'xpu' or 'mps'"
        )
    return list(range(int(device_count())))


@contextmanager
def seeded_on_device(device: torch.device, seed: int) -> Iterator[None]:
    """Construct modules on ``device`` with RNGs seeded from ``seed``, leaving global RNG state untouched.

    Inside the block, new parameters are allocated directly on ``device`` (``torch.device`` context)
    and initialised from freshly seeded generators. On exit the CPU RNG and the RNGs of all devices of
    ``device``'s type are restored, so building a model never perturbs the caller's random stream.
    """
    import torch

    rng_devices = _rng_devices(device)
    device_type = "cpu" if device.type in ("cpu", "meta") else device.type
    with torch.random.fork_rng(devices=rng_devices, device_type=device_type), torch.device(device):
        torch.manual_seed(seed)
        yield


def finish_module(module: Any, dtype: torch.dtype) -> Any:
    """Cast ``module`` to ``dtype`` and put it in inference mode (eval, no gradients).

    Weights are always initialised in float32 and then cast, so that every dtype of one model holds
    the same weights up to rounding (the fidelity check compares them against the float32 run).
    """
    import torch

    if all(p.dtype == dtype for p in module.parameters() if p.is_floating_point()):
        pass  # already there (the float32 build): no cast, and no "keep in float32" warning from diffusers
    elif getattr(module, "_keep_in_fp32_modules", None):
        module.to(dtype=dtype)
    else:
        # diffusers' ModelMixin.to() warns about "modules that should be kept in float32: []" on every
        # dtype cast, even when there are none; the plain nn.Module cast is the same operation here.
        torch.nn.Module.to(module, dtype=dtype)
    module.eval()
    module.requires_grad_(False)
    return module


def assemble_sd_pipeline(
    *, unet: Any, vae: Any, text_encoder: Any, tokenizer: Any, scheduler: Any
) -> DiffusionPipeline:
    """A StableDiffusionPipeline without safety checker or feature extractor, progress bar off."""
    from diffusers import StableDiffusionPipeline

    pipe: Any = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def assemble_sdxl_pipeline(
    *,
    unet: Any,
    vae: Any,
    text_encoder: Any,
    text_encoder_2: Any,
    tokenizer: Any,
    tokenizer_2: Any,
    scheduler: Any,
) -> DiffusionPipeline:
    """A StableDiffusionXLPipeline without watermarker, image encoder, feature extractor; no progress bar."""
    from diffusers import StableDiffusionXLPipeline

    pipe: Any = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        image_encoder=None,
        feature_extractor=None,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def assemble_pipeline(class_name: str, **components: Any) -> DiffusionPipeline:
    """The diffusers pipeline ``class_name`` from its components, progress bar off."""
    import diffusers

    pipe: Any = getattr(diffusers, class_name)(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe
