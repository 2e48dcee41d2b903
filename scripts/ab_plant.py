"""A pytest plugin that plants a slowdown in the head of an A/B run, never in its base.

Loaded by the head's pytest only (``PYTHONPATH=scripts python -m pytest -p ab_plant ...``), and by
the head's workers through the interpreter that ``scripts/ab-detection.py`` gives ``--perf-ab-head``
(a site hook that calls :func:`install_from_env`): the base worker is another interpreter that never
imports it, so the two sides differ by exactly the planted change, as a pull request that slows the
code would make them differ.

``PERFSUITE_PLANT_SLOWDOWN`` is the fraction (``0.10`` = 10% slower); ``PERFSUITE_PLANT_WHERE`` says
where (default ``pipeline``):

* ``pipeline`` -- every pipeline call of the head (the in-run fp32 reference too);
* ``unet`` -- every UNet forward of the head, the reference's too: the in-run speedup cannot see it;
* ``bf16-unet`` -- the UNet forward only when the UNet runs in bfloat16 (the bf16 combos).

The slowdown sleeps after the real work for that fraction of the time the work took, so it scales
with the model and the machine's current speed.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from typing import Any

import pytest

SLOWDOWN_ENV = "PERFSUITE_PLANT_SLOWDOWN"
WHERE_ENV = "PERFSUITE_PLANT_WHERE"
WHERE = ("pipeline", "unet", "bf16-unet")


def slower(
    function: Callable[..., Any], fraction: float, applies: Callable[[Any], bool]
) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = function(self, *args, **kwargs)
        if applies(self):
            time.sleep(fraction * (time.perf_counter() - started))
        return result

    wrapper.planted = fraction  # type: ignore[attr-defined]  # what a probe reads back
    return wrapper


def install(fraction: float, where: str) -> None:
    import diffusers
    import torch

    if where == "pipeline":
        for cls in (diffusers.StableDiffusionPipeline, diffusers.StableDiffusionXLPipeline):
            cls.__call__ = slower(cls.__call__, fraction, lambda pipe: True)
        return
    unet = diffusers.UNet2DConditionModel
    if where == "unet":
        unet.forward = slower(unet.forward, fraction, lambda module: True)
    else:
        unet.forward = slower(unet.forward, fraction, lambda module: module.dtype == torch.bfloat16)


def install_from_env() -> None:
    """Plant what the environment asks for; ValueError names a bad variable."""
    raw = os.environ.get(SLOWDOWN_ENV, "0")
    where = os.environ.get(WHERE_ENV, "pipeline")
    try:
        fraction = float(raw)
    except ValueError:
        raise ValueError(f"{SLOWDOWN_ENV}={raw!r}: expected a fraction such as 0.10") from None
    if where not in WHERE:
        raise ValueError(f"{WHERE_ENV}={where!r}: expected one of {', '.join(WHERE)}")
    if fraction < 0:
        raise ValueError(f"{SLOWDOWN_ENV}={raw!r}: a slowdown cannot be negative")
    if fraction > 0:
        install(fraction, where)


def pytest_configure(config: pytest.Config) -> None:
    try:
        install_from_env()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
