"""Tests of perfsuite.fidelity: SSIM/PSNR comparison, non-finite and degenerate images, PNG I/O."""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from perfsuite import fidelity
from perfsuite.fidelity import (
    Comparison,
    DegenerateImageError,
    ImageFileError,
    ImageMismatchError,
    InvalidImageError,
    NonFiniteImageError,
    check_finite,
    check_structure,
    compare,
    diff_image,
    load_png,
    save_png,
    ssim_map,
    structure_report,
    to_float01,
    to_uint8,
)


def smooth_image(h: int = 64, w: int = 64, c: int = 3, seed: int = 0) -> np.ndarray:
    """A seeded image with structure: random noise blurred by a box filter, scaled into [0.05, 0.95]."""
    rng = np.random.default_rng(seed)
    noise = rng.random((h + 8, w + 8, c))
    kernel = np.ones(9) / 9.0
    blurred = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="valid"), 0, noise)
    blurred = np.apply_along_axis(lambda r: np.convolve(r, kernel, mode="valid"), 1, blurred)
    lo, hi = blurred.min(), blurred.max()
    return (0.05 + 0.9 * (blurred - lo) / (hi - lo)).astype(np.float32)


# --- compare ---------------------------------------------------------------------------------------


def test_identical_images() -> None:
    img = smooth_image()
    c = compare(img, img.copy(), what="tiny-sd/fp32")
    assert c == Comparison(ssim=1.0, psnr_db=math.inf, max_abs_diff=0.0, mean_abs_diff=0.0, shape=(64, 64, 3))


def test_noise_lowers_ssim_monotonically() -> None:
    img = smooth_image()
    rng = np.random.default_rng(1)
    unit_noise = rng.standard_normal(img.shape).astype(np.float32)
    results = [compare(np.clip(img + sigma * unit_noise, 0, 1), img) for sigma in (0.005, 0.02, 0.05, 0.2)]
    ssims = [r.ssim for r in results]
    psnrs = [r.psnr_db for r in results]
    assert all(a > b for a, b in itertools.pairwise(ssims)), ssims
    assert all(a > b for a, b in itertools.pairwise(psnrs)), psnrs
    assert ssims[0] > 0.99 and ssims[-1] < 0.5
    assert psnrs[0] == pytest.approx(-20 * math.log10(0.005), abs=0.5)  # PSNR = -20 log10(sigma)


@pytest.mark.parametrize(("bad", "n_nan", "n_inf"), [(np.nan, 10, 0), (np.inf, 0, 10), (-np.inf, 0, 10)])
def test_non_finite_obtained_fails_with_counts(bad: float, n_nan: int, n_inf: int) -> None:
    img = smooth_image(10, 10, 3)
    broken = img.copy()
    broken[0, :, 0] = bad  # 10 of 300 values
    with pytest.raises(NonFiniteImageError) as info:
        compare(broken, img, what="tiny-sd/fp16")
    msg = str(info.value)
    assert f"tiny-sd/fp16 obtained image has {n_nan} NaN and {n_inf} inf of 300 values (3.3%)" in msg
    assert "fp16 overflow" in msg


def test_non_finite_expected_is_named() -> None:
    img = smooth_image(10, 10, 3)
    broken = img.copy()
    broken[3, 3, 1] = np.nan
    with pytest.raises(
        NonFiniteImageError, match=r"expected image has 1 NaN and 0 inf of 300 values \(0.3%\)"
    ):
        compare(img, broken)


def test_nan_never_similar_even_against_itself() -> None:
    nan_img = np.full((8, 8, 3), np.nan, dtype=np.float32)
    with pytest.raises(NonFiniteImageError, match=r"192 NaN and 0 inf of 192 values \(100.0%\)"):
        compare(nan_img, nan_img)


def test_check_finite_message() -> None:
    img = np.zeros((64, 64, 3), dtype=np.float32)
    img[:16, :, :] = np.nan  # 3072 of 12288
    img[20, 0, 0] = np.inf
    with pytest.raises(NonFiniteImageError) as info:
        check_finite(img, "tiny-sd/fp16 output")
    assert str(info.value).startswith("tiny-sd/fp16 output has 3072 NaN and 1 inf of 12288 values (25.0%): ")
    check_finite(np.zeros((4, 4, 3), dtype=np.uint8), "uint8 images are always finite")


def test_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ImageMismatchError, match=r"\(32, 32, 3\).*\(64, 64, 3\)"):
        compare(smooth_image(32, 32), smooth_image(64, 64))
    assert issubclass(ImageMismatchError, ValueError)


def test_uint8_and_float_are_comparable() -> None:
    img = smooth_image()
    c = compare(img, to_uint8(img))
    assert c.shape == (64, 64, 3)
    assert c.max_abs_diff <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize(("low", "high"), [(-0.5, 1.0), (0.0, 1.2), (-1.0, 1.0)])
