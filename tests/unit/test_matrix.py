"""Presets, combo ids and pruning, on the real CPU and on a described (not present) H200."""

from __future__ import annotations

import pytest
import torch

from perfsuite import hardware
from perfsuite.matrix import CROSSED_GROUPS, PRESETS, REFERENCE, build_plan, make_combo, parse_combo
from perfsuite.optimizations import GROUPS, TECHNIQUES

CPU = hardware.capabilities("cpu")
H200 = hardware.Capabilities(
    name="NVIDIA H200",
    device="cuda:0",
    is_cuda=True,
    compute_capability=(9, 0),
    supports_bf16=True,
    supports_fp16=True,
    supports_tf32=True,
    supports_flash_sdpa=True,
    supports_efficient_sdpa=True,
    supports_cudnn_sdpa=True,
    has_triton=True,
    supports_fp8_matmul=True,
)


def plan(preset: str, caps: hardware.Capabilities = CPU, family: str = "sd"):
    device = torch.device("cuda:0" if caps.is_cuda else "cpu")
    return build_plan(preset, device, caps, family)


def test_combo_ids_follow_group_order_whatever_the_input_order():
    combo = make_combo(["compile", "sdpa-flash", "bf16", "channels-last"])
    assert combo.id == "bf16+sdpa-flash+channels-last+compile"
    assert parse_combo(combo.id) == combo
    assert combo.dtype == "bf16"
    assert combo.compiles


def test_parse_combo_rejects_unknown_tokens_and_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown token\(s\) \['sdpa-fast'\].*sdpa-flash"):
        parse_combo("bf16+sdpa-fast")


def test_a_combo_holds_one_technique_per_group_and_one_dtype():
    with pytest.raises(ValueError, match="dtype: bf16 and fp16"):
        make_combo(["bf16", "fp16"])
    with pytest.raises(ValueError, match="has no dtype"):
        make_combo(["compile"])


def test_cpu_ladder_is_the_guides_path_without_gpu_extras():
    p = plan("ladder")
    assert p.ids == [
        "fp32",
        "bf16",
        "bf16+sdpa-flash",
        "bf16+sdpa-flash+channels-last+compile+inductor-flags",
        "bf16+sdpa-flash+channels-last+compile+inductor-flags+fuse-qkv",
        "bf16+sdpa-flash+channels-last+compile+inductor-flags+fuse-qkv+int8-dq",
    ]
    assert [(x.combo.id, x.reason.split(":")[0]) for x in p.pruned] == [("fp32+tf32", "tf32")]


def test_gpu_ladder_adds_tf32_and_sigmas_on_cpu():
    p = plan("ladder", H200)
    assert p.ids[:3] == ["fp32", "fp32+tf32", "bf16"]
    assert "bf16+sigmas-cpu+sdpa-flash+channels-last+compile+inductor-flags" in p.ids
    assert not p.pruned


@pytest.mark.parametrize("caps", [CPU, H200], ids=["cpu", "h200"])
def test_single_covers_every_technique_either_as_a_case_or_pruned_with_a_reason(caps):
    p = plan("single", caps)
    covered = {t for combo in p.cases for t in combo.techniques}
    covered |= {t for pruned in p.pruned for t in pruned.combo.techniques}
    assert covered == set(TECHNIQUES)
    assert all(pruned.reason for pruned in p.pruned)
    assert p.cases[0].id == ("bf16" if caps.is_cuda else REFERENCE)


def test_cpu_prunes_gpu_only_techniques_with_their_reason():
    reasons = {x.combo.id: x.reason for x in plan("single").pruned}
    assert "CUDA" in reasons["fp32+compile-reduce-overhead"]
    assert "CUDA" in reasons["fp32+sdpa-efficient"]
    assert "compute capability" in reasons["fp32+tf32"]
    assert "sigmas already live on the CPU" in reasons["fp32+sigmas-cpu"]


def test_flash_sdpa_on_cuda_needs_half_precision():
    reasons = {x.combo.id: x.reason for x in plan("pairs", H200).pruned}
    assert "fp16/bf16" in reasons["fp32+sdpa-flash"]
    full = plan("full", H200)
    assert "fp32+sdpa-flash" not in full.ids
    assert "bf16+sdpa-flash" in full.ids


