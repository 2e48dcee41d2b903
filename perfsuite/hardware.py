"""Hardware profile ids, device capabilities, and the machine info recorded with results.

A *hardware profile* names a class of hardware whose absolute timings are comparable
(``cuda-nvidia-h200``, ``cpu-amd-epyc-2c``); baselines are stored per profile. The id helpers that
take strings (:func:`cpu_profile_id`, :func:`cuda_profile_id`, :func:`validate_profile_id`,
:func:`validate_device`) are pure. torch is imported only inside the functions that need it, so the
pytest plugin can import this module early and cheaply.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = [
    "VERSIONED_PACKAGES",
    "Capabilities",
    "MachineInfo",
    "capabilities",
    "collect_machine_info",
    "cpu_profile_id",
    "cuda_profile_id",
    "profile_id",
    "resolve_device",
    "usable_cpu_cores",
    "validate_device",
    "validate_profile_id",
    "version_changes",
]

#: Distributions whose versions are recorded in :attr:`MachineInfo.versions`.
VERSIONED_PACKAGES = (
    "perfsuite",
    "torch",
    "diffusers",
    "transformers",
    "accelerate",
    "torchao",
    "triton",
    "numpy",
    "scipy",
    "scikit-image",
    "pytest",
    "pytest-benchmark",
)

_PROFILE_RE = re.compile(r"[a-z0-9][a-z0-9-]*")
_DEVICE_RE = re.compile(r"cpu|cuda(?::(?P<index>[0-9]+))?")
_DEVICE_CHOICES = "'cpu', 'cuda' or 'cuda:N' (N = CUDA device index)"
_PROC_CPUINFO = Path("/proc/cpuinfo")
_PROC_MEMINFO = Path("/proc/meminfo")

# Ordered (pattern, family) rules over the cleaned, lowercase CPU model string. First match wins.
_CPU_FAMILIES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), family)
    for pattern, family in (
        (r"\bxeon\b", "intel-xeon"),
        (r"\bintel\b.*\bcore\b", "intel-core"),
        (r"\bepyc\b", "amd-epyc"),
        (r"\bthreadripper\b", "amd-threadripper"),
        (r"\bryzen\b", "amd-ryzen"),
        (r"\bapple m\d", "apple-m"),
        (r"\bneoverse\b", "arm-neoverse"),
        (r"\bgraviton\b", "aws-graviton"),
    )
)
# NVIDIA product lines whose torch device name omits the vendor ("Tesla T4", "Quadro RTX 6000").
_NVIDIA_BRANDS = ("tesla", "quadro", "geforce", "titan")


def _slug(text: str) -> str:
    """Lowercase ``text``, drop (R)/(TM) marks, and turn every other run of non [a-z0-9] into '-'."""
    lowered = re.sub(r"\((r|tm|c)\)", " ", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", lowered).strip("-")


def validate_profile_id(profile: str) -> str:
    """Return ``profile`` if it is a valid profile id (``[a-z0-9][a-z0-9-]*``), else raise ValueError."""
    if not isinstance(profile, str) or not _PROFILE_RE.fullmatch(profile):
        raise ValueError(
            f"invalid hardware profile id {profile!r}: use lowercase letters, digits and dashes, "
            "starting with a letter or digit (for example 'cuda-nvidia-h200' or 'cpu-amd-epyc-2c')"
        )
    return profile


def cuda_profile_id(device_name: str) -> str:
    """Profile id of a CUDA device from its name: ``"NVIDIA H200"`` -> ``"cuda-nvidia-h200"``.

    Spaces, underscores and other separators become single dashes; a name without a vendor that
    starts with an NVIDIA product line ("Tesla T4") gets ``nvidia-`` prepended.
    """
    slug = _slug(device_name)
    if not slug:
        raise ValueError(f"cannot derive a profile id from an empty CUDA device name {device_name!r}")
    if slug.split("-", 1)[0] in _NVIDIA_BRANDS:
        slug = f"nvidia-{slug}"
    return validate_profile_id(f"cuda-{slug}")


def cpu_profile_id(model_name: str, cores: int) -> str:
    """Profile id of a CPU from its model string and usable core count.

    ``("AMD EPYC 7B13 64-Core Processor", 2)`` -> ``"cpu-amd-epyc-2c"``; a model string that no rule
    knows (or an empty one) gives ``"cpu-generic-<cores>c"``.
    """
    if isinstance(cores, bool) or not isinstance(cores, int) or cores < 1:
        raise ValueError(f"cores must be a positive integer, got {cores!r}")
    cleaned = _slug(model_name).replace("-", " ")
    family = next((fam for pattern, fam in _CPU_FAMILIES if pattern.search(cleaned)), "generic")
    return validate_profile_id(f"cpu-{family}-{cores}c")


def _match_device(device: str) -> re.Match[str]:
    match = _DEVICE_RE.fullmatch(device) if isinstance(device, str) else None
    if match is None:
        raise ValueError(f"invalid device {device!r}: expected {_DEVICE_CHOICES}")
    return match


def validate_device(device: str) -> str:
    """Check the syntax of a device string ("cpu", "cuda", "cuda:N") without importing torch."""
    _match_device(device)
    return device


def resolve_device(device: str) -> str:
    """Validate ``device`` and check it exists here; return ``"cpu"`` or ``"cuda:N"``.

    Plain ``"cuda"`` resolves to the current CUDA device. Raises ValueError when CUDA is asked for
    but not available, or the index is out of range.
    """
    match = _match_device(device)
    if device == "cpu":
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} was requested but CUDA is not available here "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); use 'cpu'"
        )
    count = torch.cuda.device_count()
    index = int(match["index"]) if match["index"] is not None else torch.cuda.current_device()
    if index >= count:
        valid = ", ".join(f"'cuda:{i}'" for i in range(count))
        raise ValueError(f"device {device!r} does not exist here: valid choices are 'cpu', 'cuda', {valid}")
    return f"cuda:{index}"


def usable_cpu_cores() -> int:
    """Cores this process may run on (``os.sched_getaffinity``), not the host's physical count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _cpuinfo_field(names: tuple[str, ...]) -> str | None:
    """First value of any of ``names`` in /proc/cpuinfo, or None where there is no such file/field."""
    try:
        text = _PROC_CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in names:
            return value.strip()
    return None


