"""Diagnostics on the tiny CPU models, and the compile-health counters of perfsuite.measure."""

from __future__ import annotations

import copy
import json
import time
import warnings
from typing import Any

import pytest
import torch

from perfsuite import hardware
from perfsuite.catalog import get_model
from perfsuite.diagnostics import (
    SYNC_WARNING,
    SyncWarningCounter,
    collect,
    compute_dtype,
    count_flops,
    instrumented_call,
    peak_tflops,
    throughput,
)
from perfsuite.globalstate import preserved_globals, reset_compiler_state
from perfsuite.matrix import make_combo
from perfsuite.measure import counting_dynamo, trace_call
from perfsuite.optimizations import NotActiveError, Target, get_technique
from perfsuite.optimizations.quantization import dynamic_quant_filter

CPU = torch.device("cpu")
STEPS = 4
#: The message torch's sync debug mode emits (TORCH_WARN adds where it was triggered).
TORCH_SYNC_MESSAGE = f"{SYNC_WARNING} (Triggered internally at /pytorch/c10/cuda/CUDAFunctions.cpp:160.)"


@pytest.fixture(scope="module")
def pipes() -> dict[str, tuple[Any, Any]]:
    built: dict[str, tuple[Any, Any]] = {}
    for name in ("tiny-sd", "tiny-sdxl"):
        spec = get_model(name)
        built[name] = (spec, spec.build(CPU, torch.float32))
    return built


@pytest.fixture
def fresh_compiler():
    reset_compiler_state()
    yield
    reset_compiler_state()


def call_kwargs(spec: Any, **overrides: Any) -> dict[str, Any]:
    return spec.call_arguments(**{"num_inference_steps": STEPS, **overrides})


def hook_targets(pipe: Any) -> dict[str, Any]:
    """The instance attributes the stage hooks may touch, as they are now."""
    return {
        "pipe": {k: vars(pipe).get(k) for k in ("encode_prompt", "progress_bar")},
        "vae": vars(pipe.vae).get("decode"),
        "keys": (set(vars(pipe)), set(vars(pipe.vae))),
    }


# --- stage times --------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["tiny-sd", "tiny-sdxl"])
def test_stage_times_split_the_call(pipes, model):
    spec, pipe = pipes[model]
    start = time.perf_counter()
    measured = instrumented_call(pipe, call_kwargs(spec), CPU)
    wall_s = time.perf_counter() - start
    times = measured.stage_times

    assert len(times.per_step_s) == STEPS
    assert sum(times.per_step_s) == pytest.approx(times.denoise_s)
    assert min(times.text_encoding_s, times.vae_decode_s, *times.per_step_s) > 0
    parts = times.text_encoding_s + times.denoise_s + times.vae_decode_s + times.other_s
    assert parts == pytest.approx(times.total_s)
    assert 0 <= times.other_s < times.total_s
    assert 0.8 * wall_s < times.total_s <= wall_s
    assert measured.host_syncs.per_step is None
    assert measured.host_syncs.unavailable_reason == "no host-device sync on CPU"
    assert set(times.to_dict()) == {
        "text_encoding_s", "denoise_s", "per_step_s", "vae_decode_s", "other_s", "total_s",
    }  # fmt: skip


def test_hooks_are_removed_after_a_call(pipes):
    spec, pipe = pipes["tiny-sd"]
    before = hook_targets(pipe)
    instrumented_call(pipe, call_kwargs(spec), CPU)
    count_flops(pipe, call_kwargs(spec, num_inference_steps=1))
    assert hook_targets(pipe) == before
    assert pipe.encode_prompt.__func__ is type(pipe).encode_prompt


def test_hooks_are_removed_when_the_call_raises_and_an_own_attribute_is_put_back(pipes):
    spec, base = pipes["tiny-sd"]
    pipe = copy.deepcopy(base)
    own_decode = pipe.vae.decode  # an instance attribute, as torch.compile(pipe.vae.decode) leaves it
    pipe.vae.decode = own_decode
    before = hook_targets(pipe)
    steps: list[int] = []

    def fail_on_second_step(pipeline, step, timestep, tensors):
        steps.append(step)
        if step == 1:
            raise RuntimeError("planted failure in step 1")
        return tensors

    with pytest.raises(RuntimeError, match="planted failure in step 1"):
        instrumented_call(pipe, call_kwargs(spec, callback_on_step_end=fail_on_second_step), CPU)
    assert steps == [0, 1]
    assert hook_targets(pipe) == before
    assert vars(pipe.vae)["decode"] is own_decode


