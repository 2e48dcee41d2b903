"""The registry of inference optimizations: one entry per technique of the accelerate-inference guide.

Each :class:`Technique` says what it needs (``requires`` returns a skip reason or ``None``), how to
switch it on (``apply`` changes the pipeline in place, ``context`` wraps every call for
process-wide settings and restores them), and how to prove it is on: ``verify`` inspects the
pipeline after it was applied, and ``verify_trace`` inspects what a profiled call after warm-up
really ran. A technique that cannot prove itself fails the case instead of being timed as if it
had worked.
"""

from __future__ import annotations

from perfsuite.optimizations import (
    attention,
    caching,
    compilation,
    layout,
    memory,
    precision,
    quantization,
    scheduler,
)
from perfsuite.optimizations.base import (
    DTYPES,
    NotActiveError,
    RunTrace,
    Target,
    Technique,
    Unsupported,
    torch_dtype,
)
from perfsuite.optimizations.compilation import INDUCTOR_FLAGS, INDUCTOR_INT8_FLAGS, inductor_flags_for
from perfsuite.optimizations.quantization import dynamic_quant_filter, is_fp8_weight, is_int8_weight

__all__ = [
    "DTYPES",
    "GROUPS",
    "INDUCTOR_FLAGS",
    "INDUCTOR_INT8_FLAGS",
    "TECHNIQUES",
    "NotActiveError",
    "RunTrace",
    "Target",
    "Technique",
    "Unsupported",
    "dynamic_quant_filter",
    "get_technique",
    "inductor_flags_for",
    "is_fp8_weight",
    "is_int8_weight",
    "torch_dtype",
]

TECHNIQUES: dict[str, Technique] = {
    t.name: t
    for module in (precision, attention, layout, compilation, quantization, scheduler, caching, memory)
    for t in module.TECHNIQUES
}

#: Technique groups in the order their tokens appear in a combo id. A combo holds at most one
#: technique of each group. The step caches (``cache``: diffusers holds one at a time) and the memory
#: techniques (``memory``: float8 weight storage or group offloading) come last: they act on the
#: model as the groups before them left it, and read as "this pipeline, then cached / offloaded".
GROUPS: tuple[str, ...] = (
    "dtype",
    "tf32",
    "sigmas",
    "sdpa",
    "layout",
    "compile",
    "inductor",
    "fuse",
    "quant",
    "cache",
    "memory",
)


def get_technique(name: str) -> Technique:
    """The registry entry of ``name``; an unknown name lists the known ones."""
    try:
        return TECHNIQUES[name]
    except KeyError:
        raise KeyError(f"unknown technique {name!r}; known techniques: {', '.join(TECHNIQUES)}") from None
