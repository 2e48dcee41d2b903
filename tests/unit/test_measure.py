"""perfsuite.measure: the tensor memory of one case (weights and the profiler's transient peak), and
perfsuite.failure: dynamo's refusals and failed verifications read as verdicts."""

from __future__ import annotations

import pytest
import torch

from perfsuite.failure import CaseFailed, compile_technique, dynamo_failure, verify_failure
from perfsuite.globalstate import reset_compiler_state
from perfsuite.measure import CaseMemory, case_tensor_bytes, profile_call
from perfsuite.optimizations import NotActiveError, get_technique

CPU = torch.device("cpu")
MIB = 2**20


@pytest.fixture
def fresh_compiler():
    reset_compiler_state()
    yield
    reset_compiler_state()


class _Pipe:
    """The part of a diffusers pipeline that case_tensor_bytes reads: ``components``."""

    def __init__(self, **components: object) -> None:
        self.components = components


# --- the case's own tensors ----------------------------------------------------------------------------


def test_case_tensor_bytes_counts_parameters_and_buffers_once_each():
    encoder = torch.nn.Embedding(100, 16)  # 6400 B
    head = torch.nn.Linear(16, 100, bias=False)  # 6400 B, then tied to the embedding
    norm = torch.nn.BatchNorm1d(8)  # weight, bias, running mean and var (4 x 32 B) + num_batches (8 B)
    pipe = _Pipe(text_encoder=encoder, head=head, norm=norm, tokenizer="not a module", scheduler=None)
    assert case_tensor_bytes(pipe) == 6400 + 6400 + 4 * 32 + 8
    head.weight = encoder.weight  # tied weights share one storage
    assert case_tensor_bytes(pipe) == 6400 + 4 * 32 + 8


def test_case_tensor_bytes_counts_the_inner_tensors_of_quantized_weights():
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    linear = torch.nn.Linear(64, 32)
    fp32_bytes = 64 * 32 * 4 + 32 * 4
    assert case_tensor_bytes(_Pipe(unet=linear)) == fp32_bytes
    quantize_(linear, Int8DynamicActivationInt8WeightConfig())
    assert hasattr(linear.weight, "__tensor_flatten__")  # a torchao tensor subclass
    quantized = case_tensor_bytes(_Pipe(unet=linear))
    # int8 data (1 B per weight) and the fp32 bias, plus per-row scales: well under the fp32 weight.
    assert 64 * 32 + 32 * 4 < quantized < 64 * 32 * 2 + 32 * 4 + 32 * 8


# --- the transient peak of one profiled call -------------------------------------------------------------


def test_the_transient_peak_is_the_most_a_call_holds_at_once():
    def call() -> None:
        first = torch.ones(MIB // 4, dtype=torch.float32)  # 1 MiB
        second = torch.ones(MIB // 2, dtype=torch.float32)  # 2 MiB: 3 MiB held here
        del first
        third = torch.ones(MIB // 8, dtype=torch.float32)  # 0.5 MiB: 2.5 MiB held
        del second, third

    profiled = profile_call(call, CPU)
    assert profiled.transient_peak_bytes == 3 * MIB
    assert "aten::ones" in profiled.trace.op_names


def test_memory_held_before_the_call_neither_counts_nor_lowers_the_peak():
    held = [torch.ones(MIB, dtype=torch.float32)]  # 4 MiB allocated before the call

    def call() -> None:
        held.clear()  # freed inside the call: its 4 MiB must not be subtracted
        extra = torch.ones(MIB // 4, dtype=torch.float32)
        del extra

    assert profile_call(call, CPU).transient_peak_bytes == MIB


def test_a_cpu_case_peak_is_its_weights_plus_its_transient_peak():
    unet = torch.nn.Linear(256, 256)  # 256 KiB + 1 KiB
    pipe = _Pipe(unet=unet)
    memory = CaseMemory(CPU)
    memory.before_build()
    memory.start()
    profiled = profile_call(lambda: unet(torch.ones(1024, 256)), CPU)  # input and output: 2 x 1 MiB
    reading = memory.reading(pipe, profiled.transient_peak_bytes)
    assert reading.peak_mem_kind == "cpu-case-tensors"
    assert reading.resident_mem_bytes == 256 * 256 * 4 + 256 * 4
    assert reading.transient_mem_bytes == 2 * MIB
    assert reading.peak_mem_bytes == reading.resident_mem_bytes + reading.transient_mem_bytes
    assert reading.rss_hwm_bytes is None or reading.rss_hwm_bytes > reading.peak_mem_bytes
    without_trace = memory.reading(pipe, None)
    assert (without_trace.peak_mem_bytes, without_trace.peak_mem_kind) == (None, "unavailable")


# --- failures read as verdicts ---------------------------------------------------------------------------


class _Breaks(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + 1
        torch._dynamo.graph_break()
        return x * 2


def test_a_graph_break_under_fullgraph_is_a_dynamo_failure_of_the_compile_technique(fresh_compiler):
    module = _Breaks()
    module.compile(fullgraph=True, backend="eager")
    with pytest.raises(Exception) as raised:
        module(torch.ones(2))
    failure = dynamo_failure(("fp32", "sdpa-flash", "compile"), raised.value)
    assert failure is not None
    assert (failure.kind, failure.technique) == ("dynamo", "compile")
    assert failure.found.startswith("Unsupported: ") and "graph_break" in failure.found
    assert "\n" not in failure.found
    assert "test_measure.py" in failure.where and "in forward" in failure.where
    assert "Traceback" in failure.log and "graph_break" in failure.log


def _scaled(x: torch.Tensor, factor: float) -> torch.Tensor:
    return x * factor


def test_the_recompile_limit_under_fullgraph_names_dynamos_reason(fresh_compiler):
    scaled = torch.compile(_scaled, fullgraph=True, backend="eager", dynamic=False)
    x = torch.ones(2)
    # config.patch, not monkeypatch: monkeypatch's undo writes the value back through the config
    # module's setattr, which leaves the option hidden (torch 2.13: "recompile_limit does not exist").
    with torch._dynamo.config.patch(recompile_limit=2), pytest.raises(Exception) as raised:
        for factor in (1.5, 2.5, 3.5, 4.5):  # a new float each call: a failed guard, a recompile
            scaled(x, factor)
    failure = dynamo_failure(("fp32", "regional-compile"), raised.value)
    assert failure is not None
    assert failure.technique == "regional-compile"
    assert failure.found.startswith("FailOnRecompileLimitHit: ")
    assert "recompile limit" in failure.found.lower()


def test_other_errors_are_not_dynamo_failures():
    assert dynamo_failure(("fp32", "compile"), ValueError("a bug")) is None
    assert compile_technique(("fp32", "fuse-qkv")) == "torch.compile"


def test_a_failed_verification_names_the_technique_what_it_promises_and_what_was_found():
    technique = get_technique("fuse-qkv")
    try:
        raise NotActiveError("fuse-qkv: unet attention uses AttnProcessor2_0")
    except NotActiveError as exc:
        failure = verify_failure(technique, exc, "verify, after apply")
    assert (failure.kind, failure.technique, failure.where) == ("verify", "fuse-qkv", "verify, after apply")
    assert failure.found == "unet attention uses AttnProcessor2_0"
    assert failure.expected.startswith("fuse-qkv active: fused QKV")
    assert str(CaseFailed(failure)) == "fuse-qkv: unet attention uses AttnProcessor2_0"
    assert type(failure).from_dict(failure.to_dict()) == failure
