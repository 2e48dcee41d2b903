"""The head's side of an A/B run: one base worker per session, and the comparison of one case.

:class:`ABSession` owns the worker: it starts one when the session starts (so that a bad
``--perf-ab-base`` is refused before anything runs), sets it up like the head (device, threads,
steps and size, warm-up) before the first case, and starts a new one for the next case when a worker
died. :meth:`ABSession.compare` runs while the head's case is still prepared: the base prepares the
same case, then the pairs are timed in ABBA order, in attempts between which both sides prepare the
case again, the base in a new worker process (:func:`perfsuite.ab.schedule.run_pairs`), then the two
images are compared. It returns the ``ab`` section of the case's measurement, which
:func:`perfsuite.gate.check_ab` judges. Plain Python: :mod:`perfsuite.plugin` turns the errors into
skips and failures.
"""

from __future__ import annotations

import atexit
import dataclasses
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfsuite.ab.client import BaseWorker, WorkerDied, WorkerStartError
from perfsuite.ab.protocol import PROTOCOL_VERSION, RemoteError
from perfsuite.ab.schedule import run_pairs
from perfsuite.stats import SequentialPlan, sequential_plan

if TYPE_CHECKING:
    from perfsuite.runner import CaseResult, CaseSlot, PreparedCase

__all__ = [
    "ABError",
    "ABSession",
    "ABSettings",
    "ABSkip",
    "WorkerDied",
    "WorkerStartError",
    "checkout_commit",
    "version_differences",
]

#: The overall error level of the sequential comparison, per direction (see perfsuite.stats).
DEFAULT_ALPHA = 0.01


@dataclass(frozen=True)
class ABSettings:
    """How one session compares with the base. Times in seconds."""

    python: str
    min_pairs: int = 40
    max_pairs: int = 160
    max_seconds: float = 300.0
    #: Pairs per attempt; both sides prepare an eager case again between attempts.
    attempt_pairs: int = 10
    alpha: float = DEFAULT_ALPHA
    #: Building, compiling and warming up one case in the base (a full-size compile takes minutes).
    open_timeout_s: float = 3600.0
    #: One timed base call may take this long, or 20 times the case's latency if that is longer.
    call_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        self.plan()  # validates the four
        if self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {self.max_seconds!r}")

    def plan(self) -> SequentialPlan:
        return sequential_plan(self.min_pairs, self.max_pairs, self.alpha, self.attempt_pairs)

    def capped(self, max_pairs: int | None = None, max_seconds: float | None = None) -> ABSettings:
        """These settings with one case's caps (policy's ab_max_pairs, ab_max_seconds) where given;
        ValueError, as from the constructor, when they do not fit min_pairs and attempt_pairs."""
        return dataclasses.replace(
            self,
            max_pairs=self.max_pairs if max_pairs is None else max_pairs,
            max_seconds=self.max_seconds if max_seconds is None else max_seconds,
        )


class ABSkip(Exception):
    """The base cannot run this case (unknown technique, unsupported there, no room): skip it."""


class ABError(Exception):
    """The base failed in the middle of a case it had prepared: the case fails with this message."""


def checkout_commit() -> str | None:
    """The git commit of the checkout this perfsuite is imported from, or None (an installed copy)."""
    import perfsuite
    from perfsuite.baselines import current_commit

    return current_commit(Path(perfsuite.__file__).resolve().parent)


def version_differences(base: dict[str, Any], head: dict[str, Any]) -> list[str]:
    """``name base -> head`` for every version that differs between the two sides: the packages of
    :data:`perfsuite.hardware.VERSIONED_PACKAGES` (perfsuite, torch with its build, diffusers, ...),
    Python, CUDA, and the git commit of each side's perfsuite checkout."""
    from perfsuite.hardware import version_changes

    changes = version_changes(base.get("machine") or {}, head.get("machine") or {})
    for key, label in (("python_version", "python"), ("cuda_version", "cuda")):
        a, b = (base.get("machine") or {}).get(key), (head.get("machine") or {}).get(key)
        if a != b:
            changes.append(f"{label} {a or '(none)'} -> {b or '(none)'}")
    a, b = base.get("commit"), head.get("commit")
    if a != b:
        a, b = (a or "(no git checkout)")[:12], (b or "(no git checkout)")[:12]
        changes.append(f"perfsuite checkout {a} -> {b}")
    return changes


