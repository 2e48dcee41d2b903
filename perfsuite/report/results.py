"""The results document (``results.json``): every case of one run, versioned, validated on load.

Schema version 1 (``kind: "perfsuite-results"``); keys marked optional may be absent::

    {"schema_version": 1, "kind": "perfsuite-results", "created": ISO-8601 UTC, "commit": str | null,
     "profile": str, "device": str, "preset": str, "models": [str],
     "machine": {...},                       # perfsuite.hardware.MachineInfo.to_dict()
     "cases": [{"model": str, "combo": str,
                "status": "pass" | "fail" | "missing" | "inconclusive" | "error",
                "measurement": {...} | null,   # CaseResult.to_dict(); null for status "error", and for
                                               # a "fail" that ended before it was measured (verify,
                                               # dynamo: its verdict says why)
                "verdict": {...} | null,       # Verdict.to_dict()
                "images": {"obtained" | "reference" | "diff": relative path}}],   # optional
     "skipped": [{"model": str, "combo": str, "reason": str}],    # pruned or unsupported combos
     "errors": [{"model": str, "combo": str, "message": str}],    # combos that raised
     "merged_from": [{"source": str, "created": str, "commit": str | null}]}  # optional: merged shards

Image paths are relative to the folder of the results file, with ``/`` separators. No torch here.

A run with ``--perf-ab-base`` adds an ``ab`` section to each compared case's ``measurement`` (older
readers ignore it; a case status ``inconclusive`` says that the comparison did not decide)::

    "ab": {"protocol": 1, "tolerance": 0.05, "bound": 1.05,
           "max_pairs": 160, "max_seconds": 300.0,                 # this case's caps (options, policy)
           "pairs": 40, "head_samples_s": [...], "base_samples_s": [...],   # one per pair, in order
           "head_first": [false, true, ...], "started_s": [...],            # ABBA order; time of each pair
           "attempt": [0, 0, ..., 1, ...], "attempt_pairs": 10,             # the attempt of each pair
           "attempts": 4, "attempt_ratios": [1.004, 0.991, ...],            # each attempt's head/base
           "refreshed": true, "refresh_s": float,          # sides prepared anew for each attempt
           "startup_s": float,                             # part of refresh_s spent starting pairs of
                                                           # the pool and on their first preparation
                                                           # of the model: left out of max_seconds
           "base_pids": [4711, 4790, ...],                 # each attempt's base process, and head
           "head_pids": [4712, 4791, ...],                 # process: a pair of its own per attempt when
                                                           # refreshed; a compiled case keeps one base
                                                           # process and has no head worker ([])
           "pool": 8, "kept_attempts": 4,                  # attempt k runs in the session's k-th pair
                                                           # while k < pool; attempts whose pair an
                                                           # earlier case started (0 for a compiled case)
           "ratio": 1.012, "ratio_ci": [0.995, 1.031],     # head/base: mean over attempts, t interval
           "confidence": 0.9933, "coverage": 0.9933, "method": str,         # the interval of the last look
           "decision": "pass" | "regression" | "inconclusive",
           "stopped": "decided" | "max pairs" | "max seconds",
           "looks": [40, 80], "planned_looks": [40, 80, 160],
           "alpha": 0.01, "alpha_per_look": 0.00333, "pairs_s": float, "seconds": float, "base_open_s": float,
           "head_latency_median_s": float, "base_latency_median_s": float,
           "head_peak_mem_bytes": int, "base_peak_mem_bytes": int,
           "head_peak_mem_kind": str, "base_peak_mem_kind": str,
           "base_warmup_s": [...], "base_evidence": [...],
           "fidelity": {"non_finite": null, "ssim": float, "psnr_db": float | null, ...},  # head vs base
           "base": {"python_command": str, "executable": str, "perfsuite": str, "perfsuite_path": str,
                    "commit": str | null, "num_threads": int, "machine": {...}},
           "head": {"commit": str | null, "perfsuite_path": str, "machine": {...}},
           "version_changes": ["torch 2.12.0+cpu -> 2.13.0+cpu", ...]}      # base -> head
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NoReturn

from perfsuite.baselines import atomic_write_text
from perfsuite.hardware import MachineInfo

if TYPE_CHECKING:
    from perfsuite.gate import Verdict
    from perfsuite.matrix import Plan

__all__ = [
    "ACCEPTED_VERSIONS",
    "CASE_STATUSES",
    "IMAGE_KINDS",
    "KIND",
    "SCHEMA_VERSION",
    "ResultsFileError",
    "case_entry",
    "case_key",
    "fidelity_of",
    "load_results",
    "render_results",
    "results_document",
    "skipped_entries",
    "ssim_of",
    "validate_results",
    "write_results",
]

SCHEMA_VERSION = 1
#: Schema versions this perfsuite reads.
ACCEPTED_VERSIONS: tuple[int, ...] = (1,)
KIND = "perfsuite-results"
CASE_STATUSES = ("pass", "fail", "missing", "inconclusive", "error")
IMAGE_KINDS = ("obtained", "reference", "diff")

_REQUIRED = (
    "schema_version", "kind", "created", "commit", "profile", "device", "preset",
    "models", "machine", "cases", "skipped", "errors",
)  # fmt: skip
_OPTIONAL = ("merged_from",)
_CASE_REQUIRED = ("model", "combo", "status", "measurement", "verdict")
_CASE_OPTIONAL = ("images",)
_LIST_ENTRY_KEYS = {"skipped": "reason", "errors": "message"}
_MERGED_KEYS = ("source", "created", "commit")
_REGENERATE = "regenerate it with `pytest tests/perf --perf-report DIR` or `perfsuite merge`"


class ResultsFileError(ValueError):
    """A results document that cannot be used; the message names the file and the problem."""


def _fail(source: str, problem: str) -> NoReturn:
    raise ResultsFileError(f"{source}: {problem}")


def _is_iso_time(value: Any) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, TypeError, ValueError):
        return False
    return True


def case_key(case: Mapping[str, Any]) -> str:
    """``model/combo`` of a case entry (the same id as ``CaseResult.case_id``)."""
    return f"{case['model']}/{case['combo']}"


def fidelity_of(measurement: Mapping[str, Any] | None, against: str = "reference") -> dict[str, Any]:
    """The fidelity numbers of a measurement against ``"reference"`` or ``"stored"``; ``{}`` if absent."""
    fidelity = (measurement or {}).get("fidelity")
    entry = fidelity.get(against) if isinstance(fidelity, Mapping) else None
    return dict(entry) if isinstance(entry, Mapping) else {}


def ssim_of(measurement: Mapping[str, Any] | None) -> float | None:
    """SSIM of the case's image against the in-run reference image, or None when not measured."""
    value = fidelity_of(measurement).get("ssim")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# --- building ----------------------------------------------------------------------------------------


