"""Step caches: hooks installed, block computations really skipped, and a cache that skips nothing fails."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch
from flux_factory import STEPS, build_tiny_flux, call_arguments

from perfsuite import hardware
from perfsuite.matrix import make_combo, prune_reason
from perfsuite.optimizations import NotActiveError, RunTrace, Target, caching, get_technique

CPU = torch.device("cpu")
CAPS = hardware.capabilities("cpu")
CACHES = list(caching.CACHES)


@pytest.fixture(scope="module")
def base() -> Any:
    return build_tiny_flux()


def target(family: str, *names: str) -> Target:
    return Target(CPU, CAPS, family, "fp32", frozenset(("fp32", *names)), call_arguments=call_arguments)


def counted_call(pipe: Any, name: str, tgt: Target) -> tuple[np.ndarray, dict[str, Any]]:
    technique = get_technique(name)
    assert technique.probe is not None
    with technique.probe(pipe, tgt) as counts:
        image = pipe(**call_arguments()).images[0]
    return image, dict(counts)


def never_skipping(name: str) -> Any:
    """A config of cache ``name`` that installs its hooks but never reuses an output."""
    import diffusers
    from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

    never = (-2, -1)  # no timestep lies in this range
    return {
        "first-block-cache": lambda: diffusers.FirstBlockCacheConfig(threshold=0.0),
        "taylorseer-cache": lambda: diffusers.TaylorSeerCacheConfig(disable_cache_before_step=10_000),
        "mag-cache": lambda: diffusers.MagCacheConfig(
            retention_ratio=1.0, num_inference_steps=STEPS, mag_ratios=FLUX_MAG_RATIOS
        ),
        "faster-cache": lambda: diffusers.FasterCacheConfig(
            spatial_attention_timestep_skip_range=never,
            current_timestep_callback=lambda: 500,
            is_guidance_distilled=True,
        ),
        "pab-cache": lambda: diffusers.PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=2,
            spatial_attention_timestep_skip_range=never,
            current_timestep_callback=lambda: 500,
        ),
    }[name]()


@pytest.mark.parametrize("name", CACHES)
def test_each_cache_installs_its_hooks_and_skips_block_computations(name, base, flux_family):
    pipe, tgt = copy.deepcopy(base), target(flux_family, name)
    technique = get_technique(name)
    technique.apply(pipe, tgt)

    evidence = technique.verify(pipe, tgt)
    assert caching.CACHES[name].config_class in evidence[0]
    image, counts = counted_call(pipe, name, tgt)
    proof = technique.verify_trace(RunTrace(frozenset(), probes={name: counts}), tgt)

    assert counts["denoiser_calls"] == STEPS
    assert 0 < counts["computed"] < counts["units"] * STEPS
    skipped = counts["units"] * STEPS - counts["computed"]
    assert proof == [
        f"skipped {skipped} of {counts['units'] * STEPS} {caching.CACHES[name].unit} computations in the "
        f"profiled call ({counts['units']} {caching.CACHES[name].unit} modules x {STEPS} denoiser calls)"
    ]
    # diffusers resets the cache state at the end of every call: the next call does the same work.
    again, counts_again = counted_call(pipe, name, tgt)
    assert counts_again == counts
    np.testing.assert_array_equal(again, image)
    assert np.isfinite(image).all()


@pytest.mark.parametrize("name", CACHES)
def test_each_cache_fails_verification_when_installed_but_nothing_is_skipped(name, base, flux_family):
    pipe, tgt = copy.deepcopy(base), target(flux_family, name)
    pipe.transformer.enable_cache(never_skipping(name))
    technique = get_technique(name)

    assert technique.verify(pipe, tgt)  # the hooks are there ...
    _, counts = counted_call(pipe, name, tgt)
    assert counts["computed"] == counts["units"] * STEPS
    with pytest.raises(
        NotActiveError, match=f"{name}: the hooks are installed but the profiled call skipped none"
    ):
        technique.verify_trace(
            RunTrace(frozenset(), probes={name: counts}), tgt
        )  # ... but nothing was skipped


@pytest.mark.parametrize("name", CACHES)
def test_a_pipeline_without_the_cache_fails_verification(name, base, flux_family):
    with pytest.raises(NotActiveError, match=f"{name}: FluxTransformer2DModel holds cache config NoneType"):
        get_technique(name).verify(copy.deepcopy(base), target(flux_family, name))


def test_a_trace_without_a_count_fails():
    with pytest.raises(NotActiveError, match="recorded no count"):
        get_technique("pab-cache").verify_trace(RunTrace(frozenset()), target("sd", "pab-cache"))


def test_the_configs_are_recorded_in_the_evidence(base, flux_family):
    pipe, tgt = copy.deepcopy(base), target(flux_family, "first-block-cache")
    get_technique("first-block-cache").apply(pipe, tgt)
    (evidence,) = get_technique("first-block-cache").verify(pipe, tgt)
    assert "calibrated by one call to skip about 2 of 7 steps" in evidence
    assert "threshold 0.08 on FLUX.1-dev" in evidence

    pipe = copy.deepcopy(base)
    get_technique("mag-cache").apply(pipe, target(flux_family, "mag-cache"))
    assert pipe.transformer._cache_config.num_inference_steps == STEPS
    (evidence,) = get_technique("mag-cache").verify(pipe, target(flux_family, "mag-cache"))
    assert f"diffusers' FLUX_MAG_RATIOS (FLUX.1-dev, 28 steps), interpolated to {STEPS} steps" in evidence


def test_mag_cache_calibrates_its_ratios_where_diffusers_ships_none(base, flux_family, monkeypatch):
    monkeypatch.setattr(caching, "SHIPPED_MAG_RATIOS", {})
    pipe, tgt = copy.deepcopy(base), target(flux_family, "mag-cache")
    get_technique("mag-cache").apply(pipe, tgt)
    config = pipe.transformer._cache_config
    assert not config.calibrate and len(config.mag_ratios) == STEPS
    assert float(config.mag_ratios[0]) == 1.0  # the first step has no previous residual
    assert "calibrated by one call of this pipeline" in caching.describe_config(pipe.transformer)


@pytest.mark.parametrize("name", CACHES)
def test_unet_families_and_compiled_combos_are_pruned_with_the_reason(name):
    combo = make_combo(["fp32", name])
    reason = prune_reason(combo, CPU, CAPS, "sd")
    assert reason == (
        f"{name}: UNet2DConditionModel has no enable_cache: diffusers wires its step caches (CacheMixin) "
        "into transformer models whose pipelines open a cache_context, and "
        "StableDiffusionPipeline does neither"
    )
    reason = prune_reason(make_combo(["fp32", "regional-compile", name]), CPU, CAPS, "sd")
    assert reason is not None and "regional-compile's fullgraph compile refuses" in reason


def test_transformer_families_run_every_cache(flux_family):
    for name in CACHES:
        assert prune_reason(make_combo(["fp32", name]), CPU, CAPS, flux_family) is None


def test_count_needs_sub_modules_to_tell_whether_a_unit_ran():
    leaf = torch.nn.ReLU()
    with (
        pytest.raises(ValueError, match="ReLU has no sub-module"),
        caching.count_unit_computations(leaf, [leaf]),
    ):
        pass
