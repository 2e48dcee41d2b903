"""Parsers of the ``--perf-*`` option values: each rejects a bad value at parse time, saying why."""

from __future__ import annotations

import argparse
import re
from typing import Any

from perfsuite import hardware

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_PRESET",
    "device",
    "models",
    "positive_float",
    "positive_int",
    "preset",
    "profile",
    "shard",
    "size",
    "split_model",
]

DEFAULT_PRESET = "ladder"
DEFAULT_MODEL = "tiny-sd"


def preset(value: str) -> str:
    from perfsuite.matrix import PRESETS

    if value not in PRESETS:
        raise argparse.ArgumentTypeError(f"unknown preset {value!r}; choose one of: {', '.join(PRESETS)}")
    return value


def device(value: str) -> str:
    if value == "auto":
        return value
    try:
        return hardware.validate_device(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; or 'auto' (CUDA when present, else CPU)") from None


def models(value: str) -> list[str]:
    """Comma-separated model entries: a registered name, a pipeline directory, a hub id, or
    ``NAME=PATH`` (a directory filed in the baselines under NAME). Only the form is checked here;
    whether a name exists is checked once the session's hooks have registered their models."""
    from perfsuite.registry import NAME_PATTERN

    entries = [v.strip() for v in value.split(",") if v.strip()]
    if not entries:
        raise argparse.ArgumentTypeError(
            "no model named; give a registered name (see `perfsuite models`), a pipeline directory, "
            "NAME=PATH or a cached hub id (owner/name)"
        )
    for entry in entries:
        name, equals, path = (part.strip() for part in entry.partition("="))
        if equals and not (NAME_PATTERN.fullmatch(name) and path):
            raise argparse.ArgumentTypeError(
                f"{entry!r}: expected NAME=PATH, a name of letters, digits and '._-' for the baselines "
                "and the path of a saved pipeline directory, e.g. my-model=./pipelines/my-model"
            )
    return entries


def split_model(entry: str) -> tuple[str, str | None]:
    """``NAME=PATH`` -> ``(NAME, PATH)``; any other entry -> ``(entry, None)``."""
    name, equals, path = (part.strip() for part in entry.partition("="))
    return (name, path) if equals else (entry, None)


def positive_int(minimum: int) -> Any:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {number}")
        return number

    return parse


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive, finite number, got {value!r}")
    return number


def size(value: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", value)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH in pixels such as 1024x1024, got {value!r}")
    height, width = int(match[1]), int(match[2])
    if height % 8 or width % 8 or not height or not width:
        raise argparse.ArgumentTypeError(
            f"height and width must be positive multiples of 8 (the VAE downsamples by 8), got {value!r}"
        )
    return height, width


def shard(value: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", value)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected I/N such as 1/4 (shard I of N, from 1), got {value!r}")
    index, count = int(match[1]), int(match[2])
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"shard index must be between 1 and {count}, got {value!r}")
    return index, count


def profile(value: str) -> str:
    try:
        return hardware.validate_profile_id(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
