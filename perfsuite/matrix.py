"""Presets -> ordered combos with readable, stable ids; incompatible combos pruned with a reason.

A combo id is its technique tokens joined by ``+`` in the fixed group order of
:data:`perfsuite.optimizations.GROUPS`, dtype first: ``bf16+sdpa-flash+channels-last+compile``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from perfsuite.optimizations import BUILTIN_GROUPS, DTYPES, GROUPS, TECHNIQUES, Target, get_technique

if TYPE_CHECKING:
    import torch

    from perfsuite.hardware import Capabilities

__all__ = [
    "CROSSED_GROUPS",
    "FLUX_FAST_UNAVAILABLE",
    "PRESETS",
    "REFERENCE",
    "Combo",
    "Plan",
    "Pruned",
    "base_dtype",
    "build_plan",
    "parse_combo",
]

#: The in-run reference every speedup and image is compared with: fp32, eager, no technique.
REFERENCE = "fp32"

PRESETS: dict[str, str] = {
    "ladder": "the guide's cumulative path: fp32 -> bf16 -> +SDPA -> +compile -> +fused QKV -> +int8",
    "single": "each technique alone on the device's base dtype (fp32 on CPU, bf16 on CUDA)",
    "pairs": "every pair of techniques (a non-base dtype counts as one) on the base dtype",
    "full": "every combination of one-or-none technique per group of the guide and fp8, plus each step "
    "cache and memory technique alone (for GPU runners; hours on CPU)",
    "flux-fast": "huggingface/flux-fast's cumulative ladder: bf16 -> +compile max-autotune -> +fused QKV -> "
    "+channels_last -> +FA3 fp8 -> +fp8-dq -> +inductor flags -> +export/AOTInductor/CUDA graphs; "
    "steps that cannot run here are pruned with their reason and the ladder goes on without them; on "
    "a CPU the default-mode compile stands in for max-autotune",
    "caches": "each diffusers step cache alone on the base dtype (transformer families)",
}

#: Groups that ``full`` crosses with each other. The step caches and the memory techniques are added
#: one at a time on the base dtype instead: crossing them too would multiply the combos by 18.
#: Groups that registered techniques add (after the built-in ones) are added alone too.
CROSSED_GROUPS: tuple[str, ...] = BUILTIN_GROUPS[: BUILTIN_GROUPS.index("quant") + 1]

#: flux-fast steps that perfsuite has no technique for, with the reason each is pruned.
FLUX_FAST_UNAVAILABLE: dict[str, str] = {
    "fa3-fp8": (
        "FlashAttention-3 with float8 q/k/v is not a perfsuite technique: it needs flash-attn 3's "
        "flash_attn_interface kernels (built for Hopper, sm90; no wheel on PyPI) and flux-fast's own "
        "attention processor"
    ),
    "export-aoti-cudagraphs": (
        "torch.export + AOTInductor + CUDA graphs is not a perfsuite technique: the exported package "
        "replaces the transformer's forward with compiled code fixed to one input shape, which perfsuite "
        "cannot prove active (no module, graph or hook to inspect)"
    ),
}


@dataclass(frozen=True, order=True)
class Combo:
    """An ordered set of techniques, exactly one of them a dtype."""

    techniques: tuple[str, ...]

    @property
    def id(self) -> str:
        return "+".join(self.techniques)

    @property
    def dtype(self) -> str:
        return self.techniques[0]

    @property
    def is_reference(self) -> bool:
        return self.techniques == (REFERENCE,)

    @property
    def compiles(self) -> bool:
        return any(get_technique(t).group == "compile" for t in self.techniques)

    def __str__(self) -> str:
        return self.id


def _group_rank(name: str) -> int:
    return GROUPS.index(get_technique(name).group)


def make_combo(names: Iterable[str]) -> Combo:
    """A combo from technique names in any order; raises ValueError on two of one group or no dtype."""
    names = list(dict.fromkeys(names))
    for name in names:
        get_technique(name)
    by_group: dict[str, list[str]] = {}
    for name in names:
        by_group.setdefault(get_technique(name).group, []).append(name)
    clashes = {g: n for g, n in by_group.items() if len(n) > 1}
    if clashes:
        detail = "; ".join(f"{g}: {' and '.join(n)}" for g, n in clashes.items())
        raise ValueError(f"a combo holds at most one technique per group ({detail})")
    if "dtype" not in by_group:
        raise ValueError(f"combo {'+'.join(names)!r} has no dtype; start it with one of {', '.join(DTYPES)}")
    return Combo(tuple(sorted(names, key=_group_rank)))


def parse_combo(combo_id: str) -> Combo:
    """Parse ``bf16+sdpa-flash`` into a :class:`Combo`, with a clear error for unknown tokens."""
    tokens = [t.strip() for t in combo_id.split("+") if t.strip()]
    unknown = [t for t in tokens if t not in TECHNIQUES]
    if unknown or not tokens:
        raise ValueError(
            f"cannot parse combo {combo_id!r}: unknown token(s) {unknown}; known: {', '.join(TECHNIQUES)}"
        )
    return make_combo(tokens)


@dataclass(frozen=True)
class Pruned:
    combo: Combo
    reason: str


@dataclass(frozen=True)
class Plan:
    """What a preset runs on one device and model family, and what it pruned."""

    preset: str
    cases: tuple[Combo, ...]
    pruned: tuple[Pruned, ...] = field(default=())

    @property
    def ids(self) -> list[str]:
        return [c.id for c in self.cases]


def base_dtype(capabilities: Capabilities) -> str:
    """bf16 where the device runs it fast (CUDA), else fp32 (bf16 is emulated slowly on most CPUs)."""
    return "bf16" if capabilities.is_cuda and capabilities.supports_bf16 else "fp32"


def _target(combo: Combo, device: torch.device, capabilities: Capabilities, family: str) -> Target:
    return Target(device, capabilities, family, combo.dtype, frozenset(combo.techniques))


def prune_reason(combo: Combo, device: torch.device, capabilities: Capabilities, family: str) -> str | None:
    """Why ``combo`` cannot run here (an unmet requirement or a missing partner), or ``None``."""
    target = _target(combo, device, capabilities, family)
    groups = {get_technique(t).group for t in combo.techniques}
    for name in combo.techniques:
        technique = get_technique(name)
        reason = technique.requires(target)
        if reason:
            return f"{name}: {reason}"
        missing = [g for g in technique.needs_groups if g not in groups]
        if missing:
            return f"{name} needs a technique of group {missing[0]!r} in the same combo"
    return None


def _ladder(device: torch.device, capabilities: Capabilities, family: str) -> list[list[str]]:
    """The guide's path. Optional helpers (TF32, channels_last, sigmas on CPU, inductor flags) join a
    step only where they can run, so a CPU ladder is the same path without the GPU-only extras."""

    def usable(name: str, dtype: str) -> bool:
        return get_technique(name).requires(Target(device, capabilities, family, dtype)) is None

    compile_extras = [t for t in ("sigmas-cpu", "channels-last", "inductor-flags") if usable(t, "bf16")]
    steps = [["fp32"], ["fp32", "tf32"], ["bf16"], ["bf16", "sdpa-flash"]]
    steps.append([*steps[-1], "compile", *compile_extras])
    steps.append([*steps[-1], "fuse-qkv"])
    steps.append([*steps[-1], "int8-dq"])
    return steps


def _flux_fast(device: torch.device, capabilities: Capabilities, family: str) -> list[list[str] | Pruned]:
    """flux-fast's ladder, in its order. A step that cannot run here is pruned and not carried on;
    the later steps build on the ones that run. Steps with no technique are pruned with the reason."""

    def runs(names: list[str]) -> bool:
        return prune_reason(make_combo(names), device, capabilities, family) is None

    compile_step = "compile-max-autotune" if runs(["bf16", "compile-max-autotune"]) else "compile"
    current = ["bf16"]
    steps: list[list[str] | Pruned] = [list(current)]
    for name in (compile_step, "fuse-qkv", "channels-last", "fa3-fp8", "fp8-dq", "inductor-flags",
                 "export-aoti-cudagraphs"):  # fmt: skip
        if name in FLUX_FAST_UNAVAILABLE:
            steps.append(Pruned(Combo((*make_combo(current).techniques, name)), FLUX_FAST_UNAVAILABLE[name]))
            continue
        steps.append([*current, name])
        if runs([*current, name]):
            current = [*current, name]
    return steps


def _caches(base: str) -> list[list[str]]:
    return [[base]] + [[base, name] for name, t in TECHNIQUES.items() if t.group == "cache"]


def _single(base: str) -> list[list[str]]:
    steps = [[base]] + [[d] for d in DTYPES if d != base]
    for name, technique in TECHNIQUES.items():
        if technique.group == "dtype":
            continue
        partner = ["compile"] if "compile" in technique.needs_groups else []
        steps.append([base, *partner, name])
    return steps


def _pairs(base: str) -> list[list[str]]:
    features = [[d] for d in DTYPES if d != base] + [[n] for n, t in TECHNIQUES.items() if t.group != "dtype"]
    steps = []
    for a, b in itertools.combinations(features, 2):
        names = a + b
        if a[0] in DTYPES:
            steps.append(names)
        else:
            steps.append([base, *names])
    return steps


def _full(base: str) -> list[list[str]]:
    options = []
    for group in CROSSED_GROUPS:
        members = [n for n, t in TECHNIQUES.items() if t.group == group]
        options.append(members if group == "dtype" else [None, *members])
    crossed = [[n for n in choice if n] for choice in itertools.product(*options)]
    alone = [[base, n] for n, t in TECHNIQUES.items() if t.group not in CROSSED_GROUPS]
    return crossed + alone


def build_plan(preset: str, device: torch.device, capabilities: Capabilities, family: str) -> Plan:
    """The ordered, de-duplicated combos of ``preset`` for one device and model family."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    base = base_dtype(capabilities)
    plans: dict[str, Callable[[], list[list[str] | Pruned]]] = {
        "ladder": lambda: list(_ladder(device, capabilities, family)),
        "single": lambda: list(_single(base)),
        "pairs": lambda: list(_pairs(base)),
        "full": lambda: list(_full(base)),
        "flux-fast": lambda: _flux_fast(device, capabilities, family),
        "caches": lambda: list(_caches(base)),
    }
    raw = plans[preset]()
    cases: list[Combo] = []
    pruned: list[Pruned] = []
    seen: set[Combo] = set()
    for names in raw:
        if isinstance(names, Pruned):
            pruned.append(names)
            continue
        try:
            combo = make_combo(names)
        except ValueError as exc:
            pruned.append(Pruned(Combo(tuple(names)), str(exc)))
            continue
        if combo in seen:
            continue
        seen.add(combo)
        reason = prune_reason(combo, device, capabilities, family)
        if reason:
            pruned.append(Pruned(combo, reason))
        else:
            cases.append(combo)
    return Plan(preset, tuple(cases), tuple(pruned))