def test_inductor_flags_never_run_without_a_compile_technique():
    for preset in PRESETS:
        for combo in plan(preset, H200).cases:
            if "inductor-flags" in combo.techniques:
                assert combo.compiles, combo.id


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_are_deterministic_and_duplicate_free(preset):
    first, second = plan(preset, H200), plan(preset, H200)
    assert first.ids == second.ids
    assert len(set(first.ids)) == len(first.ids)


def test_full_is_every_group_choice_minus_the_pruned():
    p = plan("full", H200)
    sizes = [sum(1 for t in TECHNIQUES.values() if t.group == g) + (g != "dtype") for g in CROSSED_GROUPS]
    total = 1
    for size in sizes:
        total *= size
    alone = [n for n, t in TECHNIQUES.items() if t.group not in CROSSED_GROUPS]
    assert set(CROSSED_GROUPS) | {"cache", "memory"} == set(GROUPS)
    assert len(p.cases) + len(p.pruned) == total + len(alone)
    ids = p.ids + [x.combo.id for x in p.pruned]
    assert all(f"bf16+{name}" in ids for name in alone)


def test_unknown_preset_names_the_valid_ones():
    with pytest.raises(ValueError, match="choose one of: ladder, single, pairs, full, flux-fast, caches"):
        plan("smoke")


def test_flux_fast_is_flux_fasts_ladder_in_its_order_on_an_h200():
    p = plan("flux-fast", H200)
    assert p.ids == [
        "bf16",
        "bf16+compile-max-autotune",
        "bf16+compile-max-autotune+fuse-qkv",
        "bf16+channels-last+compile-max-autotune+fuse-qkv",
        "bf16+channels-last+compile-max-autotune+fuse-qkv+fp8-dq",
        "bf16+channels-last+compile-max-autotune+inductor-flags+fuse-qkv+fp8-dq",
    ]
    pruned = {x.combo.id: x.reason for x in p.pruned}
    assert list(pruned) == [
        "bf16+channels-last+compile-max-autotune+fuse-qkv+fa3-fp8",
        "bf16+channels-last+compile-max-autotune+inductor-flags+fuse-qkv+fp8-dq+export-aoti-cudagraphs",
    ]
    assert "flash-attn 3" in pruned["bf16+channels-last+compile-max-autotune+fuse-qkv+fa3-fp8"]


def test_flux_fast_on_a_cpu_compiles_in_the_default_mode_and_goes_on_past_what_cannot_run():
    p = plan("flux-fast")
    assert p.ids == [
        "bf16",
        "bf16+compile",
        "bf16+compile+fuse-qkv",
        "bf16+channels-last+compile+fuse-qkv",
        "bf16+channels-last+compile+inductor-flags+fuse-qkv",
    ]
    reasons = [x.reason for x in p.pruned]
    assert len(reasons) == 3
    assert "flash-attn 3" in reasons[0] and "compute capability >= 8.9" in reasons[1]
    assert "AOTInductor" in reasons[2]
    # The fp8 step is pruned and not carried: the inductor flags build on the step before it.
    assert "fp8-dq" not in p.ids[-1]


def test_caches_preset_is_each_cache_alone_on_the_base_dtype_and_pruned_on_unet_families():
    caches = ["first-block-cache", "taylorseer-cache", "mag-cache", "faster-cache", "pab-cache"]
    on_gpu = plan("caches", H200, family="sd")
    assert on_gpu.ids == ["bf16"]
    assert [x.combo.id for x in on_gpu.pruned] == [f"bf16+{name}" for name in caches]
    assert all("has no enable_cache" in x.reason for x in on_gpu.pruned)


def test_caches_preset_runs_every_cache_on_a_transformer_family(flux_family):
    p = plan("caches", family=flux_family)
    assert p.ids == ["fp32"] + [f"fp32+{name}" for name in TECHNIQUES if TECHNIQUES[name].group == "cache"]
    assert not p.pruned