def case_entry(
    measurement: Mapping[str, Any] | None,
    verdict: Verdict | Mapping[str, Any] | None = None,
    *,
    model: str | None = None,
    combo: str | None = None,
    status: str | None = None,
    images: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One ``cases`` entry. ``measurement`` is ``CaseResult.to_dict()``; ``status`` defaults to the
    verdict's. ``model``/``combo`` default to the measurement's (needed when it is None, an error)."""
    verdict_dict = verdict if verdict is None or isinstance(verdict, Mapping) else verdict.to_dict()
    if status is None:
        if verdict_dict is None:
            raise ValueError("case_entry needs a verdict or an explicit status")
        status = str(verdict_dict["status"])
    entry: dict[str, Any] = {
        "model": model if model is not None else (measurement or {}).get("model"),
        "combo": combo if combo is not None else (measurement or {}).get("combo"),
        "status": status,
        "measurement": dict(measurement) if measurement is not None else None,
        "verdict": dict(verdict_dict) if verdict_dict is not None else None,
    }
    if images:
        entry["images"] = dict(images)
    return entry


def skipped_entries(plans: Mapping[str, Plan]) -> list[dict[str, str]]:
    """The pruned combos of each model's plan as ``skipped`` entries."""
    return [
        {"model": model, "combo": pruned.combo.id, "reason": pruned.reason}
        for model, plan in plans.items()
        for pruned in plan.pruned
    ]


def results_document(
    *,
    machine: Mapping[str, Any] | MachineInfo,
    profile: str,
    device: str,
    preset: str,
    models: Iterable[str],
    cases: Iterable[Mapping[str, Any]],
    skipped: Iterable[Mapping[str, Any]] = (),
    errors: Iterable[Mapping[str, Any]] = (),
    commit: str | None = None,
    created: str | None = None,
) -> dict[str, Any]:
    """A validated results document; ``created`` defaults to now (UTC, ISO-8601).

    ``cases`` are :func:`case_entry` dicts; ``skipped`` and ``errors`` entries hold ``model``,
    ``combo`` and ``reason`` (see :func:`skipped_entries`) or ``message``.
    """
    document = {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "created": datetime.now(timezone.utc).isoformat() if created is None else created,
        "commit": commit,
        "profile": profile,
        "device": device,
        "preset": preset,
        "models": list(models),
        "machine": machine.to_dict() if isinstance(machine, MachineInfo) else dict(machine),
        "cases": [dict(case) for case in cases],
        "skipped": [dict(entry) for entry in skipped],
        "errors": [dict(entry) for entry in errors],
    }
    return validate_results(document, "results document")


# --- validation --------------------------------------------------------------------------------------


def _check_version(source: str, data: Mapping[str, Any]) -> None:
    accepted = ", ".join(map(str, ACCEPTED_VERSIONS))
    if "schema_version" not in data:
        _fail(source, f"missing schema_version (accepted: {accepted}); {_REGENERATE}")
    version = data["schema_version"]
    if isinstance(version, int) and not isinstance(version, bool):
        if version > max(ACCEPTED_VERSIONS):
            _fail(
                source,
                f"schema_version {version} is newer than this perfsuite reads (accepted: {accepted}): "
                "upgrade perfsuite",
            )
        if version < min(ACCEPTED_VERSIONS):
            _fail(
                source,
                f"schema_version {version} is older than this perfsuite reads (accepted: {accepted}); "
                f"{_REGENERATE}",
            )
        if version in ACCEPTED_VERSIONS:
            return
    _fail(source, f"unknown schema_version {version!r} (accepted: {accepted}); {_REGENERATE}")


def _check_keys(
    source: str, where: str, data: Mapping[str, Any], required: Sequence[str], optional: Sequence[str] = ()
) -> None:
    missing = [key for key in required if key not in data]
    if missing:
        _fail(source, f"{where}: missing key(s) {', '.join(missing)}")
    unknown = sorted(set(data) - {*required, *optional})
    if unknown:
        extra = f"; optional: {', '.join(optional)}" if optional else ""
        _fail(
            source, f"{where}: unknown key(s) {', '.join(unknown)} (accepted: {', '.join(required)}{extra})"
        )


def _check_type(source: str, where: str, value: Any, kind: type | tuple[type, ...], what: str) -> None:
    if not isinstance(value, kind) or isinstance(value, bool):
        _fail(source, f"{where} = {value!r} is a {type(value).__name__}, expected {what}")


def _check_image_path(source: str, where: str, path: Any) -> None:
    _check_type(source, where, path, str, "a relative path")
    if not path or "\\" in path or PurePosixPath(path).is_absolute() or ":" in PurePosixPath(path).parts[0]:
        _fail(source, f"{where} = {path!r} is not a relative path with '/' separators")


def _check_case(source: str, index: int, case: Any, statuses: dict[str, int]) -> None:
    where = f"cases[{index}]"
    _check_type(source, where, case, dict, "an object")
    _check_keys(source, where, case, _CASE_REQUIRED, _CASE_OPTIONAL)
    for key in ("model", "combo"):
        _check_type(source, f"{where}.{key}", case[key], str, "a string")
    where = f"cases[{index}] ({case_key(case)})"
    if case["status"] not in CASE_STATUSES:
        _fail(source, f"{where}.status = {case['status']!r} (accepted: {', '.join(CASE_STATUSES)})")
    unmeasured_fail = case["status"] == "fail" and case["verdict"] is not None
    if case["measurement"] is None and case["status"] != "error" and not unmeasured_fail:
        _fail(
            source,
            f"{where}.measurement is null, which only a case with status 'error', or a failed one with "
            "its verdict, may have",
        )
    if case["measurement"] is not None:
        _check_type(source, f"{where}.measurement", case["measurement"], dict, "an object")
    if case["verdict"] is not None:
        from perfsuite.gate import Verdict

        _check_type(source, f"{where}.verdict", case["verdict"], dict, "an object or null")
        try:
            Verdict.from_dict(case["verdict"])
        except ValueError as exc:
            _fail(source, f"{where}.verdict: {exc}")
    images = case.get("images", {})
    _check_type(source, f"{where}.images", images, dict, "an object")
    for kind, path in images.items():
        if kind not in IMAGE_KINDS:
            _fail(source, f"{where}.images: unknown kind {kind!r} (accepted: {', '.join(IMAGE_KINDS)})")
        _check_image_path(source, f"{where}.images.{kind}", path)
    key = case_key(case)
    if key in statuses:
        _fail(source, f"case {key} appears twice (cases[{statuses[key]}] and cases[{index}])")
    statuses[key] = index


def validate_results(data: Any, source: str = "results") -> dict[str, Any]:
    """Return ``data`` if it is a valid results document, else raise :class:`ResultsFileError`
    whose message starts with ``source`` (the file name) and names the problem."""
    if not isinstance(data, dict):
        _fail(source, f"holds a JSON {type(data).__name__}, not an object; {_REGENERATE}")
    if data.get("kind") != KIND:
        _fail(source, f"kind is {data.get('kind')!r}, not {KIND!r}: this is not a perfsuite results file")
    _check_version(source, data)
    _check_keys(source, "top level", data, _REQUIRED, _OPTIONAL)
    for key in ("profile", "device", "preset"):
        _check_type(source, key, data[key], str, "a string")
    if not _is_iso_time(data["created"]):
        _fail(source, f"created = {data['created']!r} is not an ISO-8601 time")
    if data["commit"] is not None:
        _check_type(source, "commit", data["commit"], str, "a string or null")
    _check_type(source, "machine", data["machine"], dict, "an object (MachineInfo.to_dict())")
    _check_type(source, "models", data["models"], list, "a list of model names")
    for i, model in enumerate(data["models"]):
        _check_type(source, f"models[{i}]", model, str, "a string")
    for key in ("cases", "skipped", "errors"):
        _check_type(source, key, data[key], list, "a list")
    seen: dict[str, int] = {}
    for index, case in enumerate(data["cases"]):
        _check_case(source, index, case, seen)
    for key, text in _LIST_ENTRY_KEYS.items():
        for index, entry in enumerate(data[key]):
            _check_type(source, f"{key}[{index}]", entry, dict, "an object")
            _check_keys(source, f"{key}[{index}]", entry, ("model", "combo", text))
            for name in ("model", "combo", text):
                _check_type(source, f"{key}[{index}].{name}", entry[name], str, "a string")
    if "merged_from" in data:
        _check_type(source, "merged_from", data["merged_from"], list, "a list")
        for index, entry in enumerate(data["merged_from"]):
            _check_type(source, f"merged_from[{index}]", entry, dict, "an object")
            _check_keys(source, f"merged_from[{index}]", entry, _MERGED_KEYS)
    return data


# --- reading and writing -----------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if callable(getattr(value, "tolist", None)):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def render_results(document: Mapping[str, Any], source: str = "results document") -> str:
    """The JSON text of a validated document: sorted keys, indent 2, no NaN or infinity."""
    validate_results(dict(document), source)
    try:
        text = json.dumps(document, sort_keys=True, indent=2, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        _fail(source, f"cannot be written as JSON ({exc}); numbers must be finite, keys strings")
    return text + "\n"


def write_results(path: str | os.PathLike[str], document: Mapping[str, Any]) -> Path:
    """Validate ``document`` and write it to ``path`` atomically; return the path."""
    target = Path(path)
    atomic_write_text(target, render_results(document, str(target)))
    return target


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a results file; :class:`ResultsFileError` names the file and the problem."""
    target = Path(path)
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        _fail(str(target), "no such results file")
    except OSError as exc:
        _fail(str(target), f"cannot be read ({exc.strerror or exc})")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        _fail(str(target), f"not valid JSON ({exc}); {_REGENERATE}")
    return validate_results(data, str(target))
