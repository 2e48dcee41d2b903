"""layerwise-fp8, group-offload and fp8-dq: requirements, apply and verify on the tiny CPU models."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import pytest
import torch
from flux_factory import build_tiny_flux, call_arguments

from perfsuite import hardware
from perfsuite.catalog import get_model
from perfsuite.matrix import make_combo, prune_reason
from perfsuite.optimizations import NotActiveError, RunTrace, Target, get_technique, is_fp8_weight
from perfsuite.optimizations.memory import FP8_STORAGE, hooked_modules, parameter_bytes
from perfsuite.optimizations.quantization import float8_quant_filter

CPU = torch.device("cpu")
CAPS = hardware.capabilities("cpu")
H200 = dataclasses.replace(
    CAPS, name="NVIDIA H200", device="cuda:0", is_cuda=True, compute_capability=(9, 0), supports_tf32=True,
    supports_efficient_sdpa=True, supports_cudnn_sdpa=True, has_triton=True, supports_fp8_matmul=True,
)  # fmt: skip
A100 = dataclasses.replace(H200, name="NVIDIA A100", compute_capability=(8, 0), supports_fp8_matmul=False)
CUDA = torch.device("cuda:0")


@pytest.fixture(scope="module")
def tiny_sd() -> Any:
    spec = get_model("tiny-sd")
    return spec, spec.build(CPU, torch.float32)


def target(family: str, *names: str, dtype: str = "fp32", device: torch.device = CPU) -> Target:
    caps = CAPS if device.type == "cpu" else H200
    return Target(device, caps, family, dtype, frozenset((dtype, *names)))


def reason(names: list[str], caps: hardware.Capabilities = CAPS, family: str = "sd") -> str | None:
    device = CPU if not caps.is_cuda else CUDA
    return prune_reason(make_combo(names), device, caps, family)


# --- layerwise-fp8 ------------------------------------------------------------------------------


def test_layerwise_fp8_stores_float8_weights_and_keeps_the_image(tiny_sd):
    spec, base = tiny_sd
    pipe, tgt = copy.deepcopy(base), target("sd", "layerwise-fp8")
    before = parameter_bytes(pipe.unet)
    get_technique("layerwise-fp8").apply(pipe, tgt)

    evidence = get_technique("layerwise-fp8").verify(pipe, tgt)
    hooked = hooked_modules(pipe.unet, "layerwise_casting")
    assert hooked and all(p.dtype == FP8_STORAGE for _, m in hooked for p in m.parameters(recurse=False))
    assert f"store {FP8_STORAGE} weights" in evidence[0] and "compute in fp32" in evidence[0]
    # diffusers keeps norms and embeddings in the compute dtype by design, and the evidence says which.
    assert (
        "other layers with weights keep fp32: diffusers casts only" in evidence[1] and "norm" in evidence[1]
    )
    assert parameter_bytes(pipe.unet) < 0.4 * before
    # The dtype technique still verifies: float8-stored layers compute in fp32.
    assert get_technique("fp32").verify(pipe, tgt)

    kwargs = spec.call_arguments(num_inference_steps=2)
    image = pipe(**kwargs).images[0]
    reference = base(**spec.call_arguments(num_inference_steps=2)).images[0]
    assert np.isfinite(image).all()
    assert np.abs(image - reference).mean() < 0.05


def test_layerwise_fp8_verify_fails_without_the_casting_hooks(tiny_sd):
    _, base = tiny_sd
    with pytest.raises(NotActiveError, match="layerwise-fp8: no layer of the unet carries"):
        get_technique("layerwise-fp8").verify(copy.deepcopy(base), target("sd", "layerwise-fp8"))


def test_layerwise_fp8_verify_fails_when_a_hooked_layer_stores_another_dtype(tiny_sd):
    _, base = tiny_sd
    pipe, tgt = copy.deepcopy(base), target("sd", "layerwise-fp8")
    get_technique("layerwise-fp8").apply(pipe, tgt)
    (_, layer), *_ = hooked_modules(pipe.unet, "layerwise_casting")
    layer.to(torch.float32)
    with pytest.raises(NotActiveError, match=r"store \['torch.float32'\], expected torch.float8_e4m3fn"):
        get_technique("layerwise-fp8").verify(pipe, tgt)


def test_layerwise_fp8_is_pruned_beside_quantization_and_compile():
    assert "int8-dq's quantized weights cannot be" in reason(["fp32", "int8-dq", "layerwise-fp8"])
    assert "compile's fullgraph compile refuses" in reason(["fp32", "compile", "layerwise-fp8"])
    assert reason(["fp32", "layerwise-fp8"]) is None
    assert reason(["bf16", "sdpa-flash", "layerwise-fp8"]) is None


# --- group-offload ------------------------------------------------------------------------------


def test_group_offload_is_cuda_only_and_pruned_with_the_reason():
    assert reason(["fp32", "group-offload"]) == (
        "group-offload: group offloading (weights in CPU memory, prefetched on a CUDA stream) needs a "
        "CUDA device (running on cpu)"
    )
    assert reason(["bf16", "group-offload"], H200) is None
    assert "fullgraph compile refuses" in reason(["bf16", "compile", "group-offload"], H200)


def test_group_offload_verify_sees_the_hooks_and_the_weights_on_the_cpu(flux_family):
    # CUDA streams need a GPU; on the CPU diffusers' hooks run without one, which is enough to
    # prove what verify inspects: the hooks, and every weight in CPU memory between calls.
    pipe, tgt = build_tiny_flux(), target(flux_family, "group-offload")
    get_technique("group-offload").apply(pipe, tgt)
    evidence = get_technique("group-offload").verify(pipe, tgt)
    assert "group offloading hooks on" in evidence[0] and "without a stream" in evidence[0]
    assert evidence[1].startswith("all ") and "are on the CPU after enabling" in evidence[1]

    technique = get_technique("group-offload")
    assert technique.probe is not None and technique.verify_trace is not None
    with technique.probe(pipe, tgt) as placement:
        pipe(**call_arguments(steps=2))
    (proof,) = technique.verify_trace(RunTrace(frozenset(), probes={"group-offload": placement}), tgt)
    assert "on the CPU after the profiled call, as between calls" in proof


def test_group_offload_verify_fails_without_hooks_or_with_weights_on_the_gpu(flux_family):
    pipe, tgt = build_tiny_flux(), target(flux_family, "group-offload")
    with pytest.raises(
        NotActiveError, match="no module of the transformer carries diffusers' group offloading"
    ):
        get_technique("group-offload").verify(pipe, tgt)
    resident = {"group-offload": {"parameters": 10, "on_cpu": 7, "bytes": 1}}
    with pytest.raises(NotActiveError, match="3 of 10 parameters of the transformer are on the GPU"):
        get_technique("group-offload").verify_trace(RunTrace(frozenset(), probes=resident), tgt)


# --- fp8-dq -------------------------------------------------------------------------------------


def test_fp8_dq_needs_compute_capability_8_9_and_bf16():
    assert "compute capability >= 8.9" in reason(["bf16", "fp8-dq"])
    assert "compute capability >= 8.9 (this is NVIDIA A100)" in reason(["bf16", "fp8-dq"], A100)
    assert reason(["bf16", "fp8-dq"], H200) is None
    assert "quantize bf16 weights only, not fp32" in reason(["fp32", "fp8-dq"], H200)
    assert hardware.capabilities("cpu").supports_fp8_matmul is False


def _float8_weights(module: torch.nn.Module, skip: int = 0) -> None:
    """Give eligible Linear layers torchao Float8Tensor weights (quantize_ itself needs a GPU of 8.9+)."""
    from torchao.quantization import PerRow
    from torchao.quantization.quantize_.workflows.float8.float8_tensor import Float8Tensor

    eligible = [m for m in module.modules() if float8_quant_filter(m)]
    for layer in eligible[skip:]:
        if is_fp8_weight(layer.weight):
            continue
        weight = Float8Tensor.from_hp(
            layer.weight.detach(), float8_dtype=torch.float8_e4m3fn, granularity=PerRow()
        )
        layer.weight = torch.nn.Parameter(weight, requires_grad=False)


def test_fp8_dq_verify_counts_float8_weights_and_names_the_missing_ones(flux_family):
    pipe, tgt = build_tiny_flux().to(torch.bfloat16), target(flux_family, "fp8-dq", dtype="bf16", device=CUDA)
    with pytest.raises(NotActiveError, match="do not hold float8 weights"):
        get_technique("fp8-dq").verify(pipe, tgt)
    _float8_weights(pipe.transformer, skip=1)
    with pytest.raises(NotActiveError, match=r"1 of \d+ eligible Linear layers of the transformer do not"):
        get_technique("fp8-dq").verify(pipe, tgt)
    _float8_weights(pipe.transformer)
    (evidence,) = get_technique("fp8-dq").verify(pipe, tgt)
    assert "Linear layers of the transformer hold float8_e4m3fn weights with row-wise scales" in evidence
    assert is_fp8_weight(pipe.transformer.proj_out.weight)
    assert not is_fp8_weight(torch.ones(2, 2))
