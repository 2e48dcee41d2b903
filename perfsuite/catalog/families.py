"""Pipeline families as data: what a technique needs to know about a pipeline, without branching on names.

A :class:`Family` says which diffusers pipeline classes belong to it, which pipeline attribute holds
the denoising network (``unet`` or ``transformer``), its text encoders and tokenizers, its VAE, the
kind of output it makes (images or video frames) and the call settings of a pretrained pipeline of
that family. Techniques ask the family ("the denoiser", "the VAE") through :func:`get_family`; they
never test ``if family == ...``.

Importing this module is cheap: no torch, no diffusers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FAMILIES", "Family", "UnknownFamilyError", "family_of", "family_of_pipeline", "get_family"]

#: The prompt of every example in the reference guide (``reference/accelerate-inference-guide.md``).
GUIDE_PROMPT = "Astronaut in a jungle, cold color palette, muted colors, detailed, 8k"

_OUTPUTS = ("image", "video")


class UnknownFamilyError(ValueError):
    """A family name that is not registered."""


@dataclass(frozen=True)
class Family:
    """One pipeline family.

    ``denoiser`` is the pipeline attribute of the denoising network, ``vae`` that of the
    autoencoder; ``text_encoders`` and ``tokenizers`` name the pipeline attributes in the order the
    pipeline uses them. ``output`` is ``"image"`` (``output.images``: N x H x W x C) or ``"video"``
    (``output.frames``: N x T x H x W x C). ``call_defaults`` are the call arguments of a pretrained
    pipeline of this family (prompt, steps, guidance); catalog models set their own.
    """

    name: str
    description: str
    pipeline_classes: tuple[str, ...]
    denoiser: str
    denoiser_class: str
    text_encoders: tuple[str, ...]
    tokenizers: tuple[str, ...]
    vae: str = "vae"
    conv_components: tuple[str, ...] = ("vae",)
    output: str = "image"
    call_defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.output not in _OUTPUTS:
            raise ValueError(f"family {self.name!r}: output {self.output!r} is not one of {_OUTPUTS}")
        if not self.pipeline_classes:
            raise ValueError(f"family {self.name!r} names no pipeline class")
        unknown = set(self.conv_components) - {self.denoiser, self.vae}
        if unknown:
            raise ValueError(
                f"family {self.name!r}: conv_components {sorted(unknown)} are not its denoiser or VAE"
            )

    def denoiser_of(self, pipe: Any) -> Any:
        """The pipeline's denoising network (its UNet or transformer)."""
        return self._component(pipe, self.denoiser, "denoiser")

    def vae_of(self, pipe: Any) -> Any:
        """The pipeline's autoencoder."""
        return self._component(pipe, self.vae, "VAE")

    def text_encoders_of(self, pipe: Any) -> list[tuple[str, Any]]:
        """``(attribute, module)`` of every text encoder the pipeline holds."""
        return [(name, m) for name in self.text_encoders if (m := getattr(pipe, name, None)) is not None]

    def weighted_components_of(self, pipe: Any) -> list[tuple[str, Any]]:
        """``(attribute, module)`` of the denoiser, the VAE and every text encoder, in that order."""
        return [
            (self.denoiser, self.denoiser_of(pipe)),
            (self.vae, self.vae_of(pipe)),
            *self.text_encoders_of(pipe),
        ]

    def conv_components_of(self, pipe: Any) -> list[tuple[str, Any]]:
        """``(attribute, module)`` of the components whose work is mostly convolution."""
        return [
            (name, self._component(pipe, name, "convolutional component")) for name in self.conv_components
        ]

    def _component(self, pipe: Any, attribute: str, role: str) -> Any:
        module = getattr(pipe, attribute, None)
        if module is None:
            raise AttributeError(
                f"{type(pipe).__name__} has no {attribute!r}, the {role} of family {self.name!r}"
            )
        return module


_SD_CALL = {"prompt": GUIDE_PROMPT, "num_inference_steps": 30}

FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family(
            name="sd",
            description="Stable Diffusion 1.x/2.x: one CLIP text encoder, a UNet",
            pipeline_classes=("StableDiffusionPipeline",),
            denoiser="unet",
            denoiser_class="UNet2DConditionModel",
            text_encoders=("text_encoder",),
            tokenizers=("tokenizer",),
            conv_components=("unet", "vae"),
            call_defaults={**_SD_CALL, "guidance_scale": 7.5},
        ),
        Family(
            name="sdxl",
            description="Stable Diffusion XL: two CLIP text encoders, text_time conditioning, a UNet",
            pipeline_classes=("StableDiffusionXLPipeline",),
            denoiser="unet",
            denoiser_class="UNet2DConditionModel",
            text_encoders=("text_encoder", "text_encoder_2"),
            tokenizers=("tokenizer", "tokenizer_2"),
            conv_components=("unet", "vae"),
            call_defaults={**_SD_CALL, "guidance_scale": 5.0},
        ),
        # FluxPipeline.__call__ defaults (diffusers 0.42): 28 steps, embedded guidance 3.5, no CFG.
        Family(
            name="flux",
            description="Flux.1: CLIP and T5 text encoders, double- and single-stream transformer blocks",
            pipeline_classes=("FluxPipeline",),
            denoiser="transformer",
            denoiser_class="FluxTransformer2DModel",
            text_encoders=("text_encoder", "text_encoder_2"),
            tokenizers=("tokenizer", "tokenizer_2"),
            call_defaults={"prompt": GUIDE_PROMPT, "num_inference_steps": 28, "guidance_scale": 3.5},
        ),
        # StableDiffusion3Pipeline.__call__ defaults (diffusers 0.42): 28 steps, CFG 7.0.
        Family(
            name="sd3",
            description="Stable Diffusion 3 / 3.5: two CLIP and a T5 text encoder, an MMDiT of joint blocks",
            pipeline_classes=("StableDiffusion3Pipeline",),
            denoiser="transformer",
            denoiser_class="SD3Transformer2DModel",
            text_encoders=("text_encoder", "text_encoder_2", "text_encoder_3"),
            tokenizers=("tokenizer", "tokenizer_2", "tokenizer_3"),
            call_defaults={"prompt": GUIDE_PROMPT, "num_inference_steps": 28, "guidance_scale": 7.0},
        ),
        # WanPipeline.__call__ defaults (diffusers 0.42): 50 steps, CFG 5.0, 81 frames (480x832).
        Family(
            name="wan",
            description="Wan 2.1 text-to-video: a UMT5 text encoder, a 3-D transformer, the causal Wan VAE",
            pipeline_classes=("WanPipeline",),
            denoiser="transformer",
            denoiser_class="WanTransformer3DModel",
            text_encoders=("text_encoder",),
            tokenizers=("tokenizer",),
            output="video",
            call_defaults={
                "prompt": GUIDE_PROMPT,
                "num_inference_steps": 50,
                "guidance_scale": 5.0,
                "num_frames": 81,
            },
        ),
    )
}


def get_family(name: str) -> Family:
    """The registered family called ``name``; an unknown name lists the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownFamilyError(
            f"unknown model family {name!r}; known families: {', '.join(FAMILIES)}"
        ) from None


def family_of_pipeline(class_name: str) -> Family | None:
    """The family a diffusers pipeline class belongs to, or ``None``."""
    return next((f for f in FAMILIES.values() if class_name in f.pipeline_classes), None)


def family_of(pipe: Any) -> Family:
    """The family of a pipeline object, from its class or the nearest base class that is registered."""
    for cls in type(pipe).__mro__:
        family = family_of_pipeline(cls.__name__)
        if family is not None:
            return family
    classes = ", ".join(c for f in FAMILIES.values() for c in f.pipeline_classes)
    raise UnknownFamilyError(
        f"{type(pipe).__name__} belongs to no registered family; supported pipeline classes: {classes}"
    )
