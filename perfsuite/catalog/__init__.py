"""The model catalog: a name -> a :class:`ModelSpec` that builds the pipeline on a device and dtype.

Named models live in :data:`MODELS`, a :class:`~perfsuite.registry.Registry` filled from the
``perfsuite.models`` entry-point group: perfsuite's own (listed in :mod:`perfsuite.catalog.builtin`)
come through its entry point there like any other package's. A pytest session adds the models of
``pytest_perfsuite_models`` hooks and of ``--perf-model NAME=PATH``; code calls :func:`register_model`.

perfsuite's own names:

* ``tiny-sd`` / ``tiny-sdxl``: tiny offline pipelines with seeded random weights (CPU-friendly);
* ``sd15`` / ``sdxl``: the real Stable Diffusion 1.5 / SDXL base 1.0 architectures, random weights
  (for GPUs; latency does not depend on weight values).

Any other name is an existing directory holding a saved diffusers pipeline (filed in the baselines
under its identity, see :mod:`perfsuite.catalog.identity`), or a hub id (``owner/name``) already in
the local Hugging Face cache. perfsuite never downloads.

Importing this package is cheap: torch, diffusers and transformers are imported by the builders.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from perfsuite.registry import Registered, Registry, caller_source

from .base import FAMILIES, ModelSpec, UnknownModelError
from .families import UnknownFamilyError, get_family
from .identity import pipeline_identity
from .pretrained import ModelNotCachedError, UnsupportedPipelineError, local_model, pretrained_spec

__all__ = [
    "DEFAULT_MODEL",
    "FAMILIES",
    "MODELS",
    "ModelNotCachedError",
    "ModelSpec",
    "UnknownModelError",
    "UnsupportedPipelineError",
    "available_models",
    "get_model",
    "local_model",
    "model_entry",
    "model_key",
    "register_model",
]

#: The model used when none is asked for: small enough for any CPU.
DEFAULT_MODEL = "tiny-sd"


def _check_model(spec: ModelSpec) -> None:
    try:
        get_family(spec.family)
    except UnknownFamilyError as exc:
        raise ValueError(str(exc)) from None
    if not callable(spec.build):
        raise ValueError("build is not callable; it must be build(device, dtype) -> pipeline")


#: Every named model with its source. perfsuite's own come from its ``perfsuite.models`` entry points.
MODELS: Registry[ModelSpec] = Registry("model", "perfsuite.models", ModelSpec, _check_model)


def register_model(spec: ModelSpec, source: str | None = None) -> ModelSpec:
    """Add ``spec`` under its name; a name that exists already is an error naming both sources."""
    return MODELS.register(spec, source or f"register_model() at {caller_source()}")


def available_models() -> tuple[str, ...]:
    """Every registered model name (local directories and cached hub ids are accepted too)."""
    return MODELS.names()


def model_entry(name: str) -> Registered[ModelSpec] | None:
    """The registry entry of ``name`` (its spec and source), or ``None`` for an unregistered name."""
    return MODELS.lookup(name)


def get_model(name: str) -> ModelSpec:
    """The spec of ``name``: a registered name, an existing pipeline directory, or a cached hub id.

    A registered name wins over a directory of the same name. Raises :class:`UnknownModelError` for
    anything else; its message lists the registered names (and the closest one, for a likely typo).
    :class:`ModelNotCachedError` says how to fetch a hub id that is not cached;
    :class:`UnsupportedPipelineError` names the pipeline classes that are supported.
    """
    if not name.strip():
        raise UnknownModelError(f"empty model name; catalog models: {', '.join(available_models())}")
    entry = MODELS.lookup(name)
    if entry is not None:
        return entry.item
    try:
        return pretrained_spec(name, catalog_names=available_models())
    except (ModelNotCachedError, UnsupportedPipelineError):
        raise
    except UnknownModelError as err:
        close = difflib.get_close_matches(name, available_models(), n=1)
        if not close:
            raise
        raise UnknownModelError(f"{err}; did you mean {close[0]!r}?") from None


def model_key(name: str) -> str:
    """The key the baselines of ``name`` are filed under, without building anything: a registered
    model's key, a saved pipeline directory's identity, else the name itself (a hub id)."""
    entry = MODELS.lookup(name)
    if entry is not None:
        return entry.item.key
    folder = Path(name).expanduser()
    if (folder / "model_index.json").is_file():
        try:
            return pipeline_identity(folder).key
        except ValueError:
            return name
    return name
