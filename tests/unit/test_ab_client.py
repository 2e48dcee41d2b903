"""The head's handle on a base worker: interpreter checks with a clear message each, the protocol,
and process hygiene (a dead or silent worker is reaped; the worker dies with its parent). The real
worker answers its hello before it imports torch, so these run in well under a second each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from perfsuite.ab.client import (
    BaseWorker,
    WorkerDied,
    WorkerStartError,
    precheck,
    resolve_interpreter,
    worker_environment,
)
from perfsuite.ab.protocol import PROTOCOL_VERSION, ProtocolError, RemoteError, decode, encode

PYTHON = sys.executable


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


def fake_perfsuite(root: Path, worker: str | None) -> Path:
    """A perfsuite package under ``root``; with ``worker``, a perfsuite.ab.worker module of that source."""
    package = root / "perfsuite"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("__version__ = '0.0.1'\n")
    if worker is not None:
        (package / "ab").mkdir()
        (package / "ab" / "__init__.py").write_text("")
        (package / "ab" / "worker.py").write_text(textwrap.dedent(worker))
    return root


def fake_base(tmp_path: Path, worker: str | None) -> str:
    """An interpreter that sees only the fake perfsuite (no site-packages, so not the real one)."""
    root = fake_perfsuite(tmp_path / "fake", worker)
    return script(tmp_path / "python", f'PYTHONPATH={root} exec {PYTHON} -S "$@"\n')


HELLO = """
import json, os, sys
print(json.dumps({{"type": "hello", "protocol": {protocol}, "perfsuite": "0.0.1", "perfsuite_path": "x",
                  "python": "3", "executable": sys.executable, "pid": os.getpid()}}), flush=True)
"""


def test_a_missing_a_folder_or_a_non_executable_interpreter_is_named(tmp_path):
    with pytest.raises(WorkerStartError, match=r"--perf-ab-base: .*/nope/python does not exist"):
        resolve_interpreter(str(tmp_path / "nope" / "python"))
    with pytest.raises(WorkerStartError, match="is a folder; give the python in it"):
        resolve_interpreter(str(tmp_path))
    plain = tmp_path / "python3"
    plain.write_text("")
    with pytest.raises(WorkerStartError, match="is not executable"):
        resolve_interpreter(str(plain))
    with pytest.raises(WorkerStartError, match="no command 'no-such-python-here' on PATH"):
        resolve_interpreter("no-such-python-here")
    assert (
        resolve_interpreter("sh")
        == subprocess.run(["which", "sh"], capture_output=True, text=True).stdout.strip()
    )


def test_something_that_is_not_a_python_is_refused(tmp_path):
    fake = script(tmp_path / "python", "echo 'not python' >&2; exit 3\n")
    with pytest.raises(WorkerStartError, match=r"does not run as a Python interpreter \(not python\)"):
        BaseWorker.start(fake)


def test_a_python_without_perfsuite_is_refused_with_the_install_command(tmp_path):
    bare = script(tmp_path / "python", f'exec {PYTHON} -S "$@"\n')
    with pytest.raises(WorkerStartError) as error:
        BaseWorker.start(bare)
    message = str(error.value)
    assert "cannot import perfsuite (ModuleNotFoundError: No module named 'perfsuite')" in message
    assert f"{bare} -m pip install -e <base checkout>" in message and "\n" not in message
    with pytest.raises(WorkerStartError) as error:
        precheck(bare, worker_environment(), tmp_path, role="head")
    assert str(error.value).startswith("--perf-ab-head: ")
    assert f"{bare} -m pip install -e <head checkout>" in str(error.value)


def test_a_perfsuite_without_the_ab_worker_is_too_old(tmp_path):
    with pytest.raises(
        WorkerStartError, match=r"version 0\.0\.1\) is too old for A/B runs: it has no perfsuite\.ab\.worker"
    ):
        BaseWorker.start(fake_base(tmp_path, worker=None))


def test_a_worker_of_another_protocol_version_is_refused_saying_which_side_to_update(tmp_path):
    with pytest.raises(
        WorkerStartError,
        match=f"speaks A/B protocol 0, this one speaks {PROTOCOL_VERSION}: the base is too old",
    ):
        BaseWorker.start(fake_base(tmp_path, HELLO.format(protocol=0)))


def test_a_worker_that_exits_before_its_hello_shows_its_stderr(tmp_path):
    worker = "import sys\nprint('cannot start: no GPU driver', file=sys.stderr)\nsys.exit(4)\n"
    with pytest.raises(
        WorkerStartError, match="exited with code 4 before it said hello: cannot start: no GPU driver"
    ):
        BaseWorker.start(fake_base(tmp_path, worker))


def test_the_real_worker_answers_and_is_reaped_on_close():
    worker = BaseWorker.start(PYTHON)
    try:
        assert worker.hello is not None and worker.hello.protocol == PROTOCOL_VERSION
        assert Path(worker.hello.perfsuite_path) == Path(__file__).resolve().parents[2] / "perfsuite"
        assert worker.request("ping", timeout_s=30) == {"pid": worker.process.pid}
        with pytest.raises(RemoteError, match="no session yet") as error:
            worker.request("open_case", {"model": "tiny-sd", "combo": "fp32"}, timeout_s=30)
        assert error.value.kind == "error" and "Traceback" in error.value.traceback
        assert worker.alive  # an error reply leaves the worker serving
    finally:
        worker.close()
    assert worker.process.returncode == 0 and not worker.folder.exists()


DIES_ON_CALL = (
    HELLO.format(protocol=PROTOCOL_VERSION)
    + """
