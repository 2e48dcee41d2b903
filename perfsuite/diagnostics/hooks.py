"""Python-level hooks on a pipeline's stage entry points, installed for one call and then removed.

The hooks wrap ``pipe.encode_prompt``, ``pipe.progress_bar`` (entered just before the denoising
loop) and the ``decode`` of the family's VAE (``pipe.vae``), and pass a ``callback_on_step_end`` that
marks the end of each step.
All of them sit outside any compiled module, so they add no graph break. Each wrapper calls a
listener with the stage event; timing, sync counting and FLOP counting are listeners.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any, Literal

from perfsuite.catalog.families import family_of

__all__ = ["Event", "Listener", "MissingStageError", "require_stages", "stage_hooks"]

Event = Literal["encode_start", "encode_end", "loop_start", "step_end", "decode_start", "decode_end"]
Listener = Callable[[Event], None]
EVENTS: tuple[Event, ...] = (
    "encode_start",
    "encode_end",
    "loop_start",
    "step_end",
    "decode_start",
    "decode_end",
)


@contextmanager
def _patched(owner: Any, name: str, make: Callable[[Any], Any]) -> Iterator[None]:
    """Replace ``owner.name`` by ``make(original)`` for the block; put back exactly what was there."""
    had_own = name in vars(owner)
    own = vars(owner).get(name)
    setattr(owner, name, make(getattr(owner, name)))
    try:
        yield
    finally:
        if had_own:
            setattr(owner, name, own)
        else:
            delattr(owner, name)


def _around(original: Callable[..., Any], listener: Listener, start: Event, end: Event) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        listener(start)
        result = original(*args, **kwargs)
        listener(end)
        return result

    return wrapper


def _before(original: Callable[..., Any], listener: Listener, event: Event) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        listener(event)
        return original(*args, **kwargs)

    return wrapper


@contextmanager
def stage_hooks(pipe: Any, call_kwargs: Mapping[str, Any], listener: Listener) -> Iterator[dict[str, Any]]:
    """Install the stage wrappers on ``pipe`` and yield the call arguments with the step callback."""
    kwargs = dict(call_kwargs)
    user_callback = kwargs.get("callback_on_step_end")
    if user_callback is not None and hasattr(user_callback, "tensor_inputs"):
        raise ValueError(
            "the call arguments already hold a PipelineCallback as callback_on_step_end; the "
            "diagnostics need that argument to mark step ends and can only chain a plain function"
        )

    def on_step_end(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if user_callback is not None:
            tensors = user_callback(pipeline, step, timestep, tensors)
        listener("step_end")
        return tensors

    kwargs["callback_on_step_end"] = on_step_end
    vae = family_of(pipe).vae_of(pipe)
    with ExitStack() as stack:
        stack.enter_context(
            _patched(pipe, "encode_prompt", lambda f: _around(f, listener, "encode_start", "encode_end"))
        )
        stack.enter_context(_patched(pipe, "progress_bar", lambda f: _before(f, listener, "loop_start")))
        stack.enter_context(
            _patched(vae, "decode", lambda f: _around(f, listener, "decode_start", "decode_end"))
        )
        yield kwargs


class MissingStageError(RuntimeError):
    """The pipeline did not go through a stage that the diagnostics time."""


def require_stages(seen: set[str], pipe: Any) -> None:
    missing = [e for e in EVENTS if e not in seen]
    if missing:
        raise MissingStageError(
            f"{type(pipe).__name__} never reached {missing} during the diagnostic call: the stage hooks "
            "expect encode_prompt, progress_bar around the denoising loop, callback_on_step_end and "
            "vae.decode (the pipelines of perfsuite's families, output_type other than 'latent')"
        )
