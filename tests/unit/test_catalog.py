"""Unit tests of the model catalog (CPU, offline, fast)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from perfsuite.catalog import (
    DEFAULT_MODEL,
    ModelNotCachedError,
    ModelSpec,
    UnknownModelError,
    UnsupportedPipelineError,
    available_models,
    get_model,
)
from perfsuite.catalog.fullsize import build_sd15, build_sdxl, load_component_config
from perfsuite.catalog.tokenizer import (
    MODEL_MAX_LENGTH,
    build_clip_tokenizer,
    tokenizer_vocab_size,
    write_clip_tokenizer_files,
)

CPU = torch.device("cpu")
TINY = ("tiny-sd", "tiny-sdxl")
FAST_STEPS = 2


def _image(pipe: Any, spec: ModelSpec, **overrides: Any) -> np.ndarray:
    images = pipe(**spec.call_arguments(num_inference_steps=FAST_STEPS, **overrides)).images
    return np.asarray(images[0])


def _param_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module", params=TINY)
def tiny(request: pytest.FixtureRequest) -> Iterator[tuple[ModelSpec, Any]]:
    """One built tiny pipeline (CPU, float32) per family, shared by the tests of this module."""
    spec = get_model(request.param)
    yield spec, spec.build(CPU, torch.float32)


# --- names -----------------------------------------------------------------------------------------


def test_catalog_names() -> None:
    assert available_models() == (
        "tiny-sd", "tiny-sdxl", "tiny-flux", "tiny-sd3", "tiny-wan", "sd15", "sdxl", "flux", "sd3", "wan",
    )  # fmt: skip
    assert DEFAULT_MODEL in available_models()
    for name in available_models():
        spec = get_model(name)
        assert spec.name == name
        assert spec.source == "catalog"
        assert spec.tiny == name.startswith("tiny-")


def test_unknown_name_lists_available_models() -> None:
    with pytest.raises(UnknownModelError) as info:
        get_model("no-such-model")
    for name in available_models():
        assert name in str(info.value)


def test_empty_name_is_rejected() -> None:
    with pytest.raises(UnknownModelError, match="empty model name; catalog models: tiny-sd"):
        get_model(" ")


def test_typo_suggests_closest_name() -> None:
    with pytest.raises(UnknownModelError, match="did you mean 'tiny-sdxl'"):
        get_model("tiny-sdxxl")


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match="no such directory"):
        get_model(str(tmp_path / "missing" / "pipeline"))


def test_directory_without_model_index(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match=r"no model_index\.json"):
        get_model(str(tmp_path))


def test_unsupported_pipeline_class(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "QwenImagePipeline"}))
    with pytest.raises(
        UnsupportedPipelineError, match=r"'QwenImagePipeline'.*FluxPipeline \(flux\).*WanPipeline"
    ):
        get_model(str(tmp_path))


def test_uncached_hub_id_says_how_to_fetch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(ModelNotCachedError) as info:
        get_model("perfsuite-tests/not-cached")
    message = str(info.value)
    assert "not in the local Hugging Face cache" in message
    assert str(tmp_path / "hub") in message
    assert "hf download perfsuite-tests/not-cached" in message


def test_import_is_cheap() -> None:
    heavy = "{'torch', 'diffusers', 'transformers'}"
    code = f"import sys, perfsuite.catalog; print(sorted({heavy} & set(sys.modules)))"
    repo_root = Path(__file__).parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo_root
    )
    assert result.stdout.strip() == "[]"


# --- tokenizer -------------------------------------------------------------------------------------


def test_tokenizer_offline(tmp_path: Path) -> None:
    tokenizer = build_clip_tokenizer(tmp_path)
    assert (tmp_path / "vocab.json").is_file()
    assert (tmp_path / "merges.txt").is_file()
    assert tokenizer.model_max_length == MODEL_MAX_LENGTH
    encoded = tokenizer(get_model("tiny-sd").call_kwargs["prompt"], padding="max_length", truncation=True)
    ids = encoded.input_ids
    assert len(ids) == MODEL_MAX_LENGTH
    assert ids[0] == tokenizer.bos_token_id
    content = ids[1 : ids.index(tokenizer.eos_token_id)]
    assert 5 <= len(content) <= 20, tokenizer.convert_ids_to_tokens(content)
    assert tokenizer.unk_token_id not in content
    assert ids[len(content) + 1 :] == [tokenizer.pad_token_id] * (MODEL_MAX_LENGTH - len(content) - 1)
    assert max(ids) < tokenizer_vocab_size()


def test_tokenizer_files_are_deterministic(tmp_path: Path) -> None:
    first = write_clip_tokenizer_files(tmp_path / "a")
    second = write_clip_tokenizer_files(tmp_path / "b")
    for name in ("vocab.json", "merges.txt"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    vocab = json.loads((first / "vocab.json").read_text(encoding="utf-8"))
    assert vocab["<|endoftext|>"] == len(vocab) - 1  # as in CLIP: end-of-text has the highest id
    assert len((first / "merges.txt").read_text(encoding="utf-8").splitlines()) > 300


# --- tiny models -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TINY)
def test_tiny_weights_are_deterministic(name: str) -> None:
    spec = get_model(name)
    rng_before = torch.get_rng_state()
    first = spec.build(CPU, torch.float32)
    second = spec.build(CPU, torch.float32)
    assert torch.equal(torch.get_rng_state(), rng_before), "building must not touch the global RNG"
    components = ("unet", "vae", "text_encoder") + (("text_encoder_2",) if spec.family == "sdxl" else ())
    for component in components:
        state_1 = getattr(first, component).state_dict()
        state_2 = getattr(second, component).state_dict()
        assert state_1.keys() == state_2.keys()
        for key, value in state_1.items():
            assert torch.equal(value, state_2[key]), f"{component}.{key} differs between two builds"


def test_tiny_weight_seed_changes_weights() -> None:
    from perfsuite.catalog.tiny import build_tiny_sd

    pipe_0: Any = build_tiny_sd(CPU, torch.float32, weight_seed=0)
    pipe_1: Any = build_tiny_sd(CPU, torch.float32, weight_seed=1)
    seed_0, seed_1 = pipe_0.unet.conv_in.weight, pipe_1.unet.conv_in.weight
    assert not torch.equal(seed_0, seed_1)


def test_tiny_dtype_is_a_cast_of_float32() -> None:
    spec = get_model("tiny-sd")
    fp32 = spec.build(CPU, torch.float32)
    bf16 = spec.build(CPU, torch.bfloat16)
    for component in ("unet", "vae", "text_encoder"):
        high_state = getattr(fp32, component).state_dict()
        low_state = getattr(bf16, component).state_dict()
        assert high_state.keys() == low_state.keys()
        for key, value in high_state.items():
            low = low_state[key]
            if value.is_floating_point():
                assert low.dtype == torch.bfloat16, f"{component}.{key}"
                assert torch.equal(low, value.to(torch.bfloat16)), f"{component}.{key}"


def test_tiny_architecture_has_what_optimizations_need(tiny: tuple[ModelSpec, Any]) -> None:
    from diffusers.models.attention import BasicTransformerBlock
    from diffusers.models.attention_processor import Attention
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    spec, pipe = tiny
    expected_class = "StableDiffusionXLPipeline" if spec.family == "sdxl" else "StableDiffusionPipeline"
    assert type(pipe).__name__ == expected_class
    unet_modules = list(pipe.unet.modules())
    assert any(isinstance(m, Transformer2DModel) for m in unet_modules)
    assert any(isinstance(m, BasicTransformerBlock) for m in unet_modules)
    assert "BasicTransformerBlock" in pipe.unet._repeated_blocks
    assert any(isinstance(m, torch.nn.Conv2d) for m in unet_modules)
    assert any(isinstance(m, Attention) for m in pipe.vae.decoder.mid_block.modules())
    assert pipe.vae_scale_factor == 8
    assert getattr(pipe, "safety_checker", None) is None
    assert getattr(pipe, "feature_extractor", None) is None
    if spec.family == "sdxl":
        assert pipe.watermark is None
        assert pipe.unet.config.addition_embed_type == "text_time"
        assert type(pipe.text_encoder_2).__name__ == "CLIPTextModelWithProjection"
        pooled_dim = pipe.text_encoder_2.config.projection_dim
        time_ids_dim = 6 * pipe.unet.config.addition_time_embed_dim
        assert pipe.unet.config.projection_class_embeddings_input_dim == time_ids_dim + pooled_dim


def test_tiny_call_is_deterministic_and_structured(tiny: tuple[ModelSpec, Any]) -> None:
    spec, pipe = tiny
    assert spec.call_kwargs["guidance_scale"] > 1  # CFG doubles the UNet batch, as in real use
    rng_before = torch.get_rng_state()
    first = _image(pipe, spec)
    second = _image(pipe, spec)
    assert torch.equal(torch.get_rng_state(), rng_before)
    side = spec.call_kwargs["height"]
    assert first.shape == (side, side, 3)
    assert np.isfinite(first).all()
    assert np.array_equal(first, second), "two calls with the same arguments must give the same image"
    per_channel_std = first.std(axis=(0, 1))
    assert (per_channel_std > 0.05).all(), f"image looks flat: per-channel std {per_channel_std}"
    saturated = float(((first < 0.01) | (first > 0.99)).mean())
    assert saturated < 0.2, f"{saturated:.0%} of the pixels are saturated"


def test_tiny_roundtrip_through_save_pretrained(tiny: tuple[ModelSpec, Any], tmp_path: Path) -> None:
    spec, pipe = tiny
    pipe.save_pretrained(tmp_path, safe_serialization=True)
    loaded_spec = get_model(str(tmp_path))
    assert loaded_spec.family == spec.family
    assert loaded_spec.source == "local"
    assert loaded_spec.call_kwargs["height"] == spec.call_kwargs["height"]
    loaded = loaded_spec.build(CPU, torch.float32)
    assert type(loaded) is type(pipe)
    np.testing.assert_allclose(_image(loaded, spec), _image(pipe, spec), rtol=0, atol=1e-6)


def test_cached_hub_id_loads_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spec = get_model("tiny-sd")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = tmp_path / "hub" / "models--perfsuite-tests--tiny-sd"
    pipe: Any = spec.build(CPU, torch.float32)
    pipe.save_pretrained(repo_dir / "snapshots" / commit, safe_serialization=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)

    cached = get_model("perfsuite-tests/tiny-sd")
    assert (cached.source, cached.family) == ("hub", "sd")
    loaded = cached.build(CPU, torch.float32)
    assert type(loaded).__name__ == "StableDiffusionPipeline"


# --- full-size architectures -----------------------------------------------------------------------


def test_sd15_architecture_on_meta() -> None:
    pipe: Any = build_sd15(torch.device("meta"), torch.float16)
    assert _param_count(pipe.unet) == 859_520_964
    assert _param_count(pipe.vae) == 83_653_863
    assert _param_count(pipe.text_encoder) == 123_060_480
    assert pipe.unet.device.type == "meta"
    assert pipe.unet.dtype == torch.float16
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert pipe.vae.config.scaling_factor == pytest.approx(0.18215)


def test_sdxl_architecture_on_meta() -> None:
    pipe: Any = build_sdxl(torch.device("meta"), torch.float16)
    assert _param_count(pipe.unet) == 2_567_463_684
    assert _param_count(pipe.vae) == 83_653_863
    assert _param_count(pipe.text_encoder) == 123_060_480
    assert _param_count(pipe.text_encoder_2) == 694_659_840
    assert pipe.unet.config.projection_class_embeddings_input_dim == 2816
    assert pipe.vae.config.force_upcast
    assert pipe.vae.config.scaling_factor == pytest.approx(0.13025)
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"


def test_fullsize_call_settings() -> None:
    sd15, sdxl = get_model("sd15"), get_model("sdxl")
    assert sd15.family == "sd"
    assert {k: sd15.call_kwargs[k] for k in ("height", "width", "num_inference_steps")} == {
        "height": 512,
        "width": 512,
        "num_inference_steps": 30,
    }
    assert sd15.call_kwargs["guidance_scale"] == 7.5
    assert sdxl.family == "sdxl"
    assert {k: sdxl.call_kwargs[k] for k in ("height", "width", "num_inference_steps")} == {
        "height": 1024,
        "width": 1024,
        "num_inference_steps": 30,
    }
    assert not sd15.tiny and not sdxl.tiny


def test_unknown_component_config() -> None:
    with pytest.raises(KeyError, match="sd15/text_encoder_2"):
        load_component_config("sd15", "text_encoder_2")
