"""The protocol between the head (the pytest process) and the base worker: JSON lines over pipes.

The head starts ``PYTHON -m perfsuite.ab.worker`` and talks to it over the worker's stdin and stdout,
one JSON object per line (UTF-8). The worker's stdout carries nothing else: it moves every print of
the libraries it loads to stderr, which the head keeps a tail of for its error messages.

1. The worker says ``hello`` first, before it imports torch::

       {"type": "hello", "protocol": 1, "perfsuite": "0.1.0", "perfsuite_path": "/src/perfsuite",
        "python": "3.11.9", "executable": "/venv/bin/python", "pid": 4242}

2. Then it answers requests in order, one reply each::

       -> {"id": 3, "op": "call", "args": {}}
       <- {"type": "reply", "id": 3, "ok": true, "result": {"seconds": 0.31}}
       <- {"type": "reply", "id": 3, "ok": false,
           "error": {"kind": "error", "type": "RuntimeError", "message": "...", "traceback": "..."}}

Requests (``op``): ``setup`` (device, threads, call overrides, warm-up; returns the machine info and
the checkout's commit), ``plan`` (can this model x combo run here?), ``open_case`` (build, apply,
verify, warm up; returns the warm-up times, peak memory, the evidence and ``startup_s``, the seconds
spent on what the worker keeps for later cases, which an older worker leaves out), ``call`` (one timed call;
returns its seconds), ``image`` (save the last output as ``.npy`` at a path the head chose),
``close_case`` (release the pipeline, check the globals) and ``shutdown``. Error ``kind`` is one of
:data:`ERROR_KINDS`: ``unsupported`` (this combo cannot run in the base), ``out_of_memory``,
``error`` (any other exception, with its traceback) or ``protocol`` (a malformed request).

A change that an older peer would misread bumps :data:`PROTOCOL_VERSION`; the head refuses a worker
of any other version, with a message that says which side to update. No torch here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ERROR_KINDS",
    "OPS",
    "PROTOCOL_VERSION",
    "WORKER_MODULE",
    "Hello",
    "ProtocolError",
    "RemoteError",
    "decode",
    "encode",
    "error_reply",
    "ok_reply",
    "request",
]

PROTOCOL_VERSION = 1
WORKER_MODULE = "perfsuite.ab.worker"
OPS = ("setup", "plan", "open_case", "call", "image", "close_case", "ping", "shutdown")
ERROR_KINDS = ("unsupported", "out_of_memory", "error", "protocol")


class ProtocolError(ValueError):
    """A line that is not a message of this protocol; the message quotes the start of the line."""


def encode(message: Mapping[str, Any]) -> bytes:
    """One message as a line of JSON (no NaN or infinity: every number must be finite)."""
    try:
        text = json.dumps(message, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"cannot encode message {dict(message)!r:.200}: {exc}") from None
    return text.encode("utf-8") + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """The message of one line; :class:`ProtocolError` for anything but a JSON object."""
    try:
        message = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProtocolError(f"not a protocol line: {line[:200]!r}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"not a protocol message (a JSON {type(message).__name__}): {line[:200]!r}")
    return message


def request(request_id: int, op: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; known: {', '.join(OPS)}")
    return {"id": request_id, "op": op, "args": dict(args or {})}


def ok_reply(request_id: Any, result: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "reply", "id": request_id, "ok": True, "result": dict(result)}


def error_reply(
    request_id: Any, kind: str, exc_type: str, message: str, traceback_text: str = ""
) -> dict[str, Any]:
    if kind not in ERROR_KINDS:
        raise ValueError(f"unknown error kind {kind!r}; known: {', '.join(ERROR_KINDS)}")
    error = {"kind": kind, "type": exc_type, "message": message, "traceback": traceback_text}
    return {"type": "reply", "id": request_id, "ok": False, "error": error}


class RemoteError(Exception):
    """An error the worker reported for one request (it is still alive and answering)."""

    def __init__(self, kind: str, exc_type: str, message: str, traceback: str = "") -> None:
        super().__init__(kind, exc_type, message)
        self.kind, self.exc_type, self.message, self.traceback = kind, exc_type, message, traceback

    def __str__(self) -> str:
        return f"{self.exc_type}: {self.message}"

    @classmethod
    def from_reply(cls, reply: Mapping[str, Any]) -> RemoteError:
        error = reply.get("error")
        if not isinstance(error, Mapping):
            raise ProtocolError(f"an error reply without an error object: {dict(reply)!r:.200}")
        kind = str(error.get("kind", "error"))
        return cls(
            kind if kind in ERROR_KINDS else "error",
            str(error.get("type", "Exception")),
            str(error.get("message", "")),
            str(error.get("traceback", "")),
        )


@dataclass(frozen=True)
class Hello:
    """The worker's first message: who it is and which protocol it speaks."""

    protocol: int
    perfsuite: str
    perfsuite_path: str
    python: str
    executable: str
    pid: int

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> Hello:
        if message.get("type") != "hello":
            raise ProtocolError(f"expected a hello message first, got {dict(message)!r:.200}")
        version = message.get("protocol")
        if isinstance(version, bool) or not isinstance(version, int):
            raise ProtocolError(f"hello without an integer protocol version: {dict(message)!r:.200}")
        try:
            return cls(
                protocol=version,
                perfsuite=str(message["perfsuite"]),
                perfsuite_path=str(message["perfsuite_path"]),
                python=str(message["python"]),
                executable=str(message["executable"]),
                pid=int(message["pid"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"hello lacks {exc}: {dict(message)!r:.200}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "perfsuite": self.perfsuite,
            "perfsuite_path": self.perfsuite_path,
            "python": self.python,
            "executable": self.executable,
            "pid": self.pid,
        }
