"""Step caches of diffusers: reuse transformer block or attention outputs across denoising steps.

One technique per cache, all in the group ``cache``: diffusers holds at most one cache on a model
(``enable_cache`` refuses a second). Each is switched on with ``denoiser.enable_cache(config)``:

============================  =================================  ==================================
token                         config                             what it skips
============================  =================================  ==================================
``first-block-cache``         ``FirstBlockCacheConfig``          every block after the first, when the
                                                                 first block's residual barely moved
``taylorseer-cache``          ``TaylorSeerCacheConfig``          attention outputs, predicted by a
                                                                 Taylor series between full steps
``mag-cache``                 ``MagCacheConfig``                 every block, while the accumulated
                                                                 magnitude-ratio error stays small
``faster-cache``              ``FasterCacheConfig``              self-attention on alternate steps
``pab-cache``                 ``PyramidAttentionBroadcastConfig``  self-attention on alternate steps
============================  =================================  ==================================

``verify`` proves that diffusers installed the cache's hooks (its ``HookRegistry`` on the blocks or
attention modules). ``probe`` counts, during the profiled call after warm-up, how many of those
units really computed: a forward pre-hook on every sub-module of a unit fires only when the unit's
own forward runs, which the cache prevents when it reuses an output. ``verify_trace`` then requires
that some were skipped, and the evidence reads "skipped K of N ... computations".

Every call does the same work: diffusers resets the caches' state at the end of each pipeline call
(``DiffusionPipeline.maybe_free_model_hooks`` calls the denoiser's ``_reset_stateful_cache``), so
the skip pattern of each timed call is the one the profiled call counted. A case's pipeline is its
own copy and is dropped when the case ends, taking its hooks with it; the timestep callbacks hold
only a weak reference to the pipeline so that the hooks keep no pipeline alive.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import importlib
import inspect
import io
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch

from perfsuite.catalog.families import get_family
from perfsuite.optimizations.base import RunTrace, Target, Technique, Unsupported, fail

__all__ = [
    "CACHES",
    "FBC_PUBLISHED_THRESHOLD",
    "FBC_SKIP_SHARE",
    "SHIPPED_MAG_RATIOS",
    "TAYLORSEER_ATTENTION",
    "TECHNIQUES",
    "CacheKind",
    "cache_units",
    "count_unit_computations",
    "declared_classes",
    "describe_config",
    "make_config",
    "skipped_computations",
]


@dataclass(frozen=True)
class CacheKind:
    """One diffusers step cache: its config class, the hooks it registers on its units, and what a unit is.

    ``hooks`` are ``(module of diffusers.hooks, constant)`` pairs naming the hooks diffusers registers
    on each unit (a transformer block or an attention module); the denoiser-level hook of FasterCache
    is not a unit.
    """

    name: str
    config_class: str
    hooks: tuple[tuple[str, str], ...]
    unit: str
    summary: str
    needs_timestep: bool = False

    def hook_names(self) -> tuple[str, ...]:
        return tuple(getattr(importlib.import_module(f"diffusers.hooks.{m}"), c) for m, c in self.hooks)


CACHES: dict[str, CacheKind] = {
    kind.name: kind
    for kind in (
        CacheKind(
            "first-block-cache",
            "FirstBlockCacheConfig",
            (("first_block_cache", "_FBC_LEADER_BLOCK_HOOK"), ("first_block_cache", "_FBC_BLOCK_HOOK")),
            "transformer block",
            "diffusers FirstBlockCache: skip the later blocks while the first block's residual holds still",
        ),
        CacheKind(
            "taylorseer-cache",
            "TaylorSeerCacheConfig",
            (("taylorseer_cache", "_TAYLORSEER_CACHE_HOOK"),),
            "attention",
            "diffusers TaylorSeer: predict attention outputs between full steps with a Taylor series",
        ),
        CacheKind(
            "mag-cache",
            "MagCacheConfig",
            (("mag_cache", "_MAG_CACHE_LEADER_BLOCK_HOOK"), ("mag_cache", "_MAG_CACHE_BLOCK_HOOK")),
            "transformer block",
            "diffusers MagCache: skip whole steps while the accumulated magnitude-ratio error is small",
        ),
        CacheKind(
            "faster-cache",
            "FasterCacheConfig",
            (("faster_cache", "_FASTER_CACHE_BLOCK_HOOK"),),
            "attention",
            "diffusers FasterCache: reuse (extrapolate) self-attention outputs on alternate steps",
            needs_timestep=True,
        ),
        CacheKind(
            "pab-cache",
            "PyramidAttentionBroadcastConfig",
            (("pyramid_attention_broadcast", "_PYRAMID_ATTENTION_BROADCAST_HOOK"),),
            "attention",
            "diffusers Pyramid Attention Broadcast: reuse self-attention outputs on alternate steps",
            needs_timestep=True,
        ),
    )
}

#: Magnitude ratios that diffusers ships, by denoiser class: (constant in diffusers.hooks.mag_cache,
#: what they were calibrated on). Any other denoiser is calibrated with one call of its own.
SHIPPED_MAG_RATIOS: dict[str, tuple[str, str]] = {
    "FluxTransformer2DModel": ("FLUX_MAG_RATIOS", "FLUX.1-dev, 28 steps"),
}

#: What each config is, for the evidence; filled by ``apply`` (weak keys: it never keeps a model alive).
_DESCRIPTIONS: weakref.WeakKeyDictionary[torch.nn.Module, str] = weakref.WeakKeyDictionary()


# --- requirements -----------------------------------------------------------------------------------


@functools.cache
def declared_classes(family_name: str) -> tuple[type, type] | None:
    """(pipeline class, denoiser class) of a family in the installed diffusers, or None.

    Read from the family's declaration, so a plan can be pruned before any model is built; ``apply``
    checks the built model again.
    """
    import diffusers

    family = get_family(family_name)
    pipelines = [getattr(diffusers, name, None) for name in family.pipeline_classes]
    pipeline = next((p for p in pipelines if isinstance(p, type)), None)
    denoiser = getattr(diffusers, family.denoiser_class, None)
    if pipeline is None or not isinstance(denoiser, type):
        return None
    return pipeline, denoiser


def _compile_partner(target: Target) -> str | None:
    from perfsuite.optimizations import TECHNIQUES

    return next(
        (t for t in sorted(target.techniques) if t in TECHNIQUES and TECHNIQUES[t].group == "compile"), None
    )


def _requires(kind: CacheKind) -> Callable[[Target], str | None]:
    def check(target: Target) -> str | None:
        partner = _compile_partner(target)
        if partner:
            return (
                f"diffusers' cache hooks decide every step in Python (torch.compiler.disable), a graph break "
                f"that {partner}'s fullgraph compile refuses"
            )
        declared = declared_classes(target.family)
        if declared is None:
            return None  # a family diffusers does not name: apply asks the built model
        pipeline, denoiser = declared
        if not hasattr(denoiser, "enable_cache"):
            return (
                f"{denoiser.__name__} has no enable_cache: diffusers wires its step caches (CacheMixin) "
                f"into transformer models whose pipelines open a cache_context, and {pipeline.__name__} "
                "does neither"
            )
        if kind.needs_timestep and not hasattr(pipeline, "current_timestep"):
            return f"{pipeline.__name__} exposes no current_timestep, which {kind.config_class} needs"
        return None

    return check


# --- configs --------------------------------------------------------------------------------------


def _timestep_of(pipe: Any) -> Callable[[], Any]:
    """The pipeline's current timestep, read through a weak reference (hooks must not keep it alive)."""
    owner = weakref.ref(pipe)

    def current_timestep() -> Any:
        live = owner()
        if live is None:
            raise RuntimeError("the pipeline this cache belongs to no longer exists")
        return live.current_timestep

    return current_timestep