def _fidelity(head_image: Any, base_image: Any, what: str) -> dict[str, Any]:
    from perfsuite.fidelity import NonFiniteImageError, check_finite, compare

    for image, side in ((head_image, "head"), (base_image, "base")):
        try:
            check_finite(image, f"the {side} output of {what}")
        except NonFiniteImageError as exc:
            return {"non_finite": str(exc)}
    found = compare(head_image, base_image, f"{what}, head vs base")
    psnr = found.psnr_db if found.psnr_db != float("inf") else None  # None: identical images
    return {
        "non_finite": None,
        "ssim": found.ssim,
        "psnr_db": psnr,
        "max_abs_diff": found.max_abs_diff,
        "mean_abs_diff": found.mean_abs_diff,
    }


def _head(slot: CaseSlot) -> PreparedCase:
    if slot.prepared is None:
        raise RuntimeError("the head's case is not prepared")
    return slot.prepared


class ABSession:
    """The base worker of one session, started again after it dies."""

    def __init__(self, settings: ABSettings) -> None:
        self.settings = settings
        self.worker: BaseWorker | None = None
        self.setup_args: dict[str, Any] | None = None
        self.base: dict[str, Any] | None = None
        self.head: dict[str, Any] = {}
        self.started = 0
        atexit.register(self.close)

    def start(self) -> None:
        """Start a worker now; :class:`WorkerStartError` says what is wrong with the interpreter."""
        self.close()
        self.worker = BaseWorker.start(self.settings.python)
        self.started += 1
        self.base = None

    def configure(self, *, device: str, warmup: int, num_threads: int, call_overrides: dict[str, Any],
                  trace: bool = True, head: dict[str, Any] | None = None) -> None:  # fmt: skip
        """What the worker is set up with before its first case: the head's own settings. ``head``
        describes this side for the report: ``{"machine": MachineInfo.to_dict(), "commit": ...}``."""
        self.head = dict(head or {})
        self.setup_args = {
            "device": device,
            "warmup": warmup,
            "num_threads": num_threads,
            "call_overrides": dict(call_overrides),
            "trace": trace,
        }

    def _ready(self) -> BaseWorker:
        if self.worker is None or not self.worker.alive:
            self.start()
        assert self.worker is not None
        if self.base is None:
            if self.setup_args is None:
                raise RuntimeError("ABSession.configure() must run before the first case")
            args = {**self.setup_args, "compile_cache_dir": str(self.worker.folder)}
            reply = self.worker.request("setup", args, timeout_s=self.settings.open_timeout_s)
            hello = self.worker.hello.to_dict() if self.worker.hello else {}
            self.base = {**reply, **hello, "python_command": self.settings.python}
        return self.worker

    def check(self, model: str, combo: str) -> None:
        """Raise :class:`ABSkip` when the base cannot run ``model`` x ``combo`` (before the head runs it)."""
        case = {"model": model, "combo": combo}
        reply = self._ready().request("plan", case, timeout_s=self.settings.call_timeout_s)
        if not reply.get("runnable"):
            reason = reply.get("reason")
            raise ABSkip(f"the base ({self.settings.python}) cannot run {model}/{combo}: {reason}")

    def compare(
        self, slot: CaseSlot, result: CaseResult, tolerance: float, settings: ABSettings | None = None
    ) -> dict[str, Any]:
        """Prepare the same case in the base, time the pairs, compare the images: the ``ab`` section.
        ``settings``: this case's caps (:meth:`ABSettings.capped`); default: the session's.

        Between attempts both sides prepare an eager case again, the head in ``slot`` and the base in
        a new worker process, so that each attempt draws the offsets anew (see
        :mod:`perfsuite.ab.schedule`); ``base_pids`` in the section lists the base process of each
        attempt. A compiled case keeps its prepared case and its base process (a compile per attempt
        would cost minutes): its attempts are blocks of pairs, and the section says so."""
        prepared = slot.prepared
        assert prepared is not None
        settings = settings or self.settings
        worker = self._ready()
        started = time.monotonic()
        case = {"model": prepared.spec.name, "combo": prepared.combo.id}
        self._check_room(prepared, result)
        try:
            opened = worker.request("open_case", case, timeout_s=self.settings.open_timeout_s)
        except RemoteError as exc:
            where = f"the base ({self.settings.python})"
            raise ABSkip(f"{where} could not prepare {result.case_id}: {exc}") from None
        base_pids = [worker.process.pid]
        released = False
        try:
            base_open_s = time.monotonic() - started
            slowest = max(result.latency.median, *opened.get("warmup_s") or [0.0])
            call_timeout = max(self.settings.call_timeout_s, 20.0 * slowest)

            def base_worker() -> BaseWorker:
                assert self.worker is not None
                return self.worker

            def refresh() -> None:
                # A new base process, not only a new pipeline: a process can keep an offset of its own
                # (its memory layout, say) through every re-preparation. Drawn anew per attempt, that
                # offset becomes spread between attempts, which the interval holds.
                self.start()
                fresh = self._ready()
                fresh.request("open_case", {**case, "trace": False}, timeout_s=self.settings.open_timeout_s)
                base_pids.append(fresh.process.pid)
                slot.reopen()

            eager = not prepared.combo.compiles
            if eager:
                # The head's case has just run its rounds, the base's was only warmed up: prepared
                # again, the head starts the first attempt as the base does and as every later one.
                slot.reopen()

            outcome = run_pairs(
                lambda: _head(slot).timed_call(),
                lambda: float(base_worker().request("call", timeout_s=call_timeout)["seconds"]),
                settings.plan(),
                1.0 + tolerance,
                settings.max_seconds,
                refresh=refresh if eager else None,
            )
            import numpy as np

            worker = base_worker()
            path = worker.folder / "image.npy"
            worker.request("image", {"path": str(path)}, timeout_s=call_timeout)
            base_image = np.load(path)
            prepared = _head(slot)
            path.unlink()
            released = True
            worker.request("close_case", timeout_s=self.settings.open_timeout_s)
        except RemoteError as exc:
            what = "release" if released else "measure"
            self._release(self.worker, released)
            raise ABError(f"the base could not {what} {result.case_id}: {exc}\n{exc.traceback}") from None
        except Exception:
            self._release(self.worker, released)
            raise
        assert self.base is not None
        keys = (
            "python_command",
            "executable",
            "python",
            "perfsuite",
            "perfsuite_path",
            "commit",
            "num_threads",
        )
        base = {key: self.base.get(key) for key in (*keys, "machine")}
        head_samples = [p.head_s for p in outcome.pairs]
        base_samples = [p.base_s for p in outcome.pairs]
        return {
            "protocol": PROTOCOL_VERSION,
            "tolerance": tolerance,
            "max_pairs": settings.max_pairs,
            "max_seconds": settings.max_seconds,
            **outcome.to_dict(),
            "head_latency_median_s": statistics.median(head_samples),
            "base_latency_median_s": statistics.median(base_samples),
            "head_peak_mem_bytes": result.peak_mem_bytes,
            "base_peak_mem_bytes": opened.get("peak_mem_bytes"),
            "head_peak_mem_kind": result.peak_mem_kind,
            "base_peak_mem_kind": opened.get("peak_mem_kind"),
            "base_warmup_s": opened.get("warmup_s"),
            "base_evidence": opened.get("evidence"),
            "fidelity": _fidelity(prepared.image(), base_image, result.case_id),
            "base": base,
            "head": self.head,
            "version_changes": version_differences(base, self.head),
            "base_open_s": base_open_s,
            "base_pids": base_pids,
            "seconds": time.monotonic() - started,
        }

    def _release(self, worker: BaseWorker | None, released: bool) -> None:
        """After a failure mid-case: let a live, in-step worker release its case, else stop it (the
        next case starts a new one). An interrupt (Ctrl-C) skips this: the session's end stops it."""
        if released or worker is None or not worker.alive or worker.abandoned:
            return
        try:
            worker.request("close_case", timeout_s=self.settings.open_timeout_s)
        except (RemoteError, WorkerDied):
            self.close()

    def _check_room(self, prepared: PreparedCase, result: CaseResult) -> None:
        """On CUDA both sides hold the case at once: the free memory must hold the base's copy too."""
        if prepared.device.type != "cuda" or not result.peak_mem_bytes:
            return
        import torch

        free_bytes, total_bytes = torch.cuda.mem_get_info(prepared.device)
        if free_bytes < result.peak_mem_bytes:
            gib = 2**30
            raise ABSkip(
                f"base and head do not both fit on {prepared.device}: the head's peak was "
                f"{result.peak_mem_bytes / gib:.1f} GiB and {free_bytes / gib:.1f} of "
                f"{total_bytes / gib:.1f} GiB are free; use a smaller --perf-size, or a larger GPU"
            )

    def close(self, grace_s: float | None = None) -> None:
        """Stop the worker (if any) and reap it."""
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.close(*(() if grace_s is None else (grace_s,)))
