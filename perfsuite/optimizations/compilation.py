"""torch.compile: whole-module compilation in each mode, regional compilation, and inductor flags.

Every technique compiles the family's denoiser (``pipe.unet`` or ``pipe.transformer``, from
:func:`perfsuite.catalog.families.get_family`); the whole-model modes also compile ``vae.decode``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch

from perfsuite.catalog.families import get_family
from perfsuite.optimizations.base import (
    RunTrace,
    Target,
    Technique,
    Unsupported,
    fail,
    needs_cuda,
    needs_package,
)

__all__ = ["INDUCTOR_FLAGS", "INDUCTOR_INT8_FLAGS", "TECHNIQUES", "inductor_flags_for"]

#: The guide's "maximum speed" inductor flags.
INDUCTOR_FLAGS: dict[str, Any] = {
    "conv_1x1_as_mm": True,
    "coordinate_descent_tuning": True,
    "epilogue_fusion": False,
    "coordinate_descent_check_all_directions": True,
}
#: The guide's extra flag for dynamic int8 quantization, set when the combo also quantizes (it acts
#: on CUDA only). The guide's other one, ``use_mixed_mm``, is ignored by torch >= 2.5 and left out.
INDUCTOR_INT8_FLAGS: dict[str, Any] = {"force_fuse_int_mm_with_mul": True}


def inductor_flags_for(target: Target) -> dict[str, Any]:
    """The inductor flags the ``inductor-flags`` technique sets for this combo."""
    import torch._inductor.config as inductor_config

    flags = dict(INDUCTOR_FLAGS)
    if "int8-dq" in target.techniques:
        flags.update(INDUCTOR_INT8_FLAGS)
    # A flag that a future torch drops must not turn into a silent no-op: patch() raises on it.
    missing = [k for k in flags if not hasattr(inductor_config, k)]
    if missing:
        raise AttributeError(f"torch {torch.__version__} has no inductor config {missing}")
    return flags


def _is_compiled_module(module: torch.nn.Module) -> bool:
    return getattr(module, "_compiled_call_impl", None) is not None


def _is_compiled_callable(fn: Any) -> bool:
    return callable(getattr(fn, "_torchdynamo_orig_callable", None))


def _compile_kwargs(mode: str | None) -> dict[str, Any]:
    return {"fullgraph": True} if mode is None else {"mode": mode, "fullgraph": True}


def _compile_apply(mode: str | None) -> Callable[[Any, Target], None]:
    def apply(pipe: Any, target: Target) -> None:
        # In-place Module.compile keeps the denoiser's class, config and attributes that the pipeline
        # reads; the VAE's decode method is compiled as in the guide.
        family = get_family(target.family)
        family.denoiser_of(pipe).compile(**_compile_kwargs(mode))
        vae = family.vae_of(pipe)
        vae.decode = torch.compile(vae.decode, **_compile_kwargs(mode))

    return apply


def _compile_verify(name: str) -> Callable[[Any, Target], list[str]]:
    def verify(pipe: Any, target: Target) -> list[str]:
        family = get_family(target.family)
        if not _is_compiled_module(family.denoiser_of(pipe)):
            raise fail(name, f"the {family.denoiser} is not compiled")
        if not _is_compiled_callable(family.vae_of(pipe).decode):
            raise fail(name, f"{family.vae}.decode is not compiled")
        return [f"{family.denoiser} compiled in place", f"{family.vae}.decode compiled"]

    return verify


def _graphs_verify(name: str) -> Callable[[RunTrace, Target], list[str]]:
    def verify(trace: RunTrace, target: Target) -> list[str]:
        if trace.unique_graphs < 1:
            raise fail(name, "dynamo captured no graph during warm-up: the model ran eagerly")
        if trace.graph_breaks:
            raise fail(name, f"{trace.graph_breaks} graph breaks during warm-up")
        return [f"dynamo captured {trace.unique_graphs} graphs, no graph break"]

    return verify


def _repeated_block_names(module: torch.nn.Module) -> list[str]:
    return list(getattr(module, "_repeated_blocks", None) or [])


def _regional_requires(target: Target) -> str | None:
    """Decided from the family's denoiser class, before anything is built."""
    import diffusers

    family = get_family(target.family)
    denoiser_class = getattr(diffusers, family.denoiser_class, None)
    if denoiser_class is not None and not _repeated_block_names(denoiser_class):
        return (
            f"{family.denoiser_class} declares no _repeated_blocks in diffusers {diffusers.__version__}, "
            "so compile_repeated_blocks has no block to compile"
        )
    return None


def _regional_apply(pipe: Any, target: Target) -> None:
    denoiser = get_family(target.family).denoiser_of(pipe)
    if not _repeated_block_names(denoiser):
        raise Unsupported(f"{type(denoiser).__name__} declares no _repeated_blocks to compile")
    denoiser.compile_repeated_blocks(fullgraph=True)


def _regional_verify(pipe: Any, target: Target) -> list[str]:
    family = get_family(target.family)
    denoiser = family.denoiser_of(pipe)
    names = _repeated_block_names(denoiser)
    blocks = [m for m in denoiser.modules() if type(m).__name__ in names]
    if not blocks:
        raise fail("regional-compile", f"the {family.denoiser} has no {names} block")
    if not all(_is_compiled_module(m) for m in blocks):
        raise fail("regional-compile", f"not every {names} block is compiled")
    if _is_compiled_module(denoiser):
        raise fail("regional-compile", f"the whole {family.denoiser} is compiled, not its repeated blocks")
    return [f"{len(blocks)} {'/'.join(names)} blocks of the {family.denoiser} compiled in place"]


