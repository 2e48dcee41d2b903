"""``perfsuite init``: write a starter layout into a repository, never overwriting a file.

The files come from package data (:mod:`perfsuite.templates`): the default policy (the same file as
perfsuite's own ``baselines/policy.toml``), the suite's test file, a GitHub workflow, nox sessions,
and a ``pytest.ini`` when nothing marks the folder as pytest's rootdir (perfsuite finds ``baselines/``
in the rootdir).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["STARTER_FILES", "InitReport", "StarterFile", "init_repository", "template_path"]


@dataclass(frozen=True)
class StarterFile:
    """One file ``perfsuite init`` writes: where (relative to the repository), from which template,
    what it is for. ``needed(root)`` returns why the file is not needed there, or ``None``."""

    path: str
    template: str
    purpose: str
    needed: Callable[[Path], str | None] | None = None


def _rootdir_marker(root: Path) -> str | None:
    """Why pytest already takes ``root`` as its rootdir (so no pytest.ini is needed), or ``None``."""
    for name in ("pytest.ini", ".pytest.ini", "pyproject.toml", "setup.py"):
        if (root / name).is_file():
            return f"{name} already makes this folder pytest's rootdir"
    for name, section in (("tox.ini", "[pytest]"), ("setup.cfg", "[tool:pytest]")):
        file = root / name
        if file.is_file() and section in file.read_text(encoding="utf-8", errors="replace"):
            return f"{name} already holds the pytest configuration"
    return None


STARTER_FILES: tuple[StarterFile, ...] = (
    StarterFile("baselines/policy.toml", "policy.toml", "the gate's bounds, every key explained; edit them"),
    StarterFile("tests/perf/test_inference.py", "test_inference.py", "the suite: one test per model x combo"),
    StarterFile(".github/workflows/perf.yml", "perf.yml", "CI: the gated suite on a self-hosted GPU runner"),
    StarterFile("noxfile.py", "noxfile.py", "nox sessions `perf` and `update-baselines`"),
    StarterFile("pytest.ini", "pytest.ini", "makes this folder pytest's rootdir", _rootdir_marker),
)


def template_path(name: str) -> Path:
    """The installed template file ``name`` (package data of :mod:`perfsuite.templates`)."""
    path = Path(str(resources.files("perfsuite.templates") / name))
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: a template of `perfsuite init` is missing from the installed package; reinstall "
            "perfsuite (python -m pip install --force-reinstall perfsuite)"
        )
    return path


@dataclass(frozen=True)
class InitReport:
    """What :func:`init_repository` did: ``(relative path, purpose)`` written, ``(path, why)`` skipped."""

    root: Path
    written: tuple[tuple[str, str], ...]
    skipped: tuple[tuple[str, str], ...]

    def lines(self) -> list[str]:
        width = max((len(path) for path, _ in (*self.written, *self.skipped)), default=0)
        lines = [f"perfsuite init: {self.root}"]
        lines += [f"  wrote    {path:<{width}}  {why}" for path, why in self.written]
        lines += [f"  skipped  {path:<{width}}  {why}" for path, why in self.skipped]
        lines += [
            "next:",
            "  python -m pytest tests/perf --perf-update-baselines   record baselines on this machine",
            "  python -m pytest tests/perf                           gate against them",
            "  git add baselines tests/perf .github                  commit the layout and the baselines",
        ]
        return lines


def _write_new(path: Path, data: bytes) -> bool:
    """Write ``path`` only if it does not exist, all at once: ``False`` when it already existed.

    The data goes to a temporary file first and is hard-linked into place: the link fails if the
    file appeared meanwhile, and a reader never sees half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive create instead
            try:
                with open(path, "xb") as handle:
                    handle.write(data)
            except FileExistsError:
                return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def init_repository(root: str | Path = ".") -> InitReport:
    """Write every file of :data:`STARTER_FILES` that ``root`` lacks; never overwrite one."""
    root = Path(root).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{root} is a file; give the repository folder")
    written: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    for starter in STARTER_FILES:
        target = root / starter.path
        reason = starter.needed(root) if starter.needed is not None else None
        if reason is None and (target.exists() or target.is_symlink()):
            reason = "exists, left as it is"
            if starter.template == "noxfile.py":
                reason += f"; its sessions to copy are in {template_path(starter.template)}"
        if reason is None and not _write_new(target, template_path(starter.template).read_bytes()):
            reason = "appeared while writing, left as it is"
        if reason is None:
            written.append((starter.path, starter.purpose))
        else:
            skipped.append((starter.path, reason))
    return InitReport(root, tuple(written), tuple(skipped))