def test_out_of_range_floats_rejected(low: float, high: float) -> None:
    img = np.linspace(low, high, 4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3)
    with pytest.raises(InvalidImageError, match=r"outside \[0, 1\]"):
        to_float01(img)
    with pytest.raises(InvalidImageError, match="obtained image"):
        compare(img, np.zeros_like(img))


def test_small_excursions_are_kept_not_clipped() -> None:
    img = np.full((4, 4, 3), 1.0005, dtype=np.float64)
    out = to_float01(img)
    assert out.dtype == np.float32
    assert float(out.max()) == pytest.approx(1.0005)
    assert to_uint8(img).max() == 255


@pytest.mark.parametrize(
    "shape", [(8, 8), (1, 8, 8, 3), (8, 8, 2), (3, 8, 8)], ids=["2d", "batched", "2ch", "channels-first"]
)
def test_bad_shapes_rejected(shape: tuple[int, ...]) -> None:
    with pytest.raises(InvalidImageError, match=r"H x W x C"):
        to_float01(np.zeros(shape, dtype=np.float32))


def test_bad_dtype_rejected() -> None:
    with pytest.raises(InvalidImageError, match="int32"):
        to_float01(np.zeros((4, 4, 3), dtype=np.int32))


def test_uint8_conversion() -> None:
    u = np.array([[[0, 128, 255]]], dtype=np.uint8)
    f = to_float01(u)
    assert f.dtype == np.float32
    np.testing.assert_allclose(f, [[[0.0, 128 / 255, 1.0]]], rtol=1e-6)


def test_to_uint8_rounds() -> None:
    levels = np.array([[[0.4 / 255, 0.6 / 255, 254.6 / 255], [0.0, 1.0, 0.5]]], dtype=np.float32)
    assert to_uint8(levels).tolist() == [[[0, 1, 255], [0, 255, 128]]]
    u = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    np.testing.assert_array_equal(to_uint8(to_float01(u)), u)  # exact round trip of every level


@pytest.mark.parametrize("side", [3, 4, 5, 6])
def test_small_images_work(side: int) -> None:
    img = smooth_image(side, side + 2, 3, seed=side)
    assert compare(img, img).ssim == pytest.approx(1.0)
    noisy = np.clip(img + 0.1 * np.random.default_rng(0).standard_normal(img.shape), 0, 1)
    assert compare(noisy, img).ssim < 1.0
    assert ssim_map(noisy, img).shape == (side, side + 2)


def test_too_small_image_raises() -> None:
    img = np.zeros((2, 10, 3), dtype=np.float32)
    with pytest.raises(InvalidImageError, match=">= 3 px"):
        compare(img, img)


def test_grayscale_and_rgba() -> None:
    for c in (1, 4):
        img = smooth_image(16, 16, c)
        assert compare(img, img).ssim == pytest.approx(1.0)


# --- maps and diff images --------------------------------------------------------------------------


def test_ssim_map_localizes_difference() -> None:
    img = smooth_image()
    changed = img.copy()
    changed[40:56, 40:56, :] = 1.0 - changed[40:56, 40:56, :]
    smap = ssim_map(changed, img)
    assert smap.shape == (64, 64)
    assert smap[:20, :20].min() == pytest.approx(1.0)
    assert smap[44:52, 44:52].max() < 0.5


def test_diff_image() -> None:
    img = smooth_image(32, 48)
    shifted = np.clip(img + 0.02, 0, 1)
    d = diff_image(shifted, img)
    assert d.dtype == np.uint8 and d.shape == (32, 48, 3)
    assert np.all(np.abs(d.astype(int) - 51) <= 1)  # 0.02 * 10 = 0.2 -> 51
    assert diff_image(img, img).max() == 0
    assert diff_image(np.ones_like(img), np.zeros_like(img)).min() == 255  # clipped, not wrapped
    with pytest.raises(ValueError, match="gain"):
        diff_image(img, img, gain=0.0)


# --- structure -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_flat_image_is_degenerate(value: float) -> None:
    flat = np.full((32, 32, 3), value, dtype=np.float32)
    with pytest.raises(DegenerateImageError, match=r"tiny-sd/fp32 output is flat .*1 distinct uint8 values"):
        check_structure(flat, "tiny-sd/fp32 output")


def test_saturated_image_is_degenerate() -> None:
    rng = np.random.default_rng(0)
    img = (rng.random((32, 32, 3)) > 0.5).astype(np.float32)  # black/white/primaries: high std
    img[:2, :, :] = 0.5  # 6.25 % unsaturated
    s = structure_report(img)
    assert s.std > 0.4 and s.saturated_fraction == pytest.approx(30 / 32)
    with pytest.raises(DegenerateImageError, match="almost fully saturated"):
        check_structure(img, "blown-out")


