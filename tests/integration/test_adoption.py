"""perfsuite in a repository of its own: the issue's bars end to end, the shipped default policy,
user techniques on the same path as perfsuite's own, and the example project's technique."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from perfsuite.catalog import get_model
from perfsuite.hardware import capabilities
from perfsuite.matrix import build_plan
from perfsuite.optimizations import GROUPS, REGISTRY, NotActiveError, Target

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
CHEAP = ("--perf-rounds=3", "--perf-warmup=1", "--perf-steps=2")
SUITE = """
def test_combo(perf_case, perf_run):
    perf_run(perf_case)
"""


def test_the_bar_in_an_empty_repository_outside_the_checkout(tmp_path: Path) -> None:
    """init; models save; record through ./my-pipeline; find through $PWD/my-pipeline and a moved copy."""
    work = tmp_path / "repo"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PERFSUITE_BAR_ARGS": " ".join(CHEAP),
        "PERFSUITE_BAR_K": "fp32 and not compile and not int8 and (fp32] or sdpa-math)",
    }
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "adoption-bar.sh"), str(work)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "adoption-bar: every step passed" in output
    assert output.count("2 passed") == 3, output[-6000:]  # fp32 and fp32+sdpa-math, three times
    (folder,) = [p for p in (work / "baselines").glob("*/*") if p.is_dir()]
    assert folder.name.startswith("local--StableDiffusionPipeline--")
    stored = json.loads((folder / "fp32.json").read_text())
    assert stored["model"] == "./my-pipeline" and stored["model_key"] == folder.name
    assert (folder / "fp32+sdpa-math.png").is_file()
    assert (work / "baselines" / "policy.toml").read_bytes() == (
        ROOT / "baselines" / "policy.toml"
    ).read_bytes()


def test_without_policy_the_suite_runs_on_the_shipped_default(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("--perf-device=cpu", "-k", "fp32]", *CHEAP)
    result.assert_outcomes(passed=1, deselected=6)
    text = " ".join(result.stdout.str().split())
    notice = f"perfsuite: no policy.toml in {pytester.path / 'baselines'}; using the default policy shipped"
    assert text.count(notice) == 1
    assert "Write a copy to edit with `perfsuite init`" in text


USER_TECHNIQUES = """
import types

from perfsuite.optimizations import GlobalSetting, NotActiveError, Technique

FLAGS = types.SimpleNamespace(loud=False)


def _never_active(pipe, target):
    raise NotActiveError("never-on: the pipeline shows no sign of it")


class _Leak:  # a context that switches the flag on and never puts it back

    def __init__(self, target):
        pass

    def __enter__(self):
        FLAGS.loud = True

    def __exit__(self, *exc):
        return False


def pytest_perfsuite_techniques(config):
    return [
        Technique(name="never-on", group="user", summary="cannot prove it", rank=40, verify=_never_active),
        Technique(
            name="leaky",
            group="user2",
            summary="leaves a declared global changed",
            rank=41,
            context=_Leak,
            verify=lambda pipe, target: ["applied"],
            touches=(GlobalSetting.attribute(FLAGS, "loud", "flags.loud"),),
        ),
    ]
"""


def test_a_user_technique_fails_its_case_like_a_builtin_one(project: pytest.Pytester) -> None:
    project.makeconftest(USER_TECHNIQUES)
    result = project.runpytest_subprocess(
        "--perf-device=cpu", "--perf-preset=single", "-k", "never-on or leaky", *CHEAP
    )
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*tiny-sd/fp32+never-on on profile cpu-*: 1 check(s) failed*",
            "*obtained: never-on: the pipeline shows no sign of it*",
            "*LeakedGlobalsError: combo fp32+leaky left process-wide settings changed:*",
            "*flags.loud: False -> True*",
        ]
    )


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch):
    """The example project's package, imported from its folder, its technique registered for the test
    as its entry point registers it where the example is installed."""
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "custom-technique"))
    import custom_technique

    with REGISTRY.layer():
        REGISTRY.register(custom_technique.CHUNKED_ATTN, "examples/custom-technique entry point")
        yield custom_technique


def test_the_example_verify_fails_without_its_processor(example) -> None:
    spec = get_model("tiny-sd")
    pipe = spec.build(torch.device("cpu"), torch.float32)
    target = Target(
        torch.device("cpu"), capabilities("cpu"), "sd", "fp32", frozenset({"fp32", "chunked-attn"})
    )
    technique = example.CHUNKED_ATTN
    with technique.enter(target):
        with pytest.raises(NotActiveError, match="use AttnProcessor2_0, not ChunkedSDPAProcessor"):
            technique.verify(pipe, target)
        technique.apply(pipe, target)
        assert "use ChunkedSDPAProcessor (64 queries a chunk)" in technique.verify(pipe, target)[0]


def test_the_example_technique_is_in_the_single_preset(example) -> None:
    plan = build_plan("single", torch.device("cpu"), capabilities("cpu"), "sd")
    assert "fp32+chunked-attn" in plan.ids
    assert tuple(GROUPS)[-1] == "attn-processor"
    pruned = {
        p.combo.id: p.reason
        for p in build_plan("pairs", torch.device("cpu"), capabilities("cpu"), "sd").pruned
    }
    assert "fuse-qkv installs its own fused attention processors" in pruned["fp32+fuse-qkv+chunked-attn"]
