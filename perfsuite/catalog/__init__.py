"""The model catalog: a name -> a :class:`ModelSpec` that builds the pipeline on a device and dtype.

Catalog names:

* ``tiny-sd`` / ``tiny-sdxl``: tiny offline pipelines with seeded random weights (CPU-friendly);
* ``tiny-flux`` / ``tiny-sd3`` / ``tiny-wan``: tiny offline Flux, SD3.5 and Wan2.1 (text-to-video)
  pipelines with seeded random weights (CPU-friendly);
* ``sd15`` / ``sdxl``: the real Stable Diffusion 1.5 / SDXL base 1.0 architectures, random weights
  (for GPUs; latency does not depend on weight values);
* ``flux`` / ``sd3`` / ``wan``: the real FLUX.1-dev, SD3.5 Medium and Wan2.1 T2V 1.3B architectures,
  random weights (for GPUs).

Any other name is an existing directory holding a saved diffusers pipeline, or a hub id (``owner/name``)
already in the local Hugging Face cache. perfsuite never downloads.

Importing this package is cheap: torch, diffusers and transformers are imported by the builders.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from .base import FAMILIES, ModelSpec, UnknownModelError
from .fullsize import sd15_spec, sdxl_spec
from .fullsize_transformers import flux_spec, sd3_spec, wan_spec
from .pretrained import ModelNotCachedError, UnsupportedPipelineError, pretrained_spec
from .tiny import tiny_sd_spec, tiny_sdxl_spec
from .tiny_transformers import tiny_flux_spec, tiny_sd3_spec, tiny_wan_spec

__all__ = [
    "DEFAULT_MODEL",
    "FAMILIES",
    "ModelNotCachedError",
    "ModelSpec",
    "UnknownModelError",
    "UnsupportedPipelineError",
    "available_models",
    "get_model",
]

#: The model used when none is asked for: small enough for any CPU.
DEFAULT_MODEL = "tiny-sd"

_CATALOG: dict[str, Callable[[], ModelSpec]] = {
    "tiny-sd": tiny_sd_spec,
    "tiny-sdxl": tiny_sdxl_spec,
    "tiny-flux": tiny_flux_spec,
    "tiny-sd3": tiny_sd3_spec,
    "tiny-wan": tiny_wan_spec,
    "sd15": sd15_spec,
    "sdxl": sdxl_spec,
    "flux": flux_spec,
    "sd3": sd3_spec,
    "wan": wan_spec,
}


def available_models() -> tuple[str, ...]:
    """The catalog's model names (local directories and cached hub ids are accepted too)."""
    return tuple(_CATALOG)


def get_model(name: str) -> ModelSpec:
    """The spec of ``name``: a catalog name, an existing pipeline directory, or a cached hub id.

    Raises :class:`UnknownModelError` for anything else; its message lists the catalog names (and
    the closest one, for a likely typo). :class:`ModelNotCachedError` says how to fetch a hub id that
    is not cached; :class:`UnsupportedPipelineError` names the pipeline classes that are supported.
    """
    if not name.strip():
        raise UnknownModelError(f"empty model name; catalog models: {', '.join(available_models())}")
    factory = _CATALOG.get(name)
    if factory is not None:
        return factory()
    try:
        return pretrained_spec(name, catalog_names=available_models())
    except (ModelNotCachedError, UnsupportedPipelineError):
        raise
    except UnknownModelError as err:
        close = difflib.get_close_matches(name, available_models(), n=1)
        if not close:
            raise
        raise UnknownModelError(f"{err}; did you mean {close[0]!r}?") from None
