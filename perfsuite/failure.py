"""A case that ends before it is measured, with a verdict instead of a crash.

Two kinds of failure end a case this way, and each becomes one failed policy check of the verdict
(:func:`perfsuite.gate.judge_failure`):

* ``verify``: a technique could not prove that it is active (its ``verify`` or ``verify_trace``
  raised :class:`~perfsuite.optimizations.NotActiveError`);
* ``dynamo``: torch.compile's dynamo refused the model: a graph break under ``fullgraph=True``
  (``torch._dynamo.exc.Unsupported`` and its subclasses) or the recompile limit
  (``FailOnRecompileLimitHit``). The check names the combo's compile technique and dynamo's reason
  in one line; the full error text is kept in :attr:`CaseFailure.log` for the report.

``perfsuite.optimizations.Unsupported`` (a combo that cannot run on this model) is something else:
the case is skipped. Anything else a case raises stays an error with its real traceback.
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LOG_CHARS",
    "CaseFailed",
    "CaseFailure",
    "compile_technique",
    "dynamo_error_types",
    "dynamo_failure",
    "verify_failure",
]

#: The most characters of an error's text kept in the report (the end of a long text is kept).
LOG_CHARS = 20_000

VERIFY, DYNAMO = "verify", "dynamo"


@dataclass(frozen=True)
class CaseFailure:
    """Why a case ended before it was measured; JSON-ready through :meth:`to_dict`.

    ``kind`` is ``"verify"`` or ``"dynamo"``; ``technique`` the technique at fault; ``expected`` what
    the technique promises; ``found`` what was seen instead (one line); ``where`` the stage or the
    line of user code; ``log`` the full error text (for the report, never the terminal).
    """

    kind: str
    technique: str
    expected: str
    found: str
    where: str
    log: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseFailure:
        return cls(**{f.name: str(data.get(f.name, "")) for f in dataclasses.fields(cls)})


class CaseFailed(Exception):
    """Raised by the runner when a case fails with a :class:`CaseFailure` (its ``failure``)."""

    def __init__(self, failure: CaseFailure) -> None:
        super().__init__(f"{failure.technique}: {failure.found}")
        self.failure = failure


def _log(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    return text if len(text) <= LOG_CHARS else "...\n" + text[-LOG_CHARS:]


def verify_failure(technique: Any, exc: BaseException, stage: str) -> CaseFailure:
    """The failure of ``technique`` (a :class:`~perfsuite.optimizations.Technique`) to prove itself.

    ``exc`` is its ``NotActiveError``, whose text reads ``"<technique>: <what was found>"``.
    """
    found = str(exc).strip() or type(exc).__name__
    found = found.removeprefix(f"{technique.name}:").strip()
    expected = f"{technique.name} active: {technique.summary}"
    return CaseFailure(VERIFY, technique.name, expected, found, stage, _log(exc))


def dynamo_error_types() -> tuple[type[BaseException], ...]:
    """dynamo's errors that mean "this model cannot be compiled as asked", in this torch.

    ``Unsupported`` (graph breaks under ``fullgraph=True``, with its subclasses) exists in every
    torch perfsuite supports; the recompile-limit error is ``FailOnRecompileLimitHit`` (torch 2.6 and
    later; ``FailOnCacheLimitHit`` before it). Names a torch lacks are left out.
    """
    from torch._dynamo import exc as dynamo_exc

    names = ("Unsupported", "FailOnRecompileLimitHit", "FailOnCacheLimitHit")
    return tuple(kind for name in names if isinstance(kind := getattr(dynamo_exc, name, None), type))


def _chain(exc: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _reason(error: BaseException) -> str:
    """dynamo's reason in one line: its graph-break type (torch >= 2.8) or the first line of its text."""
    gb_type = getattr(error, "gb_type", None)
    if isinstance(gb_type, str) and gb_type.strip():
        return gb_type.strip()
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _user_line(error: BaseException) -> str:
    """``file:line in function`` of the innermost user frame dynamo was tracing, when it says."""
    stack = getattr(error, "real_stack", None)
    if not stack:
        return ""
    frame = stack[-1]
    return f"{frame.filename}:{frame.lineno} in {frame.name}"


def compile_technique(techniques: Iterable[str]) -> str:
    """The combo's technique of the ``compile`` group, or ``torch.compile`` when it has none."""
    from perfsuite.optimizations import get_technique

    names = [name for name in techniques if get_technique(name).group == "compile"]
    return names[0] if names else "torch.compile"


def dynamo_failure(techniques: Iterable[str], exc: BaseException) -> CaseFailure | None:
    """The failure that ``exc`` means when it is (or was raised from) one of dynamo's refusals."""
    kinds = dynamo_error_types()
    found = [error for error in _chain(exc) if isinstance(error, kinds)]
    if not found:
        return None
    outer = found[0]
    # FailOnRecompileLimitHit says only "Hard failure due to fullgraph=True"; dynamo's reason is the
    # Unsupported it was raised from.
    inner = next((error for error in found if getattr(error, "gb_type", None)), outer)
    reason = _reason(inner)
    if inner is not outer:
        reason = f"{reason} ({_reason(outer)})"
    technique = compile_technique(techniques)
    expected = (
        f"{technique} compiles the model as asked (no graph break under fullgraph, "
        "recompiles within torch._dynamo.config.recompile_limit)"
    )
    where = _user_line(inner) or _user_line(outer)
    return CaseFailure(DYNAMO, technique, expected, f"{type(outer).__name__}: {reason}", where, _log(exc))