def _steps(pipe: Any, target: Target) -> int:
    """Denoising steps of one timed call: the call's own, else the pipeline's default."""
    if target.call_arguments is not None:
        steps = target.call_arguments().get("num_inference_steps")
        if steps is not None:
            return int(steps)
    default = inspect.signature(type(pipe).__call__).parameters.get("num_inference_steps")
    if default is None or not isinstance(default.default, int):
        raise Unsupported(f"{type(pipe).__name__} has no num_inference_steps default to size MagCache with")
    return default.default


def _number_list(line: str) -> list[float]:
    """The numbers of a printed Python list such as ``[1.0, 1.02]``; empty for any other line."""
    try:
        value = ast.literal_eval(line.strip())
    except (SyntaxError, ValueError):
        return []
    if isinstance(value, list) and value and all(isinstance(v, int | float) for v in value):
        return [float(v) for v in value]
    return []


def _calibrated_mag_ratios(pipe: Any, denoiser: Any, target: Target, steps: int) -> list[float]:
    """MagCache's own calibration: one call with ``calibrate=True`` prints the ratios of that call."""
    from diffusers import MagCacheConfig

    if target.call_arguments is None:
        raise Unsupported(
            f"{type(denoiser).__name__} has no magnitude ratios shipped with diffusers and the call "
            "arguments to calibrate them are unknown here"
        )
    denoiser.enable_cache(MagCacheConfig(calibrate=True, num_inference_steps=steps))
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            pipe(**target.call_arguments())
    finally:
        denoiser.disable_cache()
    # diffusers prints one list per cache context at the end of the loop, "cond" first; the
    # documented way to read them ("copy the printed ratios").
    lists = [_number_list(line) for line in printed.getvalue().splitlines()]
    found = [numbers for numbers in lists if numbers]
    if not found:
        raise RuntimeError(f"MagCache calibration printed no ratios: {printed.getvalue()[-300:]!r}")
    ratios = found[0]
    if len(ratios) != steps:
        raise RuntimeError(f"MagCache calibration gave {len(ratios)} ratios for {steps} steps")
    return ratios


