"""The transformer families' catalog entries: tiny builds, the generated T5 tokenizer, full-size
architectures on ``meta``, and saved pipelines loaded back through the local-model path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from perfsuite.catalog import available_models, get_model
from perfsuite.catalog.pretrained import _default_size
from perfsuite.catalog.t5_tokenizer import (
    build_t5_tokenizer,
    t5_tokenizer_vocab_size,
    write_t5_tokenizer_files,
)
from perfsuite.catalog.tiny_transformers import tiny_flux_spec, tiny_sd3_spec, tiny_wan_spec
from perfsuite.runner import output_image

TINY = ("tiny-flux", "tiny-sd3", "tiny-wan")
FACTORIES = {"tiny-flux": tiny_flux_spec, "tiny-sd3": tiny_sd3_spec, "tiny-wan": tiny_wan_spec}
CPU = torch.device("cpu")


@pytest.fixture(scope="module", params=TINY)
def tiny(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    spec = get_model(request.param)
    return spec, spec.build(CPU, torch.float32)


def _state(pipe: Any) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{key}": value
        for name, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
        for key, value in module.state_dict().items()
    }


def test_the_six_entries_are_in_the_catalog() -> None:
    names = available_models()
    for name in (*TINY, "flux", "sd3", "wan"):
        assert name in names
    assert {get_model(n).family for n in TINY} == {"flux", "sd3", "wan"}
    assert all(get_model(n).tiny for n in TINY)


def test_tiny_weights_are_seeded_deterministic_and_leave_the_global_rng_alone(tiny: tuple[Any, Any]) -> None:
    spec, pipe = tiny
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    again = spec.build(CPU, torch.float32)
    assert torch.equal(torch.random.get_rng_state(), before)
    first, second = _state(pipe), _state(again)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = _state(FACTORIES[spec.name](weight_seed=1).build(CPU, torch.float32))
    denoiser = spec.family_spec.denoiser
    assert any(not torch.equal(first[k], other[k]) for k in first if k.startswith(f"{denoiser}."))


def test_tiny_models_keep_the_real_block_structure(tiny: tuple[Any, Any]) -> None:
    spec, pipe = tiny
    family = spec.family_spec
    denoiser = family.denoiser_of(pipe)
    blocks = {type(m).__name__ for m in denoiser.modules()}
    expected = {
        "flux": {"FluxTransformerBlock", "FluxSingleTransformerBlock", "FluxAttention"},
        "sd3": {"JointTransformerBlock", "Attention"},
        "wan": {"WanTransformerBlock", "WanAttention", "WanRotaryPosEmbed"},
    }[spec.family]
    assert expected <= blocks
    assert type(denoiser).__name__ == family.denoiser_class
    assert len(family.text_encoders_of(pipe)) == len(family.text_encoders)
    for attribute in family.tokenizers:
        assert getattr(pipe, attribute) is not None


def test_one_call_of_each_tiny_model_gives_its_kind_of_output(tiny: tuple[Any, Any]) -> None:
    spec, pipe = tiny
    image = output_image(pipe(**spec.call_arguments(num_inference_steps=2)))
    assert np.isfinite(image).all() and image.std() > 0.02
    size = (spec.call_kwargs["height"], spec.call_kwargs["width"], 3)
    if spec.family_spec.output == "video":
        assert image.shape == (spec.call_kwargs["num_frames"], *size)
    else:
        assert image.shape == size


def test_the_generated_t5_tokenizer_pads_ends_and_knows_the_prompt_words(tmp_path: Path) -> None:
    tokenizer = build_t5_tokenizer(tmp_path / "t5")
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert len(tokenizer) == t5_tokenizer_vocab_size()
    ids = tokenizer(
        "Astronaut in a jungle, cold color palette", padding="max_length", max_length=16
    ).input_ids
    pieces = tokenizer.convert_ids_to_tokens(ids)
    assert pieces[:8] == ["▁Astronaut", "▁in", "▁a", "▁jungle", ",", "▁cold", "▁color", "▁palette"]
    assert ids[8] == 1 and ids[9:] == [0] * 7  # </s>, then <pad>
    assert 2 not in ids  # every character of an ASCII prompt is known
    first = (write_t5_tokenizer_files(tmp_path / "a") / "tokenizer.json").read_bytes()
    assert first == (write_t5_tokenizer_files(tmp_path / "b") / "tokenizer.json").read_bytes()


# Published parameter counts (parameters plus persistent buffers, as the checkpoints store them; tied
# embeddings counted once). Sources:
#  FLUX.1-dev: transformer/diffusion_pytorch_model.safetensors.index.json "total_size" 23,802,816,640
#    bytes of bf16 = 11,901,408,320; text_encoder_2/model.safetensors.index.json 9,524,621,312 bytes of
#    bf16 = 4,762,310,656 (T5 v1.1 XXL encoder); CLIP ViT-L/14 text model 123,060,480 (as sd15's);
#    the 16-channel VAE (ae.safetensors) 83,819,683 tensors' values.
#  SD3.5 Medium: the model card's "2.5 billion parameters" MMDiT-X: 2,243,171,520 parameters plus the
#    384x384x1536 positional-embedding table the checkpoint stores (226,492,416) = 2,469,663,936; the
#    same VAE as Flux; CLIP-L and OpenCLIP bigG with projections (123,650,304 and 694,659,840, the latter
#    as SDXL's text_encoder_2); the same T5 XXL encoder.
#  Wan2.1 T2V 1.3B: the "1.3B" transformer holds 1,418,996,800 parameters and the Wan VAE 126,892,531
#    (diffusion_pytorch_model.safetensors of Wan-AI/Wan2.1-T2V-1.3B-Diffusers); UMT5-XXL encoder
#    5,680,910,336 (256,384 x 4,096 embedding + 24 layers of 192,948,224 + final norm).
PUBLISHED = {
    "flux": {
        "transformer": 11_901_408_320,
        "vae": 83_819_683,
        "text_encoder": 123_060_480,
        "text_encoder_2": 4_762_310_656,
    },
    "sd3": {
        "transformer": 2_469_663_936,
        "vae": 83_819_683,
        "text_encoder": 123_650_304,
        "text_encoder_2": 694_659_840,
        "text_encoder_3": 4_762_310_656,
    },
    "wan": {"transformer": 1_418_996_800, "vae": 126_892_531, "text_encoder": 5_680_910_336},
}


def _stored_count(module: torch.nn.Module) -> int:
    """Parameters (shared ones once) plus persistent buffers: what a checkpoint of ``module`` holds."""
    params = sum(p.numel() for p in module.parameters())
    persistent = [
        b
        for sub in module.modules()
        for name, b in sub.named_buffers(recurse=False)
        if name not in sub._non_persistent_buffers_set
    ]
    return params + sum(b.numel() for b in persistent)


@pytest.mark.parametrize("name", ["flux", "sd3", "wan"])
def test_full_size_architectures_match_the_published_parameter_counts(name: str) -> None:
    spec = get_model(name)
    pipe: Any = spec.build(torch.device("meta"), torch.bfloat16)
    counts = {
        attribute: _stored_count(module)
        for attribute, module in pipe.components.items()
        if isinstance(module, torch.nn.Module)
    }
    assert counts == PUBLISHED[name]
    denoiser = spec.family_spec.denoiser_of(pipe)
    assert next(denoiser.parameters()).device.type == "meta"
    assert next(denoiser.parameters()).dtype == torch.bfloat16


def test_a_saved_tiny_flux_loads_back_through_the_local_model_path(tmp_path: Path) -> None:
    spec = get_model("tiny-flux")
    pipe: Any = spec.build(CPU, torch.float32)
    pipe.save_pretrained(tmp_path / "saved", safe_serialization=True)
    loaded_spec = get_model(str(tmp_path / "saved"))
    assert (loaded_spec.family, loaded_spec.source) == ("flux", "local")
    assert loaded_spec.call_kwargs["num_inference_steps"] == 28  # the Flux family's defaults
    assert "height" not in loaded_spec.call_kwargs  # no sample_size: the pipeline's own 1024x1024
    loaded: Any = loaded_spec.build(CPU, torch.float32)
    assert type(loaded).__name__ == "FluxPipeline"
    original, again = _state(pipe), _state(loaded)
    assert original.keys() == again.keys()
    assert all(torch.equal(original[k], again[k]) for k in original)
    expected = output_image(pipe(**spec.call_arguments(num_inference_steps=2)))
    # Same weights; loaded tensors may take other kernel paths, so values agree to float rounding only.
    got = output_image(loaded(**spec.call_arguments(num_inference_steps=2)))
    np.testing.assert_allclose(got, expected, atol=1e-4)


def _write_pipeline(
    folder: Path, class_name: str, denoiser: str, denoiser_config: dict[str, Any], vae: dict[str, Any]
) -> None:
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": class_name}))
    for part, config in ((denoiser, denoiser_config), ("vae", vae)):
        (folder / part).mkdir()
        (folder / part / "config.json").write_text(json.dumps(config))


def test_the_default_size_of_a_saved_pipeline_follows_its_family(tmp_path: Path) -> None:
    kl_vae = {"block_out_channels": [128, 256, 512, 512]}
    _write_pipeline(tmp_path / "sd3", "StableDiffusion3Pipeline", "transformer", {"sample_size": 128}, kl_vae)
    assert _default_size(tmp_path / "sd3", "sd3") == {"height": 1024, "width": 1024}
    _write_pipeline(tmp_path / "flux", "FluxPipeline", "transformer", {"in_channels": 64}, kl_vae)
    assert _default_size(tmp_path / "flux", "flux") == {}
    wan_vae = {"base_dim": 96, "scale_factor_spatial": 8}
    _write_pipeline(tmp_path / "wan", "WanPipeline", "transformer", {"patch_size": [1, 2, 2]}, wan_vae)
    assert _default_size(tmp_path / "wan", "wan") == {}
    assert get_model(str(tmp_path / "wan")).call_kwargs["num_frames"] == 81
    assert get_model(str(tmp_path / "sd3")).call_kwargs["height"] == 1024
