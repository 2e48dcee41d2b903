"""Snapshot and restore of the process-wide torch settings that optimizations touch.

Every technique that flips a global (TF32 precision, the enabled SDPA backends, inductor and dynamo
config) does so inside a context that restores it, and the suite takes a :class:`GlobalSnapshot`
before and after each case to prove nothing leaked. Dynamo's compiled-code caches are cleared with
``torch.compiler.reset()`` after any case that compiled.

The torch settings above are always tracked. A technique that changes any other process-wide
setting (a flag of its own library, a module attribute) declares it in ``Technique.touches`` as a
:class:`GlobalSetting`; every snapshot then reads, compares and restores it like the built-in ones,
so a leak fails the case and names it, and the reference runs with it put back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "GlobalSetting",
    "GlobalSnapshot",
    "LeakedGlobalsError",
    "fresh_compile_caches",
    "preserved_globals",
    "reset_compiler_state",
]


class LeakedGlobalsError(AssertionError):
    """A case changed a process-wide setting and did not put it back."""


@dataclass(frozen=True)
class GlobalSetting:
    """One process-wide setting a technique changes: ``get()`` reads it, ``set(value)`` writes it.

    ``name`` is how a leak is reported (``mylib.fast_attention``). :meth:`attribute` covers the
    common case of a module or object attribute.
    """

    name: str
    get: Callable[[], Any]
    set: Callable[[Any], None]

    @classmethod
    def attribute(cls, owner: Any, attribute: str, name: str | None = None) -> GlobalSetting:
        """The attribute ``attribute`` of ``owner`` (a module, class or object), named
        ``<owner module name>.<attribute>`` unless ``name`` is given."""
        if not hasattr(owner, attribute):
            raise AttributeError(f"{owner!r} has no attribute {attribute!r} to track")
        label = name or f"{getattr(owner, '__name__', type(owner).__name__)}.{attribute}"
        return cls(label, lambda: getattr(owner, attribute), lambda value: setattr(owner, attribute, value))


def _declared() -> dict[str, GlobalSetting]:
    """Every setting declared by a registered technique (first declaration of a name wins)."""
    from perfsuite.optimizations import TECHNIQUES

    settings: dict[str, GlobalSetting] = {}
    for technique in TECHNIQUES.values():
        for setting in technique.touches:
            settings.setdefault(setting.name, setting)
    return settings


def _read_declared(settings: dict[str, GlobalSetting]) -> dict[str, Any]:
    values = {}
    for name, setting in settings.items():
        try:
            values[name] = setting.get()
        except Exception as exc:  # a technique's own getter: re-raised with the setting named
            raise RuntimeError(
                f"reading the declared global {name!r} raised {type(exc).__name__}: {exc}"
            ) from exc
    return values


def _precision_flags() -> dict[str, Any]:
    return {
        "torch.backends.fp32_precision": torch.backends.fp32_precision,  # type: ignore[attr-defined]
        "torch.backends.cuda.matmul.fp32_precision": torch.backends.cuda.matmul.fp32_precision,
        "torch.backends.cudnn.fp32_precision": torch.backends.cudnn.fp32_precision,
        "torch.backends.cudnn.conv.fp32_precision": torch.backends.cudnn.conv.fp32_precision,  # type: ignore[attr-defined]
        "torch.backends.cudnn.benchmark": torch.backends.cudnn.benchmark,
    }


def _sdpa_flags() -> dict[str, Any]:
    cuda = torch.backends.cuda
    return {
        "sdpa.flash": cuda.flash_sdp_enabled(),
        "sdpa.mem_efficient": cuda.mem_efficient_sdp_enabled(),
        "sdpa.math": cuda.math_sdp_enabled(),
        "sdpa.cudnn": cuda.cudnn_sdp_enabled(),
    }


def _config_items(module: Any, prefix: str) -> dict[str, Any]:
    return {f"{prefix}.{key}": value for key, value in module.get_config_copy().items()}


def _inductor_config() -> Any:
    import torch._inductor.config as inductor_config

    return inductor_config


def _dynamo_config() -> Any:
    import torch._dynamo.config as dynamo_config

    return dynamo_config


@dataclass(frozen=True)
class GlobalSnapshot:
    """The value of every tracked global at one moment."""

    values: dict[str, Any]

    @classmethod
    def take(cls) -> GlobalSnapshot:
        values = {**_precision_flags(), **_sdpa_flags()}
        values.update(_config_items(_inductor_config(), "inductor"))
        values.update(_config_items(_dynamo_config(), "dynamo"))
        for name, value in _read_declared(_declared()).items():
            values.setdefault(name, value)  # a torch setting declared again is tracked once
        return cls(values)

    def diff(self, other: GlobalSnapshot) -> dict[str, tuple[Any, Any]]:
        """``{name: (self_value, other_value)}`` for every global that differs."""
        keys = self.values.keys() | other.values.keys()
        missing = object()
        changed = {}
        for key in sorted(keys):
            before, after = self.values.get(key, missing), other.values.get(key, missing)
            if not _same(before, after):
                changed[key] = (before, after)
        return changed

    def restore(self) -> None:
        """Put every tracked global back to this snapshot's value."""
        # Only the keys that differ are written back: writing every key would also touch deprecated
        # ones, which warn on assignment.
        for prefix, module in (("inductor", _inductor_config()), ("dynamo", _dynamo_config())):
            current = module.get_config_copy()
            for key, saved in self.values.items():
                name = key.removeprefix(prefix + ".")
                if key.startswith(prefix + ".") and not _same(current.get(name), saved):
                    setattr(module, name, saved)
        _set_precision(self.values)
        torch.backends.cuda.enable_flash_sdp(self.values["sdpa.flash"])
        torch.backends.cuda.enable_mem_efficient_sdp(self.values["sdpa.mem_efficient"])
        torch.backends.cuda.enable_math_sdp(self.values["sdpa.math"])
        torch.backends.cuda.enable_cudnn_sdp(self.values["sdpa.cudnn"])
        for name, setting in _declared().items():
            if name in self.values and not _same(setting.get(), self.values[name]):
                setting.set(self.values[name])

    def assert_unchanged(self, what: str) -> None:
        """Raise :class:`LeakedGlobalsError` naming every global that differs from now."""
        __tracebackhide__ = True
        changed = self.diff(GlobalSnapshot.take())
        if changed:
            lines = "\n".join(f"  {key}: {before!r} -> {after!r}" for key, (before, after) in changed.items())
            raise LeakedGlobalsError(f"{what} left process-wide settings changed:\n{lines}")


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError, RuntimeError):
        return a is b


