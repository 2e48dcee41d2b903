"""The extension points in a pytest session: pytest_perfsuite_* hooks, --perf-model NAME=PATH,
--perf-list, one-line usage errors, and the shipped default policy. Collection only: nothing is built."""

from __future__ import annotations

import pytest
from test_identity import make_pipeline

from perfsuite.catalog import MODELS
from perfsuite.optimizations import REGISTRY

pytest_plugins = ["pytester"]

SUITE = """
def test_combo(perf_case, perf_run):
    perf_run(perf_case)
"""

HOOKS = """
import dataclasses
import types

from perfsuite.catalog import get_model
from perfsuite.optimizations import GlobalSetting, Technique

FLAGS = types.SimpleNamespace(shouting=False)


def _verify(pipe, target):
    return ["it shouts"]


def pytest_perfsuite_techniques(config):
    return Technique(
        name="shout",
        group="volume",
        summary="a technique of this repository",
        rank=40,
        verify=_verify,
        touches=(GlobalSetting.attribute(FLAGS, "shouting", "flags.shouting"),),
    )


def pytest_perfsuite_models(config):
    return [dataclasses.replace(get_model("tiny-sd"), name="my-tiny", description="ours")]
"""


@pytest.fixture
def suite(project: pytest.Pytester) -> pytest.Pytester:
    project.makeconftest(HOOKS)
    return project


def _text(result: pytest.RunResult) -> str:
    return " ".join((result.stdout.str() + "\n" + result.stderr.str()).split())


def test_hook_entries_join_the_presets_and_leave_with_the_session(suite: pytest.Pytester) -> None:
    result = suite.runpytest_inprocess("--perf-model=my-tiny", "--perf-preset=single", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["*test_combo?my-tiny/fp32?*", "*test_combo?my-tiny/fp32+shout?*"])
    pairs = suite.runpytest_inprocess("--perf-model=my-tiny", "--perf-preset=pairs", "--collect-only", "-q")
    pairs.stdout.fnmatch_lines(["*my-tiny/fp32+sdpa-flash+shout?*"])  # the new group comes last
    assert "my-tiny" not in MODELS and "shout" not in REGISTRY  # dropped when each session ended


def test_perf_list_shows_every_entry_with_its_source(suite: pytest.Pytester) -> None:
    result = suite.runpytest_inprocess("--perf-list")
    assert result.ret == pytest.ExitCode.OK
    text = _text(result)
    conftest = suite.path / "conftest.py"
    assert f"from pytest_perfsuite_models in {conftest}: my-tiny [sd] ours" in text
    assert f"from pytest_perfsuite_techniques in {conftest}: shout [volume]" in text
    assert "tiny-sd [sd]" in text
    assert (
        "groups in combo-id order: dtype, tf32, sigmas, sdpa, layout, compile, inductor, fuse, quant, volume"
        in text
    )


def test_a_name_registered_twice_is_one_clean_usage_error(project: pytest.Pytester) -> None:
    project.makeconftest(
        "import dataclasses\nfrom perfsuite.catalog import get_model\n"
        "def pytest_perfsuite_models(config):\n"
        "    return [dataclasses.replace(get_model('sd15'), name='tiny-sd')]\n"
    )
    result = project.runpytest_inprocess("--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = _text(result)
    assert (
        "ERROR: model 'tiny-sd' is registered twice: by entry point 'perfsuite = "
        "perfsuite.catalog.builtin:builtin_models' (perfsuite.models) of perfsuite"
    ) in text
    assert f"and by pytest_perfsuite_models in {project.path / 'conftest.py'}; rename one of them" in text
    assert "Traceback" not in text


def test_a_hook_in_a_conftest_read_too_late_is_reported(project: pytest.Pytester) -> None:
    sub = project.mkdir("suite")
    (sub / "conftest.py").write_text("def pytest_perfsuite_models(config):\n    return []\n")
    (sub / "test_more.py").write_text("def test_nothing():\n    pass\n")
    result = project.runpytest_inprocess("--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = _text(result)
    assert f"pytest_perfsuite_models in {sub / 'conftest.py'}: read after the session registered" in text
    assert "move it to the conftest.py of the rootdir" in text


def test_name_equals_path_files_a_folder_under_its_name(project: pytest.Pytester) -> None:
    make_pipeline(project.path / "pipelines" / "mine")
    result = project.runpytest_inprocess("--perf-model=ours=pipelines/mine", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK, _text(result)
    result.stdout.fnmatch_lines(["*test_combo?ours/fp32?*"])
    listed = _text(project.runpytest_inprocess("--perf-model=ours=pipelines/mine", "--perf-list"))
    assert "from --perf-model ours=pipelines/mine: ours [sd]" in listed


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            "--perf-model=ours=nowhere",
            "--perf-model: model 'ours': * is not a directory; save a pipeline there",
        ),
        ("--perf-model==nowhere", "expected NAME=PATH, a name of letters, digits and '._-'"),
        ("--perf-model=tiny-sd=pipelines/x", "model 'tiny-sd' is registered twice"),
    ],
)
def test_bad_name_equals_path(project: pytest.Pytester, option: str, message: str) -> None:
    make_pipeline(project.path / "pipelines" / "x")
    result = project.runpytest_inprocess(option, "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{message}*"])


def test_a_broken_policy_is_one_clean_line_not_a_traceback(project: pytest.Pytester) -> None:
    (project.path / "baselines" / "policy.toml").write_text("[defaults\n")
    result = project.runpytest_inprocess("--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: */baselines/policy.toml: not valid TOML*"])
    assert [line for line in result.stderr.lines if line.strip()] == result.stderr.lines[:1]  # one line
    text = _text(result)
    for noise in ("Traceback", "INTERNALERROR", "ERROR collecting"):
        assert noise not in text


def test_a_broken_policy_under_xdist_is_caught_before_workers_start(project: pytest.Pytester) -> None:
    (project.path / "baselines" / "policy.toml").write_text("schema_version = 99\n")
    result = project.runpytest_inprocess("-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: */baselines/policy.toml: *schema_version*"])
    assert "INTERNALERROR" not in _text(result)


def test_without_policy_the_shipped_default_is_used_and_said_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_inprocess("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK, _text(result)
    notice = "perfsuite: no policy.toml in {}; using the default policy shipped with perfsuite.".format(
        pytester.path / "baselines"
    )
    assert _text(result).count(notice) == 1
    assert "Write a copy to edit with `perfsuite init`" in _text(result)


def test_unknown_model_is_rejected_once_hooks_have_run(project: pytest.Pytester) -> None:
    result = project.runpytest_inprocess("--perf-model=tiny-sdx", "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown model 'tiny-sdx'; choose from tiny-sd, tiny-sdxl, sd15, sdxl*"])
