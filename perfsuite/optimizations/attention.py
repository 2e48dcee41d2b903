"""Attention: the SDPA backend (``torch.nn.attention.sdpa_kernel``) and fused QKV projections."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch

from perfsuite.catalog.families import get_family
from perfsuite.optimizations.base import DTYPES, RunTrace, Target, Technique, Unsupported, fail

__all__ = ["FUSED_PROJECTIONS", "SDPA_OPS", "TECHNIQUES"]

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


#: Each fused projection and the separate projections it replaces. diffusers' attention modules keep
#: the separate layers after fusing, so only a call shows which ones the processor really uses.
FUSED_PROJECTIONS: dict[str, tuple[str, ...]] = {
    "to_qkv": ("to_q", "to_k", "to_v"),
    "to_kv": ("to_k", "to_v"),
    "to_added_qkv": ("add_q_proj", "add_k_proj", "add_v_proj"),
    "to_added_kv": ("add_k_proj", "add_v_proj"),
}
_PROBE_TOKENS = 4
#: Largest relative difference between an attention module's output before and after fusing: a
#: concatenated matmul may round differently, never more (float32; 16-bit dtypes get 1e-2).
_FUSE_TOLERANCE = {"fp32": 1e-4, "bf16": 1e-2, "fp16": 1e-2}
_QK_NORMS = ("norm_q", "norm_k", "norm_added_q", "norm_added_k")


def _fuse_targets(pipe: Any, target: Target) -> list[tuple[str, Any]]:
    family = get_family(target.family)
    return [(family.denoiser, family.denoiser_of(pipe)), (family.vae, family.vae_of(pipe))]


def _fuse_requires(target: Target) -> str | None:
    """Decided from the family's denoiser class, before anything is built."""
    import diffusers

    family = get_family(target.family)
    denoiser_class = getattr(diffusers, family.denoiser_class, None)
    if denoiser_class is not None and not hasattr(denoiser_class, "fuse_qkv_projections"):
        return f"{family.denoiser_class} has no fuse_qkv_projections in diffusers {diffusers.__version__}"
    return None


def _attention_modules(module: torch.nn.Module) -> list[torch.nn.Module]:
    from diffusers.models.attention import AttentionModuleMixin
    from diffusers.models.attention_processor import Attention

    found = [m for m in module.modules() if isinstance(m, Attention | AttentionModuleMixin)]
    return [m for m in found if getattr(m, "_supports_qkv_fusion", True)]


def _linear(attn: torch.nn.Module, name: str) -> torch.nn.Module | None:
    layer = getattr(attn, name, None)
    return layer if isinstance(layer, torch.nn.Module) else None


def _probe(attn: torch.nn.Module, dtype: torch.dtype, device: torch.device, seed: int) -> list[torch.Tensor]:
    """Outputs of one eager call of ``attn`` on a few seeded random tokens, with the inputs its
    projections expect (the text stream of a joint attention, the context of a cross-attention).

    The tokens go where the module's weights are (``device`` if it has none): a technique that
    offloads weights may keep them off the device between calls.
    """
    generator = torch.Generator("cpu").manual_seed(seed)
    device = next((p.device for p in attn.parameters()), device)

    def tokens(layer: Any) -> torch.Tensor:
        return torch.randn(1, _PROBE_TOKENS, layer.in_features, generator=generator).to(device, dtype)

    kwargs: dict[str, torch.Tensor] = {}
    added = _linear(attn, "add_k_proj")
    if added is not None:  # joint attention (SD3, Flux double-stream): the text has its own projections
        kwargs["encoder_hidden_states"] = tokens(added)
    elif getattr(attn, "is_cross_attention", False):
        kwargs["encoder_hidden_states"] = tokens(attn.to_k)
    with torch.no_grad(), torch.compiler.set_stance("force_eager"):
        out = attn(tokens(attn.to_q), **kwargs)
    return [t.float() for t in (out if isinstance(out, tuple) else (out,)) if isinstance(t, torch.Tensor)]


def _fuse_apply(pipe: Any, target: Target) -> None:
    """Fuse with the model's own method, then check that every attention module computes what it did.

    The denoiser's method picks the path: the legacy ``Attention`` modules (UNet, SD3 joint blocks,
    VAE) get fused processors; Flux's and Wan's attention modules keep their processor, which switches
    to the fused layers. A model whose fused processor computes something else (diffusers 0.42's
    ``FusedJointAttnProcessor2_0`` skips SD3.5's QK norms) raises :class:`Unsupported` with the module,
    the difference and the norms it skipped.
    """
    dtype, tolerance = DTYPES[target.dtype], _FUSE_TOLERANCE[target.dtype]
    for comp_name, module in _fuse_targets(pipe, target):
        if not hasattr(module, "fuse_qkv_projections"):
            continue
        attns = _attention_modules(module)
        before = [_probe(a, dtype, target.device, seed) for seed, a in enumerate(attns)]
        module.fuse_qkv_projections()
        _repair_self_only_joint_attention(module)
        for seed, (attn, expected) in enumerate(zip(attns, before, strict=True)):
            got = _probe(attn, dtype, target.device, seed)
            error = max(
                float((g - e).abs().max() / e.abs().max().clamp_min(1e-12))
                for g, e in zip(got, expected, strict=True)
            )
            if error > tolerance:
                norms = [n for n in _QK_NORMS if _linear(attn, n) is not None]
                raise Unsupported(
                    f"the fused projections change what an attention module ({type(attn).__name__}) of the "
                    f"{comp_name} computes "
                    f"(relative difference {error:.2g} > {tolerance:g}) with "
                    f"{type(getattr(attn, 'processor', None)).__name__}"
                    + (f", which does not apply its QK norms ({', '.join(norms)})" if norms else "")
                    + f" in diffusers {_diffusers_version()}"
                )


