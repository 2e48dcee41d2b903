"""Tests of perfsuite.baselines: policy resolution and validation, baseline files, atomic writes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perfsuite import baselines
from perfsuite.baselines import (
    SCHEMA_VERSION,
    Baseline,
    BaselineFileError,
    Change,
    MissingBaselineError,
    atomic_write_bytes,
    atomic_write_text,
    baseline_path,
    current_commit,
    diff_measurements,
    diff_path,
    list_baselines,
    load_baseline,
    load_policy,
    model_slug,
    obtained_path,
    reference_image_path,
    write_baseline,
)
from perfsuite.hardware import MachineInfo

REPO = Path(__file__).resolve().parents[2]
PROFILE = "cpu-amd-epyc-2c"
DEFAULTS = """\
schema_version = 1
[defaults]
min_speedup = 0.0
min_ssim = 0.9
latency_tolerance = 0.15
memory_tolerance = 0.10
speedup_tolerance = 0.15
"""
MEASUREMENT = {"latency_median_s": 0.1 + 0.2, "peak_mem_bytes": 123_456_789, "samples_s": [0.3, 1 / 3]}


def write_policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


def machine() -> MachineInfo:
    return MachineInfo(
        profile=PROFILE,
        device="cpu",
        cpu_model="AMD EPYC 7B13",
        cpu_cores=2,
        cpu_flags={"avx2": True, "avx512f": False},
        total_memory_bytes=8 << 30,
        gpu_name=None,
        gpu_capability=None,
        gpu_memory_bytes=None,
        cuda_version=None,
        driver_version=None,
        python_version="3.11.7",
        platform="Linux",
        versions={"torch": "2.9.0"},
    )


def write(root: Path, model: str = "tiny-sd", combo: str = "bf16+sdpa", **kwargs: Any) -> Path:
    kwargs.setdefault("measurement", MEASUREMENT)
    kwargs.setdefault("machine", machine())
    return write_baseline(root, kwargs.pop("profile", PROFILE), model, combo, **kwargs)


# --- policy ----------------------------------------------------------------------------------------


def test_policy_resolution_order_and_sources(tmp_path: Path) -> None:
    path = write_policy(
        tmp_path,
        DEFAULTS
        + """
[[rule]]
combo = 'bf16*'
profile = 'cuda-*'
min_speedup = 1.3
min_ssim = 0.95
note = "bf16 is faster on GPUs"

[[rule]]
combo = '*int8-dq*'
min_ssim = 0.8