def test_a_pipeline_callback_object_is_refused_before_the_call(pipes):
    spec, pipe = pipes["tiny-sd"]

    class Callback:
        tensor_inputs = ("latents",)

        def __call__(self, *args):
            raise AssertionError("never called")

    before = hook_targets(pipe)
    with pytest.raises(ValueError, match="PipelineCallback"):
        instrumented_call(pipe, call_kwargs(spec, callback_on_step_end=Callback()), CPU)
    assert hook_targets(pipe) == before


# --- host-device syncs ---------------------------------------------------------------------------------


def test_sync_counter_counts_torch_sync_warnings_per_window_and_passes_others_on():
    with pytest.warns(DeprecationWarning, match="unrelated") as others, SyncWarningCounter() as counter:
        warnings.warn(TORCH_SYNC_MESSAGE, UserWarning, stacklevel=1)
        first = counter.mark()
        warnings.warn("unrelated", DeprecationWarning, stacklevel=1)
        for _ in range(3):
            warnings.warn(TORCH_SYNC_MESSAGE, UserWarning, stacklevel=1)
        second = counter.mark()
        third = counter.mark()
    assert (first, second, third) == (1, 3, 0)
    assert counter.count == 4
    assert [str(w.message) for w in others] == ["unrelated"]


def test_syncs_are_counted_per_denoising_step_only(pipes):
    """Sync warnings raised in step i count for step i; those before or after the loop do not count."""
    spec, base = pipes["tiny-sd"]
    pipe = copy.deepcopy(base)
    decode = pipe.vae.decode

    def decode_that_syncs(*args, **kwargs):
        warnings.warn(TORCH_SYNC_MESSAGE, UserWarning, stacklevel=1)
        return decode(*args, **kwargs)

    pipe.vae.decode = decode_that_syncs

    def step_that_syncs(pipeline, step, timestep, tensors):
        for _ in range(step):
            warnings.warn(TORCH_SYNC_MESSAGE, UserWarning, stacklevel=1)
        return tensors

    measured = instrumented_call(
        pipe, call_kwargs(spec, callback_on_step_end=step_that_syncs), CPU, count_syncs=True
    )
    assert measured.host_syncs.per_step == (0, 1, 2, 3)
    assert measured.host_syncs.to_dict()["denoise_syncs"] == 6


# --- FLOPs and throughput ----------------------------------------------------------------------------------


def test_flops_of_an_eager_pipeline_are_positive_repeatable_and_split_by_stage(pipes):
    spec, pipe = pipes["tiny-sd"]
    first = count_flops(pipe, call_kwargs(spec))
    second = count_flops(pipe, call_kwargs(spec))
    assert first.total_flop is not None and first.total_flop > 0
    assert second == first
    stages = [first.text_encoding_flop, first.denoise_flop, first.vae_decode_flop]
    assert all(s is not None and s > 0 for s in stages)
    assert sum(s for s in stages if s is not None) <= first.total_flop
    assert first.unavailable_reason is None and first.note is None


def test_flops_of_a_quantized_pipeline_are_refused_with_the_reason(pipes):
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    spec, base = pipes["tiny-sd"]
    pipe = copy.deepcopy(base)
    quantize_(pipe.unet, Int8DynamicActivationInt8WeightConfig(), filter_fn=dynamic_quant_filter)
    counted = count_flops(pipe, call_kwargs(spec))
    assert counted.total_flop is None
    assert "Int8Tensor" in (counted.unavailable_reason or "")
    assert compute_dtype(pipe) is None
    rate = throughput(counted.total_flop, 0.5, "given", CPU, None)
    assert rate.achieved_tflop_per_s is None and rate.unavailable_reason == "no FLOP count"


@pytest.mark.parametrize(
    ("device_name", "dtype", "expected"),
    [
        ("NVIDIA H200", "bf16", ("H200 SXM", 989.5)),
        ("NVIDIA H100 80GB HBM3", "tf32", ("H100 SXM", 494.5)),
        ("NVIDIA H100 PCIe", "fp16", ("H100 PCIe", 756.5)),
        ("NVIDIA A100-SXM4-80GB", "fp32", ("A100", 19.5)),
        ("NVIDIA L4", "bf16", ("L4", 121.0)),
        ("NVIDIA A10G", "bf16", None),
        ("NVIDIA H200 NVL", "bf16", None),
        ("NVIDIA H200", "int8", None),
    ],
)
def test_peak_table_lookup(device_name, dtype, expected):
    assert peak_tflops(device_name, dtype) == expected