for line in sys.stdin:
    request = json.loads(line)
    if request["op"] == "call":
        print("base worker: segfault in a kernel", file=sys.stderr, flush=True)
        os._exit(7)
    if request["op"] == "hang":
        pass
    print(json.dumps({"type": "reply", "id": request["id"], "ok": True, "result": {}}), flush=True)
"""
)

HANGS_ON_CALL = (
    HELLO.format(protocol=PROTOCOL_VERSION)
    + """
import time
for line in sys.stdin:
    print("base worker: stuck", file=sys.stderr, flush=True)
    time.sleep(600)
"""
)


def test_a_worker_that_dies_mid_request_raises_with_its_stderr_and_is_reaped(tmp_path):
    worker = BaseWorker.start(fake_base(tmp_path, DIES_ON_CALL))
    assert worker.request("ping", timeout_s=10) == {}
    with pytest.raises(WorkerDied) as error:
        worker.request("call", timeout_s=10)
    assert "the base worker exited with code 7 during 'call'" in str(error.value)
    assert "base worker: segfault in a kernel" in error.value.stderr_tail
    assert worker.process.returncode == 7
    with pytest.raises(WorkerDied, match="before the request 'ping' reached it"):
        worker.request("ping", timeout_s=10)
    worker.close()


def test_a_silent_worker_is_stopped_at_the_timeout(tmp_path):
    worker = BaseWorker.start(fake_base(tmp_path, HANGS_ON_CALL))
    started = time.monotonic()
    with pytest.raises(WorkerDied, match=r"did not answer 'call' within 1 s; it was stopped") as error:
        worker.request("call", timeout_s=1.0)
    assert time.monotonic() - started < 15
    assert worker.process.returncode == -signal.SIGTERM and "base worker: stuck" in error.value.stderr_tail
    worker.close()


def test_lines_a_wrapper_prints_before_the_hello_are_kept_out_of_the_protocol(tmp_path):
    noisy = script(tmp_path / "python", f'echo "loading modules..."; exec {PYTHON} "$@"\n')
    worker = BaseWorker.start(noisy)
    try:
        assert worker.request("ping", timeout_s=30)["pid"] == worker.process.pid
        assert "(stdout before hello) loading modules..." in worker.stderr_tail()
    finally:
        worker.close()


def test_the_worker_moves_every_other_write_to_stdout_onto_stderr():
    code = (
        "import os; from perfsuite.ab.worker import _claim_stdout\n"
        "protocol = _claim_stdout()\n"
        "print('a library prints'); os.write(1, b'a C extension writes\\n'); protocol.write(b'{}\\n')\n"
    )
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, check=True)
    assert done.stdout == b"{}\n"
    assert b"a library prints" in done.stderr and b"a C extension writes" in done.stderr


def test_the_worker_dies_with_its_parent():
    code = (
        "import sys, time; from perfsuite.ab.client import BaseWorker\n"
        "worker = BaseWorker.start(sys.executable); print(worker.process.pid, flush=True); time.sleep(120)\n"
    )
    parent = subprocess.Popen([PYTHON, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        status = Path(f"/proc/{pid}/status").read_text() if Path(f"/proc/{pid}/status").exists() else ""
        if "State:\tZ" in status:  # killed, waiting only for init to reap it
            break
        time.sleep(0.05)
    status = Path(f"/proc/{pid}/status")
    assert not status.exists() or "State:\tZ" in status.read_text(), "the worker outlived its parent"


def test_protocol_lines_round_trip_and_anything_else_is_refused():
    assert decode(encode({"id": 1, "op": "call", "args": {}})) == {"id": 1, "op": "call", "args": {}}
    with pytest.raises(ProtocolError, match="not a protocol line"):
        decode(b"Loading checkpoint shards\n")
    with pytest.raises(ProtocolError, match="a JSON list"):
        decode(b"[1, 2]\n")
    with pytest.raises(ProtocolError, match="cannot encode"):
        encode({"seconds": float("nan")})
