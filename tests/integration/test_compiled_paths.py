"""Compiled paths that need inductor or dynamo at work: kept out of the fast tier, where a CUDA build
of torch makes their compile tens of seconds."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch

from perfsuite.catalog import get_model
from perfsuite.diagnostics import count_flops, instrumented_call
from perfsuite.globalstate import reset_compiler_state
from perfsuite.measure import counting_dynamo, trace_call

CPU = torch.device("cpu")
STEPS = 4


@pytest.fixture(scope="module")
def pipes() -> dict[str, tuple[Any, Any]]:
    spec = get_model("tiny-sd")
    return {"tiny-sd": (spec, spec.build(CPU, torch.float32))}


@pytest.fixture
def fresh_compiler():
    reset_compiler_state()
    yield
    reset_compiler_state()


def call_kwargs(spec: Any, **overrides: Any) -> dict[str, Any]:
    return spec.call_arguments(**{"num_inference_steps": STEPS, **overrides})


def test_compiled_pipeline_keeps_its_compiled_code_through_the_diagnostics(pipes, fresh_compiler):
    """Stage hooks add no graph break and no recompile; the FLOP count runs the eager path and leaves
    the compiled frames compiled (a bare FlopCounterMode would mark them never-to-compile)."""
    spec, base = pipes["tiny-sd"]
    eager_flop = count_flops(base, call_kwargs(spec)).total_flop
    pipe = copy.deepcopy(base)
    # backend="eager": dynamo's frame handling is what is under test, and it skips inductor's codegen.
    pipe.unet.compile_repeated_blocks(fullgraph=True, backend="eager")
    pipe.vae.decode = torch.compile(pipe.vae.decode, fullgraph=True, backend="eager")
    compiled_decode = vars(pipe.vae)["decode"]
    with counting_dynamo() as warmup:
        pipe(**call_kwargs(spec))
    assert warmup["unique_graphs"] > 0

    with counting_dynamo() as during:
        measured = instrumented_call(pipe, call_kwargs(spec), CPU)
        counted = count_flops(pipe, call_kwargs(spec))
        trace = trace_call(lambda: pipe(**call_kwargs(spec)), CPU)
    assert dict(during) == {"unique_graphs": 0, "graph_breaks": 0, "recompiles": 0}
    assert len(measured.stage_times.per_step_s) == STEPS
    assert counted.total_flop == eager_flop
    assert counted.note is not None and "eager path" in counted.note
    assert any(name.startswith("Torch-Compiled Region") for name in trace.op_names)
    assert vars(pipe.vae)["decode"] is compiled_decode


def test_each_compiled_combo_gets_empty_compile_caches(tmp_path, monkeypatch):
    import os

    import torch

    from perfsuite.globalstate import fresh_compile_caches

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "session"))
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)

    def double(x):
        return x * 2 + 1

    folders = []
    for _ in range(2):
        with fresh_compile_caches(str(tmp_path)) as folder:
            assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == folder
            assert os.environ["TRITON_CACHE_DIR"].startswith(folder)
            torch.compiler.reset()
            torch.compile(double)(torch.ones(4))
            folders.append(folder)
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "session")
        assert "TRITON_CACHE_DIR" not in os.environ
    torch.compiler.reset()
    # the second combo compiled into its own, new folder instead of reusing the first one's kernels
    assert folders[0] != folders[1]
    assert all(any(os.scandir(folder)) for folder in folders)
