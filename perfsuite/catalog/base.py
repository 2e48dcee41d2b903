"""The model-spec contract shared by every catalog entry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline

from .families import FAMILIES, Family, get_family

__all__ = ["FAMILIES", "ModelSpec", "UnknownModelError"]


class UnknownModelError(ValueError):
    """A model name that is neither in the catalog nor a loadable directory or cached hub id."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything the suite needs to build and call one model.

    ``build(device, dtype)`` returns a ready pipeline whose weights already live on ``device`` in
    ``dtype``. ``call_kwargs`` are the fixed arguments of every timed call (prompt, steps, size,
    guidance); :meth:`call_arguments` adds a freshly seeded CPU generator and ``output_type="np"``
    so that every call of every combo starts from the same latents on every device.

    ``key`` is the name the model's baselines are filed under; it defaults to ``name``. A pipeline
    directory given by its path gets the key of :func:`perfsuite.catalog.identity.pipeline_identity`,
    so that any spelling of the path (or a moved copy) finds the same baselines.
    """

    name: str
    family: str
    description: str
    build: Callable[[torch.device, torch.dtype], DiffusionPipeline]
    call_kwargs: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    tiny: bool = False
    source: str = "catalog"
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.name)
        if self.family not in FAMILIES:
            raise ValueError(
                f"model {self.name!r}: unknown family {self.family!r}; expected one of {', '.join(FAMILIES)}"
            )

    @property
    def family_spec(self) -> Family:
        """The :class:`~perfsuite.catalog.families.Family` of this model."""
        return get_family(self.family)

    def call_arguments(self, **overrides: Any) -> dict[str, Any]:
        """The keyword arguments of one pipeline call, with a fresh generator seeded from :attr:`seed`."""
        import torch

        kwargs: dict[str, Any] = dict(self.call_kwargs)
        kwargs.update(overrides)
        kwargs["generator"] = torch.Generator("cpu").manual_seed(self.seed)
        kwargs.setdefault("output_type", "np")
        return kwargs
