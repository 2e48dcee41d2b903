"""Pretrained pipelines from a local directory or the local Hugging Face cache; never downloads.

A name that is not in the catalog is either an existing directory holding a saved diffusers pipeline
(``model_index.json`` + safetensors weights) or a hub id (``owner/name``) already present in the
local cache. The family is read from the pipeline class in ``model_index.json``; only the text-to-image
Stable Diffusion and SDXL pipelines are supported. Loading always uses ``local_files_only=True`` and
``use_safetensors=True``, and never ``trust_remote_code``.

Baselines of a directory given by its path are filed under its identity (pipeline class and config
hash, :mod:`perfsuite.catalog.identity`); :func:`local_model` gives a directory a name instead.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import ModelSpec, UnknownModelError
from .families import FAMILIES, get_family
from .identity import pipeline_identity

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

__all__ = [
    "ModelNotCachedError",
    "PretrainedSource",
    "UnsupportedPipelineError",
    "build_pretrained",
    "hub_cache_dir",
    "local_model",
    "looks_like_hub_id",
    "pipeline_families",
    "pretrained_spec",
    "resolve_pretrained",
]


def pipeline_families() -> dict[str, str]:
    """Pipeline classes (``_class_name`` in ``model_index.json``) perfsuite can time, and their family."""
    return {cls: family.name for family in FAMILIES.values() for cls in family.pipeline_classes}


_HUB_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_HUB_ID = re.compile(f"{_HUB_NAME}/{_HUB_NAME}")


class ModelNotCachedError(UnknownModelError):
    """A hub id that is not in the local Hugging Face cache (perfsuite never downloads)."""


class UnsupportedPipelineError(UnknownModelError):
    """A saved pipeline whose class is not one of :func:`pipeline_families`."""


@dataclass(frozen=True)
class PretrainedSource:
    """Where a pretrained pipeline lives on disk and what it is."""

    name: str
    path: Path
    kind: str  # "local" or "hub"
    class_name: str
    family: str


def looks_like_hub_id(name: str) -> bool:
    """Whether ``name`` has the ``owner/name`` form of a Hugging Face hub repository id."""
    return bool(_HUB_ID.fullmatch(name)) and "--" not in name and ".." not in name


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, from the environment as it is *now*.

    Precedence as in ``huggingface_hub``: ``HF_HUB_CACHE``, then ``HF_HOME/hub``, then the library's
    default. Reading the environment at call time (not at import) lets tests and callers redirect it.
    """
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _catalog_hint(catalog_names: tuple[str, ...]) -> str:
    return f"catalog models: {', '.join(catalog_names)}" if catalog_names else "no catalog names given"


def _read_pipeline_class(name: str, path: Path) -> tuple[str, str]:
    """``(class_name, family)`` from ``path/model_index.json``, or a clear error."""
    index_path = path / "model_index.json"
    if not index_path.is_file():
        raise UnknownModelError(
            f"model {name!r}: {path} has no model_index.json, so it is not a saved diffusers pipeline; "
            "save one with `pipe.save_pretrained(path, safe_serialization=True)` or give another path"
        )
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UnknownModelError(f"model {name!r}: {index_path} is not valid JSON ({err})") from err
    class_name = str(index.get("_class_name", "")) if isinstance(index, dict) else ""
    family = pipeline_families().get(class_name)
    if family is None:
        supported = ", ".join(f"{cls} ({fam})" for cls, fam in pipeline_families().items())
        raise UnsupportedPipelineError(
            f"model {name!r}: pipeline class {class_name or '<missing _class_name>'!r} in {index_path} is "
            f"not supported; perfsuite times text-to-image pipelines of these classes: {supported}"
        )
    return class_name, family


