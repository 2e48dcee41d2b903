"""Image fidelity: SSIM and PSNR of a pipeline output against a reference image, and PNG I/O.

No torch. Images are ``H x W x C`` arrays with ``C`` in (1, 3, 4): float in ``[0, 1]`` (diffusers
``output_type="np"``, one image) or ``uint8`` (loaded from PNG). Both kinds can be compared with each
other; they are converted with :func:`to_float01`.

A video is its frames, ``T x H x W x C`` (``output.frames[0]`` of a video pipeline). It is compared frame
by frame (:attr:`Comparison.frame_ssim`: SSIM is the mean over frames, and the worst frame is named),
and stored as one PNG with the frames side by side (:func:`frames_side_by_side`), so that baselines
stay JSON and PNG; a stored strip is split back into frames when compared (:func:`split_frames`).

* :func:`check_finite` -- NaN or inf anywhere is a failure (:class:`NonFiniteImageError`), never "similar".
* :func:`compare` -- :class:`Comparison` with SSIM (explicit ``data_range=1`` and ``channel_axis``, a window
  that fits small images), PSNR in dB (``inf`` when identical), and max / mean absolute difference.
* :func:`ssim_map` / :func:`diff_image` -- per-pixel pictures of the difference, for people.
* :func:`check_structure` -- refuses flat or almost fully saturated images (:class:`DegenerateImageError`):
  SSIM against a flat reference says nothing about the pipeline.
* :func:`save_png` (atomic) / :func:`load_png` / :func:`to_uint8` (rounds, never truncates).

Reference images are stored as 8-bit PNG, so a float output compared with its own stored reference
differs by the quantization error, at most ``0.5 / 255`` (about ``1 / 510``) per value, and PSNR is
about 59 dB. Its SSIM against its own uint8 version is about 0.9999 for textured images and dips to
about 0.9997 for smooth gradients, where the rounding steps are largest relative to the local contrast.
SSIM bounds in the policy must therefore stay below 1 (0.999 leaves room for quantization alone).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = [
    "Comparison",
    "DegenerateImageError",
    "ImageFileError",
    "ImageMismatchError",
    "InvalidImageError",
    "NonFiniteImageError",
    "Structure",
    "assess",
    "check_finite",
    "check_structure",
    "compare",
    "diff_image",
    "encode_png",
    "frames_side_by_side",
    "load_png",
    "save_png",
    "split_frames",
    "ssim_map",
    "structure_report",
    "to_float01",
    "to_uint8",
]

#: Float images may stray this far outside ``[0, 1]`` (rounding in the VAE post-processing) and still pass.
RANGE_TOLERANCE = 1e-3
#: SSIM window side used when the image is large enough (scikit-image's default).
DEFAULT_WIN_SIZE = 7
_CHANNELS = (1, 3, 4)
_PIPELINE_HINT = "the pipeline produced non-finite output (fp16 overflow in the VAE is a common cause)"


class NonFiniteImageError(AssertionError):
    """The image holds NaN or inf values."""


class DegenerateImageError(AssertionError):
    """The image is flat or almost fully saturated, so SSIM against it is meaningless."""


class InvalidImageError(ValueError):
    """One image is not an ``H x W x C`` uint8 or ``[0, 1]`` float array."""


class ImageMismatchError(ValueError):
    """Two images cannot be compared: their shapes differ."""


class ImageFileError(OSError):
    """A file is not a readable PNG image."""


@dataclass(frozen=True)
class Comparison:
    """Fidelity of an obtained image against an expected one; differences are in ``[0, 1]`` units."""

    ssim: float
    psnr_db: float
    max_abs_diff: float
    mean_abs_diff: float
    shape: tuple[int, ...]
    #: SSIM of each frame, for a video (``ssim`` is then their mean); empty for an image.
    frame_ssim: tuple[float, ...] = ()

    @property
    def worst_frame(self) -> int | None:
        """Index of the frame with the lowest SSIM (the first of equals), or ``None`` for an image."""
        return int(np.argmin(self.frame_ssim)) if self.frame_ssim else None


@dataclass(frozen=True)
class Structure:
    """How much an image varies; values are in ``[0, 1]`` units."""

    std: float
    channel_std: tuple[float, ...]
    saturated_fraction: float
    distinct_values: int


def _percent(fraction: float) -> str:
    pct = 100.0 * fraction
    return f"{pct:.1f}%" if pct == 0.0 or pct >= 0.1 else f"{pct:.2g}%"


def check_finite(image: npt.ArrayLike, what: str, *, hint: str = _PIPELINE_HINT) -> None:
    """Raise :class:`NonFiniteImageError` naming ``what`` and counting NaN and inf values, if any."""
    __tracebackhide__ = True
    arr = np.asarray(image)
    if not np.issubdtype(arr.dtype, np.inexact):
        return
    n_nan = int(np.count_nonzero(np.isnan(arr)))
    n_inf = int(np.count_nonzero(np.isinf(arr)))
    if n_nan or n_inf:
        fraction = (n_nan + n_inf) / arr.size
        raise NonFiniteImageError(
            f"{what} has {n_nan} NaN and {n_inf} inf of {arr.size} values ({_percent(fraction)}): {hint}"
        )


def _validated(
    image: npt.ArrayLike, what: str, hint: str = _PIPELINE_HINT, *, frames: bool = False
) -> npt.NDArray[np.float32]:
    arr = np.asarray(image)
    dims_ok = arr.ndim == 3 or (frames and arr.ndim == 4 and arr.shape[0] >= 1)
    if not dims_ok or arr.shape[-1] not in _CHANNELS:
        expected = "H x W x C (or T x H x W x C frames of a video)" if frames else "H x W x C"
        raise InvalidImageError(
            f"{what} has shape {arr.shape}: expected {expected} with C in {_CHANNELS} "
            "(one image, channels last, as from output_type='np' with the batch index taken)"
        )
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(arr.dtype, np.floating):
        raise InvalidImageError(f"{what} has dtype {arr.dtype}: expected uint8 or a float dtype in [0, 1]")
    check_finite(arr, what, hint=hint)
    low, high = float(arr.min()), float(arr.max())
    if low < -RANGE_TOLERANCE or high > 1.0 + RANGE_TOLERANCE:
        raise InvalidImageError(
            f"{what} has values in [{low:.4g}, {high:.4g}], outside [0, 1] (tolerance {RANGE_TOLERANCE}): "
            "expected a post-processed image; [-1, 1] tensors or latents are not images"
        )
    return arr.astype(np.float32)


def to_float01(image: npt.ArrayLike, what: str = "image") -> npt.NDArray[np.float32]:
    """Return ``image`` as float32: uint8 divided by 255, float values kept (not clipped) but validated.

    Raises :class:`InvalidImageError` for a shape other than ``H x W x C`` with ``C`` in (1, 3, 4), an
    unsupported dtype, or float values outside ``[-1e-3, 1 + 1e-3]``; :class:`NonFiniteImageError`
    for NaN or inf.
    """
    return _validated(image, what)


def to_uint8(image: npt.ArrayLike, what: str = "image") -> npt.NDArray[np.uint8]:
    """Return ``image`` as uint8, rounding float values to the nearest level (``0.5 / 255`` error at most)."""
    arr = np.asarray(image)
    floats = _validated(arr, what)
    if arr.dtype == np.uint8:
        return arr.copy()
    return np.clip(np.rint(floats * np.float32(255.0)), 0, 255).astype(np.uint8)


def _label(what: str, role: str) -> str:
    return f"{what} {role} image" if what else f"{role} image"


def frames_side_by_side(frames: npt.ArrayLike) -> npt.NDArray[np.generic]:
    """``T x H x W x C`` frames as one ``H x (T*W) x C`` image, frame 0 on the left; an image stays as is."""
    arr = np.asarray(frames)
    if arr.ndim != 4:
        return arr
    count, height, width, channels = arr.shape
    return arr.transpose(1, 0, 2, 3).reshape(height, count * width, channels)


def split_frames(
    strip: npt.ArrayLike, frame_shape: tuple[int, ...], what: str = ""
) -> npt.NDArray[np.generic]:
    """Undo :func:`frames_side_by_side`: an ``H x (T*W) x C`` strip as ``T x H x W x C`` frames.

    ``frame_shape`` is ``(T, H, W, C)``; a strip of another size raises :class:`ImageMismatchError`.
    """
    arr = np.asarray(strip)
    count, height, width, channels = frame_shape
    if arr.shape != (height, count * width, channels):
        prefix = f"{what}: " if what else ""
        raise ImageMismatchError(
            f"{prefix}expected image has shape {arr.shape}, which is not {count} frames of {height}x{width}x"
            f"{channels} side by side ({height}, {count * width}, {channels}): a different frame count or "
            "size in the call, or a stale reference"
        )
    return arr.reshape(height, count, width, channels).transpose(1, 0, 2, 3)


def _pair(
    obtained: npt.ArrayLike, expected: npt.ArrayLike, what: str
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    a = _validated(obtained, _label(what, "obtained"), frames=True)
    b = _validated(
        expected, _label(what, "expected"), hint="the stored reference image is corrupt", frames=True
    )
    if a.ndim == 4 and b.ndim == 3:
        b = np.asarray(split_frames(b, a.shape, what), dtype=np.float32)
    if a.shape != b.shape:
        prefix = f"{what}: " if what else ""
        raise ImageMismatchError(
            f"{prefix}obtained image has shape {a.shape} but expected image has shape {b.shape}: "
            "a different resolution or channel count in the call, or a stale reference"
        )
    return a, b


def _win_size(shape: tuple[int, ...]) -> int:
    side = min(shape[-3], shape[-2])
    if side >= DEFAULT_WIN_SIZE:
        return DEFAULT_WIN_SIZE
    if side < 3:
        raise InvalidImageError(f"images of shape {shape} are too small for SSIM: both sides must be >= 3 px")
    return side if side % 2 else side - 1


def _ssim(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    return float(structural_similarity(a, b, data_range=1.0, channel_axis=-1, win_size=_win_size(a.shape)))


def compare(obtained: npt.ArrayLike, expected: npt.ArrayLike, what: str = "") -> Comparison:
    """Compare ``obtained`` with ``expected``; ``what`` (e.g. ``"tiny-sd/fp16"``) names them in errors.

    SSIM uses a 7 px window, or for images smaller than that the largest odd side that fits (at least 3).
    Video frames (``T x H x W x C``) are compared frame by frame: ``ssim`` is the mean of
    :attr:`Comparison.frame_ssim`; PSNR and the differences cover all frames. The expected video may be
    its stored strip of frames side by side.
    """
    a, b = _pair(obtained, expected, what)
    abs_diff = np.abs(a - b)
    max_abs = float(abs_diff.max())
    frame_ssim = tuple(_ssim(fa, fb) for fa, fb in zip(a, b, strict=True)) if a.ndim == 4 else ()
    ssim = float(np.mean(frame_ssim)) if frame_ssim else _ssim(a, b)
    psnr = float("inf") if max_abs == 0.0 else float(peak_signal_noise_ratio(b, a, data_range=1.0))
    return Comparison(
        ssim=ssim,
        psnr_db=psnr,
        max_abs_diff=max_abs,
        mean_abs_diff=float(abs_diff.mean()),
        shape=tuple(a.shape),
        frame_ssim=frame_ssim,
    )


def ssim_map(obtained: npt.ArrayLike, expected: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Per-pixel SSIM (``H x W``, averaged over channels); 1 where the images agree locally.

    For video frames, the frames' maps side by side (``H x (T*W)``).
    """
    a, b = _pair(obtained, expected, "")
    if a.ndim == 4:
        maps = [ssim_map(fa, fb) for fa, fb in zip(a, b, strict=True)]
        return np.asarray(frames_side_by_side(np.stack(maps)[..., None])[..., 0], dtype=np.float32)
    _, full = structural_similarity(
        a, b, data_range=1.0, channel_axis=-1, win_size=_win_size(a.shape), full=True
    )
    return np.asarray(full, dtype=np.float32).mean(axis=-1)


