"""The head's handle on one base worker process: check the interpreter, start, ask, stop.

:meth:`BaseWorker.start` first runs the interpreter once to see that it is a Python that can import
perfsuite and has the A/B worker, then starts ``PYTHON -m perfsuite.ab.worker`` and waits for its
``hello``. Every problem there is a :class:`WorkerStartError` whose message says what to fix.

A request waits for its reply with a timeout. A worker that exits, or does not answer in time, is
stopped and reaped, and the request raises :class:`WorkerDied` with the tail of the worker's stderr.
:meth:`BaseWorker.close` always leaves no process behind: ``shutdown``, then SIGTERM, then SIGKILL.
No torch here.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, NoReturn

from perfsuite.ab.protocol import (
    PROTOCOL_VERSION,
    WORKER_MODULE,
    Hello,
    ProtocolError,
    RemoteError,
    decode,
    encode,
    request,
)
from perfsuite.ab.worker import PARENT_PID_ENV

__all__ = [
    "ROLE_FLAGS",
    "START_TIMEOUT_S",
    "BaseWorker",
    "WorkerDied",
    "WorkerStartError",
    "precheck",
    "resolve_interpreter",
    "worker_environment",
]

#: The option that names each side's interpreter, which the errors about that side name.
ROLE_FLAGS = {"base": "--perf-ab-base", "head": "--perf-ab-head"}
#: How long the interpreter check and the worker's hello may take (a cold disk, a loaded machine).
START_TIMEOUT_S = 120.0
_STDERR_TAIL_CHARS = 6000
_STOP_WAIT_S = 10.0
_PRECHECK_MARK = "PERFSUITE-AB-PRECHECK "
_PRECHECK = f"""
import json, sys
found = {{"python": sys.version.split()[0], "executable": sys.executable}}
try:
    import perfsuite
except Exception as exc:
    found["error"] = type(exc).__name__ + ": " + str(exc)
else:
    import importlib.util
    found["version"] = getattr(perfsuite, "__version__", None)
    found["path"] = str(getattr(perfsuite, "__file__", None))
    try:
        found["worker"] = importlib.util.find_spec("{WORKER_MODULE}") is not None
    except ImportError:
        found["worker"] = False
print("{_PRECHECK_MARK}" + json.dumps(found), flush=True)
"""


class WorkerStartError(RuntimeError):
    """The base interpreter cannot serve as an A/B base; the message says why and what to do."""


class WorkerDied(RuntimeError):
    """The worker exited or stopped answering; it has been stopped and reaped."""

    def __init__(self, message: str, stderr_tail: str = "", role: str = "base") -> None:
        super().__init__(message)
        self.stderr_tail = stderr_tail
        self.role = role

    def __str__(self) -> str:
        text = super().__str__()
        if self.stderr_tail.strip():
            text += f"\n--- {self.role} worker stderr (last lines) ---\n" + self.stderr_tail.rstrip()
        return text


def resolve_interpreter(python: str, role: str = "base") -> str:
    """The absolute path of ``python`` (a path, or a command on PATH); :class:`WorkerStartError` if it
    does not exist or cannot be executed. ``role`` ("base" or "head") names the side in the errors."""
    flag = ROLE_FLAGS[role]
    if os.sep in python or (os.altsep and os.altsep in python):
        path = Path(python).expanduser()
        if not path.exists():
            raise WorkerStartError(
                f"{flag}: {python} does not exist; give the python of the {role} environment"
            )
        if path.is_dir():
            example = path / "bin" / "python"
            raise WorkerStartError(f"{flag}: {python} is a folder; give the python in it (e.g. {example})")
        if not os.access(path, os.X_OK):
            raise WorkerStartError(f"{flag}: {python} is not executable (chmod +x it, or give a python)")
        return str(path.absolute())
    found = shutil.which(python)
    if found is None:
        raise WorkerStartError(f"{flag}: no command {python!r} on PATH; give the path of a python")
    return found


def _tail(lines: deque[str]) -> str:
    return "".join(lines)[-_STDERR_TAIL_CHARS:]


def _exit_text(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


def worker_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """The head's environment for the base, without ``PYTHONPATH``: the base imports its own
    perfsuite, never the head's (a wrapper script can set the variables its environment needs)."""
    found = dict(os.environ if env is None else env)
    found.pop("PYTHONPATH", None)
    found[PARENT_PID_ENV] = str(os.getpid())
    found.setdefault("PYTHONUNBUFFERED", "1")
    return found


