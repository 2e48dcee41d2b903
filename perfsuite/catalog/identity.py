"""The identity of a saved pipeline directory: its pipeline class and a hash of its configs.

A local pipeline given by its path is filed in ``baselines/`` under this identity, not under the path
as typed: ``./my-pipeline``, ``my-pipeline``, the absolute path and a moved or copied folder all find
the same baselines. The weights are never read: the same architecture with retrained weights times
the same, so it is the same model for the suite.

What is hashed: ``model_index.json`` and, in every component folder it names, each file called
``config.json`` or ``*_config.json`` (``scheduler_config.json``, ``tokenizer_config.json``, ...).
What is left out of each of them, because it records where or by which library version the
pipeline was saved, not what it computes (:data:`IGNORED_KEYS`):

* ``_diffusers_version``, ``transformers_version``: the version that wrote the file. Re-saving with
  a newer library must not orphan the baselines; the call settings and the measured numbers say
  whether timing changed.
* ``_name_or_path``, ``name_or_path``, ``tokenizer_file``, ``_commit_hash``: where the components
  were loaded from before they were saved (a path on someone's disk, a hub revision).
* ``torch_dtype``, ``dtype``: the dtype the weights were stored in. perfsuite loads every model in
  the dtype of the combo, so the storage dtype never reaches a timed call.
* ``_use_default_values``: the config keys a diffusers version filled in with defaults while loading
  (those keys and their values are in the config itself).

Everything else (layer sizes, attention heads, scheduler settings, tokenizer limits) is kept.
Importing this module is cheap: no torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["IGNORED_KEYS", "PipelineIdentity", "pipeline_identity"]

IGNORED_KEYS: frozenset[str] = frozenset(
    {
        "_diffusers_version",
        "transformers_version",
        "_name_or_path",
        "name_or_path",
        "tokenizer_file",
        "_commit_hash",
        "torch_dtype",
        "dtype",
        "_use_default_values",
    }
)

#: Hex digits of the config hash kept in the key (48 bits: no collision among a team's pipelines).
_HASH_DIGITS = 12


@dataclass(frozen=True)
class PipelineIdentity:
    """``class_name`` from ``model_index.json``; ``config_sha256`` of the normalised configs;
    ``files`` the config files that were hashed, relative to the pipeline folder."""

    class_name: str
    config_sha256: str
    files: tuple[str, ...]

    @property
    def key(self) -> str:
        """The model folder under ``baselines/<profile>/``: ``local--<class>--<12 hex digits>``."""
        return f"local--{self.class_name}--{self.config_sha256[:_HASH_DIGITS]}"


def _normalised(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _normalised(item) for key, item in value.items() if key not in IGNORED_KEYS}
    if isinstance(value, list):
        return [_normalised(item) for item in value]
    return value


def _is_config(path: Path) -> bool:
    return path.is_file() and (path.name == "config.json" or path.name.endswith("_config.json"))


def pipeline_identity(path: str | Path) -> PipelineIdentity:
    """The identity of the saved pipeline in ``path`` (a folder with ``model_index.json``).

    Raises ``ValueError`` when ``model_index.json`` or a config file is missing or not valid JSON.
    """
    root = Path(path)
    index_path = root / "model_index.json"
    index = _read_json(index_path)
    if not isinstance(index, dict) or not isinstance(index.get("_class_name"), str):
        raise ValueError(f"{index_path} has no _class_name: it is not a saved diffusers pipeline")
    documents: dict[str, Any] = {"model_index.json": _normalised(index)}
    for component, value in sorted(index.items()):
        if component.startswith("_") or not isinstance(value, list) or None in value:
            continue  # settings such as requires_safety_checker, and absent components
        folder = root / component
        if not folder.is_dir():
            raise ValueError(f"{root} names the component {component!r} but has no {component}/ folder")
        for config in sorted(filter(_is_config, folder.iterdir())):
            documents[f"{component}/{config.name}"] = _normalised(_read_json(config))
    canonical = json.dumps(documents, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return PipelineIdentity(index["_class_name"], digest, tuple(documents))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None
