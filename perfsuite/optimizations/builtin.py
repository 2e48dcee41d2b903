"""perfsuite's own techniques and technique groups.

perfsuite registers its techniques through its ``perfsuite.techniques`` entry point, the same way
any package registers its own; the entry point names :func:`builtin_techniques`. A new technique
module is one line in :data:`BUILTIN_MODULES` (its ``TECHNIQUES`` tuple lists its techniques), and a
new group is one line in :data:`BUILTIN_GROUPS`, at its place in the combo id.
"""

from __future__ import annotations

from types import ModuleType

from perfsuite.optimizations import attention, compilation, layout, precision, quantization, scheduler
from perfsuite.optimizations.base import Technique

__all__ = ["BUILTIN_GROUPS", "BUILTIN_MODULES", "builtin_techniques"]

#: perfsuite's own technique groups in the order their tokens appear in a combo id. A combo holds
#: at most one technique of each group.
BUILTIN_GROUPS: tuple[str, ...] = (
    "dtype",
    "tf32",
    "sigmas",
    "sdpa",
    "layout",
    "compile",
    "inductor",
    "fuse",
    "quant",
)

#: The modules of perfsuite's own techniques, in the order the techniques are listed.
BUILTIN_MODULES: tuple[ModuleType, ...] = (
    precision,
    attention,
    layout,
    compilation,
    quantization,
    scheduler,
)


def builtin_techniques() -> tuple[Technique, ...]:
    """Every technique of :data:`BUILTIN_MODULES` (what perfsuite's entry point gives)."""
    return tuple(technique for module in BUILTIN_MODULES for technique in module.TECHNIQUES)
