"""Memory techniques of diffusers: float8 weight storage (layerwise casting) and group offloading.

* ``layerwise-fp8``: ``denoiser.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn,
  compute_dtype=<the combo's dtype>)``. Every Linear, convolution and embedding keeps its weights in
  float8 and is cast up to the compute dtype just for its own forward. diffusers leaves out, by
  design, the layers whose names match its skip patterns (norms, positional and patch embeddings,
  ``proj_in``/``proj_out``, and the model's ``_skip_layerwise_casting_patterns``). It runs on the
  CPU too: float8 is only a storage format here, the math stays in the compute dtype.
* ``group-offload``: ``denoiser.enable_group_offload(onload_device=<the GPU>, offload_device=cpu,
  offload_type="block_level", num_blocks_per_group=1, use_stream=True)``. The weights live in
  pinned CPU memory; each transformer block is copied to the GPU just before it runs, the next
  one is prefetched on a CUDA stream meanwhile, and it goes back after. CUDA only.

Their gate is the peak memory that drops, at a bounded latency cost (``max_memory_ratio`` in
``baselines/policy.toml``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from perfsuite.catalog.families import get_family
from perfsuite.optimizations.base import RunTrace, Target, Technique, fail, needs_cuda, torch_dtype

__all__ = ["FP8_STORAGE", "TECHNIQUES", "hooked_modules", "parameter_bytes"]

#: The storage dtype of ``layerwise-fp8``.
FP8_STORAGE = torch.float8_e4m3fn
_LAYERWISE_HOOK = "layerwise_casting"  # diffusers.hooks.layerwise_casting._LAYERWISE_CASTING_HOOK
_GROUP_OFFLOAD_HOOK = "group_offloading"  # diffusers.hooks.group_offloading._GROUP_OFFLOADING


def hooked_modules(module: torch.nn.Module, hook_name: str) -> list[tuple[str, torch.nn.Module]]:
    """``(name, sub-module)`` of each module in ``module`` that carries the diffusers hook ``hook_name``."""
    found = []
    for name, sub in module.named_modules():
        registry = getattr(sub, "_diffusers_hook", None)
        if registry is not None and registry.get_hook(hook_name) is not None:
            found.append((name, sub))
    return found


def parameter_bytes(module: torch.nn.Module) -> int:
    """Bytes held by the parameters of ``module``."""
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _partner(target: Target, groups: tuple[str, ...]) -> str | None:
    from perfsuite.optimizations import TECHNIQUES

    return next(
        (t for t in sorted(target.techniques) if t in TECHNIQUES and TECHNIQUES[t].group in groups), None
    )


# --- layerwise-fp8 ------------------------------------------------------------------------------


def _layerwise_requires(target: Target) -> str | None:
    partner = _partner(target, ("quant",))
    if partner:
        return f"layerwise casting re-casts plain weights every call; {partner}'s quantized weights cannot be"
    partner = _partner(target, ("compile",))
    if partner:
        return (
            f"layerwise casting casts each layer's weights in a Python hook around its forward, a graph "
            f"break that {partner}'s fullgraph compile refuses"
        )
    return None


def _layerwise_apply(pipe: Any, target: Target) -> None:
    denoiser = get_family(target.family).denoiser_of(pipe)
    denoiser.enable_layerwise_casting(storage_dtype=FP8_STORAGE, compute_dtype=torch_dtype(target.dtype))


def _layerwise_verify(pipe: Any, target: Target) -> list[str]:
    family = get_family(target.family)
    denoiser = family.denoiser_of(pipe)
    hooked = hooked_modules(denoiser, _LAYERWISE_HOOK)
    if not hooked:
        raise fail(
            "layerwise-fp8", f"no layer of the {family.denoiser} carries diffusers' layerwise casting hook"
        )
    wrong = sorted(
        {str(p.dtype) for _, m in hooked for p in m.parameters(recurse=False)} - {str(FP8_STORAGE)}
    )
    if wrong:
        raise fail("layerwise-fp8", f"layers with the casting hook store {wrong}, expected {FP8_STORAGE}")
    hooked_ids = {id(m) for _, m in hooked}
    kept = [n for n, m in denoiser.named_modules()
            if id(m) not in hooked_ids and any(True for _ in m.parameters(recurse=False))]  # fmt: skip
    stored = sum(parameter_bytes(m) for _, m in hooked)
    kinds = sorted({type(m).__name__ for _, m in hooked})
    evidence = [
        f"{len(hooked)} {'/'.join(kinds)} layers of the {family.denoiser} store {FP8_STORAGE} weights "
        f"({stored / 2**20:.1f} MiB) and compute in {target.dtype}"
    ]
    if kept:
        examples = ", ".join(kept[:3]) + (", ..." if len(kept) > 3 else "")
        evidence.append(
            f"{len(kept)} other layers with weights keep {target.dtype}: diffusers casts only "
            f"Linear/Conv/Embedding layers outside its skip patterns (norms, positional and patch "
            f"embeddings, proj_in/proj_out): {examples}"
        )
    return evidence


# --- group-offload ------------------------------------------------------------------------------


def _offload_requires(target: Target) -> str | None:
    reason = needs_cuda("group offloading (weights in CPU memory, prefetched on a CUDA stream)")(target)
    if reason:
        return reason
    partner = _partner(target, ("compile",))
    if partner:
        return (
            f"group offloading moves weights in hooks that torch.compile may not trace "
            f"(torch.compiler.disable), a graph break that {partner}'s fullgraph compile refuses"
        )
    from perfsuite.optimizations.caching import declared_classes

    declared = declared_classes(target.family)
    if declared is not None and not getattr(declared[1], "_supports_group_offloading", False):
        return f"{declared[1].__name__} does not support diffusers' group offloading"
    return None


def _offload_apply(pipe: Any, target: Target) -> None:
    denoiser = get_family(target.family).denoiser_of(pipe)
    denoiser.enable_group_offload(
        onload_device=target.device,
        offload_device=torch.device("cpu"),
        offload_type="block_level",
        num_blocks_per_group=1,
        use_stream=target.is_cuda,
    )


def _placement(module: torch.nn.Module) -> dict[str, int]:
    params = list(module.parameters())
    return {
        "parameters": len(params),
        "on_cpu": sum(p.device.type == "cpu" for p in params),
        "bytes": sum(p.numel() * p.element_size() for p in params),
    }


def _check_on_cpu(placement: Mapping[str, int], family_denoiser: str, when: str) -> str:
    if placement["parameters"] == 0:
        raise fail("group-offload", f"the {family_denoiser} has no parameter")
    if placement["on_cpu"] != placement["parameters"]:
        raise fail(
            "group-offload",
            f"{placement['parameters'] - placement['on_cpu']} of {placement['parameters']} parameters of "
            f"the {family_denoiser} are on the GPU {when}, expected all on the CPU",
        )
    return (
        f"all {placement['parameters']} parameters of the {family_denoiser} "
        f"({placement['bytes'] / 2**20:.1f} MiB) are on the CPU {when}"
    )


def _offload_verify(pipe: Any, target: Target) -> list[str]:
    family = get_family(target.family)
    denoiser = family.denoiser_of(pipe)
    hooked = hooked_modules(denoiser, _GROUP_OFFLOAD_HOOK)
    if not hooked:
        raise fail(
            "group-offload", f"no module of the {family.denoiser} carries diffusers' group offloading hook"
        )
    stream = "on a CUDA stream" if target.is_cuda else "without a stream"
    return [
        f"group offloading hooks on {len(hooked)} modules of the {family.denoiser} (block level, one block "
        f"per group, prefetched {stream})",
        _check_on_cpu(_placement(denoiser), family.denoiser, "after enabling"),
    ]


@contextlib.contextmanager
def _placement_after_call(denoiser: torch.nn.Module) -> Iterator[dict[str, int]]:
    found: dict[str, int] = {}
    yield found
    found.update(_placement(denoiser))


def _offload_probe(pipe: Any, target: Target) -> contextlib.AbstractContextManager[Mapping[str, Any]]:
    return _placement_after_call(get_family(target.family).denoiser_of(pipe))


def _offload_verify_trace(trace: RunTrace, target: Target) -> list[str]:
    placement = trace.probes.get("group-offload")
    if not placement:
        raise fail("group-offload", "the profiled call recorded no parameter placement")
    denoiser = get_family(target.family).denoiser
    return [_check_on_cpu(placement, denoiser, "after the profiled call, as between calls")]


TECHNIQUES = (
    Technique(
        name="layerwise-fp8",
        group="memory",
        summary="diffusers layerwise casting: denoiser weights stored in float8, computed in the combo dtype",
        rank=42,
        requires=_layerwise_requires,
        apply=_layerwise_apply,
        verify=_layerwise_verify,
    ),
    Technique(
        name="group-offload",
        group="memory",
        summary="diffusers group offloading: denoiser blocks kept in CPU memory, prefetched to the GPU",
        rank=70,
        requires=_offload_requires,
        apply=_offload_apply,
        verify=_offload_verify,
        probe=_offload_probe,
        verify_trace=_offload_verify_trace,
        markers=("gpu",),
    ),
)