def _cpu_model() -> str:
    """CPU model string ("model name" in /proc/cpuinfo, else platform.processor()), maybe empty."""
    return _cpuinfo_field(("model name", "Model Name")) or platform.processor() or ""


def _cpu_flags() -> dict[str, bool]:
    """The vector extensions that set how fast a dtype runs, from /proc/cpuinfo flags; empty where
    flags cannot be read.

    avx512_bf16 and avx512_vnni are here because hosts of one CPU profile differ in them: on one
    "AMD EPYC" 2-core host without AVX-512 a tiny-sd bf16 call took 6.5 s against 0.64 s for fp32;
    on another with avx512_bf16, 0.64 s against 0.70 s. Absolute times of such hosts are not
    comparable (:func:`perfsuite.gate.machine_fingerprint`).
    """
    raw = _cpuinfo_field(("flags", "Features"))
    if raw is None:
        return {}
    flags = set(raw.split())
    return {
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "avx512_vnni": "avx512_vnni" in flags,
        "amx": "amx_tile" in flags,
    }


def _total_memory_bytes() -> int | None:
    """Physical memory of the machine in bytes, or None when it cannot be read."""
    try:
        meminfo = _PROC_MEMINFO.read_text(encoding="utf-8")
    except OSError:
        meminfo = ""
    found = re.search(r"^MemTotal:\s+([0-9]+)\s+kB", meminfo, flags=re.MULTILINE)
    if found:
        return int(found[1]) * 1024
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def _driver_version() -> str | None:
    """NVIDIA driver version from nvidia-smi, or None when it is missing or fails. Never raises."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        result = subprocess.run(
            [exe, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    return lines[0] if result.returncode == 0 and lines else None


def _package_versions() -> dict[str, str | None]:
    """Installed versions of :data:`VERSIONED_PACKAGES`; torch's carries its build (``2.14.1+cu130``).

    A wheel's metadata version drops the local build tag that ``torch.__version__`` keeps, and the
    build (CPU, a CUDA version) changes speed and memory as much as the release does.
    """
    versions: dict[str, str | None] = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    import torch

    versions["torch"] = str(torch.__version__)
    return versions


def version_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """``name old -> new`` for every package whose recorded version differs between two machine infos.

    Takes :meth:`MachineInfo.to_dict` output (or a baseline's ``machine``). A package recorded on one
    side only reads ``(not recorded)`` on the other; packages neither side recorded are left out.
    """
    old, new = before.get("versions") or {}, after.get("versions") or {}
    changes = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a != b:
            changes.append(f"{name} {a or '(not recorded)'} -> {b or '(not recorded)'}")
    return changes


def profile_id(device: str) -> str:
    """Hardware profile id of ``device`` on this machine ("cpu", "cuda", "cuda:N")."""
    resolved = resolve_device(device)
    if resolved == "cpu":
        return cpu_profile_id(_cpu_model(), usable_cpu_cores())
    import torch

    return cuda_profile_id(torch.cuda.get_device_name(torch.device(resolved)))


@dataclass(frozen=True)
class MachineInfo:
    """Where a measurement was taken. Plain data; :meth:`to_dict` / :meth:`from_dict` round-trip."""

    profile: str
    device: str
    cpu_model: str
    cpu_cores: int
    cpu_flags: dict[str, bool]
    total_memory_bytes: int | None
    gpu_name: str | None
    gpu_capability: str | None
    gpu_memory_bytes: int | None
    cuda_version: str | None
    driver_version: str | None
    python_version: str
    platform: str
    versions: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable dict; nested dicts have sorted keys."""
        data = asdict(self)
        data["cpu_flags"] = dict(sorted(self.cpu_flags.items()))
        data["versions"] = dict(sorted(self.versions.items()))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MachineInfo:
        """Rebuild from :meth:`to_dict` output. Missing keys raise ValueError; unknown keys are ignored."""
        names = [f.name for f in fields(cls)]
        missing = [name for name in names if name not in data and name != "versions"]
        if missing:
            raise ValueError(f"machine info is missing {', '.join(missing)}")
        values = {name: data[name] for name in names if name in data}
        values["cpu_flags"] = {str(k): bool(v) for k, v in (values["cpu_flags"] or {}).items()}
        values["versions"] = {str(k): v for k, v in (values.get("versions") or {}).items()}
        return cls(**values)


def collect_machine_info(device: str, profile: str | None = None) -> MachineInfo:
    """Describe this machine for ``device``; ``profile`` overrides the derived profile id."""
    resolved = resolve_device(device)
    import torch

    gpu_name: str | None = None
    gpu_capability: str | None = None
    gpu_memory_bytes: int | None = None
    driver: str | None = None
    if resolved != "cpu":
        props = torch.cuda.get_device_properties(torch.device(resolved))
        gpu_name = str(props.name)
        gpu_capability = f"{props.major}.{props.minor}"
        gpu_memory_bytes = int(props.total_memory)
        driver = _driver_version()
    return MachineInfo(
        profile=validate_profile_id(profile) if profile is not None else profile_id(resolved),
        device=resolved,
        cpu_model=_cpu_model(),
        cpu_cores=usable_cpu_cores(),
        cpu_flags=_cpu_flags(),
        total_memory_bytes=_total_memory_bytes(),
        gpu_name=gpu_name,
        gpu_capability=gpu_capability,
        gpu_memory_bytes=gpu_memory_bytes,
        cuda_version=torch.version.cuda,
        driver_version=driver,
        python_version=platform.python_version(),
        platform=platform.platform(),
        versions=_package_versions(),
    )


@dataclass(frozen=True)
class Capabilities:
    """What a device can do, as far as the optimizations need to know."""

    name: str
    device: str
    is_cuda: bool
    compute_capability: tuple[int, int] | None
    supports_bf16: bool
    supports_fp16: bool
    supports_tf32: bool
    supports_flash_sdpa: bool
    supports_efficient_sdpa: bool
    supports_cudnn_sdpa: bool
    has_triton: bool
    #: Hardware float8 (e4m3/e5m2) matmuls: NVIDIA compute capability 8.9 (Ada) or newer.
    supports_fp8_matmul: bool = False


def capabilities(device: str) -> Capabilities:
    """Capabilities of ``device`` ("cpu", "cuda", "cuda:N"); ValueError if it is invalid or absent.

    CPU: bf16 and fp16 run (possibly slowly), SDPA has a flash kernel, nothing else. CUDA: TF32,
    flash and cuDNN SDPA need compute capability 8.0 (Ampere) or newer; float8 matmuls need 8.9
    (Ada, Hopper and newer); memory-efficient SDPA is always there; Triton counts when it is
    importable.
    """
    resolved = resolve_device(device)
    if resolved == "cpu":
        return Capabilities(
            name=_cpu_model() or "cpu",
            device="cpu",
            is_cuda=False,
            compute_capability=None,
            supports_bf16=True,
            supports_fp16=True,
            supports_tf32=False,
            supports_flash_sdpa=True,
            supports_efficient_sdpa=False,
            supports_cudnn_sdpa=False,
            has_triton=False,
        )
    import torch

    major, minor = torch.cuda.get_device_capability(torch.device(resolved))
    ampere = (major, minor) >= (8, 0)
    return Capabilities(
        name=str(torch.cuda.get_device_name(torch.device(resolved))),
        device=resolved,
        is_cuda=True,
        compute_capability=(int(major), int(minor)),
        supports_bf16=ampere,
        supports_fp16=(major, minor) >= (5, 3),
        supports_tf32=ampere,
        supports_flash_sdpa=ampere,
        supports_efficient_sdpa=True,
        supports_cudnn_sdpa=ampere,
        has_triton=importlib.util.find_spec("triton") is not None,
        supports_fp8_matmul=(major, minor) >= (8, 9),
    )