def diff_image(obtained: npt.ArrayLike, expected: npt.ArrayLike, gain: float = 10.0) -> npt.NDArray[np.uint8]:
    """Absolute difference times ``gain``, clipped to ``[0, 1]``, as uint8 ``H x W x C`` for people
    (for video frames, the frames' differences side by side)."""
    if not (np.isfinite(gain) and gain > 0):
        raise ValueError(f"gain must be a positive finite number, got {gain!r}")
    a, b = _pair(obtained, expected, "")
    amplified = np.clip(np.abs(a - b) * np.float32(gain), 0.0, 1.0)
    return to_uint8(frames_side_by_side(amplified))


def structure_report(image: npt.ArrayLike, what: str = "image") -> Structure:
    """Measure how much ``image`` varies.

    A pixel is saturated when every channel is at most ``1/255`` or at least ``254/255`` after rounding to
    uint8 (black, white, pure primaries). ``distinct_values`` counts distinct uint8 levels over all channels.
    Video frames are measured side by side, as one image.
    """
    arr = _validated(frames_side_by_side(_validated(image, what, frames=True)), what)
    quantized = to_uint8(arr, what)
    saturated = np.all((quantized <= 1) | (quantized >= 254), axis=-1)
    return Structure(
        std=float(arr.std()),
        channel_std=tuple(float(s) for s in arr.std(axis=(0, 1))),
        saturated_fraction=float(saturated.mean()),
        distinct_values=int(np.unique(quantized).size),
    )