[[rule]]
combo = '*'
model = 'tiny-*'
profile = 'cuda-*'
min_speedup = 0.5
""",
    )
    policy = load_policy(path)
    assert [rule.number for rule in policy.rules] == [1, 2, 3]
    assert policy.rules[0].note == "bf16 is faster on GPUs"

    cpu = policy.bounds_for("sd15", "bf16+int8-dq", "cpu-amd-epyc-2c")
    assert (cpu.min_speedup, cpu.min_ssim, cpu.latency_tolerance) == (0.0, 0.8, 0.15)
    assert cpu.sources["min_speedup"] == "policy.toml [defaults]"
    assert cpu.sources["min_ssim"] == "policy.toml rule #2 (combo='*int8-dq*')"

    gpu = policy.bounds_for("sd15", "bf16+sdpa", "cuda-nvidia-h200")
    assert (gpu.min_speedup, gpu.min_ssim) == (1.3, 0.95)
    assert gpu.sources["min_speedup"] == "policy.toml rule #1 (combo='bf16*', profile='cuda-*')"

    # a later rule overrides only the keys it sets; the earlier rule keeps min_ssim
    tiny = policy.bounds_for("tiny-sd", "bf16+int8-dq", "cuda-nvidia-h200")
    assert (tiny.min_speedup, tiny.min_ssim) == (0.5, 0.8)
    assert tiny.sources["min_speedup"] == "policy.toml rule #3 (combo='*', profile='cuda-*', model='tiny-*')"
    assert tiny.sources["memory_tolerance"] == "policy.toml [defaults]"

    # globs are case-sensitive and need a full match
    assert policy.bounds_for("sd15", "fp32+bf16", "CUDA-x").min_speedup == 0.0


def test_min_speedup_defaults_to_builtin_zero(tmp_path: Path) -> None:
    path = write_policy(tmp_path, DEFAULTS.replace("min_speedup = 0.0\n", ""))
    bounds = load_policy(path).bounds_for("m", "fp32", "cpu-x")
    assert bounds.min_speedup == 0.0
    assert bounds.sources["min_speedup"] == "perfsuite built-in default"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (DEFAULTS + "min_psnr = 30.0\n", r"\[defaults\]: unknown key\(s\) 'min_psnr'; accepted: .*min_ssim"),
        (DEFAULTS + "[[rule]]\ncombo = '*'\nmin_sim = 0.5\n", r"rule #1: unknown key\(s\) 'min_sim'"),
        (DEFAULTS + "extra = 1\n", r"\[defaults\]: unknown key"),
        ("extra = 1\n" + DEFAULTS, r"top level: unknown key\(s\) 'extra'"),
        (
            DEFAULTS.replace("min_ssim = 0.9", 'min_ssim = "high"'),
            r"min_ssim = 'high' is a str; accepted: a num",
        ),
        (DEFAULTS.replace("min_ssim = 0.9", "min_ssim = true"), r"min_ssim = True is a bool"),
        (DEFAULTS.replace("min_ssim = 0.9", "min_ssim = 1.5"), r"min_ssim = 1.5 is out of range.*\[0, 1\]"),
        (DEFAULTS.replace("min_ssim = 0.9", "min_ssim = nan"), r"min_ssim = nan is out of range"),
        (DEFAULTS.replace("= 0.10", "= -0.1"), r"memory_tolerance = -0.1 is out of range; accepted: .*>= 0"),
        (
            DEFAULTS + "[[rule]]\ncombo = '*'\nlatency_tolerance = -1\n",
            r"rule #1: latency_tolerance = -1 is out",
        ),
        (DEFAULTS.replace("min_ssim = 0.9\n", ""), r"\[defaults\] is missing min_ssim"),
        (
            DEFAULTS.replace("schema_version = 1\n", ""),
            r"missing schema_version; accepted: schema_version = 1",
        ),
        (DEFAULTS.replace("schema_version = 1", "schema_version = 0"), r"unknown schema_version 0"),
        (DEFAULTS.replace("schema_version = 1", 'schema_version = "1"'), r"unknown schema_version '1'"),
        (
            DEFAULTS.replace("schema_version = 1", "schema_version = 2"),
            r"schema_version 2 is newer .* upgrade",
        ),
        ("schema_version = 1\n", r"missing \[defaults\] table"),
        (
            DEFAULTS + "[[rule]]\nprofile = 'cuda-*'\nmin_speedup = 1.0\n",
            r"rule #1: missing 'combo'; accepted: a non-empty glob",
        ),
        (DEFAULTS + "[[rule]]\ncombo = ''\nmin_speedup = 1.0\n", r"rule #1: combo = '' is not valid"),
        (DEFAULTS + "[[rule]]\ncombo = 3\nmin_speedup = 1.0\n", r"rule #1: combo = 3 is not valid"),
        (DEFAULTS + "[[rule]]\ncombo = '*'\nnote = 'x'\n", r"rule #1 sets no bound; accepted: any of"),
        (DEFAULTS + "[rule]\ncombo = '*'\n", r"'rule' is not an array of tables; accepted: \[\[rule\]\]"),
        (DEFAULTS + "min_ssim = [\n", r"not valid TOML"),
        (
            DEFAULTS + "[[rule]]\ncombo = 'fp16'\nab_max_pairs = 80.5\n",
            r"rule #1: ab_max_pairs = 80.5 is not a whole number; accepted: a whole number of pairs >= 2",
        ),
        (
            DEFAULTS + "[[rule]]\ncombo = 'fp16'\nab_max_seconds = 0\n",
            r"rule #1: ab_max_seconds = 0 is out of range; accepted: .*seconds >= 1",
        ),
    ],
)
def test_policy_validation_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = write_policy(tmp_path, text)
    with pytest.raises(BaselineFileError, match=expected) as info:
        load_policy(path)
    assert str(info.value).startswith(f"{path}: ")


def test_policy_rule_numbers_in_errors_count_from_one(tmp_path: Path) -> None:
    rules = "[[rule]]\ncombo = '*'\nmin_ssim = 0.5\n[[rule]]\ncombo = '*'\nmin_ssim = 2.0\n"
    with pytest.raises(BaselineFileError, match=r"rule #2: min_ssim = 2.0 is out of range"):
        load_policy(write_policy(tmp_path, DEFAULTS + rules))


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(BaselineFileError, match="policy file not found"):
        load_policy(tmp_path / "policy.toml")


def test_committed_policy_loads() -> None:
    policy = load_policy(REPO / "baselines" / "policy.toml")
    assert policy.rules and all(rule.note for rule in policy.rules)
    assert policy.bounds_for("sd15", "fp32", "cpu-amd-epyc-2c").min_ssim == 0.99
    assert policy.bounds_for("sd15", "bf16+int8-dq", "cpu-amd-epyc-2c").min_ssim == 0.80
    assert policy.bounds_for("sd15", "bf16+sdpa-flash", "cuda-nvidia-h200").min_speedup == 1.3
    assert policy.bounds_for("sd15", "bf16+sdpa-flash+compile", "cuda-nvidia-h200").min_speedup == 1.5
    assert policy.bounds_for("sd15", "bf16", "cpu-amd-epyc-2c").min_speedup == 0.0
    # eager bf16 on an AVX2 CPU: its ratio to fp32 moves with the host, so a wider history band;
    # compiled bf16 keeps the generic CPU band
    for combo in ("bf16", "bf16+sdpa-flash"):
        assert policy.bounds_for("tiny-sd", combo, "cpu-amd-epyc-2c").speedup_tolerance == 0.50
    assert policy.bounds_for("tiny-sd", "fp32", "cpu-amd-epyc-2c").speedup_tolerance == 0.30
    compiled = "bf16+sdpa-flash+channels-last+compile+inductor-flags"
    assert policy.bounds_for("tiny-sd", compiled, "cpu-amd-epyc-2c").speedup_tolerance == 0.30
    assert policy.bounds_for("sd15", "bf16", "cuda-nvidia-h200").speedup_tolerance == 0.15


# --- ids and paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("tiny-sd", "tiny-sd"),
        ("sd1.5_v2+x", "sd1.5_v2+x"),
        ("stabilityai/stable-diffusion-xl-base-1.0", "stabilityai--stable-diffusion-xl-base-1.0"),
        ("org/name", "org--name"),
    ],
)
def test_model_slug_ids_and_hub_ids(model: str, expected: str) -> None:
    assert model_slug(model) == expected


def test_model_slug_local_paths() -> None:
    slug = model_slug("/models/my model/")
    assert slug.startswith("local--my-model--") and len(slug) == len("local--my-model--") + 8
    assert slug == model_slug("/models/my model/")
    assert model_slug("/other/my model") != slug
    for name in ("./sd15", "../x/y", "a/b/c", "C:\\models\\sd", ".hidden", "a/..", "a--b/c"):
        assert model_slug(name).startswith("local--"), name
        assert baselines._ID_RE.fullmatch(model_slug(name))
    with pytest.raises(ValueError, match="invalid model name"):
        model_slug("  ")


def test_paths(tmp_path: Path) -> None:
    folder = tmp_path / PROFILE / "org--name"
    assert baseline_path(tmp_path, PROFILE, "org/name", "bf16+sdpa") == folder / "bf16+sdpa.json"
    assert reference_image_path(tmp_path, PROFILE, "org/name", "fp32") == folder / "fp32.png"
    assert obtained_path(tmp_path, PROFILE, "org/name", "fp32") == folder / "fp32.obtained.json"
    assert obtained_path(tmp_path, PROFILE, "org/name", "fp32", "png") == folder / "fp32.obtained.png"
    assert diff_path(tmp_path, PROFILE, "org/name", "fp32") == folder / "fp32.diff.png"
    with pytest.raises(ValueError, match="ext must be"):
        obtained_path(tmp_path, PROFILE, "m", "fp32", "txt")


@pytest.mark.parametrize(
    ("profile", "combo"), [("../x", "fp32"), ("cpu", "a/b"), (".", "fp32"), ("cpu", "..")]
)
def test_paths_reject_unsafe_ids(tmp_path: Path, profile: str, combo: str) -> None:
    with pytest.raises(ValueError, match=r"invalid (profile|combo) id"):
        baseline_path(tmp_path, profile, "m", combo)


# --- baseline files --------------------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    path = write(tmp_path, "org/name", commit="a" * 40, created="2025-01-02T03:04:05+00:00")
    assert path == tmp_path / PROFILE / "org--name" / "bf16+sdpa.json"
    text = path.read_text()
    assert text.endswith("}\n") and '\n  "combo": "bf16+sdpa",\n' in text
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["measurement"]["latency_median_s"] == 0.1 + 0.2  # full precision, not rounded
    assert "0.30000000000000004" in text

    loaded = load_baseline(tmp_path, PROFILE, "org/name", "bf16+sdpa")
    assert loaded == Baseline(
        profile=PROFILE,
        model="org/name",
        combo="bf16+sdpa",
        created="2025-01-02T03:04:05+00:00",
        commit="a" * 40,
        machine=machine().to_dict(),
        measurement=MEASUREMENT,
        path=path,
    )
    assert MachineInfo.from_dict(loaded.machine) == machine()
    hash(loaded)  # frozen and hashable despite its dict fields


def test_write_defaults_created_and_converts_numpy(tmp_path: Path) -> None:
    measurement = {"latency_median_s": np.float32(0.5), "samples_s": np.array([1.0, 2.0])}
    path = write(tmp_path, measurement=measurement, machine={"profile": PROFILE})
    loaded = load_baseline(tmp_path, PROFILE, "tiny-sd", "bf16+sdpa")
    assert loaded.commit is None and loaded.machine == {"profile": PROFILE}
    assert loaded.measurement == {"latency_median_s": 0.5, "samples_s": [1.0, 2.0]}
    assert loaded.created.endswith("+00:00")
    (tmp_path / "plain").write_text("")  # the file gets the usual mode, not a temp file's 0600
    assert path.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777


def test_write_rejects_non_json(tmp_path: Path) -> None:
    with pytest.raises(BaselineFileError, match="cannot write the baseline as JSON"):
        write(tmp_path, measurement={"latency_median_s": float("nan")})
    with pytest.raises(BaselineFileError, match="not JSON serializable"):
        write(tmp_path, measurement={"x": object()})
    with pytest.raises(ValueError, match="ISO-8601"):
        write(tmp_path, created="yesterday")
    assert not (tmp_path / PROFILE / "tiny-sd" / "bf16+sdpa.json").exists()


def test_missing_baseline_names_file_and_command(tmp_path: Path) -> None:
    with pytest.raises(MissingBaselineError) as info:
        load_baseline(tmp_path, PROFILE, "tiny-sd", "fp32")
    message = str(info.value)
    assert str(tmp_path / PROFILE / "tiny-sd" / "fp32.json") in message
    assert "pytest tests/perf --perf-update-baselines" in message
    assert "-k / --perf-model / --perf-preset" in message


def edit(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"schema_version": 2},
            r"schema_version 2 is newer than this perfsuite understands \(1\): upgrade "
            r"perfsuite or regenerate with `pytest tests/perf --perf-update-baselines`",
        ),
        ({"schema_version": None}, r"missing schema_version"),
        ({"schema_version": 0}, r"unknown schema_version 0"),
        ({"measurement": None}, r"missing key\(s\) measurement; regenerate it with"),
        ({"extra": 1}, r"top level: unknown key\(s\) 'extra'"),
        ({"measurement": [1]}, r"measurement = \[1\] has the wrong type list"),
        ({"commit": 5}, r"commit = 5 has the wrong type int"),
        ({"created": "noon"}, r"created = 'noon' is not an ISO-8601 time"),
        ({"combo": "fp32"}, r"does not match its path: combo 'fp32' \(path says 'bf16\+sdpa'\)"),
        ({"profile": "cpu-other"}, r"profile 'cpu-other' \(path says 'cpu-amd-epyc-2c'\)"),
        ({"model": "org/other"}, r"model folder 'org--other' \(path says 'tiny-sd'\)"),
    ],
)
def test_bad_baseline_contents(tmp_path: Path, changes: dict[str, Any], expected: str) -> None:
    path = write(tmp_path)
    edit(path, **changes)
    with pytest.raises(BaselineFileError, match=expected) as info:
        load_baseline(tmp_path, PROFILE, "tiny-sd", "bf16+sdpa")
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"schema_version": 1,\n  "profile": }', r"not valid JSON \(Expecting value: line 2 column 14"),
        ("[1, 2]", r"holds a JSON list, not an object"),
        ("\xff", r"not valid JSON"),
    ],
)
def test_malformed_baseline_file(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path)
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(BaselineFileError, match=expected) as info:
        load_baseline(tmp_path, PROFILE, "tiny-sd", "bf16+sdpa")
    assert str(path) in str(info.value)


# --- atomic writes ---------------------------------------------------------------------------------


def test_atomic_write_creates_dirs_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "x.png"
    atomic_write_bytes(path, b"\x89PNG one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.png"]


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError])
def test_atomic_write_interrupted_keeps_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type[BaseException]
) -> None:
    path = write(tmp_path)
    before = path.read_bytes()

    def interrupted(src: Any, dst: Any) -> None:
        assert Path(src).read_bytes() != before  # the new content was fully written first
        raise error("interrupted")

    monkeypatch.setattr(baselines.os, "replace", interrupted)
    with pytest.raises(error):
        write(tmp_path, measurement={"latency_median_s": 9.0})
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


# --- listing, commits, summaries -------------------------------------------------------------------


def test_list_baselines(tmp_path: Path) -> None:
    assert list_baselines(tmp_path / "absent") == []
    write_policy(tmp_path, DEFAULTS)
    write(tmp_path, "tiny-sd", "fp32")
    write(tmp_path, "org/name", "bf16")
    write(tmp_path, "tiny-sd", "fp32", profile="cuda-nvidia-h200")
    folder = tmp_path / PROFILE / "tiny-sd"
    (folder / "fp32.obtained.json").write_text("not json")
    (folder / "fp32.png").write_bytes(b"png")
    (folder / ".fp32.json.1234.tmp").write_text("partial")
    (tmp_path / ".git").mkdir()

    found = [(b.profile, b.model, b.combo) for b in list_baselines(tmp_path)]
    assert found == [
        (PROFILE, "org/name", "bf16"),
        (PROFILE, "tiny-sd", "fp32"),
        ("cuda-nvidia-h200", "tiny-sd", "fp32"),
    ]
    assert [b.profile for b in list_baselines(tmp_path, "cuda-nvidia-h200")] == ["cuda-nvidia-h200"]
    assert list_baselines(tmp_path, "cpu-none") == []


def test_list_baselines_reports_bad_files(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / PROFILE / "tiny-sd" / "renamed.json").write_text(
        (tmp_path / PROFILE / "tiny-sd" / "bf16+sdpa.json").read_text()
    )
    with pytest.raises(BaselineFileError, match=r"renamed.json: the file does not match its path"):
        list_baselines(tmp_path)


def test_current_commit(tmp_path: Path) -> None:
    assert current_commit(tmp_path / "absent") is None
    assert current_commit(tmp_path) is None or len(current_commit(tmp_path) or "") == 40
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    repo = tmp_path / "repo"
    repo.mkdir()
    try:
        subprocess.run([*git, "init", "-q"], cwd=repo, check=True, capture_output=True)
        subprocess.run(
            [*git, "commit", "-q", "--allow-empty", "-m", "x"], cwd=repo, check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not usable here")
    sha = current_commit(repo)
    assert sha is not None and len(sha) == 40 and int(sha, 16) >= 0


def test_diff_measurements(tmp_path: Path) -> None:
    write(tmp_path, measurement={"latency_median_s": 0.2, "peak_mem_bytes": 100, "nested": {"ssim": 0.9}})
    old = load_baseline(tmp_path, PROFILE, "tiny-sd", "bf16+sdpa")
    new = {"latency_median_s": 0.1, "peak_mem_bytes": 100, "speedup": 2.0, "nested": {"ssim": 0.95}}
    changes = diff_measurements(old, new)
    assert changes == [
        Change("latency_median_s", 0.2, 0.1),
        Change("peak_mem_bytes", 100, 100),
        Change("speedup", None, 2.0),
    ]
    assert [c.changed for c in changes] == [True, False, True]
    assert changes[0].relative == pytest.approx(-0.5)
    assert str(changes[0]) == "latency_median_s: 0.2 -> 0.1 (-50.0%)"
    assert str(changes[2]) == "speedup: (none) -> 2"
    assert diff_measurements(old, new, keys=("nested.ssim", "absent")) == [Change("nested.ssim", 0.9, 0.95)]
    assert diff_measurements(None, {"speedup": 1.5}) == [Change("speedup", None, 1.5)]


def test_atomic_write_many_leaves_every_old_file_when_interrupted_while_staging(tmp_path, monkeypatch):
    from perfsuite.baselines import atomic_write_many

    old = {tmp_path / "a.json": b"old a", tmp_path / "sub" / "b.png": b"old b"}
    atomic_write_many(old)
    real_fsync, calls = os.fsync, []

    def interrupted_fsync(fd):
        calls.append(fd)
        if len(calls) == 2:  # the second file is being staged
            raise KeyboardInterrupt
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_many({path: b"new" for path in old})
    monkeypatch.undo()
    assert {path: path.read_bytes() for path in old} == old
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.json", "b.png"]  # no temp left
    atomic_write_many({path: b"new" for path in old})
    assert all(path.read_bytes() == b"new" for path in old)
