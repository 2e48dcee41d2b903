"""Scheduler: keep the sigmas on the CPU so indexing them in ``step()`` never syncs the device."""

from __future__ import annotations

import functools
from typing import Any

import torch

from perfsuite.optimizations.base import Target, Technique, Unsupported, fail

__all__ = ["TECHNIQUES"]


def _requires(target: Target) -> str | None:
    if target.device.type == "cpu":
        return "on a CPU run the sigmas already live on the CPU; the technique only removes host-device syncs"
    return None


def _sigmas_device(scheduler: Any, device: torch.device) -> str:
    """Where ``scheduler`` leaves its sigmas after ``set_timesteps(device=device)``.

    A scheduler with dynamic shifting (Flux's FlowMatchEulerDiscreteScheduler) needs the shift ``mu``
    that its pipeline computes from the image size; any value shows where the sigmas go.
    """
    shift = {"mu": 1.0} if getattr(scheduler.config, "use_dynamic_shifting", False) else {}
    scheduler.set_timesteps(2, device=device, **shift)
    sigmas = scheduler.sigmas
    return sigmas.device.type if isinstance(sigmas, torch.Tensor) else type(sigmas).__name__


def _apply(pipe: Any, target: Target) -> None:
    scheduler = pipe.scheduler
    if not hasattr(scheduler, "sigmas"):
        raise TypeError(f"{type(scheduler).__name__} has no sigmas to keep on the CPU")
    if target.device.type != "cpu" and _sigmas_device(scheduler, target.device) == "cpu":
        # UniPCMultistepScheduler (Wan's) moves its sigmas to the CPU itself: nothing left to do.
        raise Unsupported(
            f"{type(scheduler).__name__} already keeps its sigmas on the CPU after "
            f"set_timesteps(device={target.device}); the technique would change nothing"
        )
    original = scheduler.set_timesteps

    # functools.wraps keeps the signature visible to diffusers' retrieve_timesteps, which inspects it.
    @functools.wraps(original)
    def set_timesteps(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        scheduler.sigmas = scheduler.sigmas.to("cpu")
        return result

    scheduler.set_timesteps = set_timesteps


def _verify(pipe: Any, target: Target) -> list[str]:
    scheduler = pipe.scheduler
    where = _sigmas_device(scheduler, target.device)
    if where != "cpu":
        raise fail("sigmas-cpu", f"after set_timesteps(device={target.device}) the sigmas are on {where}")
    return [f"{type(scheduler).__name__}.sigmas stay on the CPU after set_timesteps(device={target.device})"]


TECHNIQUES = (
    Technique(
        name="sigmas-cpu",
        group="sigmas",
        summary="scheduler sigmas kept on the CPU (no device sync when step() indexes them)",
        rank=5,
        requires=_requires,
        apply=_apply,
        verify=_verify,
        markers=("gpu",),
    ),
)