def precheck(
    python: str,
    env: dict[str, str],
    cwd: Path,
    timeout_s: float = START_TIMEOUT_S,
    role: str = "base",
) -> dict[str, Any]:
    """Run ``python`` once in ``cwd``: is it a Python, can it import perfsuite, does that perfsuite have
    the A/B worker? Returns what it found; raises :class:`WorkerStartError` for each problem."""
    flag = ROLE_FLAGS[role]
    command = [python, "-c", _PRECHECK]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=cwd, check=False
        )
    except OSError as exc:
        raise WorkerStartError(f"{flag}: {python} cannot be run: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        problem = f"did not finish a 'python -c' within {timeout_s:.0f} s"
        raise WorkerStartError(f"{flag}: {python} {problem}") from None
    marked = [line for line in done.stdout.splitlines() if line.startswith(_PRECHECK_MARK)]
    if done.returncode != 0 or not marked:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}, no output"])[-1]
        raise WorkerStartError(f"{flag}: {python} does not run as a Python interpreter ({last})")
    found: dict[str, Any] = json.loads(marked[-1][len(_PRECHECK_MARK) :])
    if "error" in found:
        raise WorkerStartError(
            f"{flag}: {python} cannot import perfsuite ({found['error']}); install the {role} "
            f"checkout into that environment: {python} -m pip install -e <{role} checkout>"
        )
    if not found.get("worker"):
        raise WorkerStartError(
            f"{flag}: the perfsuite of {python} ({found.get('path')}, version "
            f"{found.get('version')}) is too old for A/B runs: it has no {WORKER_MODULE}. Use a base "
            f"checkout that has it (protocol {PROTOCOL_VERSION}), or gate on the stored baselines instead"
        )
    return found


