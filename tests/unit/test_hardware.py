"""Tests of perfsuite.hardware: profile ids, device validation, machine info, capabilities."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
import torch

from perfsuite import hardware
from perfsuite.hardware import (
    VERSIONED_PACKAGES,
    Capabilities,
    MachineInfo,
    capabilities,
    collect_machine_info,
    cpu_profile_id,
    cuda_profile_id,
    profile_id,
    resolve_device,
    usable_cpu_cores,
    validate_device,
    validate_profile_id,
)

# --- profile ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("NVIDIA H200", "cuda-nvidia-h200"),
        ("NVIDIA A100-SXM4-80GB", "cuda-nvidia-a100-sxm4-80gb"),
        ("NVIDIA GeForce RTX 4090", "cuda-nvidia-geforce-rtx-4090"),
        ("NVIDIA  L40S", "cuda-nvidia-l40s"),
        ("NVIDIA_H100_80GB_HBM3", "cuda-nvidia-h100-80gb-hbm3"),
        ("Tesla T4", "cuda-nvidia-tesla-t4"),
        ("Quadro RTX 6000", "cuda-nvidia-quadro-rtx-6000"),
        ("AMD Instinct MI300X", "cuda-amd-instinct-mi300x"),
    ],
)
def test_cuda_profile_id(name: str, expected: str) -> None:
    assert cuda_profile_id(name) == expected


def test_cuda_profile_id_empty() -> None:
    with pytest.raises(ValueError, match="empty CUDA device name"):
        cuda_profile_id("  ")


@pytest.mark.parametrize(
    ("model", "cores", "expected"),
    [
        ("AMD EPYC 7B13 64-Core Processor", 2, "cpu-amd-epyc-2c"),
        ("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", 2, "cpu-intel-xeon-2c"),
        ("Intel(R) Xeon(R) Processor", 16, "cpu-intel-xeon-16c"),
        ("12th Gen Intel(R) Core(TM) i7-1260P", 8, "cpu-intel-core-8c"),
        ("AMD Ryzen 9 7950X 16-Core Processor", 32, "cpu-amd-ryzen-32c"),
        ("AMD Ryzen Threadripper PRO 5995WX 64-Cores", 4, "cpu-amd-threadripper-4c"),
        ("Apple M2 Pro", 10, "cpu-apple-m-10c"),
        ("Neoverse-V2", 72, "cpu-arm-neoverse-72c"),
        ("", 2, "cpu-generic-2c"),
        ("QEMU Virtual CPU version 2.5+", 2, "cpu-generic-2c"),
    ],
)
def test_cpu_profile_id(model: str, cores: int, expected: str) -> None:
    assert cpu_profile_id(model, cores) == expected


@pytest.mark.parametrize("cores", [0, -1, True, 2.0])
def test_cpu_profile_id_bad_cores(cores: int) -> None:
    with pytest.raises(ValueError, match="cores must be a positive integer"):
        cpu_profile_id("AMD EPYC 7B13", cores)


@pytest.mark.parametrize("profile", ["cpu-amd-epyc-2c", "cuda-nvidia-h200", "x", "0-a"])
def test_validate_profile_id_accepts(profile: str) -> None:
    assert validate_profile_id(profile) == profile


@pytest.mark.parametrize("profile", ["", "CPU-x", "-cpu", "cuda nvidia", "cuda_nvidia", "cpu/../x", "é"])
def test_validate_profile_id_rejects(profile: str) -> None:
    with pytest.raises(
        ValueError, match=r"invalid hardware profile id .*lowercase letters, digits and dashes"
    ):
        validate_profile_id(profile)


def test_profile_id_on_this_machine() -> None:
    pid = profile_id("cpu")
    assert pid.startswith("cpu-")
    assert pid.endswith(f"-{usable_cpu_cores()}c")
    assert validate_profile_id(pid) == pid


def test_usable_cores_follow_affinity() -> None:
    if hasattr(os, "sched_getaffinity"):
        assert usable_cpu_cores() == len(os.sched_getaffinity(0))
    assert usable_cpu_cores() >= 1


# --- devices ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cpu", "cuda", "cuda:0", "cuda:12"])
def test_validate_device_accepts(device: str) -> None:
    assert validate_device(device) == device


@pytest.mark.parametrize("device", ["", "gpu", "CPU", "cuda:", "cuda:-1", "cuda:x", "mps", " cpu", "cuda0"])
def test_bad_device_errors(device: str) -> None:
    with pytest.raises(ValueError, match=r"invalid device .*'cpu', 'cuda' or 'cuda:N'"):
        capabilities(device)
    with pytest.raises(ValueError, match="invalid device"):
        profile_id(device)


def test_cuda_unavailable_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for call in (capabilities, profile_id, resolve_device, collect_machine_info):
        with pytest.raises(ValueError, match=r"'cuda:1' was requested but CUDA is not available.*use 'cpu'"):
            call("cuda:1")


# --- machine info ----------------------------------------------------------------------------------


def test_collect_machine_info_cpu_round_trip() -> None:
    info = collect_machine_info("cpu")
    assert info.profile.startswith("cpu-")
    assert info.device == "cpu"
    assert info.cpu_cores == usable_cpu_cores()
    assert info.gpu_name is None and info.gpu_capability is None and info.gpu_memory_bytes is None
    assert info.driver_version is None
    assert set(info.versions) == set(VERSIONED_PACKAGES)
    assert info.versions["torch"] == str(torch.__version__)  # with its build: 2.14.1+cu130, 2.13.0+cpu
    assert info.versions["perfsuite"] is not None
    assert info.versions["numpy"] is not None
    assert set(info.cpu_flags) <= {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx"}
    assert info.total_memory_bytes is None or info.total_memory_bytes > 0
    text = json.dumps(info.to_dict(), sort_keys=True)
    assert MachineInfo.from_dict(json.loads(text)) == info


def test_collect_machine_info_profile_override() -> None:
    assert collect_machine_info("cpu", profile="ci-runner-7").profile == "ci-runner-7"
    with pytest.raises(ValueError, match="invalid hardware profile id 'Bad Id'"):
        collect_machine_info("cpu", profile="Bad Id")


def test_from_dict_missing_keys() -> None:
    data = collect_machine_info("cpu").to_dict()
    del data["profile"], data["device"]
    with pytest.raises(ValueError, match="missing profile, device"):
        MachineInfo.from_dict(data)


def test_cpuinfo_parsing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 7B13 64-Core Processor\n"
        "flags\t\t: fpu sse avx avx2 avx512f avx512_bf16 amx_tile\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(hardware, "_PROC_CPUINFO", cpuinfo)
    monkeypatch.setattr(hardware, "usable_cpu_cores", lambda: 2)
    info = collect_machine_info("cpu")
    assert info.profile == "cpu-amd-epyc-2c"
    assert info.cpu_model == "AMD EPYC 7B13 64-Core Processor"
    assert info.cpu_flags == {
        "avx2": True,
        "avx512f": True,
        "avx512_bf16": True,
        "avx512_vnni": False,
        "amx": True,
    }
    monkeypatch.setattr(hardware, "_PROC_CPUINFO", tmp_path / "missing")
    assert collect_machine_info("cpu").cpu_flags == {}


def _write_fake_nvidia_smi(directory: Path, body: str) -> None:
    exe = directory / "nvidia-smi"
    exe.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)


def test_driver_version_never_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert hardware._driver_version() is None  # not installed
    _write_fake_nvidia_smi(tmp_path, 'printf "550.54.15\\n550.54.15\\n"')
    assert hardware._driver_version() == "550.54.15"
    _write_fake_nvidia_smi(tmp_path, "echo 'NVIDIA-SMI has failed' >&2; exit 9")
    assert hardware._driver_version() is None


# --- capabilities ----------------------------------------------------------------------------------


def test_capabilities_cpu() -> None:
    caps = capabilities("cpu")
    assert isinstance(caps, Capabilities)
    assert not caps.is_cuda and caps.compute_capability is None
    assert not caps.supports_tf32
    assert caps.supports_flash_sdpa
    assert not caps.supports_efficient_sdpa and not caps.supports_cudnn_sdpa
    assert not caps.has_triton
    assert caps.name


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, object]:
    """Pretend this machine has two CUDA devices; the dict sets the name and capability."""
    fake: dict[str, object] = {"name": "NVIDIA H200", "capability": (9, 0)}

    def props(_device: object) -> SimpleNamespace:
        major, minor = cast("tuple[int, int]", fake["capability"])
        return SimpleNamespace(name=fake["name"], major=major, minor=minor, total_memory=150 * 2**30)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda _device=None: fake["name"])
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda _device=None: fake["capability"])
    monkeypatch.setattr(torch.cuda, "get_device_properties", props)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    _write_fake_nvidia_smi(tmp_path, 'echo "570.86.15"')
    monkeypatch.setenv("PATH", str(tmp_path))
    return fake


def test_fake_cuda_hopper(fake_cuda: dict[str, object]) -> None:
    assert resolve_device("cuda") == "cuda:1"  # plain "cuda" is the current device
    assert profile_id("cuda:0") == "cuda-nvidia-h200"
    caps = capabilities("cuda:0")
    assert caps.is_cuda and caps.compute_capability == (9, 0) and caps.device == "cuda:0"
    assert caps.supports_bf16 and caps.supports_fp16 and caps.supports_tf32
    assert caps.supports_flash_sdpa and caps.supports_efficient_sdpa and caps.supports_cudnn_sdpa
    info = collect_machine_info("cuda:0")
    assert (info.profile, info.device, info.gpu_name) == ("cuda-nvidia-h200", "cuda:0", "NVIDIA H200")
    assert (info.gpu_capability, info.gpu_memory_bytes) == ("9.0", 150 * 2**30)
    assert (info.cuda_version, info.driver_version) == ("12.8", "570.86.15")
    assert MachineInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == info


def test_fake_cuda_turing(fake_cuda: dict[str, object]) -> None:
    fake_cuda.update(name="Tesla T4", capability=(7, 5))
    caps = capabilities("cuda:1")
    assert caps.compute_capability == (7, 5)
    assert caps.supports_fp16 and caps.supports_efficient_sdpa
    assert not (
        caps.supports_bf16 or caps.supports_tf32 or caps.supports_flash_sdpa or caps.supports_cudnn_sdpa
    )
    assert profile_id("cuda:1") == "cuda-nvidia-tesla-t4"


def test_fake_cuda_index_out_of_range(fake_cuda: dict[str, object]) -> None:
    expected = r"'cuda:2' does not exist here: valid choices are 'cpu', 'cuda', 'cuda:0', 'cuda:1'$"
    with pytest.raises(ValueError, match=expected):
        capabilities("cuda:2")


def test_version_changes_name_each_package_that_differs() -> None:
    from perfsuite.hardware import version_changes

    old = {"versions": {"torch": "2.13.0+cpu", "diffusers": "0.42.1", "triton": None}}
    new = {"versions": {"torch": "2.14.1+cu130", "diffusers": "0.42.1", "triton": "3.5.0"}}
    assert version_changes(old, new) == ["torch 2.13.0+cpu -> 2.14.1+cu130", "triton (not recorded) -> 3.5.0"]
    assert version_changes(new, new) == []
    assert version_changes({}, {"versions": {"torch": "2.13.0"}}) == ["torch (not recorded) -> 2.13.0"]