def test_throughput_fraction_of_peak_on_a_known_gpu_and_reasons_elsewhere(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    cuda = torch.device("cuda")
    rate = throughput(2 * 10**15, 4.0, "given", cuda, "bf16")
    assert rate.achieved_tflop_per_s == pytest.approx(500.0)
    assert rate.peak_fraction == pytest.approx(500.0 / 989.5)
    assert rate.peak_of == "H200 SXM bf16"

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A10G")
    unknown = throughput(10**12, 1.0, "given", cuda, "bf16")
    assert unknown.peak_fraction is None and "'NVIDIA A10G'" in (unknown.unavailable_reason or "")
    on_cpu = throughput(10**12, 1.0, "given", CPU, "fp32")
    assert on_cpu.achieved_tflop_per_s == pytest.approx(1.0)
    assert on_cpu.peak_fraction is None and on_cpu.unavailable_reason == "no peak figure for cpu devices"


def test_compute_dtype_follows_weights_and_the_tf32_setting(pipes):
    _, base = pipes["tiny-sd"]
    assert compute_dtype(base) == "fp32"
    with preserved_globals():
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        assert compute_dtype(base) == "tf32"
    half = copy.deepcopy(base).to(dtype=torch.bfloat16)
    assert compute_dtype(half) == "bf16"


def test_collect_is_json_ready_with_units_in_keys(pipes):
    spec, pipe = pipes["tiny-sdxl"]
    result = collect(pipe, call_kwargs(spec, num_inference_steps=2), CPU, latency_s=0.25)
    data = json.loads(json.dumps(result.to_dict()))
    assert set(data) == {"stage_times", "host_syncs", "flops", "throughput"}
    assert len(data["stage_times"]["per_step_s"]) == 2
    assert data["flops"]["total_flop"] > 0
    assert data["throughput"]["latency_s"] == 0.25 and data["throughput"]["latency_source"] == "given"
    assert data["throughput"]["achieved_tflop_per_s"] == pytest.approx(data["flops"]["total_flop"] / 0.25e12)
    assert data["host_syncs"]["unavailable_reason"] == "no host-device sync on CPU"


# --- compile health: perfsuite.measure's counters on planted faults -----------------------------------


class _BreaksInTheMiddle(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = torch.nn.Linear(8, 8)
        self.second = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(x)
        torch._dynamo.graph_break()
        return self.second(x)


def _scale(x: torch.Tensor, factor: int) -> torch.Tensor:
    return x * factor


def test_a_planted_graph_break_is_counted_and_fails_the_compile_check(fresh_compiler):
    module = _BreaksInTheMiddle()
    module.compile(fullgraph=False, backend="eager")
    x = torch.randn(2, 8)
    with counting_dynamo() as compiled:
        module(x)
        module(x)
    trace = trace_call(lambda: module(x), CPU, compiled)
    assert compiled["graph_breaks"] >= 1 and trace.graph_breaks == compiled["graph_breaks"]
    assert trace.unique_graphs == 2
    target = Target(
        CPU, hardware.capabilities("cpu"), "sd", "fp32", frozenset(make_combo(["fp32", "compile"]).techniques)
    )
    verify = get_technique("compile").verify_trace
    assert verify is not None
    with pytest.raises(NotActiveError, match="graph breaks during warm-up"):
        verify(trace, target)


def test_a_planted_recompile_on_every_call_shows_as_new_graphs(fresh_compiler):
    scale = torch.compile(_scale, dynamic=False, backend="eager")
    x = torch.randn(2, 8)
    scale(x, 1)
    with counting_dynamo() as steady:
        for factor in (2, 3, 4):
            scale(x, factor)  # a new Python int under dynamic=False: a guard fails, dynamo recompiles
    assert steady["unique_graphs"] == 3


def test_a_planted_recompile_on_every_call_is_counted_as_recompiles(fresh_compiler):
    scale = torch.compile(_scale, dynamic=False, backend="eager")
    x = torch.randn(2, 8)
    scale(x, 1)
    with counting_dynamo() as steady:
        for factor in (2, 3, 4):
            scale(x, factor)
    assert steady["recompiles"] == 3


def test_command_line_writes_one_entry_per_model(tmp_path, capsys):
    from perfsuite.diagnostics.__main__ import main

    output = tmp_path / "diagnostics.json"
    assert (
        main(["--model", "tiny-sd", "--device", "cpu", "--steps", "1", "--size", "64x64", "-o", str(output)])
        == 0
    )
    entries = json.loads(output.read_text())["diagnostics"]
    assert [e["model"] for e in entries] == ["tiny-sd"]
    assert len(entries[0]["stage_times"]["per_step_s"]) == 1
    assert entries[0]["throughput"]["latency_source"] == "given"
    assert "tiny-sd fp32 on cpu: total" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--size", "64"])
