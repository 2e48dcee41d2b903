"""The base worker: ``PYTHON -m perfsuite.ab.worker``, started by the head under ``--perf-ab-base``.

It measures with the perfsuite, torch and diffusers of its own environment, through the same code
the head uses (:mod:`perfsuite.catalog`, :mod:`perfsuite.optimizations`, :func:`perfsuite.runner.open_case`
and :meth:`perfsuite.runner.PreparedCase.timed_call`), and does only what the head asks, one request
at a time (see :mod:`perfsuite.ab.protocol`). While it waits for a request it runs nothing, so only
one side runs at a time.

It never outlives the head: Linux kills it when the head dies (``PR_SET_PDEATHSIG``), it exits at
the end of its stdin, and it ignores Ctrl-C so that the head decides when it stops.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, BinaryIO

from perfsuite import __version__
from perfsuite.ab.protocol import PROTOCOL_VERSION, ProtocolError, decode, encode, error_reply, ok_reply

__all__ = ["PARENT_PID_ENV", "Worker", "main"]

#: The head's pid: a worker whose parent is already another process exits at once.
PARENT_PID_ENV = "PERFSUITE_AB_PARENT_PID"
_PR_SET_PDEATHSIG = 1
_TRACEBACK_CHARS = 4000


def _claim_stdout() -> BinaryIO:
    """Keep the real stdout for the protocol and send everything else written to fd 1 to stderr."""
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "wb", buffering=0)


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError) as exc:  # no usable libc: the end of stdin still stops us
            print(f"perfsuite worker: PR_SET_PDEATHSIG unavailable ({exc})", file=sys.stderr)
    parent = os.environ.get(PARENT_PID_ENV)
    if parent and parent.isdigit() and os.getppid() != int(parent):
        os._exit(3)  # the head died before the signal was armed


def _hello() -> dict[str, Any]:
    import platform

    import perfsuite

    return {
        "type": "hello",
        "protocol": PROTOCOL_VERSION,
        "perfsuite": __version__,
        "perfsuite_path": str(Path(perfsuite.__file__).resolve().parent),
        "python": platform.python_version(),
        "executable": sys.executable,
        "pid": os.getpid(),
    }


def _error_kind(exc: BaseException) -> str:
    optimizations = sys.modules.get("perfsuite.optimizations")  # not loaded: exc cannot be Unsupported
    if optimizations is not None and isinstance(exc, optimizations.Unsupported):
        return "unsupported"
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return "out_of_memory"
    return "error"


class Worker:
    """The state between requests: the session (models, references) and the open case, if any."""

    def __init__(self) -> None:
        self.session: Any = None
        self.case: ExitStack | None = None
        self.prepared: Any = None
        self.cache_root: str | None = None
        self.ops: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "ping": lambda args: {"pid": os.getpid()},
            "setup": self.setup,
            "plan": self.plan,
            "open_case": self.open_case,
            "call": self.call,
            "image": self.image,
            "close_case": self.close_case,
            "shutdown": self.close_case,
        }

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        request_id, op, args = message.get("id"), message.get("op"), message.get("args") or {}
        if not isinstance(op, str) or op not in self.ops or not isinstance(args, dict):
            problem = f"bad request {message!r:.200}; ops: {', '.join(self.ops)}"
            return error_reply(request_id, "protocol", "ProtocolError", problem)
        try:
            return ok_reply(request_id, self.ops[op](args))
        except Exception as exc:
            text = traceback.format_exc()[-_TRACEBACK_CHARS:]
            print(text, file=sys.stderr, flush=True)
            return error_reply(request_id, _error_kind(exc), type(exc).__name__, str(exc), text)

    # --- requests ----------------------------------------------------------------------------------

    def setup(self, args: dict[str, Any]) -> dict[str, Any]:
        import torch

        from perfsuite import hardware
        from perfsuite.baselines import current_commit
        from perfsuite.runner import RunSettings
        from perfsuite.session import PerfSession

        self.close_case({})
        device = hardware.resolve_device(str(args["device"]))
        if args.get("num_threads"):
            torch.set_num_threads(int(args["num_threads"]))
        self.cache_root = args.get("compile_cache_dir")
        settings = RunSettings(warmup=int(args["warmup"]), rounds=3, trace=bool(args.get("trace", True)))
        self.session = PerfSession(
            device=torch.device(device),
            capabilities=hardware.capabilities(device),
            profile=hardware.profile_id(device),
            preset="ab",
            model_names=[],
            settings=settings,
            call_overrides=dict(args.get("call_overrides") or {}),
        )
        import perfsuite

        checkout = Path(perfsuite.__file__).resolve().parent
        return {
            "machine": hardware.collect_machine_info(device).to_dict(),
            "commit": current_commit(checkout),
            "num_threads": torch.get_num_threads(),
        }

    def _session(self) -> Any:
        if self.session is None:
            raise RuntimeError("the worker has no session yet: the head must send 'setup' first")
        return self.session

    def plan(self, args: dict[str, Any]) -> dict[str, Any]:
        """Whether ``model`` x ``combo`` can run here, and if not, why (never builds anything)."""
        session = self._session()
        from perfsuite.catalog import get_model
        from perfsuite.matrix import parse_combo, prune_reason

        try:
            combo = parse_combo(str(args["combo"]))
            family = get_model(str(args["model"])).family
        except ValueError as exc:
            return {"runnable": False, "reason": str(exc)}
        reason = prune_reason(combo, session.device, session.capabilities, family)
        return {"runnable": reason is None, "reason": reason}

    def open_case(self, args: dict[str, Any]) -> dict[str, Any]:
        """Prepare a case. ``startup_s`` in the reply: the seconds this worker spent on what it keeps
        for every later case of the model (imports, the model's base pipeline and fp32 reference),
        about 0 once an earlier case paid for them."""
        began = time.perf_counter()
        session = self._session()
        from perfsuite.globalstate import fresh_compile_caches
        from perfsuite.matrix import parse_combo
        from perfsuite.optimizations import Target
        from perfsuite.runner import open_case

        self.close_case({})
        model, combo = str(args["model"]), parse_combo(str(args["combo"]))
        settings = session.settings
        if "trace" in args:  # a case prepared again between attempts skips its profiled call
            settings = dataclasses.replace(settings, trace=bool(args["trace"]))
        spec = session.spec(model)
        # The resident fp32 pipelines match the head's (its base pipeline and its reference), so the
        # peak memory of both sides covers the same things.
        session.reference(model)
        startup_s = time.perf_counter() - began
        techniques = frozenset(combo.techniques)
        target = Target(session.device, session.capabilities, spec.family, combo.dtype, techniques)
        stack = ExitStack()
        try:
            if combo.compiles and self.cache_root:
                stack.enter_context(fresh_compile_caches(self.cache_root))
            make_pipe = lambda dtype: session.fresh_pipe(model, dtype)  # noqa: E731
            prepared = stack.enter_context(open_case(spec, combo, make_pipe, target, settings))
        except BaseException:
            stack.close()
            raise
        self.case, self.prepared = stack, prepared
        return {
            "warmup_s": list(prepared.warmup_s),
            "peak_mem_bytes": prepared.peak_mem_bytes,
            "peak_mem_kind": prepared.peak_mem_kind,
            "evidence": list(prepared.evidence),
            "unique_graphs": prepared.compiled["unique_graphs"],
            "graph_breaks": prepared.compiled["graph_breaks"],
            "startup_s": startup_s,
        }

    def _prepared(self) -> Any:
        if self.prepared is None:
            raise RuntimeError("no case is open: the head must send 'open_case' first")
        return self.prepared

    def call(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"seconds": self._prepared().timed_call()}

    def image(self, args: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        image = self._prepared().image()
        path = Path(str(args["path"]))
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as handle:
            np.save(handle, image)
        os.replace(partial, path)
        return {"path": str(path), "shape": list(image.shape)}

    def close_case(self, args: dict[str, Any]) -> dict[str, Any]:
        case, self.case, self.prepared = self.case, None, None
        if case is not None:
            case.close()
        return {}


def serve(reader: BinaryIO, writer: BinaryIO) -> int:
    """Say hello, then answer requests until ``shutdown`` or the end of ``reader``."""
    worker = Worker()
    writer.write(encode(_hello()))
    try:
        for line in reader:
            if not line.strip():
                continue
            try:
                message = decode(line)
            except ProtocolError as exc:
                writer.write(encode(error_reply(None, "protocol", "ProtocolError", str(exc))))
                continue
            writer.write(encode(worker.handle(message)))
            if message.get("op") == "shutdown":
                break
    finally:
        try:
            worker.close_case({})
        except Exception:  # exiting anyway: report the failed release, keep the original outcome
            traceback.print_exc()
    return 0


def main() -> int:
    writer = _claim_stdout()
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return serve(sys.stdin.buffer, writer)


if __name__ == "__main__":
    # Run the importable module rather than this copy of it named __main__, so that a base
    # environment's site hooks that wrap perfsuite.ab.worker reach the code that runs.
    from perfsuite.ab import worker as _worker

    sys.exit(_worker.main())
