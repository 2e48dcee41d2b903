"""Families as data: each family matches its diffusers pipeline, and every technique's requirement is
decided from the family and device alone, with a reason where it cannot run."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import diffusers
import pytest
import torch

from perfsuite import hardware
from perfsuite.catalog.families import FAMILIES, UnknownFamilyError, family_of, get_family
from perfsuite.matrix import build_plan
from perfsuite.optimizations import TECHNIQUES, Target

CPU = hardware.capabilities("cpu")
H200 = hardware.Capabilities(
    name="NVIDIA H200",
    device="cuda:0",
    is_cuda=True,
    compute_capability=(9, 0),
    supports_bf16=True,
    supports_fp16=True,
    supports_tf32=True,
    supports_flash_sdpa=True,
    supports_efficient_sdpa=True,
    supports_cudnn_sdpa=True,
    has_triton=True,
)
NEW = ("flux", "sd3", "wan")


@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_family_names_real_diffusers_classes_and_pipeline_attributes(name: str) -> None:
    family = get_family(name)
    assert hasattr(diffusers, family.denoiser_class)
    for class_name in family.pipeline_classes:
        pipeline = getattr(diffusers, class_name)
        init = inspect.signature(pipeline.__init__).parameters
        for attribute in (family.denoiser, family.vae, *family.text_encoders, *family.tokenizers):
            assert attribute in init, f"{class_name}.__init__ has no {attribute!r}"
        call = inspect.signature(pipeline.__call__).parameters
        for key, value in family.call_defaults.items():
            assert key in call, f"{class_name}.__call__ has no {key!r}"
            if name in NEW and key != "prompt":  # the new families' defaults are the pipeline's own
                assert call[key].default == value, (class_name, key)
    assert set(family.conv_components) <= {family.denoiser, family.vae}


def test_the_transformer_families_and_their_outputs() -> None:
    assert {n: get_family(n).denoiser for n in NEW} == dict.fromkeys(NEW, "transformer")
    assert {n: get_family(n).output for n in NEW} == {"flux": "image", "sd3": "image", "wan": "video"}
    assert get_family("wan").call_defaults["num_frames"] == 81
    assert get_family("sd").conv_components == ("unet", "vae")
    assert all(get_family(n).conv_components == ("vae",) for n in NEW)
    assert len(get_family("sd3").text_encoders) == 3


def test_a_pipeline_object_finds_its_family_and_an_unknown_one_is_named() -> None:
    class FluxPipeline:  # stands in for diffusers' class of the same name
        pass

    class MyFlux(FluxPipeline):
        pass

    assert family_of(MyFlux()).name == "flux"
    with pytest.raises(UnknownFamilyError, match="SimpleNamespace belongs to no registered family"):
        family_of(SimpleNamespace())


def _reason(technique: str, family: str, caps: hardware.Capabilities, dtype: str = "fp32") -> str | None:
    device = torch.device("cuda:0" if caps.is_cuda else "cpu")
    target = Target(device, caps, family, dtype, frozenset({dtype, technique}))
    return TECHNIQUES[technique].requires(target)


@pytest.mark.parametrize("caps", [CPU, H200], ids=["cpu", "h200"])
@pytest.mark.parametrize("family", NEW)
def test_every_technique_is_decided_from_family_and_device_as_for_the_unet_families(
    family: str, caps: hardware.Capabilities
) -> None:
    for name in TECHNIQUES:
        reason = _reason(name, family, caps)
        if name == "regional-compile" and family == "sd3":
            assert reason is not None
            assert "SD3Transformer2DModel declares no _repeated_blocks" in reason
        elif TECHNIQUES[name].group == "cache":  # step caches need a CacheMixin transformer
            if family == "sd3":
                assert reason is not None and "SD3Transformer2DModel has no enable_cache" in reason
            else:
                assert reason is None, name
            assert _reason(name, "sd", caps) is not None
        else:  # the same answer as on the SD UNet: only the device decides
            assert reason == _reason(name, "sd", caps), name


def test_the_single_preset_prunes_only_for_the_device_and_sd3_regional_compile() -> None:
    plans = {f: build_plan("single", torch.device("cpu"), CPU, f) for f in NEW}
    reference = {p.combo.id for p in build_plan("single", torch.device("cpu"), CPU, "sd").pruned}
    caches = {f"fp32+{n}" for n, t in TECHNIQUES.items() if t.group == "cache"}  # UNets have no enable_cache
    assert caches <= reference
    assert {p.combo.id for p in plans["flux"].pruned} == reference - caches
    assert {p.combo.id for p in plans["wan"].pruned} == reference - caches
    sd3 = {p.combo.id: p.reason for p in plans["sd3"].pruned}
    assert set(sd3) == reference | {"fp32+regional-compile"}
    assert "no _repeated_blocks" in sd3["fp32+regional-compile"]
