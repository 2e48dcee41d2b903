"""Numbers for people: durations, sizes, speedups and SSIM as short strings. ``None`` shows as ``-``."""

from __future__ import annotations

import math

__all__ = ["format_bytes", "format_latency", "format_seconds", "format_speedup", "format_ssim"]


def _finite(value: float | None) -> bool:
    return value is not None and not isinstance(value, bool) and math.isfinite(value)


def format_seconds(seconds: float | None) -> str:
    """``1.23 s`` from one second up, ``12.3 ms`` below."""
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.1f} ms"


def format_latency(median_s: float | None, iqr_s: float | None) -> str:
    """Median and IQR in the median's unit: ``123.4 ± 5.6 ms`` or ``1.23 ± 0.05 s``."""
    if not _finite(median_s):
        return "-"
    assert median_s is not None
    scale, unit, digits = (1.0, "s", 2) if median_s >= 1 else (1e3, "ms", 1)
    text = f"{median_s * scale:.{digits}f}"
    if _finite(iqr_s):
        assert iqr_s is not None
        text += f" ± {iqr_s * scale:.{digits}f}"
    return f"{text} {unit}"


def format_bytes(size: int | float | None) -> str:
    """``512 B``, ``12.3 KiB``, ``1.5 GiB`` (binary units)."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_speedup(estimate: float | None, ci: tuple[float, float] | None = None) -> str:
    """``1.23x [1.10,1.35]``: the ratio of medians and its confidence interval."""
    if not _finite(estimate):
        return "-"
    text = f"{estimate:.2f}x"
    if ci is not None:
        text += f" [{ci[0]:.2f},{ci[1]:.2f}]"
    return text


def format_ssim(ssim: float | None) -> str:
    """SSIM with four decimals (policy floors such as 0.999 need them); ``-`` when absent."""
    return f"{ssim:.4f}" if _finite(ssim) else "-"
