"""Verdicts end to end, through pytester: compile health gated after warm-up (regional compilation
passes, a recompile on every call fails), a technique that cannot prove itself and a graph break under
fullgraph each fail with a verdict (not a traceback), and the case-tensor memory check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

FAST = ("--perf-device=cpu", "--perf-rounds=3", "-p", "no:randomly")


def results(project, folder: str = "report") -> dict[str, dict]:
    """The cases of the run's results.json, by combo."""
    document = json.loads((project.path / folder / "results.json").read_text())
    return {case["combo"]: case for case in document["cases"]}


def check(case: dict, field: str, kind: str = "policy") -> dict:
    (found,) = [c for c in case["verdict"]["checks"] if c["field"] == field and c["kind"] == kind]
    return found


# --- compile health --------------------------------------------------------------------------------------


def test_regional_compile_passes_its_compile_health_on_unchanged_code(project):
    """compile_repeated_blocks compiles one block class; the blocks of the other UNet levels have other
    shapes and recompile during warm-up (all of them in the first call). That is information, not a
    regression: only recompiles after warm-up are gated."""
    run = project.runpytest_subprocess(
        *FAST, "--perf-warmup=2", "--perf-steps=2", "--perf-preset=single", "-k", "regional-compile",
        "--perf-report=report",
    )  # fmt: skip
    run.assert_outcomes(passed=1)
    run.stdout.fnmatch_lines(["*fp32+regional-compile: warm-up compiled * graphs with * recompiles (not*"])
    case = results(project)["fp32+regional-compile"]
    measurement = case["measurement"]
    assert measurement["warmup_recompiles"] >= 1 and measurement["unique_graphs"] >= 2
    assert (measurement["recompiles"], measurement["graph_breaks"]) == (0, 0)
    assert check(case, "recompiles")["status"] == "pass"
    assert "warm-up (not gated)" in check(case, "recompiles")["detail"]


RECOMPILE_EVERY_CALL = """
import diffusers
import torch
from diffusers.models.attention import BasicTransformerBlock

_forward = BasicTransformerBlock.forward
_call = diffusers.StableDiffusionPipeline.__call__
STATE = {"calls": 0, "tag": "call-0"}
# Room for a recompile on every call, so that the compile-health check (not the limit) catches it.
torch._dynamo.config.recompile_limit = 64


def call(self, *args, **kwargs):
    STATE["calls"] += 1
    STATE["tag"] = f"call-{STATE['calls']}"
    return _call(self, *args, **kwargs)


def forward(self, hidden_states, *args, **kwargs):
    # The planted regression: the compiled block branches on a string that changes on every call.
    # dynamo specializes on string values, so each pipeline call fails a guard and recompiles.
    if STATE["tag"].endswith("-never"):
        hidden_states = hidden_states + 1
    return _forward(self, hidden_states, *args, **kwargs)


BasicTransformerBlock.forward = forward
diffusers.StableDiffusionPipeline.__call__ = call
"""


def test_a_recompile_on_every_call_fails_the_compile_health_check(project):
    project.makeconftest(RECOMPILE_EVERY_CALL)
    run = project.runpytest_subprocess(
        *FAST, "--perf-warmup=2", "--perf-steps=2", "--perf-preset=single", "-k", "regional-compile",
    )  # fmt: skip
    run.assert_outcomes(failed=1)
    run.stdout.fnmatch_lines(["*recompiles (policy): FAIL*", "*obtained: * recompilations after warm-up*"])
    # At least one recompile in each call after warm-up: the profiled call and the 3 timed rounds
    # (one per block shape, in fact: 3 per call on tiny-sd).
    found = re.search(r"obtained: (\d+) recompilations after warm-up", run.stdout.str())
    assert found is not None and int(found[1]) >= 4


# --- failures before measuring are verdicts --------------------------------------------------------------

NO_OP_FUSE_QKV = """
from diffusers import UNet2DConditionModel


def fuse_qkv_projections(self):
    pass  # the planted regression: fusing the UNet's projections does nothing


UNet2DConditionModel.fuse_qkv_projections = fuse_qkv_projections
"""


def test_a_technique_that_cannot_prove_itself_fails_with_a_verify_verdict(project):
    project.makeconftest(NO_OP_FUSE_QKV)
    run = project.runpytest_subprocess(
        *FAST, "--perf-warmup=1", "--perf-steps=2", "--perf-preset=single", "-k", "fuse-qkv",
        "--perf-report=report",
    )  # fmt: skip
    run.assert_outcomes(failed=1)
    run.stdout.fnmatch_lines(
        [
            "*tiny-sd/fp32+fuse-qkv on profile cpu-*: 1 check(s) failed*",
            "*verify (policy): FAIL*",
            "*obtained: fuse-qkv: a Attention of the unet has no fused projection layer*",
            "*expected: fuse-qkv active: fused QKV*",
            "*the case was not measured*",
            "!! fp32+fuse-qkv * FAIL (verify)",
        ]
    )
    assert "NotActiveError" not in run.stdout.str()  # a verdict, not a traceback
    case = results(project)["fp32+fuse-qkv"]
    assert (case["status"], case["measurement"]) == ("fail", None)
    assert "NotActiveError" in check(case, "verify")["log"]
    assert "fp32+fuse-qkv" in (project.path / "report" / "summary.md").read_text()
    assert 'class="log"' in (project.path / "report" / "report.html").read_text()