def _set_precision(values: dict[str, Any]) -> None:
    # The fp32_precision properties are the current API; the legacy ``allow_tf32`` flags are views of
    # them, and mixing the two styles raises in recent torch, so only the new names are written.
    setters: dict[str, Callable[[Any], None]] = {
        "torch.backends.fp32_precision": lambda v: setattr(torch.backends, "fp32_precision", v),
        "torch.backends.cuda.matmul.fp32_precision": lambda v: setattr(
            torch.backends.cuda.matmul, "fp32_precision", v
        ),
        "torch.backends.cudnn.fp32_precision": lambda v: setattr(torch.backends.cudnn, "fp32_precision", v),
        "torch.backends.cudnn.conv.fp32_precision": lambda v: setattr(
            torch.backends.cudnn.conv,  # type: ignore[attr-defined]
            "fp32_precision",
            v,
        ),
        "torch.backends.cudnn.benchmark": lambda v: setattr(torch.backends.cudnn, "benchmark", v),
    }
    for key, setter in setters.items():
        if _precision_flags()[key] != values[key]:
            setter(values[key])


@contextmanager
def preserved_globals() -> Iterator[GlobalSnapshot]:
    """Restore every tracked global on exit, whatever happened inside."""
    snapshot = GlobalSnapshot.take()
    try:
        yield snapshot
    finally:
        snapshot.restore()


def reset_compiler_state() -> None:
    """Drop dynamo's compiled code and guards so the next compile starts cold."""
    torch.compiler.reset()


_CODE_CACHES = ("PyCodeCache", "CppCodeCache", "CppPythonBindingsCodeCache", "CppWrapperCodeCache")


@contextmanager
def fresh_compile_caches(root: str) -> Iterator[str]:
    """Run the block with empty inductor and Triton caches: a new folder under ``root`` on disk, and
    inductor's in-process code caches cleared, so a compiled combo pays its own cold start instead of
    reusing kernels that an earlier combo compiled. The environment is restored afterwards."""
    import os
    import tempfile

    import torch._inductor.codecache as codecache

    folder = tempfile.mkdtemp(prefix="combo-", dir=root)
    saved = {key: os.environ.get(key) for key in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    os.environ["TRITON_CACHE_DIR"] = os.path.join(folder, "triton")
    for name in _CODE_CACHES:
        cache = getattr(codecache, name, None)
        if cache is not None:
            cache.cache_clear()
    try:
        yield folder
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
