"""`perfsuite init`, the shipped default policy and templates, and `perfsuite models`."""

from __future__ import annotations

import ast
import io
import subprocess
from pathlib import Path

import pytest
from test_workflow import find_tool

from perfsuite.baselines import default_policy_path, load_policy
from perfsuite.cli import EXIT_ERROR, EXIT_OK, main
from perfsuite.scaffold import STARTER_FILES, init_repository, template_path

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_default_policy_is_the_repository_policy() -> None:
    shipped, own = default_policy_path(), ROOT / "baselines" / "policy.toml"
    assert shipped.read_bytes() == own.read_bytes(), (
        f"{shipped} must stay identical to {own}: cp baselines/policy.toml perfsuite/templates/policy.toml"
    )
    assert load_policy(shipped).rules


def test_the_suite_template_runs_the_same_test_as_perfsuite_own_suite() -> None:
    def test_function(path: Path) -> str:
        tree = ast.parse(path.read_text())
        (function,) = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
        return ast.dump(function)

    assert test_function(template_path("test_inference.py")) == test_function(
        ROOT / "tests" / "perf" / "test_inference.py"
    )


def test_the_example_project_shows_what_init_writes() -> None:
    # examples/custom-technique keeps a copy of the starter test file on purpose: it shows a user's
    # repository as `perfsuite init` leaves it.
    example = ROOT / "examples" / "custom-technique" / "tests" / "perf" / "test_inference.py"
    assert example.read_text() == template_path("test_inference.py").read_text(), (
        f"{example} must stay identical to the template perfsuite init writes"
    )


def test_the_workflow_template_matches_the_github_workflow_schema() -> None:
    tool = find_tool("check-jsonschema")
    assert tool is not None, "check-jsonschema is part of the dev extra: pip install -e '.[dev]'"
    command = [tool, "--builtin-schema", "vendor.github-workflows", str(template_path("perf.yml"))]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_init_writes_the_starter_layout(tmp_path: Path) -> None:
    report = init_repository(tmp_path)
    assert [path for path, _ in report.written] == [f.path for f in STARTER_FILES]
    assert not report.skipped
    for starter in STARTER_FILES:
        assert (tmp_path / starter.path).read_bytes() == template_path(starter.template).read_bytes()
    assert load_policy(tmp_path / "baselines" / "policy.toml").defaults
    assert not list(tmp_path.rglob(".*.tmp")), "no temporary file is left behind"


def test_init_never_overwrites_and_lists_what_it_skipped(tmp_path: Path) -> None:
    (tmp_path / "baselines").mkdir()
    (tmp_path / "baselines" / "policy.toml").write_text("# mine\n")
    (tmp_path / "noxfile.py").write_text("# my sessions\n")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'mine'\n")
    report = init_repository(tmp_path)
    skipped = dict(report.skipped)
    assert skipped["baselines/policy.toml"] == "exists, left as it is"
    assert str(template_path("noxfile.py")) in skipped["noxfile.py"]
    assert skipped["pytest.ini"] == "pyproject.toml already makes this folder pytest's rootdir"
    assert (tmp_path / "baselines" / "policy.toml").read_text() == "# mine\n"
    assert (tmp_path / "noxfile.py").read_text() == "# my sessions\n"
    assert not (tmp_path / "pytest.ini").exists()
    assert {path for path, _ in report.written} == {
        "tests/perf/test_inference.py",
        ".github/workflows/perf.yml",
    }
    again = init_repository(tmp_path)
    assert not again.written and len(again.skipped) == len(STARTER_FILES)


def test_a_pytest_section_of_setup_cfg_counts_as_configuration(tmp_path: Path) -> None:
    (tmp_path / "setup.cfg").write_text("[metadata]\nname = x\n")
    assert "pytest.ini" in dict(init_repository(tmp_path / ".").written)
    other = tmp_path / "other"
    other.mkdir()
    (other / "setup.cfg").write_text("[tool:pytest]\naddopts = -ra\n")
    assert "setup.cfg already holds the pytest configuration" in dict(init_repository(other).skipped).values()


def test_the_init_command_prints_written_and_skipped(tmp_path: Path) -> None:
    out = io.StringIO()
    assert main(["init", str(tmp_path)], out=out) == EXIT_OK
    assert "wrote    baselines/policy.toml" in out.getvalue()
    out = io.StringIO()
    assert main(["init", str(tmp_path)], out=out) == EXIT_OK
    assert "skipped  baselines/policy.toml" in out.getvalue()
    assert "wrote" not in out.getvalue().split("next:")[0]


def test_init_into_a_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    assert main(["init", str(tmp_path / "file")]) == EXIT_ERROR
    assert "is a file; give the repository folder" in capsys.readouterr().err


def test_models_lists_every_model_and_technique_with_its_source() -> None:
    out = io.StringIO()
    assert main(["models"], out=out) == EXIT_OK
    text = out.getvalue()
    joined = " ".join(text.split())
    for name in ("tiny-sd", "tiny-sdxl", "sd15", "sdxl", "fp32", "sdpa-flash", "compile", "int8-dq"):
        assert f"    {name}  [" in text
    assert (
        "from entry point 'perfsuite = perfsuite.catalog.builtin:builtin_models' (perfsuite.models)" in text
    )
    assert "python -m pytest --perf-list" in joined


def test_models_save_refuses_a_folder_that_holds_files(tmp_path: Path, capsys) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["models", "save", "tiny-sd", str(tmp_path)]) == EXIT_ERROR
    assert "exists and is not an empty folder; perfsuite never overwrites it" in capsys.readouterr().err
    assert main(["models", "save", "no-such-model", str(tmp_path / "new")]) == EXIT_ERROR
    assert "unknown model 'no-such-model'; registered models: tiny-sd" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
