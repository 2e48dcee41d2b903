"""Compiling techniques on the tiny CPU model, end to end: slow (a real compile), so not in the fast tier."""

from __future__ import annotations

import copy
from contextlib import ExitStack

import numpy as np
import pytest
import torch

from perfsuite import hardware
from perfsuite.catalog import get_model
from perfsuite.matrix import make_combo
from perfsuite.measure import counting_dynamo
from perfsuite.optimizations import RunTrace, Target, get_technique
from perfsuite.runner import _apply_and_verify

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


def run(pipe, spec) -> np.ndarray:
    return np.asarray(pipe(**spec.call_arguments(num_inference_steps=STEPS)).images[0])


def apply(pipe, *names: str, dtype: str = "fp32") -> tuple[list[str], ExitStack]:
    stack = ExitStack()
    evidence = _apply_and_verify(pipe, make_combo([dtype, *names]), target(*names, dtype=dtype), stack)
    return evidence, stack


def test_regional_compile_compiles_the_repeated_blocks(pipe, base, spec):
    evidence, stack = apply(pipe, "regional-compile")
    with stack, counting_dynamo() as compiled:
        image = run(pipe, spec)
    trace = RunTrace(frozenset(), compiled["unique_graphs"], compiled["graph_breaks"])
    evidence += get_technique("regional-compile").verify_trace(trace, target("regional-compile"))  # type: ignore[misc]
    assert any("BasicTransformerBlock blocks of the unet compiled in place" in e for e in evidence)
    np.testing.assert_allclose(image, run(base, spec), atol=1e-3)
    torch.compiler.reset()
