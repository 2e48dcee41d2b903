"""Every technique of the registry on the tiny CPU model: applied, proven active, globals restored."""

from __future__ import annotations

import copy
from contextlib import ExitStack
from typing import Any

import numpy as np
import pytest
import torch

from perfsuite import hardware
from perfsuite.catalog import get_model
from perfsuite.globalstate import GlobalSnapshot, LeakedGlobalsError
from perfsuite.matrix import make_combo
from perfsuite.measure import trace_call
from perfsuite.optimizations import (
    TECHNIQUES,
    NotActiveError,
    RunTrace,
    Target,
    Unsupported,
    get_technique,
    is_int8_weight,
)
from perfsuite.optimizations.compilation import compile_regions_blocker
from perfsuite.runner import _apply_and_verify, _verify_trace

CPU = torch.device("cpu")
CAPS = hardware.capabilities("cpu")
STEPS = 2


@pytest.fixture(scope="module")
def spec():
    return get_model("tiny-sd")


@pytest.fixture(scope="module")
def base(spec):
    return spec.build(CPU, torch.float32)


@pytest.fixture
def pipe(base):
    return copy.deepcopy(base)


def target(*names: str, dtype: str = "fp32") -> Target:
    return Target(CPU, CAPS, "sd", dtype, frozenset((dtype, *names)))


def run(pipe: Any, spec: Any) -> np.ndarray:
    return np.asarray(pipe(**spec.call_arguments(num_inference_steps=STEPS)).images[0])


def apply(pipe: Any, *names: str, dtype: str = "fp32") -> tuple[list[str], ExitStack]:
    combo = make_combo([dtype, *names])
    stack = ExitStack()
    evidence = _apply_and_verify(pipe, combo, target(*names, dtype=dtype), stack)
    return evidence, stack


def test_every_technique_of_the_guide_has_an_entry_with_verify():
    expected = {
        "fp32", "bf16", "fp16", "tf32", "sdpa-math", "sdpa-flash", "sdpa-efficient", "sdpa-cudnn",
        "channels-last", "compile", "compile-reduce-overhead", "compile-max-autotune",
        "inductor-flags", "regional-compile", "compile-regions", "int8-dq", "fuse-qkv", "sigmas-cpu",
        "fp8-dq", "first-block-cache", "taylorseer-cache", "mag-cache", "faster-cache", "pab-cache",
        "layerwise-fp8", "group-offload",
    }  # fmt: skip
    assert set(TECHNIQUES) == expected
    assert all(callable(t.verify) and t.summary for t in TECHNIQUES.values())


def test_unknown_technique_lists_known_ones():
    with pytest.raises(KeyError, match="known techniques: fp32"):
        get_technique("xformers")


def test_channels_last_is_verified_and_a_plain_model_is_rejected(pipe):
    with pytest.raises(NotActiveError, match="not channels-last"):
        get_technique("channels-last").verify(pipe, target())
    evidence, stack = apply(pipe, "channels-last")
    with stack:
        assert any("channels_last" in e for e in evidence)


def test_fuse_qkv_is_verified_and_keeps_the_image(pipe, base, spec):
    with pytest.raises(NotActiveError, match="fuse-qkv"):
        get_technique("fuse-qkv").verify(pipe, target())
    evidence, stack = apply(pipe, "fuse-qkv")
    with stack:
        assert any("fused projections" in e for e in evidence)
        np.testing.assert_allclose(run(pipe, spec), run(base, spec), atol=1e-4)


def test_int8_dynamic_quant_stores_int8_weights(pipe, spec):
    evidence, stack = apply(pipe, "int8-dq")
    with stack:
        assert any("hold int8 weights" in e for e in evidence)
        assert any(is_int8_weight(m.weight) for m in pipe.unet.modules() if isinstance(m, torch.nn.Linear))
        assert np.isfinite(run(pipe, spec)).all()


def test_dtype_is_verified(pipe):
    with pytest.raises(NotActiveError, match=r"expected torch\.bfloat16"):
        get_technique("bf16").verify(pipe, target(dtype="bf16"))
    pipe.to(dtype=torch.bfloat16)
    assert get_technique("bf16").verify(pipe, target(dtype="bf16"))


