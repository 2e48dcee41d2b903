"""The technique contract shared by every optimization entry."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from perfsuite.globalstate import GlobalSetting

if TYPE_CHECKING:
    from perfsuite.hardware import Capabilities

__all__ = [
    "DTYPES",
    "GlobalSetting",
    "NotActiveError",
    "RunTrace",
    "Target",
    "Technique",
    "Unsupported",
    "components",
    "fail",
    "needs_cuda",
    "needs_package",
    "torch_dtype",
]

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class NotActiveError(AssertionError):
    """A technique was applied but the pipeline shows it is not in effect."""


class Unsupported(Exception):
    """The technique cannot run on this particular model; the case is skipped with this reason.

    ``requires`` decides from the device and family before anything is built; ``apply`` raises
    this when only the built model can tell (for example a forward that breaks a wrapper).
    """


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a dtype token (``fp32``, ``bf16``, ``fp16``)."""
    try:
        return DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}") from None


@dataclass(frozen=True)
class Target:
    """Where a combo runs: the device and its capabilities, the model family, the whole combo."""

    device: torch.device
    capabilities: Capabilities
    family: str
    dtype: str
    techniques: frozenset[str] = frozenset()

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"


@dataclass(frozen=True)
class RunTrace:
    """What one profiled call after warm-up really ran, and what dynamo did during warm-up."""

    op_names: frozenset[str]
    unique_graphs: int = 0
    graph_breaks: int = 0
    recompiles: int = 0


def _no_requirement(target: Target) -> str | None:
    return None


@dataclass(frozen=True)
class Technique:
    """One optimization of the guide.

    ``requires(target)`` returns a skip reason, or ``None`` when the technique can run there.
    ``apply(pipe, target)`` changes the pipeline in place. ``context(target)`` wraps apply, warm-up
    and every timed call (process-wide settings: it restores them on exit). ``verify(pipe, target)``
    returns evidence that the technique is on, or raises :class:`NotActiveError`;
    ``verify_trace(trace, target)`` does the same from a profiled call after warm-up.
    ``needs_groups`` names groups of which the combo must hold one technique (the inductor flags
    need a compile technique). ``rank`` orders application within a combo. ``touches`` declares the
    process-wide settings the technique changes beyond the torch settings perfsuite always tracks
    (see :mod:`perfsuite.globalstate`): each is snapshotted before a case, checked after it and put
    back while the reference runs.
    """

    name: str
    group: str
    summary: str
    rank: int
    verify: Callable[[Any, Target], list[str]]
    requires: Callable[[Target], str | None] = _no_requirement
    apply: Callable[[Any, Target], None] | None = None
    context: Callable[[Target], AbstractContextManager[Any]] | None = None
    verify_trace: Callable[[RunTrace, Target], list[str]] | None = None
    needs_groups: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()
    slow_on_cpu: bool = False
    touches: tuple[GlobalSetting, ...] = ()

    def enter(self, target: Target) -> AbstractContextManager[Any]:
        return self.context(target) if self.context is not None else nullcontext()


def components(pipe: Any, *names: str) -> list[tuple[str, torch.nn.Module]]:
    """The named sub-modules of a pipeline that exist, in the order asked."""
    return [(n, m) for n in names if isinstance(m := getattr(pipe, n, None), torch.nn.Module)]


def fail(technique: str, message: str) -> NotActiveError:
    return NotActiveError(f"{technique}: {message}")


def needs_cuda(what: str) -> Callable[[Target], str | None]:
    def check(target: Target) -> str | None:
        if not target.is_cuda:
            return f"{what} needs a CUDA device (running on {target.device.type})"
        return None

    return check


def needs_package(module: str, pip_name: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return f"{pip_name} is not installed (pip install {pip_name})"
    return None