def _diffusers_version() -> str:
    import diffusers

    return str(diffusers.__version__)


def _repair_self_only_joint_attention(module: torch.nn.Module) -> int:
    """Give self-attention modules that got the joint (two-stream) fused processor the plain fused one.

    ``SD3Transformer2DModel.fuse_qkv_projections`` (diffusers 0.42) sets ``FusedJointAttnProcessor2_0``
    on every attention module, also on the second, image-only attention of SD3.5's dual-attention
    blocks (MMDiT-X), which is called without text states; that processor then fails on
    ``encoder_hidden_states.ndim``. ``FusedAttnProcessor2_0`` is the fused form of what those modules
    ran before fusing (QKV projection, QK norm, SDPA, output projection). Returns how many it changed.
    """
    from diffusers.models.attention_processor import (
        Attention,
        FusedAttnProcessor2_0,
        FusedJointAttnProcessor2_0,
    )

    repaired = 0
    for attn in module.modules():
        joint = isinstance(getattr(attn, "processor", None), FusedJointAttnProcessor2_0)
        if isinstance(attn, Attention) and joint and _linear(attn, "add_k_proj") is None:
            processor: Any = FusedAttnProcessor2_0()
            attn.set_processor(processor)
            repaired += 1
    return repaired


def _projection_calls(attn: torch.nn.Module, dtype: torch.dtype, device: torch.device) -> dict[str, int]:
    """How often each projection layer of ``attn`` ran in one probe call."""
    names = {n for fused, parts in FUSED_PROJECTIONS.items() for n in (fused, *parts)}
    layers = {name: layer for name in sorted(names) if (layer := _linear(attn, name)) is not None}
    calls = dict.fromkeys(layers, 0)
    handles = []
    for name, layer in layers.items():

        def count(_module: Any, _args: Any, _output: Any, name: str = name) -> None:
            calls[name] += 1

        handles.append(layer.register_forward_hook(count))
    try:
        _probe(attn, dtype, device, seed=0)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _check_fused_path(comp_name: str, attn: torch.nn.Module, calls: dict[str, int]) -> None:
    kind = type(attn).__name__
    fused = [name for name in FUSED_PROJECTIONS if name in calls]
    if not getattr(attn, "fused_projections", False) or not fused:
        raise fail("fuse-qkv", f"a {kind} of the {comp_name} has no fused projection layer")
    for name in fused:
        if not calls[name]:
            processor = type(getattr(attn, "processor", None)).__name__
            raise fail(
                "fuse-qkv",
                f"a {kind} of the {comp_name} never called its fused {name} "
                f"(its processor {processor} takes the separate projections)",
            )
        used = [part for part in FUSED_PROJECTIONS[name] if calls.get(part)]
        if used:
            raise fail(
                "fuse-qkv", f"a {kind} of the {comp_name} still calls {', '.join(used)} besides {name}"
            )


def _fuse_verify(pipe: Any, target: Target) -> list[str]:
    """Every attention module of the denoiser and VAE takes its fused path in a real (probe) call."""
    dtype = DTYPES[target.dtype]
    evidence = []
    for comp_name, module in _fuse_targets(pipe, target):
        if not hasattr(module, "fuse_qkv_projections"):
            evidence.append(
                f"{comp_name} ({type(module).__name__}) has no fuse_qkv_projections: attention left as built"
            )
            continue
        attns = _attention_modules(module)
        if not attns:
            raise fail("fuse-qkv", f"{comp_name} has no attention module to fuse")
        used: set[str] = set()
        for attn in attns:
            calls = _projection_calls(attn, dtype, target.device)
            _check_fused_path(comp_name, attn, calls)
            used.update(name for name in FUSED_PROJECTIONS if calls.get(name))
        processors = sorted({type(getattr(a, "processor", None)).__name__ for a in attns})
        evidence.append(
            f"{len(attns)} attention modules of the {comp_name} ran their fused projections "
            f"({'/'.join(sorted(used))}) and not the separate ones in a probe call "
            f"(processors: {', '.join(processors)})"
        )
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
        summary="fused QKV (self-attention) and KV (cross-attention) projections in the denoiser and VAE",
        rank=30,
        requires=_fuse_requires,
        apply=_fuse_apply,
        verify=_fuse_verify,
    ),
)