def check_structure(
    image: npt.ArrayLike, what: str, min_std: float = 0.02, max_saturated: float = 0.9
) -> Structure:
    """Return :func:`structure_report` of ``image``, or raise :class:`DegenerateImageError` if it is flat
    (``std < min_std``) or almost fully saturated (``saturated_fraction > max_saturated``)."""
    __tracebackhide__ = True
    if min_std < 0 or not 0.0 <= max_saturated <= 1.0:
        raise ValueError(f"need min_std >= 0 and 0 <= max_saturated <= 1, got {min_std!r}, {max_saturated!r}")
    s = structure_report(image, what)
    detail = (
        f"std {s.std:.4g}, per-channel std ({', '.join(f'{c:.3g}' for c in s.channel_std)}), "
        f"{s.distinct_values} distinct uint8 values, {_percent(s.saturated_fraction)} saturated pixels"
    )
    if s.std < min_std:
        raise DegenerateImageError(
            f"{what} is flat ({detail}; minimum std {min_std}): SSIM against a flat image is meaningless. "
            "A constant image often means a blanked (safety checker) or NaN-clamped output"
        )
    if s.saturated_fraction > max_saturated:
        raise DegenerateImageError(
            f"{what} is almost fully saturated ({detail}; at most {_percent(max_saturated)} allowed): "
            "SSIM against it is meaningless"
        )
    return s