#: The published FirstBlockCache point: threshold 0.08 on FLUX.1-dev gives 1.40x, so about 2 of
#: every 7 steps skip the blocks after the first (1 / (1 - 2/7) = 1.40).
FBC_PUBLISHED_THRESHOLD = 0.08
FBC_SKIP_SHARE = 2 / 7


def _fbc_config(pipe: Any, denoiser: Any, target: Target) -> tuple[Any, str]:
    """FirstBlockCache at the published operating point, its threshold calibrated on this model.

    The threshold compares the first block's relative change between steps, which depends on the
    weights: trained FLUX.1-dev moves under 8% a step (hence the published 0.08), random weights
    move 20-50%, and at 0.08 they would never skip. One calibration call (threshold 0: every block
    computes) records each step's change; the threshold is the one that skips the published share of
    steps (2 of 7). The evidence keeps the calibrated value and the published one.
    """
    from diffusers import FirstBlockCacheConfig
    from diffusers.hooks.first_block_cache import _FBC_LEADER_BLOCK_HOOK

    if target.call_arguments is None:
        config = FirstBlockCacheConfig(threshold=FBC_PUBLISHED_THRESHOLD)
        return (
            config,
            f"FirstBlockCacheConfig(threshold={FBC_PUBLISHED_THRESHOLD}) (published, not calibrated)",
        )
    denoiser.enable_cache(FirstBlockCacheConfig(threshold=0.0))
    changes: list[float] = []
    try:
        (head,) = cache_units(denoiser, (_FBC_LEADER_BLOCK_HOOK,))
        hook: Any = cast(Any, head)._diffusers_hook.get_hook(_FBC_LEADER_BLOCK_HOOK)
        decide = hook._should_compute_remaining_blocks

        def recording(residual: torch.Tensor) -> bool:
            # The change FBCHeadBlockHook compares with its threshold: absmean of the difference of
            # the first block's residuals over the absmean of the previous one.
            previous = hook.state_manager.get_state().head_block_residual
            if previous is not None:
                changes.append(float((residual - previous).abs().mean() / previous.abs().mean()))
            return bool(decide(residual))

        hook._should_compute_remaining_blocks = recording
        pipe(**target.call_arguments())
    finally:
        denoiser.disable_cache()
    if not changes:
        raise RuntimeError("FirstBlockCache calibration saw no step after the first")
    ordered = sorted(changes)
    threshold = ordered[max(1, round(FBC_SKIP_SHARE * len(ordered))) - 1]
    described = (
        f"FirstBlockCacheConfig(threshold={threshold:.4f}), calibrated by one call to skip about 2 of 7 "
        f"steps, the published point (threshold {FBC_PUBLISHED_THRESHOLD} on FLUX.1-dev: 1.40x, LPIPS "
        f"~0.08); this model's first block changed {ordered[0]:.3f}-{ordered[-1]:.3f} a step "
        f"(median {ordered[len(ordered) // 2]:.3f})"
    )
    return FirstBlockCacheConfig(threshold=threshold), described


def _mag_config(pipe: Any, denoiser: Any, target: Target) -> tuple[Any, str]:
    from diffusers import MagCacheConfig
    from diffusers.hooks import mag_cache

    steps = _steps(pipe, target)
    shipped = SHIPPED_MAG_RATIOS.get(type(denoiser).__name__)
    ratios_value = getattr(mag_cache, shipped[0], None) if shipped else None
    if shipped and ratios_value is not None:
        source = f"diffusers' {shipped[0]} ({shipped[1]}), interpolated to {steps} steps"
        ratios: Any = ratios_value.clone()
    else:
        ratios = _calibrated_mag_ratios(pipe, denoiser, target, steps)
        source = f"calibrated by one call of this pipeline at {steps} steps (MagCacheConfig(calibrate=True))"
    config = MagCacheConfig(threshold=0.06, max_skip_steps=3, retention_ratio=0.2, num_inference_steps=steps,
                            mag_ratios=ratios)  # fmt: skip
    shown = ", ".join(f"{float(r):.4f}" for r in cast(Any, config).mag_ratios)
    described = (
        f"MagCacheConfig(threshold=0.06, max_skip_steps=3, retention_ratio=0.2, num_inference_steps={steps}) "
        f"(diffusers' defaults); mag_ratios {source}: [{shown}]"
    )
    return config, described