GRAPH_BREAK = """
import torch
from diffusers.models.attention import BasicTransformerBlock

_forward = BasicTransformerBlock.forward


def forward(self, *args, **kwargs):
    torch._dynamo.graph_break()  # the planted regression: a graph break inside every block
    return _forward(self, *args, **kwargs)


BasicTransformerBlock.forward = forward
"""


def test_a_graph_break_under_fullgraph_fails_with_a_one_line_dynamo_verdict(project):
    project.makeconftest(GRAPH_BREAK)
    run = project.runpytest_subprocess(
        *FAST, "--perf-warmup=1", "--perf-steps=2", "--perf-preset=single", "-k", "fp32+compile]",
        "--perf-report=report",
    )  # fmt: skip
    run.assert_outcomes(failed=1)
    run.stdout.fnmatch_lines(
        [
            "*dynamo (policy): FAIL*",
            "*obtained: compile: Unsupported: *graph_break*",
            "*why:      at *conftest.py:* in forward*",
        ]
    )
    assert "Traceback" not in run.stdout.str()
    case = results(project)["fp32+compile"]
    assert case["status"] == "fail" and "Traceback" in check(case, "dynamo")["log"]


# --- memory: the bytes held by the case's tensors --------------------------------------------------------

EXTRA_BUFFER = """
import diffusers
import torch

_call = diffusers.StableDiffusionPipeline.__call__


def call(self, *args, **kwargs):
    # The planted regression: a buffer of a quarter of the UNet's parameters, held during each call.
    quarter = sum(p.numel() * p.element_size() for p in self.unet.parameters()) // 4
    held = torch.ones(quarter, dtype=torch.uint8)
    try:
        return _call(self, *args, **kwargs)
    finally:
        del held


diffusers.StableDiffusionPipeline.__call__ = call
"""


def test_memory_is_the_cases_own_alone_or_last_and_a_quarter_unet_buffer_fails(project):
    """Recorded alone, the last case of the eager single set has the same peak to the byte (the RSS
    of the process does not); then a buffer of a quarter of the UNet's parameters fails it."""
    eager = (*FAST, "--perf-warmup=1", "--perf-steps=2", "--perf-preset=single")
    for alone in ("layerwise-fp8", "channels-last"):  # the last eager case, and the planted one below
        project.runpytest_subprocess(*eager, "-k", alone, "--perf-update-baselines").assert_outcomes(passed=1)
    run = project.runpytest_subprocess(*eager, "-m", "not slow and not compile", "--perf-report=report")
    cases = results(project)
    assert list(cases)[-1] == "fp32+layerwise-fp8", list(cases)
    last = cases["fp32+layerwise-fp8"]
    assert check(last, "peak memory", "history")["status"] == "pass", check(last, "peak memory", "history")
    assert last["status"] == "pass", run.stdout.str()
    baselines = Path(project.path, "baselines")
    recorded = json.loads(next(baselines.glob("cpu-*/tiny-sd/fp32+layerwise-fp8.json")).read_text())
    assert last["measurement"]["peak_mem_bytes"] == recorded["measurement"]["peak_mem_bytes"]  # to the byte
    assert last["measurement"]["peak_mem_kind"] == "cpu-case-tensors"
    stored_file = next(baselines.glob("cpu-*/tiny-sd/fp32+channels-last.json"))
    stored = json.loads(stored_file.read_text())["measurement"]

    project.makeconftest(EXTRA_BUFFER)
    grown = project.runpytest_subprocess(*eager, "-k", "channels-last", "--perf-report=planted")
    grown.assert_outcomes(failed=1)
    grown.stdout.fnmatch_lines(["*peak memory (history): FAIL*", "*obtained: * MiB (cpu-case-tensors)*"])
    planted = results(project, "planted")["fp32+channels-last"]["measurement"]
    quarter_unet = planted["transient_mem_bytes"] - stored["transient_mem_bytes"]
    assert quarter_unet >= 4_000_000  # tiny-sd's UNet: 4.43 M fp32 parameters, a quarter is 4.43 MB


@pytest.fixture(autouse=True)
def _no_inherited_cache(monkeypatch):
    """Each run compiles into its own fresh cache (the plugin's default), whatever the caller set."""
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
