"""CaseSlot: the case a block holds open, prepared again from scratch between A/B attempts."""

from __future__ import annotations

import copy

import pytest
import torch

from perfsuite import hardware
from perfsuite.catalog import get_model
from perfsuite.matrix import make_combo
from perfsuite.optimizations import Target
from perfsuite.runner import CaseSlot, RunSettings, open_case

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_sd():
    spec = get_model("tiny-sd")
    return spec, spec.build(CPU, torch.float32)


def slot_for(tiny_sd, names, built):
    spec, base = tiny_sd
    combo = make_combo(names)
    target = Target(CPU, hardware.capabilities("cpu"), spec.family, combo.dtype, frozenset(names))

    def make_pipe(dtype):
        built.append(copy.deepcopy(base))
        return built[-1]

    settings = RunSettings(warmup=1, rounds=3, trace=True, diagnostics=False)
    return CaseSlot(lambda s: open_case(spec, combo, make_pipe, target, s), settings)


def test_reopen_builds_applies_and_verifies_a_fresh_case(tiny_sd):
    built: list = []
    with slot_for(tiny_sd, ["fp32", "channels-last"], built) as slot:
        first = slot.prepared
        assert first is not None and len(first.warmup_s) == 1 and first.peak_mem_bytes
        first_seconds = first.timed_call()
        second = slot.reopen()
        assert slot.prepared is second and second is not first and second.pipe is not first.pipe
        assert first.pipe is None  # released when the slot moved on
        assert len(built) == 2 and second.pipe is built[1]
        # The technique was applied and verified again on the fresh pipeline.
        assert second.pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        assert any("channels_last" in line for line in second.evidence)
        assert second.peak_mem_bytes is None  # prepared again without the profiled call
        assert second.timed_call() > 0 and first_seconds > 0
        assert second.image().ndim == 3
    assert slot.prepared is None and built[1] is not None


def test_a_failure_inside_the_slot_releases_the_case_and_propagates(tiny_sd):
    built: list = []
    slot = slot_for(tiny_sd, ["fp32"], built)
    with pytest.raises(RuntimeError, match="planted"), slot:
        slot.reopen()
        raise RuntimeError("planted")
    assert slot.prepared is None
