"""Attention: the SDPA backend (``torch.nn.attention.sdpa_kernel``) and fused QKV projections."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch

from perfsuite.optimizations.base import RunTrace, Target, Technique, components, fail

__all__ = ["SDPA_OPS", "TECHNIQUES"]

#: aten ops that reveal which fused SDPA kernel ran. The math backend has no op of its own once
#: compiled (inductor decomposes it), so it is proven by the absence of every fused op.
SDPA_OPS: dict[str, tuple[str, ...]] = {
    "flash": (
        "aten::_scaled_dot_product_flash_attention",
        "aten::_scaled_dot_product_flash_attention_for_cpu",
    ),
    "efficient": ("aten::_scaled_dot_product_efficient_attention",),
    "cudnn": ("aten::_scaled_dot_product_cudnn_attention",),
}


def _backend(name: str) -> Any:
    from torch.nn.attention import SDPBackend

    return {
        "math": SDPBackend.MATH,
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
    }[name]


def _sdpa_requires(name: str) -> Callable[[Target], str | None]:
    def check(target: Target) -> str | None:
        caps = target.capabilities
        if name == "efficient" and not caps.supports_efficient_sdpa:
            return "the memory-efficient SDPA kernel exists only on CUDA"
        if name == "cudnn" and not caps.supports_cudnn_sdpa:
            return "the cuDNN SDPA kernel needs a CUDA GPU of compute capability >= 8.0"
        if name == "flash":
            if not caps.supports_flash_sdpa:
                return f"the flash SDPA kernel is not available on {caps.name}"
            if target.is_cuda and target.dtype == "fp32":
                return "the CUDA flash SDPA kernel takes only fp16/bf16 inputs, not fp32"
        return None

    return check


def _sdpa_context(name: str) -> Callable[[Target], AbstractContextManager[Any]]:
    def context(target: Target) -> AbstractContextManager[Any]:
        from torch.nn.attention import sdpa_kernel

        return sdpa_kernel(_backend(name))

    return context


def _sdpa_verify(name: str) -> Callable[[Any, Target], list[str]]:
    def verify(pipe: Any, target: Target) -> list[str]:
        cuda = torch.backends.cuda
        enabled = {
            "math": cuda.math_sdp_enabled(),
            "flash": cuda.flash_sdp_enabled(),
            "efficient": cuda.mem_efficient_sdp_enabled(),
            "cudnn": cuda.cudnn_sdp_enabled(),
        }
        on = sorted(k for k, v in enabled.items() if v)
        if on != [name]:
            raise fail(f"sdpa-{name}", f"enabled SDPA backends are {on}, expected only {name!r}")
        return [f"only the {name} SDPA backend is enabled"]

    return verify


def _sdpa_verify_trace(name: str) -> Callable[[RunTrace, Target], list[str]]:
    def verify(trace: RunTrace, target: Target) -> list[str]:
        ran = {backend for backend, ops in SDPA_OPS.items() if trace.op_names & set(ops)}
        if ran - {name}:
            raise fail(f"sdpa-{name}", f"the {sorted(ran - {name})} SDPA kernel ran instead of {name!r}")
        if name == "math":
            return ["no fused SDPA kernel ran (math backend)"]
        if name not in ran:
            raise fail(f"sdpa-{name}", f"no {name} SDPA kernel ran (looked for {', '.join(SDPA_OPS[name])})")
        return [f"{name} SDPA kernel ran ({min(trace.op_names & set(SDPA_OPS[name]))})"]

    return verify


def _fuse_requires(target: Target) -> str | None:
    if target.family not in ("sd", "sdxl"):
        return f"fused QKV projections are wired for SD/SDXL pipelines, not the {target.family!r} family"
    return None


def _fuse_apply(pipe: Any, target: Target) -> None:
    pipe.fuse_qkv_projections(unet=True, vae=True)


def _fuse_verify(pipe: Any, target: Target) -> list[str]:
    from diffusers.models.attention_processor import Attention, FusedAttnProcessor2_0

    evidence = []
    for comp_name, module in components(pipe, "unet", "vae"):
        attns = [m for m in module.modules() if isinstance(m, Attention)]
        if not attns:
            raise fail("fuse-qkv", f"{comp_name} has no attention module to fuse")
        for attn in attns:
            if not isinstance(attn.processor, FusedAttnProcessor2_0):
                raise fail("fuse-qkv", f"{comp_name} attention uses {type(attn.processor).__name__}")
            fused = getattr(attn, "to_kv" if attn.is_cross_attention else "to_qkv", None)
            if not (attn.fused_projections and isinstance(fused, torch.nn.Module)):
                raise fail("fuse-qkv", f"{comp_name} attention has no fused projection layer")
        evidence.append(f"{len(attns)} attention modules of {comp_name} use fused projections")
    return evidence


def _sdpa(name: str, summary: str, markers: tuple[str, ...] = ()) -> Technique:
    return Technique(
        name=f"sdpa-{name}",
        group="sdpa",
        summary=summary,
        rank=15,
        requires=_sdpa_requires(name),
        context=_sdpa_context(name),
        verify=_sdpa_verify(name),
        verify_trace=_sdpa_verify_trace(name),
        markers=markers,
    )


TECHNIQUES = (
    _sdpa("math", "SDPA restricted to the math (reference) kernel"),
    _sdpa("flash", "SDPA restricted to the FlashAttention kernel"),
    _sdpa("efficient", "SDPA restricted to the memory-efficient kernel", ("gpu",)),
    _sdpa("cudnn", "SDPA restricted to the cuDNN attention kernel", ("gpu",)),
    Technique(
        name="fuse-qkv",
        group="fuse",
        summary="fused QKV (self-attention) and KV (cross-attention) projections in the UNet and VAE",
        rank=30,
        requires=_fuse_requires,
        apply=_fuse_apply,
        verify=_fuse_verify,
    ),
)
