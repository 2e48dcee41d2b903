"""The existing techniques on the transformer families (tiny-flux, tiny-sd3, tiny-wan): each acts on the
family's denoiser and VAE and proves it, or says why it cannot run on that model."""

from __future__ import annotations

import copy
from contextlib import ExitStack
from typing import Any

import numpy as np
import pytest
import torch

from perfsuite import hardware
from perfsuite.catalog import get_model
from perfsuite.diagnostics import collect, compute_dtype
from perfsuite.matrix import make_combo
from perfsuite.measure import trace_call
from perfsuite.optimizations import NotActiveError, Target, Unsupported, get_technique, is_int8_weight
from perfsuite.optimizations.attention import SDPA_OPS
from perfsuite.optimizations.compilation import compile_regions_blocker
from perfsuite.runner import _apply_and_verify, _verify_trace, output_image

CPU = torch.device("cpu")
CAPS = hardware.capabilities("cpu")
STEPS = 2
MODELS = ("tiny-flux", "tiny-sd3", "tiny-wan")


@pytest.fixture(scope="module")
def bases() -> dict[str, tuple[Any, Any]]:
    built = {}
    for name in MODELS:
        spec = get_model(name)
        built[name] = (spec, spec.build(CPU, torch.float32))
    return built


def fresh(bases: dict[str, tuple[Any, Any]], name: str) -> tuple[Any, Any, Any]:
    spec, base = bases[name]
    return spec, base, copy.deepcopy(base)


def target(spec: Any, *names: str, dtype: str = "fp32", device: torch.device = CPU) -> Target:
    return Target(device, CAPS, spec.family, dtype, frozenset((dtype, *names)))


def apply(spec: Any, pipe: Any, *names: str, dtype: str = "fp32") -> tuple[list[str], ExitStack]:
    stack = ExitStack()
    evidence = _apply_and_verify(pipe, make_combo([dtype, *names]), target(spec, *names, dtype=dtype), stack)
    return evidence, stack


def run(spec: Any, pipe: Any) -> np.ndarray:
    return output_image(pipe(**spec.call_arguments(num_inference_steps=STEPS)))


@pytest.mark.parametrize("name", MODELS)
def test_the_dtype_check_covers_the_denoiser_the_vae_and_every_text_encoder(bases, name) -> None:
    spec, _, pipe = fresh(bases, name)
    pipe.to(dtype=torch.bfloat16)
    evidence = get_technique("bf16").verify(pipe, target(spec, dtype="bf16"))
    family = spec.family_spec
    assert [e.split()[0] for e in evidence] == [family.denoiser, family.vae, *family.text_encoders]
    last = family.text_encoders[-1]
    getattr(pipe, last).to(torch.float32)
    with pytest.raises(NotActiveError, match=f"{last} parameters are"):
        get_technique("bf16").verify(pipe, target(spec, dtype="bf16"))


@pytest.mark.parametrize("name", ["tiny-flux", "tiny-wan"])
def test_fuse_qkv_runs_the_fused_projections_and_keeps_the_output(bases, name) -> None:
    spec, base, pipe = fresh(bases, name)
    with pytest.raises(NotActiveError, match="fuse-qkv"):
        get_technique("fuse-qkv").verify(pipe, target(spec, "fuse-qkv"))
    evidence, stack = apply(spec, pipe, "fuse-qkv")
    with stack:
        fused = [e for e in evidence if "fused projections" in e]
        assert fused and "transformer" in fused[0] and "not the separate ones" in fused[0]
        np.testing.assert_allclose(run(spec, pipe), run(spec, base), atol=1e-4)


def test_fuse_qkv_is_unsupported_where_the_fused_processor_skips_the_qk_norms(bases) -> None:
    spec, _, pipe = fresh(bases, "tiny-sd3")
    with pytest.raises(Unsupported, match=r"FusedJointAttnProcessor2_0, which does not apply its QK norms"):
        apply(spec, pipe, "fuse-qkv")


def test_fuse_qkv_verify_catches_a_processor_that_takes_the_separate_projections(bases) -> None:
    from diffusers.models.attention_processor import AttnProcessor2_0

    spec, _, pipe = fresh(bases, "tiny-flux")
    technique = get_technique("fuse-qkv")
    technique.apply(pipe, target(spec, "fuse-qkv"))  # type: ignore[misc]
    pipe.vae.set_attn_processor(AttnProcessor2_0())  # the layers stay fused, the processor ignores them
    with pytest.raises(
        NotActiveError, match=r"never called its fused to_qkv \(its processor AttnProcessor2_0"
    ):
        technique.verify(pipe, target(spec, "fuse-qkv"))