#: The attention modules TaylorSeer predicts: attn, attn1, attn2 ... of each repeated transformer block.
TAYLORSEER_ATTENTION = r"(?:transformer_blocks|single_transformer_blocks|blocks)\.\d+\.attn\d*"


def make_config(name: str, pipe: Any, denoiser: Any, target: Target) -> tuple[Any, str]:
    """The diffusers config of cache ``name`` for this pipeline, and a description for the evidence."""
    import diffusers

    if name == "mag-cache":
        return _mag_config(pipe, denoiser, target)
    if name == "first-block-cache":
        return _fbc_config(pipe, denoiser, target)
    if name == "taylorseer-cache":
        # diffusers' default patterns ("^blocks.*attn", fullmatched) miss numbered attention modules
        # such as Wan's blocks.0.attn1; this one names the attention of every repeated block.
        config: Any = diffusers.TaylorSeerCacheConfig(
            cache_interval=5, max_order=1, disable_cache_before_step=3, taylor_factors_dtype=torch.float32,
            cache_identifiers=[TAYLORSEER_ATTENTION],
        )  # fmt: skip
        return config, (
            "TaylorSeerCacheConfig(cache_interval=5, max_order=1, disable_cache_before_step=3, "
            f"taylor_factors_dtype=float32) (diffusers' FLUX.1-dev example), on {TAYLORSEER_ATTENTION!r}"
        )
    if name == "faster-cache":
        # The pipelines of the cache families call the denoiser once per guidance branch (cache
        # contexts "cond"/"uncond"), never on a batch with the unconditional half concatenated, so
        # FasterCache's CFG-batch skip has nothing to act on: is_guidance_distilled=True says so, and
        # only its attention reuse runs.
        config = diffusers.FasterCacheConfig(
            spatial_attention_block_skip_range=2,
            spatial_attention_timestep_skip_range=(-1, 681),
            current_timestep_callback=_timestep_of(pipe),
            attention_weight_callback=lambda _: 0.3,
            is_guidance_distilled=True,
        )
        return config, (
            "FasterCacheConfig(spatial_attention_block_skip_range=2, spatial_attention_timestep_skip_range="
            "(-1, 681), attention_weight 0.3, is_guidance_distilled=True) (diffusers' documented example; "
            "no batched CFG branch to skip)"
        )
    if name == "pab-cache":
        config = diffusers.PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=2,
            spatial_attention_timestep_skip_range=(100, 800),
            current_timestep_callback=_timestep_of(pipe),
        )
        return config, (
            "PyramidAttentionBroadcastConfig(spatial_attention_block_skip_range=2, "
            "spatial_attention_timestep_skip_range=(100, 800)) (diffusers' documented example)"
        )
    raise KeyError(f"unknown cache {name!r}; known caches: {', '.join(CACHES)}")


def describe_config(denoiser: torch.nn.Module) -> str:
    """How the cache on ``denoiser`` was configured (empty when perfsuite did not enable it)."""
    return _DESCRIPTIONS.get(denoiser, "")


# --- apply, verify, count -----------------------------------------------------------------------


def _apply(kind: CacheKind) -> Callable[[Any, Target], None]:
    def apply(pipe: Any, target: Target) -> None:
        denoiser = get_family(target.family).denoiser_of(pipe)
        if not hasattr(denoiser, "enable_cache"):
            raise Unsupported(
                f"{type(denoiser).__name__} has no enable_cache (not a diffusers CacheMixin model)"
            )
        if kind.needs_timestep and not hasattr(type(pipe), "current_timestep"):
            raise Unsupported(
                f"{type(pipe).__name__} exposes no current_timestep, which {kind.config_class} needs"
            )
        config, described = make_config(kind.name, pipe, denoiser, target)
        denoiser.enable_cache(config)
        _DESCRIPTIONS[denoiser] = described

    return apply


def cache_units(denoiser: torch.nn.Module, hook_names: tuple[str, ...]) -> list[torch.nn.Module]:
    """The sub-modules of ``denoiser`` that carry one of the diffusers hooks ``hook_names``."""
    units = []
    for module in denoiser.modules():
        registry = getattr(module, "_diffusers_hook", None)
        if module is not denoiser and registry is not None and any(registry.get_hook(h) for h in hook_names):
            units.append(module)
    return units