class BaseWorker:
    """One running ``PYTHON -m perfsuite.ab.worker`` and the threads that read its output."""

    def __init__(
        self, python: str, process: subprocess.Popen[bytes], folder: Path, role: str = "base"
    ) -> None:
        self.python = python
        #: "base", or "head" for a worker that runs the head's side of an eager case's attempt.
        self.role = role
        self.flag = ROLE_FLAGS[role]
        self.process = process
        #: A scratch folder of this worker (images, compile caches), removed by :meth:`close`.
        self.folder = folder
        self._replies: queue.Queue[bytes | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=200)
        self._next_id = 0
        #: True once a request was abandoned before its reply (Ctrl-C): the replies are then out of step.
        self.abandoned = False
        #: The id of a request sent and not yet received (see :meth:`send`).
        self.pending: int | None = None
        self._threads = [
            threading.Thread(target=self._read_stdout, name="perfsuite-ab-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name="perfsuite-ab-stderr", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.hello: Hello | None = None

    # --- starting ------------------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        python: str,
        *,
        env: dict[str, str] | None = None,
        timeout_s: float = START_TIMEOUT_S,
        role: str = "base",
        pythonpath: str | None = None,
        check: bool = True,
        wait: bool = True,
    ) -> BaseWorker:
        """Check ``python`` and start a worker with it; :class:`WorkerStartError` says what is wrong.

        The worker runs in a scratch folder of its own (so that the head's working directory never
        shadows the base's perfsuite), with :func:`worker_environment` of ``env`` and ``pythonpath``
        as its ``PYTHONPATH`` if given. ``check=False`` skips the interpreter check (a new worker of
        an interpreter already checked); ``wait=False`` returns before the hello, which
        :meth:`wait_hello` then waits for (to start several workers at once)."""
        python = resolve_interpreter(python, role)
        env = worker_environment(env)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        folder = Path(tempfile.mkdtemp(prefix="perfsuite-ab-"))
        try:
            if check:
                precheck(python, env, folder, timeout_s, role)
            process = subprocess.Popen(
                [python, "-m", WORKER_MODULE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=folder,
            )
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            problem = f"{python} cannot be run: {exc.strerror or exc}"
            raise WorkerStartError(f"{ROLE_FLAGS[role]}: {problem}") from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        worker = cls(python, process, folder, role)
        if wait:
            worker.wait_hello(timeout_s)
        return worker

    def wait_hello(self, timeout_s: float = START_TIMEOUT_S) -> Hello:
        """Wait for the worker's hello (see :meth:`start`); a bad one stops the worker."""
        if self.hello is None:
            try:
                self.hello = self._receive_hello(timeout_s)
            except BaseException:
                self.close()
                raise
        return self.hello

    def _receive_hello(self, timeout_s: float) -> Hello:
        """The first protocol line. Lines before it (a wrapper or site hook that prints at start-up,
        before the worker owns its stdout) go to the stderr tail."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._replies.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise WorkerStartError(
                    f"{self.flag}: the worker of {self.python} said nothing within {timeout_s:.0f} s"
                ) from None
            if line is None:
                code = self.process.wait()
                raise WorkerStartError(
                    f"{self.flag}: the worker of {self.python} {_exit_text(code)} before it said hello: "
                    f"{self.stderr_tail().strip()[-800:]}"
                )
            if line.lstrip().startswith(b"{"):
                break
            self._stderr.append("(stdout before hello) " + line.decode("utf-8", "replace"))
        try:
            hello = Hello.from_message(decode(line))
        except ProtocolError as exc:
            problem = f"the worker of {self.python} does not speak the protocol: {exc}"
            raise WorkerStartError(f"{self.flag}: {problem}") from None
        if hello.protocol != PROTOCOL_VERSION:
            older = hello.protocol < PROTOCOL_VERSION
            fix = "the base is too old; use a newer base checkout" if older else "update this (head) checkout"
            raise WorkerStartError(
                f"{self.flag}: the perfsuite of {self.python} ({hello.perfsuite_path}) speaks A/B "
                f"protocol {hello.protocol}, this one speaks {PROTOCOL_VERSION}: {fix}"
            )
        return hello

    # --- talking -------------------------------------------------------------------------------------

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._replies.put(line)
        self._replies.put(None)

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line.decode("utf-8", "replace"))

    def stderr_tail(self) -> str:
        """The last lines the worker wrote to stderr."""
        return _tail(self._stderr)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def request(self, op: str, args: dict[str, Any] | None = None, *, timeout_s: float) -> dict[str, Any]:
        """Send one request and return its result. :class:`~perfsuite.ab.protocol.RemoteError` when the
        worker reports an error; :class:`WorkerDied` (the worker is then stopped) when it exits or
        stays silent for ``timeout_s``."""
        return self.receive(self.send(op, args), op, timeout_s=timeout_s)

    def send(self, op: str, args: dict[str, Any] | None = None) -> int:
        """Send one request without waiting (:meth:`receive` takes its reply): the id of the request."""
        if self.abandoned:
            self._stop(0.0)
            self._fail(
                f"the {self.role} worker was left in the middle of a request; it was stopped before {op!r}"
            )
        self._next_id += 1
        request_id = self._next_id
        stdin = self.process.stdin
        try:
            if stdin is None or stdin.closed:
                raise BrokenPipeError("the worker's stdin is closed")
            stdin.write(encode(request(request_id, op, args)))
            stdin.flush()
        except OSError:
            self._fail(
                f"the {self.role} worker {_exit_text(self._stop(0.5))} before the request {op!r} reached it"
            )
        self.pending = request_id
        return request_id

    def receive(self, request_id: int, op: str, *, timeout_s: float) -> dict[str, Any]:
        """The reply to the request ``request_id`` that :meth:`send` sent (``op`` names it in errors)."""
        self.pending = None
        try:
            line = self._replies.get(timeout=timeout_s)
        except queue.Empty:
            self._stop(0.0)
            self._fail(
                f"the {self.role} worker did not answer {op!r} within {timeout_s:.0f} s; it was stopped"
            )
        except BaseException:
            self.abandoned = True  # interrupted while waiting: its reply will come, out of step
            raise
        if line is None:
            self._fail(f"the {self.role} worker {_exit_text(self._stop(_STOP_WAIT_S))} during {op!r}")
        try:
            reply = decode(line)
        except ProtocolError as exc:
            self._stop(0.0)
            self._fail(f"the {self.role} worker wrote something that is not protocol during {op!r}: {exc}")
        if reply.get("id") != request_id:
            self._stop(0.0)
            self._fail(f"the {self.role} worker answered request {reply.get('id')!r}, expected {request_id}")
        if not reply.get("ok"):
            raise RemoteError.from_reply(reply)
        result = reply.get("result")
        return dict(result) if isinstance(result, dict) else {}

    def _fail(self, message: str) -> NoReturn:
        for thread in self._threads:
            thread.join(timeout=1.0)  # let the last lines of stderr arrive
        raise WorkerDied(message, self.stderr_tail(), self.role)

    # --- stopping ------------------------------------------------------------------------------------

    def _stop(self, grace_s: float) -> int | None:
        """Wait up to ``grace_s`` for the process to exit, then SIGTERM, then SIGKILL; reap it."""
        process = self.process
        for step in (None, process.terminate, process.kill):
            if step is not None:
                with contextlib.suppress(ProcessLookupError):  # it exited meanwhile: wait() reaps it
                    step()
            try:
                return process.wait(timeout=grace_s if step is None else _STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                continue
        return process.poll()

    def close(self, grace_s: float = _STOP_WAIT_S) -> None:
        """Ask the worker to shut down, give it ``grace_s`` to exit (it may be finishing a call), then
        terminate it; either way it is reaped and its scratch folder removed."""
        if self.alive and self.process.stdin is not None:
            try:
                self.process.stdin.write(encode(request(self._next_id + 1, "shutdown")))
                self.process.stdin.flush()
                self.process.stdin.close()
            except OSError:
                pass  # it is already gone; _stop reaps it
        self._stop(grace_s)
        for thread in self._threads:
            thread.join(timeout=2.0)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None and not stream.closed:
                with contextlib.suppress(OSError):  # a pipe broken by the worker's death holds nothing
                    stream.close()
        shutil.rmtree(self.folder, ignore_errors=True)
