"""Video fidelity: frames compared one by one (mean and worst frame), stored side by side in one PNG."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from perfsuite.fidelity import (
    ImageMismatchError,
    InvalidImageError,
    assess,
    check_structure,
    compare,
    diff_image,
    encode_png,
    frames_side_by_side,
    load_png,
    save_png,
    split_frames,
    ssim_map,
    to_float01,
)
from perfsuite.runner import output_image


def video(frames: int = 5, side: int = 24, seed: int = 0) -> np.ndarray:
    """Seeded, smooth, distinct frames in [0.05, 0.95] (T x H x W x 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    out = []
    for t in range(frames):
        phase = rng.random(3) * 6.0
        channels = [0.5 + 0.45 * np.sin(6.0 * xx + 4.0 * yy * (c + 1) + phase[c] + t) for c in range(3)]
        out.append(np.stack(channels, axis=-1))
    return np.asarray(out, dtype=np.float32)


def test_frames_go_side_by_side_and_come_back() -> None:
    frames = video(frames=4, side=8)
    strip = frames_side_by_side(frames)
    assert strip.shape == (8, 32, 3)
    np.testing.assert_array_equal(strip[:, 8:16], frames[1])  # frame 1 is the second tile from the left
    np.testing.assert_array_equal(split_frames(strip, frames.shape), frames)
    single = frames[0]
    assert frames_side_by_side(single) is single  # an image is left as it is


def test_each_frame_is_compared_and_the_worst_is_named() -> None:
    frames = video()
    damaged = frames.copy()
    damaged[3] = np.clip(damaged[3] + np.random.default_rng(1).normal(0, 0.1, damaged[3].shape), 0, 1)
    result = compare(damaged, frames, what="tiny-wan/fp32+cache")
    assert len(result.frame_ssim) == 5
    assert result.frame_ssim[0] == result.frame_ssim[1] == 1.0
    assert result.worst_frame == 3 and result.frame_ssim[3] < 0.9
    assert result.ssim == pytest.approx(np.mean(result.frame_ssim))
    assert result.shape == frames.shape
    image = compare(frames[0], frames[0])
    assert image.frame_ssim == () and image.worst_frame is None


def test_assess_reports_mean_and_worst_frame_against_the_reference_and_the_stored_strip(
    tmp_path: Path,
) -> None:
    frames = video()
    obtained = frames.copy()
    obtained[1] *= np.float32(0.8)
    png = save_png(tmp_path / "fp32.png", frames)
    stored = load_png(png)
    assert stored.shape == (24, 5 * 24, 3)  # one PNG, the frames side by side
    fidelity = assess(obtained, frames, stored, what="tiny-wan/bf16")
    for key in ("reference", "stored"):
        entry = fidelity[key]
        assert isinstance(entry, dict)
        assert entry["frames"] == 5
        assert entry["worst_frame"] == 1
        assert entry["worst_frame_ssim"] == min(entry["frame_ssim"])
        assert entry["ssim"] == pytest.approx(np.mean(entry["frame_ssim"]))
    reference = fidelity["reference"]
    assert isinstance(reference, dict) and reference["frame_ssim"][0] == 1.0


def test_a_stored_strip_of_another_frame_count_is_a_clear_mismatch() -> None:
    frames = video(frames=5)
    stale = to_float01(encode_png_array(frames[:4]))
    with pytest.raises(ImageMismatchError, match=r"not 5 frames of 24x24x3 side by side"):
        compare(frames, stale, what="tiny-wan/fp32")


def encode_png_array(frames: np.ndarray) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(encode_png(frames))))


def test_diff_map_and_structure_cover_every_frame() -> None:
    frames = video()
    shifted = np.clip(frames + np.float32(0.01), 0, 1)
    diff = diff_image(shifted, frames)
    assert diff.shape == (24, 120, 3) and diff.dtype == np.uint8
    assert ssim_map(shifted, frames).shape == (24, 120)
    assert check_structure(frames, "tiny-wan frames").std > 0.1
    flat = np.full_like(frames, 0.5)
    with pytest.raises(AssertionError, match="flat"):
        check_structure(flat, "flat frames")


def test_a_batch_of_images_is_still_refused_where_one_image_is_expected() -> None:
    with pytest.raises(InvalidImageError, match="H x W x C"):
        to_float01(video())


def test_output_image_returns_the_frames_of_a_video_pipeline_and_the_image_of_an_image_pipeline() -> None:
    frames = video(frames=3, side=8)
    got = output_image(SimpleNamespace(frames=frames[None]))
    assert got.shape == (3, 8, 8, 3) and got.dtype == np.float32
    image = output_image(SimpleNamespace(images=frames))
    assert image.shape == (8, 8, 3)
    with pytest.raises(ValueError, match="TxHxWxC"):
        output_image(SimpleNamespace(frames=frames))