def _verify(kind: CacheKind) -> Callable[[Any, Target], list[str]]:
    def verify(pipe: Any, target: Target) -> list[str]:
        import diffusers

        denoiser = get_family(target.family).denoiser_of(pipe)
        config = getattr(denoiser, "_cache_config", None)
        expected = getattr(diffusers, kind.config_class)
        if not isinstance(config, expected):
            raise fail(kind.name, f"{type(denoiser).__name__} holds cache config {type(config).__name__}, "
                                  f"expected {kind.config_class}")  # fmt: skip
        names = kind.hook_names()
        units = cache_units(denoiser, names)
        if not units:
            raise fail(
                kind.name, f"no {kind.unit} of {type(denoiser).__name__} carries the {'/'.join(names)} hook"
            )
        return [
            f"{kind.config_class} hooks ({'/'.join(names)}) on {len(units)} {kind.unit} modules of "
            f"{type(denoiser).__name__}; config: {describe_config(denoiser) or config!r}"
        ]

    return verify


@contextlib.contextmanager
def count_unit_computations(
    denoiser: torch.nn.Module, units: list[torch.nn.Module]
) -> Iterator[dict[str, int]]:
    """Count, per denoiser call, how many of ``units`` computed.

    A forward pre-hook on every sub-module of a unit marks the unit as computed; none of them runs
    when a cache returns a reused output instead of calling the unit's forward. Yields
    ``{"units", "denoiser_calls", "computed"}``, updated as calls run; the hooks go on exit.
    """
    counts = {"units": len(units), "denoiser_calls": 0, "computed": 0}
    ran = [False] * len(units)
    handles: list[torch.utils.hooks.RemovableHandle] = []

    def mark(index: int) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Any) -> None:
            ran[index] = True

        return hook

    def start(module: torch.nn.Module, args: Any) -> None:
        ran[:] = [False] * len(units)

    def finish(module: torch.nn.Module, args: Any, output: Any) -> None:
        counts["denoiser_calls"] += 1
        counts["computed"] += sum(ran)

    try:
        for index, unit in enumerate(units):
            children = [m for m in unit.modules() if m is not unit]
            if not children:
                raise ValueError(f"{type(unit).__name__} has no sub-module to tell whether it computed")
            handles.extend(child.register_forward_pre_hook(mark(index)) for child in children)
        handles.append(denoiser.register_forward_pre_hook(start))
        handles.append(denoiser.register_forward_hook(finish))
        yield counts
    finally:
        for handle in handles:
            handle.remove()


def _probe(kind: CacheKind) -> Callable[[Any, Target], contextlib.AbstractContextManager[Mapping[str, Any]]]:
    def probe(pipe: Any, target: Target) -> contextlib.AbstractContextManager[Mapping[str, Any]]:
        denoiser = get_family(target.family).denoiser_of(pipe)
        return count_unit_computations(denoiser, cache_units(denoiser, kind.hook_names()))

    return probe


def skipped_computations(kind: CacheKind, counts: Mapping[str, Any] | None) -> list[str]:
    """Evidence that the counted call skipped some units; raises when it skipped none."""
    if not counts:
        raise fail(kind.name, "the profiled call recorded no count of computations")
    total = counts["units"] * counts["denoiser_calls"]
    if counts["denoiser_calls"] == 0:
        raise fail(kind.name, "the denoiser did not run in the profiled call")
    skipped = total - counts["computed"]
    shape = f"{counts['units']} {kind.unit} modules x {counts['denoiser_calls']} denoiser calls"
    if skipped <= 0:
        raise fail(
            kind.name,
            f"the hooks are installed but the profiled call skipped none of its {total} {kind.unit} "
            f"computations ({shape}): the cache never reused an output",
        )
    return [f"skipped {skipped} of {total} {kind.unit} computations in the profiled call ({shape})"]


def _verify_trace(kind: CacheKind) -> Callable[[RunTrace, Target], list[str]]:
    def verify(trace: RunTrace, target: Target) -> list[str]:
        return skipped_computations(kind, trace.probes.get(kind.name))

    return verify


TECHNIQUES = tuple(
    Technique(
        name=kind.name,
        group="cache",
        summary=kind.summary,
        rank=60,
        requires=_requires(kind),
        apply=_apply(kind),
        verify=_verify(kind),
        probe=_probe(kind),
        verify_trace=_verify_trace(kind),
    )
    for kind in CACHES.values()
)
