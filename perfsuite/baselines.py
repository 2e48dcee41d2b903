"""Read and write ``baselines/``: ``policy.toml`` (bounds people choose) and measurements.

``<root>/<profile>/<model>/<combo>.json`` holds one measurement (written by --perf-update-baselines);
``.png``, ``.obtained.{json,png}`` and ``.diff.png`` with the same stem sit next to it. Ids hold only
``[A-Za-z0-9._+-]`` and do not start with a dot. The model folder is :func:`model_slug` of the
model's *key* (``ModelSpec.key``): a registered model's name, a hub id, or the identity of a local
pipeline directory (``local--<pipeline class>--<config hash>``, see :mod:`perfsuite.catalog.identity`),
so that every spelling of a directory's path finds the same folder. An id is kept; a hub id
``org/name`` becomes ``org--name`` (one-to-one: the hub forbids ``--``); any other string becomes
``local--<basename>--<8 hex of sha256(string)>``. The file keeps the display name the model was run
under (``model``) and, when it differs, the key (``model_key``). Writes are atomic. No torch here.

A repository without ``policy.toml`` runs on the default policy shipped with perfsuite
(:func:`default_policy_path`, the same file as perfsuite's own ``baselines/policy.toml``);
``perfsuite init`` writes a copy to edit.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import math
import os
import re
import secrets
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

from perfsuite.hardware import MachineInfo

__all__ = [
    "BOUND_KEYS",
    "SCHEMA_VERSION",
    "Baseline",
    "BaselineFileError",
    "Bounds",
    "Change",
    "MissingBaselineError",
    "Policy",
    "Rule",
    "atomic_write_bytes",
    "atomic_write_many",
    "atomic_write_text",
    "baseline_path",
    "current_commit",
    "default_policy_notice",
    "default_policy_path",
    "diff_measurements",
    "diff_path",
    "expected_path",
    "list_baselines",
    "load_baseline",
    "load_policy",
    "load_policy_or_default",
    "model_slug",
    "obtained_path",
    "reference_image_path",
    "render_baseline",
    "write_baseline",
]

SCHEMA_VERSION = 1
UPDATE_COMMAND = "pytest tests/perf --perf-update-baselines"

# key -> (low, high, what is accepted). Tolerances are relative: 0.10 allows 10% worse than baseline.
_BOUNDS: dict[str, tuple[float, float, str]] = {
    "min_speedup": (0.0, math.inf, "a finite number >= 0 (0 = no floor)"),
    "min_ssim": (0.0, 1.0, "a number in [0, 1]"),
    "min_ssim_stored": (0.0, 1.0, "a number in [0, 1]"),
    "latency_tolerance": (0.0, math.inf, "a finite relative tolerance >= 0 (0.10 = 10%)"),
    "memory_tolerance": (0.0, math.inf, "a finite relative tolerance >= 0 (0.10 = 10%)"),
    "speedup_tolerance": (0.0, math.inf, "a finite relative tolerance >= 0 (0.10 = 10%)"),
    "max_graph_breaks": (0.0, math.inf, "a whole number >= 0"),
    "max_recompiles": (0.0, math.inf, "a whole number >= 0"),
    "max_syncs_per_step": (0.0, math.inf, "a number >= 0 (0 = no host-device sync in the loop)"),
    "max_memory_ratio": (
        0.0,
        math.inf,
        "a ratio >= 0 of the case's peak memory over the reference's (0.7 = 30% less)",
    ),
    "ab_tolerance": (0.0, math.inf, "a finite relative tolerance >= 0 (0.05 = head at most 5% slower)"),
    "ab_max_pairs": (2.0, math.inf, "a whole number of pairs >= 2 (at most this many per A/B case)"),
    "ab_max_seconds": (1.0, math.inf, "a finite number of seconds >= 1 (at most this long per A/B case)"),
}
#: Bounds that no check applies unless policy.toml sets them (the ab_max_* caps: the options' defaults).
OPTIONAL_BOUNDS = ("max_syncs_per_step", "max_memory_ratio", "ab_max_pairs", "ab_max_seconds")
_WHOLE_BOUNDS = ("ab_max_pairs",)
BOUND_KEYS: tuple[str, ...] = tuple(_BOUNDS)
_BUILTIN_DEFAULTS = {
    "min_speedup": 0.0,
    "min_ssim_stored": 0.95,
    "max_graph_breaks": 0.0,
    "max_recompiles": 0.0,
    "ab_tolerance": 0.05,
}
_RULE_KEYS = ("combo", "profile", "model", "note", *BOUND_KEYS)
_DOC_KEYS = ("schema_version", "profile", "model", "combo", "created", "commit", "machine", "measurement")
#: Written only when the model's key differs from the name it was run under (a local directory).
_KEY_DOC_KEY = "model_key"
_ID_RE = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]*")
_HUB_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


class BaselineFileError(ValueError):
    """A policy or baseline file that cannot be used; the message names the file and the fix."""


class MissingBaselineError(LookupError):
    """No stored baseline for this profile, model and combo."""


# --- ids and paths ---------------------------------------------------------------------------------


def _check_id(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise ValueError(f"invalid {kind} id {value!r}: use letters, digits and '._+-', no leading '.'")
    return value


def model_slug(model: str) -> str:
    """Folder name for ``model``: an id as is, ``org/name`` -> ``org--name``, a path -> ``local--...``."""
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"invalid model name {model!r}: expected a non-empty string")
    if _ID_RE.fullmatch(model):
        return model
    if _HUB_RE.fullmatch(model) and "--" not in model and ".." not in model:
        return model.replace("/", "--")
    stripped = model.rstrip("/\\")
    base = re.sub(r"[^A-Za-z0-9._+-]+", "-", re.split(r"[/\\]", stripped)[-1]).lstrip(".-") or "model"
    return f"local--{base}--{hashlib.sha256(model.encode()).hexdigest()[:8]}"


def _case_file(root: str | Path, profile: str, model: str, combo: str, suffix: str) -> Path:
    folder = Path(root) / _check_id("profile", profile) / model_slug(model)
    return folder / f"{_check_id('combo', combo)}{suffix}"


def baseline_path(root: str | Path, profile: str, model: str, combo: str) -> Path:
    """``<root>/<profile>/<model slug>/<combo>.json``."""
    return _case_file(root, profile, model, combo, ".json")


def reference_image_path(root: str | Path, profile: str, model: str, combo: str) -> Path:
    """``<root>/<profile>/<model slug>/<combo>.png``."""
    return _case_file(root, profile, model, combo, ".png")


def obtained_path(root: str | Path, profile: str, model: str, combo: str, ext: str = "json") -> Path:
    """``<combo>.obtained.json`` or ``<combo>.obtained.png`` next to the expected file."""
    if ext not in ("json", "png"):
        raise ValueError(f"obtained_path ext must be 'json' or 'png', got {ext!r}")
    return _case_file(root, profile, model, combo, f".obtained.{ext}")


def expected_path(root: str | Path, profile: str, model: str, combo: str) -> Path:
    """``<combo>.expected.png``: the in-run reference image a failed SSIM check compared against."""
    return _case_file(root, profile, model, combo, ".expected.png")


def diff_path(root: str | Path, profile: str, model: str, combo: str) -> Path:
    """``<combo>.diff.png`` next to the reference image."""
    return _case_file(root, profile, model, combo, ".diff.png")


# --- atomic writes ---------------------------------------------------------------------------------


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, creating parent folders.

    Writes a temp file in the same folder, flushes and fsyncs it, then ``os.replace``-s it over
    ``path``. On any exception (KeyboardInterrupt included) the temp file is removed and a previous
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    # Persist the rename itself; some platforms (Windows) cannot open a folder, which is harmless.
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


# --- validation shared by both file kinds ----------------------------------------------------------


def _fail(path: Path, problem: str, fix: str) -> NoReturn:
    raise BaselineFileError(f"{path}: {problem}; {fix}")


def _check_schema(path: Path, data: Mapping[str, Any], fix: str) -> None:
    version = data.get("schema_version")
    accepted = f"accepted: schema_version = {SCHEMA_VERSION}"
    if "schema_version" not in data:
        _fail(path, "missing schema_version", f"{accepted}: {fix}")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        problem = f"schema_version {version} is newer than this perfsuite understands ({SCHEMA_VERSION})"
        raise BaselineFileError(f"{path}: {problem}: upgrade perfsuite or {fix}")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        _fail(path, f"unknown schema_version {version!r}", f"{accepted}: {fix}")


def _check_keys(path: Path, where: str, data: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        names, accepted = ", ".join(map(repr, unknown)), ", ".join(allowed)
        _fail(path, f"{where}: unknown key(s) {names}", f"accepted: {accepted}")


# --- policy ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bounds:
    """Resolved bounds for one model x combo x profile; ``sources[key]`` names where each came from."""

    min_speedup: float
    min_ssim: float
    min_ssim_stored: float
    latency_tolerance: float
    memory_tolerance: float
    speedup_tolerance: float
    sources: dict[str, str] = field(hash=False)
    max_graph_breaks: float = 0.0
    max_recompiles: float = 0.0
    max_syncs_per_step: float | None = None
    max_memory_ratio: float | None = None
    #: --perf-ab-base: how much slower than the base environment the head may be (0.05 = 5%).
    ab_tolerance: float = 0.05
    #: --perf-ab-base: caps on one case's pairs and seconds, where a slow combo needs other caps than
    #: the options' defaults (an option given on the command line wins).
    ab_max_pairs: float | None = None
    ab_max_seconds: float | None = None


@dataclass(frozen=True)
class Rule:
    """One ``[[rule]]``: fnmatch globs (case-sensitive) and the bounds it sets; ``number`` is 1-based."""

    number: int
    combo: str
    profile: str = "*"
    model: str = "*"
    values: dict[str, float] = field(default_factory=dict, hash=False)
    note: str = ""

    def matches(self, model: str, combo: str, profile: str) -> bool:
        pairs = ((combo, self.combo), (profile, self.profile), (model, self.model))
        return all(fnmatch.fnmatchcase(name, glob) for name, glob in pairs)

    @property
    def label(self) -> str:
        keys = ["combo"] + [key for key in ("profile", "model") if getattr(self, key) != "*"]
        return f"rule #{self.number} ({', '.join(f'{key}={getattr(self, key)!r}' for key in keys)})"


@dataclass(frozen=True)
class Policy:
    """The bounds people chose: ``[defaults]``, then every matching rule in file order."""

    path: Path
    defaults: dict[str, float] = field(hash=False)
    default_sources: dict[str, str] = field(hash=False)
    rules: tuple[Rule, ...] = ()

    def bounds_for(self, model: str, combo: str, profile: str) -> Bounds:
        """Bounds for one case. A later matching rule overrides earlier ones for the keys it sets."""
        values, sources = dict(self.defaults), dict(self.default_sources)
        for rule in self.rules:
            if rule.matches(model, combo, profile):
                values.update(rule.values)
                sources.update(dict.fromkeys(rule.values, f"{self.path.name} {rule.label}"))
        return Bounds(**values, sources=sources)


def _bound_value(path: Path, where: str, key: str, value: Any) -> float:
    low, high, accepted = _BOUNDS[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(path, f"{where}: {key} = {value!r} is a {type(value).__name__}", f"accepted: {accepted}")
    if not (math.isfinite(value) and low <= value <= high):
        _fail(path, f"{where}: {key} = {value!r} is out of range", f"accepted: {accepted}")
    if key in _WHOLE_BOUNDS and not float(value).is_integer():
        _fail(path, f"{where}: {key} = {value!r} is not a whole number", f"accepted: {accepted}")
    return float(value)


def _parse_rule(path: Path, number: int, raw: Any) -> Rule:
    where = f"rule #{number}"
    if not isinstance(raw, dict):
        _fail(path, f"{where} is not a table", "accepted: [[rule]] tables")
    _check_keys(path, where, raw, _RULE_KEYS)
    for key, default in {"combo": None, "profile": "*", "model": "*", "note": ""}.items():
        value = raw.get(key, default)
        if not isinstance(value, str) or (key != "note" and not value):
            problem = f"missing {key!r}" if value is None else f"{key} = {value!r} is not valid"
            accepted = "a string" if key == "note" else "a non-empty glob such as 'bf16+*' or 'cuda-*'"
            _fail(path, f"{where}: {problem}", f"accepted: {accepted}")
    values = {key: _bound_value(path, where, key, raw[key]) for key in BOUND_KEYS if key in raw}
    if not values:
        _fail(path, f"{where} sets no bound", f"accepted: any of {', '.join(BOUND_KEYS)}")
    globs = {key: raw[key] for key in ("profile", "model") if key in raw}
    return Rule(number, raw["combo"], **globs, values=values, note=raw.get("note", ""))


def _parse_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        _fail(path, "policy file not found", "write one with `perfsuite init` (or give the path of another)")
    except tomllib.TOMLDecodeError as exc:
        raise BaselineFileError(f"{path}: not valid TOML: {exc}") from exc


def load_policy(path: str | Path) -> Policy:
    """Load and validate ``policy.toml``; raise :class:`BaselineFileError` naming what is wrong."""
    path = Path(path)
    data = _parse_toml(path)
    _check_schema(path, data, "use the keys documented in perfsuite's baselines/policy.toml")
    _check_keys(path, "top level", data, ("schema_version", "defaults", "rule"))
    raw = data.get("defaults")
    if not isinstance(raw, dict):
        _fail(path, "missing [defaults] table", f"accepted: a [defaults] table with {', '.join(BOUND_KEYS)}")
    _check_keys(path, "[defaults]", raw, BOUND_KEYS)
    optional = (*_BUILTIN_DEFAULTS, *OPTIONAL_BOUNDS)
    missing = [key for key in BOUND_KEYS if key not in raw and key not in optional]
    if missing:
        _fail(path, f"[defaults] is missing {', '.join(missing)}", f"accepted: {', '.join(BOUND_KEYS)}")
    defaults = dict(_BUILTIN_DEFAULTS)
    sources = dict.fromkeys(defaults, "perfsuite built-in default")
    for key, value in raw.items():
        defaults[key] = _bound_value(path, "[defaults]", key, value)
        sources[key] = f"{path.name} [defaults]"
    rules = data.get("rule", [])
    if not isinstance(rules, list):
        _fail(path, "'rule' is not an array of tables", "accepted: [[rule]] sections")
    parsed = tuple(_parse_rule(path, number, rule) for number, rule in enumerate(rules, start=1))
    return Policy(path, defaults, sources, parsed)


def default_policy_path() -> Path:
    """The policy shipped with perfsuite (package data), used when a repository has none."""
    from importlib import resources

    path = Path(str(resources.files("perfsuite.templates") / "policy.toml"))
    if not path.is_file():
        raise BaselineFileError(
            f"{path}: perfsuite's default policy is missing from the installed package; reinstall "
            "perfsuite (python -m pip install --force-reinstall perfsuite)"
        )
    return path


def load_policy_or_default(baselines_dir: str | Path) -> tuple[Policy, bool]:
    """``<baselines_dir>/policy.toml`` when it exists, else the shipped default; and whether the
    default was used. A file that exists but is broken raises :class:`BaselineFileError`."""
    path = Path(baselines_dir) / "policy.toml"
    if path.exists():
        return load_policy(path), False
    return load_policy(default_policy_path()), True


def default_policy_notice(baselines_dir: str | Path) -> str:
    """The one line that says a run uses the shipped default policy, and how to get a copy to edit."""
    return (
        f"perfsuite: no policy.toml in {baselines_dir}; using the default policy shipped with perfsuite. "
        "Write a copy to edit with `perfsuite init` (it never overwrites a file)"
    )


# --- measurements ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """One stored measurement; ``model`` is the name it was run under, ``path`` the file it came from."""

    profile: str
    model: str
    combo: str
    created: str
    commit: str | None
    machine: dict[str, Any] = field(hash=False)
    measurement: dict[str, Any] = field(hash=False)
    path: Path
    #: The model key the file is filed under (``model`` unless the file stores a ``model_key``).
    key: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.model)


def _is_iso_time(created: Any) -> bool:
    try:
        datetime.fromisoformat(created.replace("Z", "+00:00"))
    except (AttributeError, TypeError, ValueError):
        return False
    return True


_DOC_TYPES: dict[str, Any] = {"commit": (str, type(None)), "machine": dict, "measurement": dict}


def _read(path: Path, profile: str, folder: str, combo: str) -> Baseline:
    fix = f"regenerate it with `{UPDATE_COMMAND}` (or restore it from git)"
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise MissingBaselineError(
            f"no baseline at {path} (profile {profile!r}, model folder {folder!r}, combo {combo!r}); "
            f"create it with `{UPDATE_COMMAND}` plus the same -k / --perf-model / --perf-preset "
            "selection as this run, on this hardware profile"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # the JSON error names line and column
        raise BaselineFileError(f"{path}: not valid JSON ({exc}); {fix}") from exc
    if not isinstance(data, dict):
        _fail(path, f"holds a JSON {type(data).__name__}, not an object", fix)
    _check_schema(path, data, f"regenerate with `{UPDATE_COMMAND}`")
    missing = [key for key in _DOC_KEYS if key not in data]
    if missing:
        _fail(path, f"missing key(s) {', '.join(missing)}", fix)
    _check_keys(path, "top level", data, (*_DOC_KEYS, _KEY_DOC_KEY))
    for name in (*_DOC_KEYS[1:], _KEY_DOC_KEY):
        if name in data and not isinstance(data[name], _DOC_TYPES.get(name, str)):
            _fail(path, f"{name} = {data[name]!r} has the wrong type {type(data[name]).__name__}", fix)
    if not _is_iso_time(data["created"]):
        _fail(path, f"created = {data['created']!r} is not an ISO-8601 time", fix)
    key = str(data.get(_KEY_DOC_KEY) or data["model"])
    found = {"profile": data["profile"], "model folder": model_slug(key), "combo": data["combo"]}
    expected = {"profile": profile, "model folder": folder, "combo": combo}
    wrong = [f"{k} {v!r} (path says {expected[k]!r})" for k, v in found.items() if v != expected[k]]
    if wrong:
        _fail(path, f"the file does not match its path: {'; '.join(wrong)}", f"copied or renamed? {fix}")
    return Baseline(**{name: data[name] for name in _DOC_KEYS[1:]}, path=path, key=key)


def load_baseline(root: str | Path, profile: str, model: str, combo: str) -> Baseline:
    """Load and validate one baseline; :class:`MissingBaselineError` if there is none."""
    return _read(baseline_path(root, profile, model, combo), profile, model_slug(model), combo)


def _json_default(value: Any) -> Any:
    if callable(getattr(value, "tolist", None)):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def render_baseline(
    root: str | Path,
    profile: str,
    model: str,
    combo: str,
    *,
    measurement: Mapping[str, Any],
    machine: MachineInfo | Mapping[str, Any],
    commit: str | None = None,
    created: str | None = None,
    display_name: str | None = None,
) -> tuple[Path, str]:
    """The path and JSON text of one baseline, without writing it (see :func:`write_baseline`).

    ``model`` is the model's key (its folder); ``display_name``, when given and different, is the
    name the model was run under, stored as ``model`` with the key as ``model_key``.
    """
    path = baseline_path(root, profile, model, combo)
    created = datetime.now(timezone.utc).isoformat() if created is None else created
    if not _is_iso_time(created) or not isinstance(commit, str | None):
        raise ValueError(f"created {created!r} must be an ISO-8601 time, commit {commit!r} a str or None")
    machine = machine.to_dict() if isinstance(machine, MachineInfo) else dict(machine)
    shown = display_name or model
    values = (SCHEMA_VERSION, profile, shown, combo, created, commit, machine, dict(measurement))
    document: dict[str, Any] = dict(zip(_DOC_KEYS, values, strict=True))
    if shown != model:
        document[_KEY_DOC_KEY] = model
    try:
        text = json.dumps(document, sort_keys=True, indent=2, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        accepted = "accepted: str keys; str, finite numbers, bool, None, lists and objects"
        raise BaselineFileError(f"{path}: cannot write the baseline as JSON ({exc}); {accepted}") from exc
    return path, text + "\n"


def write_baseline(
    root: str | Path,
    profile: str,
    model: str,
    combo: str,
    *,
    measurement: Mapping[str, Any],
    machine: MachineInfo | Mapping[str, Any],
    commit: str | None = None,
    created: str | None = None,
    display_name: str | None = None,
) -> Path:
    """Atomically write ``<root>/<profile>/<model slug>/<combo>.json`` and return its path.

    ``created`` defaults to now (UTC, ISO-8601). Floats keep full precision; NaN and infinity are
    rejected (not JSON). numpy values are converted with ``tolist()``.
    """
    path, text = render_baseline(
        root, profile, model, combo, measurement=measurement, machine=machine, commit=commit,
        created=created, display_name=display_name,
    )  # fmt: skip
    atomic_write_text(path, text)
    return path


def atomic_write_many(files: Mapping[Path, bytes]) -> None:
    """Write several files in two phases: stage every one as a temp file, then rename each into place.

    An error or interrupt while staging (the slow part: data, fsync) removes the temp files and
    leaves every previous file untouched. The renames that follow are quick, and each one is atomic,
    so every file is always either wholly old or wholly new.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
            staged.append((tmp, path))
            with open(tmp, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        while staged:
            tmp, path = staged[0]
            os.replace(tmp, path)
            staged.pop(0)
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _subdirs(folder: Path) -> list[Path]:
    children = folder.iterdir() if folder.is_dir() else ()
    return sorted(p for p in children if p.is_dir() and not p.name.startswith("."))


def list_baselines(root: str | Path, profile: str | None = None) -> list[Baseline]:
    """Every baseline under ``root`` (or one profile), sorted by profile, model folder and combo.

    Skips ``policy.toml`` and other top-level files, hidden entries and ``*.obtained.*`` files. A
    malformed file raises :class:`BaselineFileError`.
    """
    root = Path(root)
    if profile is None:
        profile_dirs = _subdirs(root)
    else:
        folder = root / _check_id("profile", profile)
        profile_dirs = [folder] if folder.is_dir() else []
    return [
        _read(file, profile_dir.name, model_dir.name, file.name[: -len(".json")])
        for profile_dir in profile_dirs
        for model_dir in _subdirs(profile_dir)
        for file in sorted(model_dir.glob("*.json"))
        if not file.name.startswith(".") and ".obtained." not in file.name
    ]


def current_commit(cwd: str | Path | None = None) -> str | None:
    """``git rev-parse HEAD`` run in ``cwd``; None when that fails for any reason. Never raises."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    sha = result.stdout.strip()
    return sha if result.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha) else None


# --- update summary --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """``key`` went from ``old`` to ``new``; None stands for absent (no old baseline, or no such key)."""

    key: str
    old: Any
    new: Any

    @property
    def changed(self) -> bool:
        return bool(self.old != self.new)

    @property
    def relative(self) -> float | None:
        """``(new - old) / old`` when both are numbers and old != 0, else None."""
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (self.old, self.new))
        return (self.new - self.old) / self.old if numbers and self.old != 0 else None

    def __str__(self) -> str:
        def show(value: Any) -> str:
            return "(none)" if value is None else f"{value:.6g}" if isinstance(value, float) else repr(value)

        tail = f" ({self.relative:+.1%})" if self.relative is not None else ""
        return f"{self.key}: {show(self.old)} -> {show(self.new)}{tail}"


def _lookup(data: Mapping[str, Any], key: str) -> Any:
    value: Any = data
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def diff_measurements(
    old: Baseline | None,
    new_measurement: Mapping[str, Any],
    keys: tuple[str, ...] = ("latency_median_s", "peak_mem_bytes", "speedup"),
) -> list[Change]:
    """old -> new for each of ``keys`` (dotted for nested values) present in either measurement."""
    before: Mapping[str, Any] = old.measurement if old is not None else {}
    changes = [Change(key, _lookup(before, key), _lookup(new_measurement, key)) for key in keys]
    return [change for change in changes if change.old is not None or change.new is not None]