def test_channels_last_puts_the_wan_vae_in_ndhwc_and_leaves_the_transformer(bases) -> None:
    spec, _, pipe = fresh(bases, "tiny-wan")
    evidence, stack = apply(spec, pipe, "channels-last")
    with stack:
        assert len(evidence) == 4  # 3 dtype lines + the VAE's layout: the transformer is not a conv model
        assert "conv weights of vae are channels_last (NDHWC/NHWC)" in evidence[-1]
        conv3d = [m.weight for m in pipe.vae.modules() if isinstance(m, torch.nn.Conv3d)]
        assert conv3d and all(w.is_contiguous(memory_format=torch.channels_last_3d) for w in conv3d)
        patch = pipe.transformer.patch_embedding.weight
        assert patch.is_contiguous() and not patch.is_contiguous(memory_format=torch.channels_last_3d)


def test_int8_dq_quantizes_the_transformer_and_vae_linear_layers(bases) -> None:
    spec, _, pipe = fresh(bases, "tiny-flux")
    evidence, stack = apply(spec, pipe, "int8-dq")
    with stack:
        assert any("Linear layers of transformer hold int8 weights" in e for e in evidence)
        assert is_int8_weight(pipe.transformer.transformer_blocks[0].attn.to_q.weight)
        assert np.isfinite(run(spec, pipe)).all()


@pytest.mark.parametrize(("name", "blocks"), [("tiny-flux", 4), ("tiny-wan", 2)])
def test_compile_and_regional_compile_act_on_the_transformer(bases, name, blocks) -> None:
    spec, _, pipe = fresh(bases, name)
    evidence, stack = apply(spec, pipe, "regional-compile")
    with stack:
        assert f"{blocks} " in evidence[-1] and "blocks of the transformer compiled in place" in evidence[-1]
    spec, _, pipe = fresh(bases, name)
    evidence, stack = apply(spec, pipe, "compile")
    with stack:
        assert evidence[-2:] == ["transformer compiled in place", "vae.decode compiled"]


def test_regional_compile_on_a_denoiser_without_repeated_blocks_is_unsupported(bases) -> None:
    spec, _, pipe = fresh(bases, "tiny-sd3")
    assert get_technique("regional-compile").requires(target(spec, "regional-compile")) is not None
    with pytest.raises(Unsupported, match="SD3Transformer2DModel declares no _repeated_blocks"):
        get_technique("regional-compile").apply(pipe, target(spec, "regional-compile"))  # type: ignore[misc]


@pytest.mark.parametrize("name", ["tiny-flux", "tiny-wan"])
def test_accelerate_compile_regions_wraps_the_transformer(bases, name) -> None:
    spec, _, pipe = fresh(bases, name)
    assert compile_regions_blocker(pipe.transformer) is None
    evidence, stack = apply(spec, pipe, "compile-regions")
    with stack:
        assert "regions of the transformer compiled by accelerate" in evidence[-1]


@pytest.mark.parametrize("name", ["tiny-flux", "tiny-sd3"])
def test_sigmas_cpu_wraps_flow_match_euler_which_leaves_its_sigmas_on_the_device(bases, name) -> None:
    spec, _, pipe = fresh(bases, name)
    assert type(pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    meta = target(spec, "sigmas-cpu", device=torch.device("meta"))
    get_technique("sigmas-cpu").apply(pipe, meta)  # type: ignore[misc]  # Flux's needs a shift mu
    assert pipe.scheduler.sigmas.device.type == "meta"  # where the wrapper moves them from
    assert hasattr(pipe.scheduler.set_timesteps, "__wrapped__")


def test_sigmas_cpu_is_unsupported_for_a_scheduler_that_keeps_its_sigmas_on_the_cpu(bases) -> None:
    spec, _, pipe = fresh(bases, "tiny-wan")  # UniPCMultistepScheduler moves its sigmas to the CPU itself
    meta = target(spec, "sigmas-cpu", device=torch.device("meta"))
    with pytest.raises(Unsupported, match="UniPCMultistepScheduler already keeps its sigmas on the CPU"):
        get_technique("sigmas-cpu").apply(pipe, meta)  # type: ignore[misc]


@pytest.mark.parametrize("name", MODELS)
def test_the_profiler_sees_the_sdpa_kernel_through_the_attention_dispatcher(bases, name) -> None:
    spec, _, pipe = fresh(bases, name)
    evidence, stack = apply(spec, pipe, "sdpa-flash")
    with stack:
        trace = trace_call(lambda: pipe(**spec.call_arguments(num_inference_steps=1)), CPU)
        evidence = _verify_trace(make_combo(["fp32", "sdpa-flash"]), trace, target(spec, "sdpa-flash"))
    assert {b for b, ops in SDPA_OPS.items() if trace.op_names & set(ops)} == {"flash"}
    assert evidence == ["flash SDPA kernel ran (aten::_scaled_dot_product_flash_attention_for_cpu)"]


def test_diagnostics_time_the_stages_of_a_video_pipeline(bases) -> None:
    spec, _, pipe = fresh(bases, "tiny-wan")
    found = collect(pipe, spec.call_arguments(num_inference_steps=STEPS), CPU)
    stages = found.stage_times
    assert len(stages.per_step_s) == STEPS
    assert min(stages.text_encoding_s, stages.vae_decode_s, stages.denoise_s) > 0
    assert found.flops.denoise_flop and found.flops.vae_decode_flop
    assert compute_dtype(pipe) == "fp32"