def _comparison_dict(comparison: Comparison) -> dict[str, object]:
    psnr = comparison.psnr_db if np.isfinite(comparison.psnr_db) else None  # None: identical images
    result: dict[str, object] = {
        "ssim": comparison.ssim,
        "psnr_db": psnr,
        "max_abs_diff": comparison.max_abs_diff,
        "mean_abs_diff": comparison.mean_abs_diff,
    }
    if comparison.frame_ssim:
        result["frames"] = len(comparison.frame_ssim)
        result["frame_ssim"] = list(comparison.frame_ssim)
        result["worst_frame"] = comparison.worst_frame
        result["worst_frame_ssim"] = min(comparison.frame_ssim)
    return result


def assess(
    obtained: npt.ArrayLike,
    reference: npt.ArrayLike,
    stored: npt.ArrayLike | None = None,
    what: str = "",
    stored_note: str = "",
) -> dict[str, object]:
    """JSON-ready fidelity of ``obtained`` against the in-run ``reference`` and the ``stored`` image.

    Returns ``{"non_finite": message or None, "reference": {...} or None, "stored": {...} or None,
    "stored_note": why stored is None}``; each comparison holds ``ssim``, ``psnr_db`` (None when the
    images are identical), ``max_abs_diff`` and ``mean_abs_diff``; for video frames also ``frames``,
    ``frame_ssim`` (per frame), ``worst_frame`` (its index) and ``worst_frame_ssim`` (``ssim`` is their
    mean). A non-finite output is never compared: NaN must not pass as similar. Shape mismatches raise
    :class:`ImageMismatchError`.
    """
    try:
        check_finite(obtained, what or "the output")
    except NonFiniteImageError as exc:
        return {"non_finite": str(exc), "reference": None, "stored": None, "stored_note": "non-finite output"}
    result: dict[str, object] = {
        "non_finite": None,
        "reference": _comparison_dict(compare(obtained, reference, f"{what} vs the in-run reference")),
        "stored": None,
        "stored_note": stored_note,
    }
    if stored is not None:
        result["stored"] = _comparison_dict(compare(obtained, stored, f"{what} vs its stored reference"))
        result["stored_note"] = ""
    return result


def encode_png(image: npt.ArrayLike, what: str = "image") -> bytes:
    """``image`` as the bytes of an 8-bit PNG (for staged, all-or-nothing writes); frames side by side."""
    pixels = to_uint8(frames_side_by_side(_validated(image, what, frames=True)), what)
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(path: str | os.PathLike[str], image: npt.ArrayLike) -> Path:
    """Write ``image`` as an 8-bit PNG, atomically, creating parent directories; return the path.

    Readers see the old file or the new one, never a partial one
    (:func:`perfsuite.baselines.atomic_write_bytes` of :func:`encode_png`).
    """
    from perfsuite.baselines import atomic_write_bytes

    target = Path(path)
    atomic_write_bytes(target, encode_png(image, str(target)))
    return target


def load_png(path: str | os.PathLike[str]) -> npt.NDArray[np.uint8]:
    """Read a PNG as uint8 ``H x W x 3`` RGB (grayscale and palette are expanded, alpha is dropped).

    Raises :class:`FileNotFoundError` or :class:`ImageFileError`, both naming ``path``.
    """
    target = Path(path)
    try:
        with Image.open(target) as pil:
            if pil.format != "PNG":
                raise ImageFileError(f"{target} is a {pil.format} image, not a PNG (references are lossless)")
            pil.load()
            rgb = pil.convert("RGB")
    except FileNotFoundError as exc:
        raise FileNotFoundError(exc.errno, "image file does not exist", str(target)) from exc
    except UnidentifiedImageError as exc:
        raise ImageFileError(f"{target} is not an image (Pillow cannot identify it)") from exc
    except ImageFileError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageFileError(f"cannot read image {target}: {type(exc).__name__}: {exc}") from exc
    return np.asarray(rgb, dtype=np.uint8)
