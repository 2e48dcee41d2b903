"""The chunked-attn technique: its verify proves the processor is installed (and fails when it is
not), it keeps the image, it puts its global back, and it is part of the single preset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from custom_technique import CHUNKED_ATTN, processor
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from perfsuite.catalog import get_model
from perfsuite.hardware import capabilities
from perfsuite.matrix import build_plan
from perfsuite.optimizations import GROUPS, NotActiveError, Target, get_technique

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def spec():
    return get_model("my-sd")  # registered by conftest.py from pipelines/my-sd


@pytest.fixture
def pipe(spec):
    return spec.build(CPU, torch.float32)


def target(spec):
    return Target(CPU, capabilities("cpu"), spec.family, "fp32", frozenset({"fp32", "chunked-attn"}))


def image(pipe, spec):
    return pipe(**spec.call_arguments(num_inference_steps=2)).images[0]


def test_the_technique_comes_from_this_package_entry_point():
    assert get_technique("chunked-attn") is CHUNKED_ATTN


def test_verify_fails_when_the_processor_is_not_installed(pipe, spec):
    with CHUNKED_ATTN.enter(target(spec)), pytest.raises(NotActiveError, match="not ChunkedSDPAProcessor"):
        CHUNKED_ATTN.verify(pipe, target(spec))


def test_verify_names_a_module_that_lost_the_processor(pipe, spec):
    with CHUNKED_ATTN.enter(target(spec)):
        CHUNKED_ATTN.apply(pipe, target(spec))
        assert "use ChunkedSDPAProcessor" in CHUNKED_ATTN.verify(pipe, target(spec))[0]
        attentions = [m for m in pipe.unet.modules() if isinstance(m, Attention)]
        attentions[0].set_processor(AttnProcessor2_0())
        with pytest.raises(NotActiveError, match=f"1 of {len(attentions)} .* use AttnProcessor2_0"):
            CHUNKED_ATTN.verify(pipe, target(spec))


def test_the_context_sets_the_chunk_size_and_puts_it_back(spec):
    before = processor.CHUNK_QUERIES
    with CHUNKED_ATTN.enter(target(spec)):
        assert processor.CHUNK_QUERIES == 64
    assert before == processor.CHUNK_QUERIES
    assert [setting.name for setting in CHUNKED_ATTN.touches] == ["custom_technique.processor.CHUNK_QUERIES"]


def test_chunked_attention_gives_the_same_image(pipe, spec):
    reference = image(pipe, spec)
    with CHUNKED_ATTN.enter(target(spec)):
        CHUNKED_ATTN.apply(pipe, target(spec))
        chunked = image(pipe, spec)
    np.testing.assert_allclose(chunked, reference, atol=1e-4)


def test_the_technique_is_in_the_single_preset(spec):
    plan = build_plan("single", CPU, capabilities("cpu"), spec.family)
    assert "fp32+chunked-attn" in plan.ids
    assert GROUPS[-1] == "attn-processor"  # a new group comes after perfsuite's own
