"""Synthetic results documents for the report and CLI tests: seeded samples, real statistics."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from perfsuite.baselines import Bounds, load_policy
from perfsuite.gate import judge
from perfsuite.hardware import MachineInfo
from perfsuite.report.results import case_entry, results_document
from perfsuite.stats import Summary, speedup

PROFILE = "cpu-test-cpu-2c"
MODEL = "tiny-sd"
LONG_COMBO = "bf16+sdpa-flash+compile+sigmas-cpu+channels-last+inductor-flags+fuse-qkv+int8-dq"
#: combo -> (median latency in seconds, peak memory in bytes)
COMBOS: dict[str, tuple[float, int]] = {
    "fp32": (0.100, 400 * 2**20),
    "fp32+sdpa-math": (0.095, 390 * 2**20),
    "bf16": (0.060, 210 * 2**20),
    "bf16+sdpa-flash": (0.050, 200 * 2**20),
    LONG_COMBO: (0.030, 180 * 2**20),
}
REFERENCE_S = 0.100
POLICY = """\
schema_version = 1
[defaults]
min_speedup = 0.0
min_ssim = 0.9
latency_tolerance = 0.15
memory_tolerance = 0.10
speedup_tolerance = 0.15
"""


def machine() -> dict[str, Any]:
    """One fixed CPU machine: compare only checks absolute latency when both sides match."""
    info = MachineInfo(
        profile=PROFILE,
        device="cpu",
        cpu_model="Test CPU",
        cpu_cores=2,
        cpu_flags={"avx2": True},
        total_memory_bytes=8 * 2**30,
        gpu_name=None,
        gpu_capability=None,
        gpu_memory_bytes=None,
        cuda_version=None,
        driver_version=None,
        python_version="3.11.2",
        platform="Linux-test",
        versions={"torch": "2.13.0"},
    )
    return info.to_dict()


def bounds() -> Bounds:
    """The bounds of :data:`POLICY`, through the real policy loader."""
    with tempfile.TemporaryDirectory() as folder:
        return load_policy(write_policy(Path(folder))).bounds_for(MODEL, "any", PROFILE)


def measurement(
    combo: str,
    *,
    seed: int,
    slowdown: float = 1.0,
    n: int = 10,
    noise: float = 0.01,
    ssim: float | None = 0.99,
) -> dict[str, Any]:
    """A measurement shaped like ``CaseResult.to_dict()``; ``slowdown`` scales every latency sample
    (the reference samples stay), so the median, interval and speedup all move consistently."""
    median_s, peak = COMBOS[combo]
    rng = np.random.default_rng(seed)
    reference = REFERENCE_S * (1 + noise * rng.standard_normal(n))
    samples = median_s * (1 + noise * rng.standard_normal(n)) * slowdown
    latency, ref = Summary.from_samples(samples), Summary.from_samples(reference)
    ratio = speedup(reference, samples)
    data: dict[str, Any] = {
        "model": MODEL,
        "combo": combo,
        "techniques": combo.split("+"),
        "device": "cpu",
        "latency_samples_s": list(latency.samples),
        "reference_samples_s": list(ref.samples),
        "latency_median_s": latency.median,
        "latency_iqr_s": latency.iqr,
        "latency_ci_s": [latency.ci_low, latency.ci_high],
        "speedup": ratio.estimate,
        "speedup_ci": [ratio.ci_low, ratio.ci_high],
        "cold_start_s": median_s * 3,
        "warmup_s": [median_s * 3],
        "compile_s": 2.5 if "compile" in combo else None,
        "peak_mem_bytes": peak,
        "peak_mem_kind": "rss",
        "evidence": [],
        "unique_graphs": 0,
        "graph_breaks": 0,
        "recompiles": 0,
        "first_attempt": None,
    }
    if ssim is not None:
        numbers = {"ssim": ssim, "psnr_db": 40.0, "max_abs_diff": 0.1, "mean_abs_diff": 0.01}
        data["fidelity"] = {"reference": numbers, "stored": None}
    return data


def document(
    *,
    slowdown: Mapping[str, float] | None = None,
    combos: Sequence[str] | None = None,
    created: str = "2025-01-02T03:04:05+00:00",
    commit: str | None = "0123456789abcdef0123456789abcdef01234567",
    verdicts: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A valid results document; each combo's samples depend only on its position, so two documents
    differ only where ``slowdown`` says. ``verdicts`` (case id -> Verdict) replace the policy-only ones."""
    cases = []
    for seed, combo in enumerate(COMBOS):
        if combos is not None and combo not in combos:
            continue
        m = measurement(combo, seed=seed, slowdown=(slowdown or {}).get(combo, 1.0))
        verdict = (verdicts or {}).get(f"{MODEL}/{combo}") or judge(MODEL, combo, PROFILE, m, bounds(), None)
        cases.append(case_entry(m, verdict))
    return results_document(
        machine=machine(),
        profile=PROFILE,
        device="cpu",
        preset="ladder",
        models=[MODEL],
        cases=cases,
        skipped=[{"model": MODEL, "combo": "fp32+tf32", "reason": "tf32: TF32 needs an NVIDIA GPU"}],
        errors=[],
        commit=commit,
        created=created,
    )


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    return path


def write_policy(folder: Path) -> Path:
    path = folder / "policy.toml"
    path.write_text(POLICY)
    return path


def image(seed: int, size: int = 32) -> np.ndarray:
    """A textured HxWx3 uint8 image."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    base = np.stack(
        [ramp[None, :].repeat(size, 0), ramp[:, None].repeat(size, 1), np.full((size, size), 128.0)]
    )
    return np.clip(base.transpose(1, 2, 0) + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