@pytest.mark.parametrize("backend", ["math", "flash"])
def test_sdpa_backend_that_ran_is_the_one_asked_for(pipe, spec, backend):
    evidence, stack = apply(pipe, f"sdpa-{backend}")
    with stack:
        trace = trace_call(lambda: run(pipe, spec), CPU)
        evidence += _verify_trace(make_combo(["fp32", f"sdpa-{backend}"]), trace, target(f"sdpa-{backend}"))
    assert any(backend in e for e in evidence)


def test_sdpa_trace_check_fails_when_another_kernel_ran():
    flash_ran = RunTrace(op_names=frozenset({"aten::_scaled_dot_product_flash_attention_for_cpu"}))
    with pytest.raises(NotActiveError, match=r"\['flash'\] SDPA kernel ran instead of 'math'"):
        get_technique("sdpa-math").verify_trace(flash_ran, target("sdpa-math"))  # type: ignore[misc]
    with pytest.raises(NotActiveError, match="no flash SDPA kernel ran"):
        get_technique("sdpa-flash").verify_trace(RunTrace(frozenset()), target("sdpa-flash"))  # type: ignore[misc]


def test_sigmas_cpu_applies_and_verifies(pipe):
    technique = get_technique("sigmas-cpu")
    assert technique.requires(target("sigmas-cpu")) is not None  # pruned on CPU runs, with a reason
    technique.apply(pipe, target("sigmas-cpu"))  # type: ignore[misc]
    assert technique.verify(pipe, target("sigmas-cpu"))
    assert pipe.scheduler.sigmas.device.type == "cpu"


def test_inductor_flags_are_set_inside_the_context_and_restored_after():
    before = GlobalSnapshot.take()
    tgt = Target(CPU, CAPS, "sd", "fp32", frozenset({"fp32", "compile", "inductor-flags", "int8-dq"}))
    technique = get_technique("inductor-flags")
    with technique.enter(tgt):
        evidence = technique.verify(None, tgt)
        assert "force_fuse_int_mm_with_mul=True" in evidence[0]
    with pytest.raises(NotActiveError, match="inductor config differs"):
        technique.verify(None, tgt)
    before.assert_unchanged("inductor-flags")


def test_compile_regions_blocker_names_the_unet_child_and_passes_the_vae(base):
    reason = compile_regions_blocker(base.unet)
    assert reason is not None and "conv_norm_out" in reason and "GroupNorm" in reason
    assert compile_regions_blocker(base.vae) is None


def test_compile_regions_on_the_unet_is_unsupported_not_a_crash(pipe):
    with pytest.raises(Unsupported, match="conv_norm_out"):
        apply(pipe, "compile-regions")


def test_compile_verify_rejects_an_eager_pipeline(pipe):
    with pytest.raises(NotActiveError, match="unet is not compiled"):
        get_technique("compile").verify(pipe, target("compile"))
    with pytest.raises(NotActiveError, match="ran eagerly"):
        get_technique("compile").verify_trace(RunTrace(frozenset()), target("compile"))  # type: ignore[misc]


@pytest.mark.parametrize(
    "names",
    [("tf32",), ("sdpa-math",), ("sdpa-flash",), ("inductor-flags", "compile"), ("int8-dq",)],
    ids=lambda n: "+".join(n),
)
def test_each_global_is_the_same_before_and_after(names):
    before = GlobalSnapshot.take()
    tgt = Target(CPU, CAPS, "sd", "fp32", frozenset(("fp32", *names)))
    with ExitStack() as stack:
        for name in names:
            stack.enter_context(get_technique(name).enter(tgt))
        if "tf32" in names:
            assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    before.assert_unchanged("+".join(names))


def test_a_leaked_global_is_reported_by_name():
    before = GlobalSnapshot.take()
    torch.backends.cuda.enable_math_sdp(False)
    try:
        with pytest.raises(LeakedGlobalsError, match=r"sdpa.math: True -> False"):
            before.assert_unchanged("a leaky case")
    finally:
        before.restore()
    before.assert_unchanged("restore")