def resolve_pretrained(name: str, *, catalog_names: tuple[str, ...] = ()) -> PretrainedSource:
    """Find ``name`` on disk: an existing pipeline directory, or a hub id in the local cache.

    Raises :class:`UnknownModelError` (or its subclasses :class:`ModelNotCachedError`,
    :class:`UnsupportedPipelineError`) with a message saying what was wrong and how to fix it.
    ``catalog_names`` are listed in the message when ``name`` is neither a path nor a hub id.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        class_name, family = _read_pipeline_class(name, path)
        return PretrainedSource(name, path.resolve(), "local", class_name, family)
    if path.exists():
        raise UnknownModelError(
            f"model {name!r} is a file; expected a directory holding a saved pipeline (model_index.json)"
        )
    if looks_like_hub_id(name):
        return _resolve_cached_hub_id(name)
    if os.sep in name or name.startswith((".", "~")) or (os.altsep is not None and os.altsep in name):
        raise UnknownModelError(
            f"model {name!r}: no such directory; give the path of a saved pipeline, a cached hub id "
            f"(owner/name) or a {_catalog_hint(catalog_names)}"
        )
    raise UnknownModelError(
        f"unknown model {name!r}; choose from {', '.join(catalog_names) or 'the catalog'} (the catalog: "
        "`perfsuite models` lists it), a saved pipeline directory, NAME=PATH or a cached hub id (owner/name)"
    )


def _resolve_cached_hub_id(repo_id: str) -> PretrainedSource:
    from huggingface_hub import try_to_load_from_cache

    cache_dir = hub_cache_dir()
    cached = try_to_load_from_cache(repo_id, "model_index.json", cache_dir=cache_dir)
    if not isinstance(cached, str):
        raise ModelNotCachedError(
            f"model {repo_id!r} is not a local directory and is not in the local Hugging Face cache "
            f"({cache_dir}); perfsuite never downloads. Fetch it beforehand with `hf download {repo_id}` "
            "(or point HF_HOME / HF_HUB_CACHE at the cache that holds it), or pass a local directory"
        )
    snapshot = Path(cached).parent
    class_name, family = _read_pipeline_class(repo_id, snapshot)
    return PretrainedSource(repo_id, snapshot, "hub", class_name, family)


def _default_size(path: Path) -> dict[str, int]:
    """``height``/``width`` the pipeline would use by default (UNet sample size x VAE scale factor)."""
    try:
        unet = json.loads((path / "unet" / "config.json").read_text(encoding="utf-8"))
        vae = json.loads((path / "vae" / "config.json").read_text(encoding="utf-8"))
        side = int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
    except (OSError, KeyError, TypeError, ValueError, json.JSONDecodeError):
        return {}  # the pipeline computes its own default when it loads
    return {"height": side, "width": side}


def _dtype_kwarg(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """The dtype argument of ``from_pretrained``: ``dtype`` from diffusers 0.42 on, ``torch_dtype`` before."""
    import diffusers
    from packaging.version import Version

    if Version(diffusers.__version__).release >= (0, 42):
        return {"dtype": dtype}
    return {"torch_dtype": dtype}


def build_pretrained(source: PretrainedSource, device: torch.device, dtype: torch.dtype) -> DiffusionPipeline:
    """Load the pipeline at ``source`` in ``dtype`` (offline, safetensors only) and move it to ``device``.

    Weights are read on the CPU and then moved: diffusers' ``device_map`` would load them straight to
    the device, but a device-mapped pipeline refuses later ``.to()`` calls that optimizations rely on.
    """
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(
        str(source.path),
        use_safetensors=True,
        local_files_only=True,
        **_dtype_kwarg(dtype),
    )
    loaded_class = type(pipe).__name__
    if pipeline_families().get(loaded_class) != source.family:
        raise UnsupportedPipelineError(
            f"model {source.name!r}: loaded a {loaded_class}, expected a {source.class_name} "
            f"(family {source.family!r}) from {source.path / 'model_index.json'}"
        )
    pipe.to(torch.device(device))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pretrained_spec(name: str, *, catalog_names: tuple[str, ...] = ()) -> ModelSpec:
    """The spec of a local pipeline directory or a cached hub id (see :func:`resolve_pretrained`).

    A directory's baselines key is its :func:`~perfsuite.catalog.identity.pipeline_identity`, so
    any spelling of its path finds them; a hub id keeps its id.
    """
    source = resolve_pretrained(name, catalog_names=catalog_names)
    where = f"hub id {name} (cached at {source.path})" if source.kind == "hub" else f"directory {source.path}"
    key = name
    if source.kind == "local":
        try:
            key = pipeline_identity(source.path).key
        except ValueError as exc:
            raise UnknownModelError(f"model {name!r}: {exc}") from None
    return ModelSpec(
        name=name,
        family=source.family,
        description=f"pretrained {source.class_name} from {where}",
        build=partial(build_pretrained, source),
        call_kwargs={**get_family(source.family).call_defaults, **_default_size(source.path)},
        source=source.kind,
        key=key,
    )


def local_model(
    name: str,
    path: str | Path,
    *,
    call_kwargs: dict[str, Any] | None = None,
    description: str | None = None,
) -> ModelSpec:
    """A named model from a saved pipeline directory, for ``pytest_perfsuite_models`` and entry points.

    Its baselines are filed under ``name``. ``call_kwargs`` override the family's call settings (steps,
    guidance, size). The directory is read now (class and family), so a missing one is a clear error.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UnknownModelError(
            f"model {name!r}: {folder} is not a directory; save a pipeline there first "
            "(pipe.save_pretrained(path, safe_serialization=True), or "
            f"`perfsuite models save tiny-sd {folder}`)"
        )
    source = dataclasses.replace(resolve_pretrained(str(folder)), name=name)
    return ModelSpec(
        name=name,
        family=source.family,
        description=description or f"{source.class_name} from directory {source.path}",
        build=partial(build_pretrained, source),
        call_kwargs={
            **get_family(source.family).call_defaults,
            **_default_size(source.path),
            **(call_kwargs or {}),
        },
        source="local",
    )
