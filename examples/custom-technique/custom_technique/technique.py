"""The ``chunked-attn`` technique: ChunkedSDPAProcessor on every attention module of the denoiser.

It has the contract of perfsuite's own techniques: ``requires`` says where it cannot run, ``apply``
installs the processor, ``context`` sets the chunk size for the case and puts it back, ``verify``
proves the processor is installed, and ``touches`` declares the module flag the context changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from custom_technique import processor
from custom_technique.processor import ChunkedSDPAProcessor
from perfsuite.catalog.families import get_family
from perfsuite.optimizations import GlobalSetting, NotActiveError, Target, Technique

__all__ = ["CHUNKED_ATTN", "verify_installed"]

#: Queries per chunk while a case runs.
CHUNK = 64


def _requires(target: Target) -> str | None:
    if get_family(target.family).denoiser != "unet":
        return f"ChunkedSDPAProcessor is written for UNet attention, not the {target.family!r} family"
    if "fuse-qkv" in target.techniques:
        return "fuse-qkv installs its own fused attention processors"
    return None


def _apply(pipe: Any, target: Target) -> None:
    get_family(target.family).denoiser_of(pipe).set_attn_processor(ChunkedSDPAProcessor())


@contextmanager
def _context(target: Target) -> Iterator[None]:
    saved = processor.CHUNK_QUERIES
    processor.CHUNK_QUERIES = CHUNK
    try:
        yield
    finally:
        processor.CHUNK_QUERIES = saved


def verify_installed(pipe: Any, target: Target) -> list[str]:
    """Evidence that every attention module of the denoiser runs ChunkedSDPAProcessor, and that the
    chunk size is set; :class:`NotActiveError` naming what is not."""
    from diffusers.models.attention_processor import Attention

    family = get_family(target.family)
    attentions = [m for m in family.denoiser_of(pipe).modules() if isinstance(m, Attention)]
    if not attentions:
        raise NotActiveError(f"chunked-attn: the {family.denoiser} has no attention module")
    others = sorted({type(m.processor).__name__ for m in attentions} - {ChunkedSDPAProcessor.__name__})
    if others:
        wrong = sum(not isinstance(m.processor, ChunkedSDPAProcessor) for m in attentions)
        raise NotActiveError(
            f"chunked-attn: {wrong} of {len(attentions)} attention modules of the {family.denoiser} "
            f"use {', '.join(others)}, not ChunkedSDPAProcessor"
        )
    if processor.CHUNK_QUERIES != CHUNK:
        raise NotActiveError(f"chunked-attn: CHUNK_QUERIES is {processor.CHUNK_QUERIES}, expected {CHUNK}")
    return [
        f"{len(attentions)} attention modules of the {family.denoiser} use ChunkedSDPAProcessor "
        f"({CHUNK} queries a chunk)"
    ]


CHUNKED_ATTN = Technique(
    name="chunked-attn",
    group="attn-processor",
    summary="our ChunkedSDPAProcessor on every attention module of the denoiser",
    rank=25,
    requires=_requires,
    apply=_apply,
    context=_context,
    verify=verify_installed,
    touches=(GlobalSetting.attribute(processor, "CHUNK_QUERIES"),),
)
