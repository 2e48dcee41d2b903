"""Compiling techniques on the tiny transformer pipelines, end to end (real compiles: not the fast tier).

Regional compilation compiles each repeated transformer block class (Flux's two block kinds, Wan's
3-D block) without a graph break and keeps the eager output; accelerate's ``compile_regions`` runs on
a transformer denoiser, which does not truth-test its wrapped children as the UNet does. The
recompiles happen at warm-up (reported, not gated), and none follows.
"""

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
from perfsuite.runner import _apply_and_verify, output_image

CPU = torch.device("cpu")
CAPS = hardware.capabilities("cpu")
STEPS = 2


def _case(name: str, technique: str, recompiles: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    spec = get_model(name)
    base = spec.build(CPU, torch.float32)
    pipe = copy.deepcopy(base)
    target = Target(CPU, CAPS, spec.family, "fp32", frozenset(("fp32", technique)))
    with ExitStack() as stack:
        evidence = _apply_and_verify(pipe, make_combo(["fp32", technique]), target, stack)
        with counting_dynamo() as compiled:
            image = output_image(pipe(**spec.call_arguments(num_inference_steps=STEPS)))
        with counting_dynamo() as steady:
            again = output_image(pipe(**spec.call_arguments(num_inference_steps=STEPS)))
        trace = RunTrace(
            frozenset(), compiled["unique_graphs"], compiled["graph_breaks"], compiled["recompiles"]
        )
        evidence += get_technique(technique).verify_trace(trace, target)  # type: ignore[misc]
    torch.compiler.reset()
    assert (compiled["recompiles"], steady["recompiles"], steady["unique_graphs"]) == (recompiles, 0, 0)
    np.testing.assert_array_equal(image, again)
    return image, output_image(base(**spec.call_arguments(num_inference_steps=STEPS))), evidence


@pytest.mark.parametrize(
    ("name", "blocks", "recompiles"),
    [
        # The second FluxSingleTransformerBlock gets a strided slice of the first one's output.
        ("tiny-flux", "FluxTransformerBlock/FluxSingleTransformerBlock", 1),
        ("tiny-wan", "WanTransformerBlock", 0),
    ],
)
def test_regional_compile_compiles_each_transformer_block_kind(
    name: str, blocks: str, recompiles: int
) -> None:
    image, eager, evidence = _case(name, "regional-compile", recompiles)
    assert any(f"{blocks} blocks of the transformer compiled in place" in e for e in evidence)
    assert any("no graph break" in e for e in evidence)
    np.testing.assert_allclose(image, eager, atol=1e-3)


def test_accelerate_compile_regions_runs_on_the_flux_transformer() -> None:
    # One shared wrapper compiles every other child: one more compile per distinct child shape.
    image, eager, evidence = _case("tiny-flux", "compile-regions", recompiles=3)
    assert any("regions of the transformer compiled by accelerate" in e for e in evidence)
    np.testing.assert_allclose(image, eager, atol=1e-3)