def compile_regions_blocker(module: torch.nn.Module) -> str | None:
    """Why accelerate's ``compile_regions`` breaks this model, or ``None`` when it can run it.

    ``compile_regions`` rebuilds every module that holds repeated blocks and wraps each child without
    any in ``torch.compile``, an ``OptimizedModule``. In torch >= 2.10 ``OptimizedModule`` defines
    ``__len__``, which raises for a wrapped module that has no length. A forward that truth-tests
    such a child (UNet2DConditionModel does ``if self.conv_norm_out:``) then fails with
    ``TypeError: GroupNorm does not support len()``. This walks the model the way
    ``compile_regions`` does and reports the first such child.
    """
    from accelerate.utils.other import has_repeated_blocks, is_repeated_blocks
    from torch._dynamo.eval_frame import OptimizedModule

    if "__len__" not in vars(OptimizedModule):
        return None

    def walk(parent: torch.nn.Module, path: str) -> str | None:
        if is_repeated_blocks(parent) or not has_repeated_blocks(parent):
            return None
        try:
            source = inspect.getsource(type(parent).forward)
        except (OSError, TypeError):
            source = ""
        for name, child in parent.named_children():
            wrapped = not (is_repeated_blocks(child) or has_repeated_blocks(child))
            truth_test = re.compile(
                rf"\b(?:if|elif|while|not|and|or)\s+self\.{name}\s*(?::|\)|\band\b|\bor\b)"
            )
            if wrapped and not hasattr(child, "__len__") and truth_test.search(source):
                return (
                    f"accelerate compile_regions wraps {path}{name} ({type(child).__name__}) in an "
                    f"OptimizedModule whose __len__ raises, and {type(parent).__name__}.forward "
                    f"truth-tests it (`if self.{name}:`): TypeError {type(child).__name__} does not "
                    "support len(). diffusers' compile_repeated_blocks (regional-compile) covers this model"
                )
            found = walk(child, f"{path}{name}.")
            if found:
                return found
        return None

    return walk(module, "")


def _compile_regions_requires(target: Target) -> str | None:
    return needs_package("accelerate", "accelerate")


def _compile_regions_apply(pipe: Any, target: Target) -> None:
    from accelerate.utils import compile_regions

    family = get_family(target.family)
    blocker = compile_regions_blocker(family.denoiser_of(pipe))
    if blocker:
        raise Unsupported(blocker)
    setattr(pipe, family.denoiser, compile_regions(family.denoiser_of(pipe), fullgraph=True))


def _compile_regions_verify(pipe: Any, target: Target) -> list[str]:
    family = get_family(target.family)
    denoiser = family.denoiser_of(pipe)
    compiled = [m for m in denoiser.modules() if isinstance(m, torch._dynamo.eval_frame.OptimizedModule)]
    if not compiled:
        raise fail("compile-regions", f"no region of the {family.denoiser} is compiled")
    return [f"{len(compiled)} regions of the {family.denoiser} compiled by accelerate"]


def _inductor_context(target: Target) -> AbstractContextManager[Any]:
    import torch._inductor.config as inductor_config

    return inductor_config.patch(inductor_flags_for(target))


def _inductor_verify(pipe: Any, target: Target) -> list[str]:
    import torch._inductor.config as inductor_config

    flags = inductor_flags_for(target)
    wrong = {k: getattr(inductor_config, k) for k, v in flags.items() if getattr(inductor_config, k) != v}
    if wrong:
        raise fail("inductor-flags", f"inductor config differs from the guide's flags: {wrong}")
    return [f"inductor {', '.join(f'{k}={v}' for k, v in flags.items())}"]


def _compile(name: str, mode: str | None, summary: str, gpu_only: bool) -> Technique:
    return Technique(
        name=name,
        group="compile",
        summary=summary,
        rank=50,
        requires=needs_cuda(f"torch.compile mode={mode!r} (CUDA graphs, Triton autotuning)")
        if gpu_only
        else (lambda target: None),
        apply=_compile_apply(mode),
        verify=_compile_verify(name),
        verify_trace=_graphs_verify(name),
        markers=("compile", "gpu") if gpu_only else ("compile",),
        slow_on_cpu=True,
    )


TECHNIQUES = (
    _compile("compile", None, "torch.compile(fullgraph=True) of the denoiser and vae.decode", gpu_only=False),
    _compile(
        "compile-reduce-overhead",
        "reduce-overhead",
        "torch.compile mode=reduce-overhead (CUDA graphs) of the denoiser and vae.decode",
        gpu_only=True,
    ),
    _compile(
        "compile-max-autotune",
        "max-autotune",
        "torch.compile mode=max-autotune (Triton GEMM autotuning + CUDA graphs)",
        gpu_only=True,
    ),
    Technique(
        name="regional-compile",
        group="compile",
        summary="diffusers compile_repeated_blocks: compile each repeated transformer block once",
        rank=50,
        requires=_regional_requires,
        apply=_regional_apply,
        verify=_regional_verify,
        verify_trace=_graphs_verify("regional-compile"),
        markers=("compile",),
    ),
    Technique(
        name="compile-regions",
        group="compile",
        summary="accelerate compile_regions: compile repeated ModuleList blocks, the rest separately",
        rank=50,
        requires=_compile_regions_requires,
        apply=_compile_regions_apply,
        verify=_compile_regions_verify,
        verify_trace=_graphs_verify("compile-regions"),
        markers=("compile",),
        slow_on_cpu=True,
    ),
    Technique(
        name="inductor-flags",
        group="inductor",
        summary="the guide's inductor flags (conv_1x1_as_mm, coordinate descent tuning, no epilogue fusion)",
        rank=45,
        context=_inductor_context,
        verify=_inductor_verify,
        needs_groups=("compile",),
        markers=("compile",),
    ),
)
