"""The head's side of an A/B run: the base worker of the session, and the comparison of one case.

:class:`ABSession` owns the workers: it starts a base worker when the session starts (so that a bad
``--perf-ab-base`` is refused before anything runs), sets it up like the head (device, threads, steps
and size, warm-up) before the first case, and starts a new one for the next case when a worker died.
:meth:`ABSession.compare` runs while the head's case is still prepared: the base prepares the same
case, then the pairs are timed in ABBA order, in attempts (:func:`perfsuite.ab.schedule.run_pairs`)
that each run between a base worker and a head worker of their own (an eager case; attempt k of
every case runs in the k-th pair of a pool kept for the session), then the two images are compared.
It returns the ``ab`` section of the case's measurement, which :func:`perfsuite.gate.check_ab`
judges. Plain Python: :mod:`perfsuite.plugin` turns the errors into skips and failures.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfsuite.ab.client import (
    ROLE_FLAGS,
    BaseWorker,
    WorkerDied,
    WorkerStartError,
    precheck,
    resolve_interpreter,
)
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
    #: Pairs per attempt; an eager case's attempts each run between a base and a head worker of their own.
    attempt_pairs: int = 10
    #: Pairs of workers kept from one eager case to the next: attempt k of every case runs in the k-th
    #: pair while k < pool, later attempts in a new pair each; 0 starts a new pair for every attempt.
    pool: int = 8
    alpha: float = DEFAULT_ALPHA
    #: Building, compiling and warming up one case in the base (a full-size compile takes minutes).
    open_timeout_s: float = 3600.0
    #: One timed base call may take this long, or 20 times the case's latency if that is longer.
    call_timeout_s: float = 120.0
    #: The interpreter of the head's workers (``--perf-ab-head``); None: this process's.
    head_python: str | None = None

    def __post_init__(self) -> None:
        self.plan()  # validates the four
        if self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be positive, got {self.max_seconds!r}")
        if self.pool < 0:
            raise ValueError(f"pool must be 0 or more pairs of workers, got {self.pool!r}")

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


def _head_environment() -> dict[str, str]:
    """This process's environment, with the folder this perfsuite is imported from first on
    ``PYTHONPATH``: a head worker runs this checkout's code even where pytest found it through its
    rootdir rather than an install."""
    import perfsuite

    root = str(Path(perfsuite.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _check_head_perfsuite(python: str, found: str) -> None:
    """A head worker must import this perfsuite, or it would not measure this checkout."""
    import perfsuite

    ours = str(Path(perfsuite.__file__).resolve().parent)
    if str(Path(found).resolve()) != ours:
        raise WorkerStartError(
            f"{ROLE_FLAGS['head']}: {python} imports perfsuite from {found}, this pytest from {ours}; "
            "the head's workers must run this checkout: give a python of this environment"
        )


def _both(requests: list[tuple[BaseWorker, str, dict[str, Any]]], timeout_s: float) -> list[dict[str, Any]]:
    """Send one request to each worker, then take every reply, so that the workers work at once (set
    up, prepare); the replies in order. A base's error is raised as it is (:class:`RemoteError`); a
    head worker's as :class:`ABError`. A worker whose reply is not taken (an interrupt) is marked
    abandoned, so that it is stopped rather than asked again."""
    sent: list[tuple[BaseWorker, str, int]] = []
    replies: list[dict[str, Any]] = []
    failure: BaseException | None = None
    try:
        for worker, op, args in requests:
            sent.append((worker, op, worker.send(op, args)))
        for worker, op, request_id in sent:
            try:
                replies.append(worker.receive(request_id, op, timeout_s=timeout_s))
            except RemoteError as exc:
                replies.append({})
                if worker.role == "head":
                    problem = f"the head worker ({worker.python}) could not {op}: {exc}\n{exc.traceback}"
                    failure = failure or ABError(problem)
                else:
                    failure = failure or exc
    finally:
        for worker, _, request_id in sent:
            if worker.pending == request_id:
                worker.abandoned = True
    if failure is not None:
        raise failure
    return replies


@dataclass(eq=False)
class _Pair:
    """The base and the head worker that one attempt of an eager case runs between."""

    base: BaseWorker
    head: BaseWorker

    @property
    def healthy(self) -> bool:
        """Both alive and in step: fit to prepare another case."""
        return all(worker.alive and not worker.abandoned for worker in (self.base, self.head))

    def close(self, grace_s: float | None = None) -> None:
        for worker in (self.head, self.base):
            worker.close(*(() if grace_s is None else (grace_s,)))


def _head(slot: CaseSlot) -> PreparedCase:
    if slot.prepared is None:
        raise RuntimeError("the head's case is not prepared")
    return slot.prepared


class ABSession:
    """The base worker of one session (plans, compiled cases), started again after it dies, and the
    pairs of workers that the attempts of eager cases run between.

    Attempt k of every eager case runs in ``pool[k]`` (started the first time an attempt k comes, and
    kept while it is healthy), so that the attempts of one case each have processes of their own, as
    the interval over attempts needs, while a session starts each pair once rather than once per
    attempt: starting a pair (importing torch and diffusers twice) takes most of an attempt's
    preparation on a CPU. Attempts past the pool run in a new pair each, stopped after it."""

    def __init__(self, settings: ABSettings) -> None:
        self.settings = settings
        self.worker: BaseWorker | None = None
        #: The pairs kept for the attempts of eager cases, by attempt (None: not started, or stopped).
        self.pool: list[_Pair | None] = []
        #: The pair of the current attempt of an eager case (None between attempts).
        self.pair: _Pair | None = None
        self.setup_args: dict[str, Any] | None = None
        self.base: dict[str, Any] | None = None
        self.head: dict[str, Any] = {}
        self.started = 0
        atexit.register(self.close)

    @property
    def head_python(self) -> str:
        """The interpreter of the head's workers: ``--perf-ab-head``, else this process's."""
        return self.settings.head_python or sys.executable

    def start(self) -> None:
        """Start a worker now; :class:`WorkerStartError` says what is wrong with the interpreter (the
        base's, or the head's: its perfsuite must be this one)."""
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.close()
        if self.started == 0:
            found = precheck(
                resolve_interpreter(self.head_python, "head"),
                _head_environment(),
                Path.cwd(),
                role="head",
            )
            _check_head_perfsuite(self.head_python, str(Path(str(found.get("path"))).resolve().parent))
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

    def _setup_args(self, worker: BaseWorker) -> dict[str, Any]:
        if self.setup_args is None:
            raise RuntimeError("ABSession.configure() must run before the first case")
        return {**self.setup_args, "compile_cache_dir": str(worker.folder)}

    def _describe_base(self, worker: BaseWorker, reply: dict[str, Any]) -> None:
        hello = worker.hello.to_dict() if worker.hello else {}
        self.base = {**reply, **hello, "python_command": self.settings.python}

    def _ready(self) -> BaseWorker:
        if self.worker is None or not self.worker.alive:
            self.start()
        assert self.worker is not None
        if self.base is None:
            args = self._setup_args(self.worker)
            reply = self.worker.request("setup", args, timeout_s=self.settings.open_timeout_s)
            self._describe_base(self.worker, reply)
        return self.worker

    def check(self, model: str, combo: str) -> None:
        """Raise :class:`ABSkip` when the base cannot run ``model`` x ``combo`` (before the head runs it)."""
        case = {"model": model, "combo": combo}
        reply = self._ready().request("plan", case, timeout_s=self.settings.call_timeout_s)
        if not reply.get("runnable"):
            reason = reply.get("reason")
            raise ABSkip(f"the base ({self.settings.python}) cannot run {model}/{combo}: {reason}")

    def _start_pair(self) -> _Pair:
        """A new base and a new head worker, started at once and set up like the head."""
        base = BaseWorker.start(self.settings.python, check=False, wait=False)
        try:
            head = BaseWorker.start(
                self.head_python, role="head", env=_head_environment(), check=False, wait=False
            )
        except BaseException:
            base.close()
            raise
        pair = _Pair(base, head)
        try:
            for worker in (base, head):
                worker.wait_hello()
            assert head.hello is not None
            _check_head_perfsuite(self.head_python, head.hello.perfsuite_path)
            replies = _both(
                [(base, "setup", self._setup_args(base)), (head, "setup", self._setup_args(head))],
                self.settings.open_timeout_s,
            )
        except BaseException:
            pair.close()
            raise
        self._describe_base(base, replies[0])
        return pair

    def _open_attempt(
        self, attempt: int, case: dict[str, Any], trace: bool
    ) -> tuple[dict[str, Any], bool, float]:
        """Prepare ``case`` in the pair of attempt ``attempt`` (the pool's, started if it is not, or a
        new one past the pool): the base's ``open_case`` reply, whether the pair was kept from an
        earlier case, and the seconds of the session's start-up in it, which the time cap leaves
        out. In a pair of the pool that is starting its two processes, when this attempt starts them,
        and what they keep for every later case of the model (``startup_s`` of each side's
        ``open_case``; the two run at once, so the longer of the two): whichever case comes first
        pays for these once. A pair past the pool serves this case alone, and is its own cost. A base
        that cannot prepare the case raises :class:`RemoteError`; a head worker that cannot,
        :class:`ABError` (the head itself could)."""
        self._end_attempt()
        pair = self.pool[attempt] if attempt < len(self.pool) else None
        kept = pair is not None and pair.healthy
        if pair is not None and not kept:
            self._drop(pair)
        pooled = attempt < self.settings.pool
        startup_s = 0.0
        if not kept:
            began = time.monotonic()
            pair = self._start_pair()
            if pooled:
                self.pool.extend([None] * (attempt + 1 - len(self.pool)))
                self.pool[attempt] = pair
                startup_s = time.monotonic() - began
        assert pair is not None
        self.pair = pair
        head_case = {**case, "trace": False}  # the head's own profiled call ran in this process
        opened = _both(
            [(pair.base, "open_case", {**case, "trace": trace}), (pair.head, "open_case", head_case)],
            self.settings.open_timeout_s,
        )
        if pooled:  # an older base perfsuite does not report it: the head's alone counts then
            startup_s += max(float(reply.get("startup_s") or 0.0) for reply in opened)
        return opened[0], kept, startup_s

    def _end_attempt(self, failed: bool = False) -> None:
        """The current attempt's pair lets its case go. A pair of the pool keeps its processes for the
        same attempt of the next case, unless the attempt ``failed`` or the pair cannot release its
        case; every other pair is stopped."""
        pair, self.pair = self.pair, None
        if pair is None:
            return
        if failed or pair not in self.pool or not pair.healthy:
            self._drop(pair)
            return
        requests: list[tuple[BaseWorker, str, dict[str, Any]]] = [
            (pair.base, "close_case", {}),
            (pair.head, "close_case", {}),
        ]
        try:
            _both(requests, self.settings.open_timeout_s)
        except (RemoteError, ABError, WorkerDied):
            self._drop(pair)  # a pair that cannot release a case is not fit for the next one

    def _drop(self, pair: _Pair, grace_s: float | None = None) -> None:
        """Stop ``pair`` and take it out of the pool."""
        self.pool = [None if kept is pair else kept for kept in self.pool]
        pair.close(grace_s)

    def compare(
        self, slot: CaseSlot, result: CaseResult, tolerance: float, settings: ABSettings | None = None
    ) -> dict[str, Any]:
        """Prepare the same case in the base, time the pairs, compare the images: the ``ab`` section.
        ``settings``: this case's caps (:meth:`ABSettings.capped`); default: the session's.

        An eager case is timed in attempts, each between a base worker and a head worker (this
        interpreter, or ``--perf-ab-head``, with this perfsuite) of its own, which prepare the case
        anew for it: a process keeps an offset of its own (its memory layout, say) through every
        re-preparation, so each attempt draws both processes' offsets anew and the interval over
        attempts holds their spread (see :mod:`perfsuite.ab.schedule`). Attempt k runs in the k-th
        pair of the session's pool (see :class:`ABSession`). ``base_pids`` and ``head_pids`` in the
        section list the processes, ``kept_attempts`` counts the attempts whose pair an earlier case
        had started. A compiled case keeps its prepared case in
        this process and one base process (a compile per attempt would cost minutes): its attempts
        are blocks of pairs, and the section says so. The head's image is this process's either way."""
        prepared = slot.prepared
        assert prepared is not None
        settings = settings or self.settings
        eager = not prepared.combo.compiles
        started = time.monotonic()
        case = {"model": prepared.spec.name, "combo": prepared.combo.id}
        self._check_room(prepared, result, copies=2 if eager else 1)
        base_pids: list[int] = []
        head_pids: list[int] = []
        kept_attempts = 0

        def open_attempt(attempt: int, trace: bool) -> tuple[dict[str, Any], float]:
            """The base's ``open_case`` reply and the attempt's start-up seconds."""
            nonlocal kept_attempts
            opened, kept, startup_s = self._open_attempt(attempt, case, trace)
            assert self.pair is not None
            base_pids.append(self.pair.base.process.pid)
            head_pids.append(self.pair.head.process.pid)
            kept_attempts += kept
            return opened, startup_s

        try:
            if eager:
                # The first preparation is before the pairs start: outside the time cap already.
                opened, _ = open_attempt(0, trace=bool((self.setup_args or {}).get("trace", True)))
            else:
                worker = self._ready()
                opened = worker.request("open_case", case, timeout_s=self.settings.open_timeout_s)
                base_pids.append(worker.process.pid)
        except RemoteError as exc:
            self._end_attempt(failed=True)
            where = f"the base ({self.settings.python})"
            raise ABSkip(f"{where} could not prepare {result.case_id}: {exc}") from None
        except BaseException:
            self._end_attempt(failed=True)
            raise
        released = False
        try:
            base_open_s = time.monotonic() - started
            slowest = max(result.latency.median, *opened.get("warmup_s") or [0.0])
            call_timeout = max(self.settings.call_timeout_s, 20.0 * slowest)
            attempts = iter(range(1, 1 << 30))

            def base_worker() -> BaseWorker:
                worker = self.pair.base if eager and self.pair is not None else self.worker
                assert worker is not None
                return worker

            def head_call() -> float:
                if not eager:
                    return _head(slot).timed_call()
                assert self.pair is not None
                return float(self.pair.head.request("call", timeout_s=call_timeout)["seconds"])

            def refresh() -> float:
                return open_attempt(next(attempts), trace=False)[1]

            outcome = run_pairs(
                head_call,
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
            path.unlink()
            released = True
            if eager:
                self._end_attempt()
            else:
                worker.request("close_case", timeout_s=self.settings.open_timeout_s)
        except RemoteError as exc:
            what = "release" if released else "measure"
            self._release(self.worker, released or eager)
            raise ABError(f"the base could not {what} {result.case_id}: {exc}\n{exc.traceback}") from None
        except Exception:
            self._release(self.worker, released or eager)
            raise
        finally:
            # An eager case that did not end well (an error, an interrupt) stops its attempt's pair.
            self._end_attempt(failed=True)
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
            "fidelity": _fidelity(_head(slot).image(), base_image, result.case_id),
            "base": base,
            "head": {**self.head, "python_command": self.head_python if eager else sys.executable},
            "version_changes": version_differences(base, self.head),
            "base_open_s": base_open_s,
            "base_pids": base_pids,
            "head_pids": head_pids,
            "pool": self.settings.pool if eager else 0,
            "kept_attempts": kept_attempts,
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

    def _check_room(self, prepared: PreparedCase, result: CaseResult, copies: int = 1) -> None:
        """On CUDA the workers hold ``copies`` more copies of the case beside this process's (the base's,
        and for an eager case the head worker's): the free memory must hold them."""
        if prepared.device.type != "cuda" or not result.peak_mem_bytes:
            return
        import torch

        free_bytes, total_bytes = torch.cuda.mem_get_info(prepared.device)
        if free_bytes < copies * result.peak_mem_bytes:
            gib = 2**30
            workers = "the base worker" if copies == 1 else f"{copies} workers (base and head)"
            raise ABSkip(
                f"{workers} do not fit beside the head on {prepared.device}: each needs the head's peak "
                f"of {result.peak_mem_bytes / gib:.1f} GiB and {free_bytes / gib:.1f} of "
                f"{total_bytes / gib:.1f} GiB are free; use a smaller --perf-size, or a larger GPU"
            )

    def close(self, grace_s: float | None = None) -> None:
        """Stop the workers (if any: the current pair, the pool, the session's base) and reap them."""
        pair, self.pair = self.pair, None
        if pair is not None:
            self._drop(pair, grace_s)
        for kept in self.pool:
            if kept is not None:
                self._drop(kept, grace_s)
        self.pool = []
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.close(*(() if grace_s is None else (grace_s,)))
