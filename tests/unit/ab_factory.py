"""Synthetic ``ab`` sections (what ``--perf-ab-base`` adds to a measurement): real pairs and statistics
from a fake, drifting machine, for the gate and report tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from perfsuite.ab.schedule import run_pairs
from perfsuite.stats import sequential_plan

BASE_MACHINE = {
    "python_version": "3.11.7",
    "cuda_version": None,
    "versions": {"perfsuite": "0.1.0", "torch": "2.12.0+cpu", "diffusers": "0.36.0"},
}
HEAD_MACHINE = {
    "python_version": "3.11.7",
    "cuda_version": None,
    "versions": {"perfsuite": "0.1.0", "torch": "2.13.0+cpu", "diffusers": "0.36.0"},
}


def ab_section(
    ratio: float = 1.0,
    *,
    noise: float = 0.01,
    tolerance: float = 0.05,
    max_pairs: int = 160,
    head_peak: int = 560 * 2**20,
    base_peak: int = 550 * 2**20,
    ssim: float = 0.9999,
    seed: int = 0,
) -> dict[str, Any]:
    """The ``ab`` section of one case whose head does ``ratio`` times the base's work."""
    rng = np.random.default_rng(seed)
    now = [0.0]

    def call(work: float) -> float:
        seconds = work * (2.0 if int(now[0] // 30) % 2 else 1.0) * float(np.exp(rng.normal(0, noise)))
        now[0] += seconds
        return seconds

    plan = sequential_plan(min(40, max_pairs), max_pairs, 0.01, 10)
    outcome = run_pairs(
        lambda: call(0.3 * ratio),
        lambda: call(0.3),
        plan,
        1 + tolerance,
        1e9,
        lambda: now[0],
        refresh=lambda: None,
    )
    head = [p.head_s for p in outcome.pairs]
    base = [p.base_s for p in outcome.pairs]
    return {
        "protocol": 1,
        "tolerance": tolerance,
        **outcome.to_dict(),
        "head_latency_median_s": float(np.median(head)),
        "base_latency_median_s": float(np.median(base)),
        "head_peak_mem_bytes": head_peak,
        "base_peak_mem_bytes": base_peak,
        "head_peak_mem_kind": "cpu-rss-hwm",
        "base_peak_mem_kind": "cpu-rss-hwm",
        "base_warmup_s": [1.2],
        "base_evidence": ["unet params are torch.float32"],
        "fidelity": {
            "non_finite": None,
            "ssim": ssim,
            "psnr_db": 48.0,
            "max_abs_diff": 0.01,
            "mean_abs_diff": 0.001,
        },
        "base": {
            "python_command": "/base/.venv/bin/python",
            "executable": "/base/.venv/bin/python",
            "perfsuite": "0.1.0",
            "perfsuite_path": "/base/perfsuite",
            "commit": "a" * 40,
            "num_threads": 2,
            "machine": BASE_MACHINE,
        },
        "head": {"commit": "b" * 40, "machine": HEAD_MACHINE},
        "version_changes": [
            "torch 2.12.0+cpu -> 2.13.0+cpu",
            "perfsuite checkout aaaaaaaaaaaa -> bbbbbbbbbbbb",
        ],
        "base_open_s": 3.0,
        "base_pids": [4711 + 2 * attempt for attempt in range(outcome.ratio.attempts)],
        "head_pids": [4712 + 2 * attempt for attempt in range(outcome.ratio.attempts)],
        "seconds": now[0] + 3.0,
    }
