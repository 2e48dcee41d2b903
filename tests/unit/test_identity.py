"""Stable identities of local pipeline folders: the class and the configs, never the path or the weights."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from perfsuite.baselines import baseline_path, load_baseline, model_slug, write_baseline
from perfsuite.catalog import get_model, model_key
from perfsuite.catalog.identity import IGNORED_KEYS, pipeline_identity

INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.42.1",
    "feature_extractor": [None, None],
    "requires_safety_checker": False,
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
CONFIGS = {
    "scheduler/scheduler_config.json": {"_class_name": "EulerDiscreteScheduler", "num_train_timesteps": 1000},
    "text_encoder/config.json": {
        "hidden_size": 32,
        "transformers_version": "5.24.0",
        "torch_dtype": "float32",
    },
    "tokenizer/tokenizer_config.json": {"model_max_length": 77, "name_or_path": "/tmp/somewhere"},
    "unet/config.json": {
        "_class_name": "UNet2DConditionModel",
        "sample_size": 16,
        "block_out_channels": [32, 64],
    },
    "vae/config.json": {
        "_class_name": "AutoencoderKL",
        "block_out_channels": [32, 64],
        "_name_or_path": "/x",
    },
}


def make_pipeline(folder: Path, **changes: dict) -> Path:
    """A saved-pipeline folder with configs only (identity never reads weights), plus a fake weight."""
    (folder).mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps(INDEX))
    for relative, config in CONFIGS.items():
        path = folder / relative
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({**config, **changes.get(relative, {})}))
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"weights v1")
    (folder / "tokenizer" / "vocab.json").write_text("{}")
    return folder


def test_every_spelling_of_the_path_and_a_moved_copy_share_the_key(tmp_path, monkeypatch) -> None:
    make_pipeline(tmp_path / "my-pipeline")
    monkeypatch.chdir(tmp_path)
    keys = {
        model_key(spelling)
        for spelling in ("my-pipeline", "./my-pipeline", "my-pipeline/", str(tmp_path / "my-pipeline"))
    }
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    shutil.copytree(tmp_path / "my-pipeline", moved)
    keys.add(model_key(str(moved)))
    os.symlink(moved, tmp_path / "link")
    keys.add(model_key("link"))
    assert len(keys) == 1
    (key,) = keys
    assert key.startswith("local--StableDiffusionPipeline--") and model_slug(key) == key


def test_the_spec_of_a_path_carries_the_key_and_keeps_the_display_name(tmp_path, monkeypatch) -> None:
    make_pipeline(tmp_path / "my-pipeline")
    monkeypatch.chdir(tmp_path)
    spec = get_model("./my-pipeline")
    assert spec.name == "./my-pipeline"
    assert spec.key == pipeline_identity(tmp_path / "my-pipeline").key


def test_weights_and_save_time_fields_do_not_count(tmp_path) -> None:
    first = pipeline_identity(make_pipeline(tmp_path / "a"))
    retrained = make_pipeline(
        tmp_path / "b",
        **{
            "text_encoder/config.json": {"transformers_version": "6.0.0", "torch_dtype": "bfloat16"},
            "tokenizer/tokenizer_config.json": {"name_or_path": "/home/someone/else"},
            "vae/config.json": {"_name_or_path": "org/other", "_diffusers_version": "0.99.0"},
        },
    )
    (retrained / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"retrained weights")
    assert pipeline_identity(retrained) == first
    assert {"_diffusers_version", "transformers_version", "_name_or_path", "torch_dtype"} <= IGNORED_KEYS


@pytest.mark.parametrize(
    ("relative", "change"),
    [
        ("unet/config.json", {"block_out_channels": [64, 128]}),
        ("scheduler/scheduler_config.json", {"num_train_timesteps": 500}),
        ("tokenizer/tokenizer_config.json", {"model_max_length": 128}),
    ],
)
def test_an_architecture_or_call_relevant_change_is_another_model(tmp_path, relative, change) -> None:
    first = pipeline_identity(make_pipeline(tmp_path / "a"))
    other = pipeline_identity(make_pipeline(tmp_path / "b", **{relative: change}))
    assert other.key != first.key
    assert relative in other.files


def test_a_broken_folder_is_a_clear_error(tmp_path) -> None:
    folder = make_pipeline(tmp_path / "p")
    (folder / "vae" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"vae/config\.json is not valid JSON"):
        pipeline_identity(folder)
    shutil.rmtree(folder / "vae")
    with pytest.raises(ValueError, match="names the component 'vae' but has no vae/ folder"):
        pipeline_identity(folder)


def test_baselines_written_under_one_spelling_are_found_under_another(tmp_path, monkeypatch) -> None:
    make_pipeline(tmp_path / "my-pipeline")
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "baselines"
    written = write_baseline(
        root, "cpu-test-2c", model_key("./my-pipeline"), "fp32",
        measurement={"latency_median_s": 0.5}, machine={"cpu": "test"}, display_name="./my-pipeline",
    )  # fmt: skip
    absolute = model_key(str(tmp_path / "my-pipeline"))
    assert baseline_path(root, "cpu-test-2c", absolute, "fp32") == written
    found = load_baseline(root, "cpu-test-2c", absolute, "fp32")
    assert found.model == "./my-pipeline"  # the display name it was recorded under
    assert found.key == absolute
    assert json.loads(written.read_text())["model_key"] == absolute


def test_a_named_model_keeps_its_name_as_key(tmp_path) -> None:
    root = tmp_path / "baselines"
    path = write_baseline(root, "cpu-test-2c", "tiny-sd", "fp32", measurement={}, machine={})
    assert "model_key" not in json.loads(path.read_text())
    assert load_baseline(root, "cpu-test-2c", "tiny-sd", "fp32").key == "tiny-sd"