def test_structured_image_passes() -> None:
    img = smooth_image()
    s = check_structure(img, "tiny-sd/fp32 output")
    assert s.std > 0.1
    assert len(s.channel_std) == 3 and min(s.channel_std) > 0.1
    assert s.saturated_fraction < 0.01
    assert s.distinct_values > 100
    assert check_structure(to_uint8(img), "uint8") == structure_report(to_uint8(img))


# --- PNG I/O and quantization ----------------------------------------------------------------------


def test_png_round_trip_is_exact(tmp_path: Path) -> None:
    u = to_uint8(smooth_image(24, 40))
    path = save_png(tmp_path / "a" / "b" / "ref.png", u)  # creates parent dirs
    assert path == tmp_path / "a" / "b" / "ref.png"
    loaded = load_png(path)
    assert loaded.dtype == np.uint8 and loaded.shape == (24, 40, 3)
    np.testing.assert_array_equal(loaded, u)


def test_grayscale_png_loads_as_rgb(tmp_path: Path) -> None:
    gray = to_uint8(smooth_image(8, 8, 1))
    loaded = load_png(save_png(tmp_path / "g.png", gray))
    assert loaded.shape == (8, 8, 3)
    np.testing.assert_array_equal(loaded[..., 2], gray[..., 0])


def gradient_image(side: int = 64) -> np.ndarray:
    """Smooth ramps: the worst case for uint8 quantization relative to local contrast."""
    y, x = np.mgrid[0:side, 0:side] / (side - 1)
    return np.stack([x, y, (x + y) / 2], axis=-1).astype(np.float32)


@pytest.mark.parametrize(
    ("make", "min_ssim"),
    [(smooth_image, 0.9998), (gradient_image, 0.9995), (lambda: smooth_image(256, 256), 0.9998)],
    ids=["textured-64", "gradient-64", "textured-256"],
)
def test_float_through_png_is_nearly_identical(
    tmp_path: Path, make: Callable[[], np.ndarray], min_ssim: float
) -> None:
    """The stored reference is uint8: the error is at most 1/510 and SSIM stays ~0.9997-0.9999+."""
    img = make()
    loaded = load_png(save_png(tmp_path / "ref.png", img))
    c = compare(img, loaded)
    assert c.max_abs_diff <= 0.5 / 255 + 1e-6
    assert c.ssim > 0.999
    assert c.ssim > min_ssim
    assert c.psnr_db > 55.0


def test_save_png_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ref.png"
    original = to_uint8(smooth_image(8, 8))
    save_png(path, original)
    before = path.read_bytes()

    def failing_replace(src: object, dst: object) -> None:
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(fidelity.os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        save_png(path, 255 - original)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.png"]  # no temp file left behind


def test_save_png_invalid_image_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteImageError):
        save_png(tmp_path / "nan.png", np.full((4, 4, 3), np.nan, dtype=np.float32))
    assert list(tmp_path.iterdir()) == []


def test_save_png_respects_umask(tmp_path: Path) -> None:
    if os.name != "posix":
        pytest.skip("permission bits are POSIX-only")
    umask = os.umask(0o022)
    try:
        path = save_png(tmp_path / "ref.png", to_uint8(smooth_image(4, 4)))
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_load_png_missing_file_names_path(tmp_path: Path) -> None:
    path = tmp_path / "missing.png"
    with pytest.raises(FileNotFoundError) as info:
        load_png(path)
    assert str(path) in str(info.value)


def test_load_png_garbage_names_path(tmp_path: Path) -> None:
    path = tmp_path / "garbage.png"
    path.write_bytes(b"this is not a png\x00\x01\x02" * 10)
    with pytest.raises(ImageFileError) as info:
        load_png(path)
    assert str(path) in str(info.value) and "not an image" in str(info.value)


def test_load_png_truncated_names_path(tmp_path: Path) -> None:
    path = save_png(tmp_path / "cut.png", to_uint8(smooth_image(32, 32)))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImageFileError, match=r"cut\.png"):
        load_png(path)


def test_load_png_rejects_lossy_formats(tmp_path: Path) -> None:
    path = tmp_path / "ref.png"
    Image.fromarray(to_uint8(smooth_image(8, 8))).save(path, format="JPEG")
    with pytest.raises(ImageFileError, match=r"is a JPEG image, not a PNG"):
        load_png(path)


def test_load_png_directory_names_path(tmp_path: Path) -> None:
    with pytest.raises(ImageFileError, match=re.escape(str(tmp_path))):
        load_png(tmp_path)
