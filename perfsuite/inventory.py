"""What the suite can run: every registered model and technique with its source, and saving a
registered model as a diffusers pipeline folder (``perfsuite models``, ``perfsuite models save``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SavedModel", "registry_lines", "save_model"]

_WIDTH = 100


def _wrapped(text: str, indent: str, hanging: str) -> list[str]:
    return textwrap.wrap(
        text, _WIDTH, initial_indent=indent, subsequent_indent=hanging, break_on_hyphens=False
    ) or [indent]


def _section(entries: Sequence[tuple[str, str, str, str]]) -> list[str]:
    """``(name, label, summary, source)`` rows; a source is printed once above the rows it gave."""
    lines: list[str] = []
    source = None
    for name, label, summary, where in entries:
        if where != source:
            lines += _wrapped(f"from {where}:", "  ", "      ")
            source = where
        lines += _wrapped(f"{name}  [{label}]  {summary}", "    ", "        ")
    return lines


def registry_lines(*, in_pytest: bool = False) -> list[str]:
    """The models, then the techniques by group in combo order, each under where it was registered.

    Outside pytest (``in_pytest=False``) the hooks of a ``conftest.py`` have not run: the last line
    says how to list those too.
    """
    from perfsuite.catalog import MODELS
    from perfsuite.optimizations import BUILTIN_GROUPS, GROUPS, REGISTRY

    models = [(e.name, e.item.family, e.item.description, e.source) for e in MODELS.entries()]
    lines = [f"models: {len(models)} (also accepted: a saved pipeline folder, NAME=PATH, a cached hub id)"]
    lines += _section(models)
    techniques = [
        (e.name, group, e.item.summary, e.source)
        for group in GROUPS
        for e in REGISTRY.entries()
        if e.item.group == group
    ]
    extra = " (perfsuite's groups, then new ones alphabetically)" if tuple(GROUPS) != BUILTIN_GROUPS else ""
    lines += _wrapped(
        f"techniques: {len(techniques)}; groups in combo-id order: {', '.join(GROUPS)}{extra}", "", "  "
    )
    lines += _section(techniques)
    if not in_pytest:
        lines += _wrapped(
            "models and techniques of pytest_perfsuite_* hooks (conftest.py) join in a pytest session: "
            "`python -m pytest --perf-list` lists them too",
            "",
            "  ",
        )
    return lines


@dataclass(frozen=True)
class SavedModel:
    """A model written as a pipeline folder: where, its baselines key, and the files it holds."""

    name: str
    folder: Path
    key: str
    files: tuple[str, ...]


def save_model(name: str, folder: str | Path) -> SavedModel:
    """Build the registered model ``name`` (fp32, CPU) and save it as a diffusers pipeline folder
    (safetensors weights). ``folder`` must not exist or be empty: nothing is ever overwritten. The
    pipeline is written into a temporary sibling folder and renamed into place, so an error or an
    interrupt leaves no half-written folder."""
    import torch

    from perfsuite.catalog import MODELS
    from perfsuite.catalog.identity import pipeline_identity

    entry = MODELS.lookup(name)
    if entry is None:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(MODELS.names())}")
    target = Path(folder).expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"{target} exists and is not an empty folder; perfsuite never overwrites it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        pipe = entry.item.build(torch.device("cpu"), torch.float32)
        pipe.save_pretrained(staging, safe_serialization=True)  # type: ignore[attr-defined]
        if target.exists():
            target.rmdir()  # empty, checked above
        os.replace(staging, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
    files = tuple(sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()))
    return SavedModel(name, target, pipeline_identity(target).key, files)
