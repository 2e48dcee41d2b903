"""perfsuite's own models, in the order they are listed.

perfsuite registers them through its ``perfsuite.models`` entry point, the same way any package
registers its models; the entry point names :func:`builtin_models`. A new built-in model is one
line in :data:`BUILTIN_MODELS`.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import ModelSpec
from .fullsize import sd15_spec, sdxl_spec
from .tiny import tiny_sd_spec, tiny_sdxl_spec

__all__ = ["BUILTIN_MODELS", "builtin_models"]

#: Factories of perfsuite's own models (each returns a cheap spec; nothing is built).
BUILTIN_MODELS: tuple[Callable[[], ModelSpec], ...] = (
    tiny_sd_spec,
    tiny_sdxl_spec,
    sd15_spec,
    sdxl_spec,
)


def builtin_models() -> tuple[ModelSpec, ...]:
    """The specs of perfsuite's own models (what its ``perfsuite.models`` entry point gives)."""
    return tuple(factory() for factory in BUILTIN_MODELS)
