"""The GitHub workflow that runs the suite: actionlint, and the structure the README promises."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "perf.yml"


def find_tool(name: str) -> str | None:
    """``name`` on PATH, or next to this Python (a virtualenv's bin folder that is not on PATH)."""
    beside = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.is_file() else None)


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def steps(workflow: dict[Any, Any], job: str) -> list[dict[str, Any]]:
    return workflow["jobs"][job]["steps"]


def step_named(workflow: dict[Any, Any], job: str, name: str) -> dict[str, Any]:
    matches = [s for s in steps(workflow, job) if s.get("name") == name]
    assert len(matches) == 1, f"job {job} has {len(matches)} steps named {name!r}"
    return matches[0]


def test_actionlint_accepts_the_workflow():
    actionlint = find_tool("actionlint")
    if actionlint is None:
        pytest.skip(
            "actionlint is not installed: pip install -e '.[workflow-lint]' (its build downloads the "
            "actionlint binary from GitHub releases)"
        )
    command = [actionlint, "-config-file", str(ROOT / ".github" / "actionlint.yaml")]
    shellcheck = find_tool("shellcheck")
    command += ["-shellcheck", shellcheck or ""]  # an empty path turns the shell-script checks off
    result = subprocess.run([*command, str(WORKFLOW)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_workflow_matches_the_github_workflow_schema():
    """check-jsonschema ships SchemaStore's GitHub workflow schema, so this runs offline."""
    tool = find_tool("check-jsonschema")
    assert tool is not None, "check-jsonschema is part of the dev extra: pip install -e '.[dev]'"
    command = [tool, "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "run-on:", 1))
    tool = find_tool("check-jsonschema")
    assert tool is not None
    result = subprocess.run([tool, "--builtin-schema", "vendor.github-workflows", str(broken)],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode != 0 and "run-on" in result.stdout + result.stderr


def test_triggers_are_pull_requests_manual_runs_and_the_default_branch(workflow):
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    triggers = workflow.get("on", workflow.get(True))
    assert {"pull_request", "workflow_dispatch"} <= set(triggers)
    assert triggers["push"] == {"branches": ["main"]}
    assert set(triggers["workflow_dispatch"]["inputs"]) == {"models", "preset", "update_baselines"}


def test_gpu_job_runs_alone_on_a_self_hosted_gpu_runner(workflow):
    gpu = workflow["jobs"]["gpu"]
    assert {"self-hosted", "gpu"} <= set(gpu["runs-on"])
    assert gpu["concurrency"] == {"group": "perf-gpu", "cancel-in-progress": False}
    assert gpu["timeout-minutes"] <= 360


def test_gpu_job_gates_with_strict_baselines_and_writes_the_report(workflow):
    run = step_named(workflow, "gpu", "Run the gated suite")["run"]
    assert "python -m pytest tests/perf" in run
    for option in ("--perf-strict", "--perf-report perf-report", "--perf-device cuda", "--benchmark-json"):
        assert option in run, f"the gated run lacks {option}"
    installs = step_named(workflow, "gpu", "Install perfsuite")
    assert 'pip install -e ".[dev]"' in installs["run"]


def test_every_artifact_upload_runs_even_when_the_suite_failed(workflow):
    uploads = [
        (job, step)
        for job in workflow["jobs"]
        for step in steps(workflow, job)
        if str(step.get("uses", "")).startswith("actions/upload-artifact@")
    ]
    assert {step["with"]["path"] for _, step in uploads} >= {"perf-report/", "perf-report-cpu/"}
    for job, step in uploads:
        assert "always()" in str(step.get("if", "")), f"{job}: {step.get('name')} is skipped after a failure"
    report = step_named(workflow, "gpu", "Upload the report")
    assert report["if"] == "always()"


def test_the_summary_is_posted_once_by_the_plugin_not_by_a_step(workflow):
    for job in workflow["jobs"]:
        for step in steps(workflow, job):
            run = step.get("run", "")
            assert not ("summary.md" in run and "GITHUB_STEP_SUMMARY" in run), step.get("name")


def test_caches_are_keyed_on_the_model_list_and_the_base_commit(workflow):
    hf = step_named(workflow, "gpu", "Restore the Hugging Face cache")
    assert hf["with"]["path"] == "~/.cache/huggingface"
    assert "env.PERF_MODELS" in hf["with"]["key"]
    base = step_named(workflow, "gpu", "Restore the base branch's results")
    assert base["uses"].startswith("actions/cache/restore@")
    assert "github.event.pull_request.base.sha" in base["with"]["key"]
    save = step_named(workflow, "gpu", "Save them in the cache under this commit's sha")
    assert save["uses"].startswith("actions/cache/save@") and "github.sha" in save["with"]["key"]
    compare = step_named(workflow, "gpu", "Compare with the base branch (informative)")
    assert compare["continue-on-error"] is True


def test_cpu_smoke_job_uses_cpu_wheels_and_the_fast_cases(workflow):
    cpu = workflow["jobs"]["cpu-smoke"]
    assert cpu["runs-on"] == "ubuntu-latest"
    runs = "\n".join(step.get("run", "") for step in cpu["steps"])
    assert "--index-url https://download.pytorch.org/whl/cpu" in runs
    assert "python -m pytest tests/unit" in runs
    assert 'python -m pytest tests/perf -m "not slow"' in runs and "--perf-device cpu" in runs
    assert "--perf-strict" not in runs


def test_a_pull_request_installs_its_base_commit_in_a_second_worktree_and_venv(workflow):
    checkout = steps(workflow, "gpu")[0]
    assert checkout["uses"].startswith("actions/checkout@") and checkout["with"]["fetch-depth"] == 0
    base = step_named(workflow, "gpu", "Install the base commit in its own venv")
    assert base["if"] == "github.event_name == 'pull_request'" and base["id"] == "base"
    assert base["env"]["BASE_SHA"] == "${{ github.event.pull_request.base.sha }}"
    run = base["run"]
    assert 'git worktree add --detach "$RUNNER_TEMP/perf-base-src" "$BASE_SHA"' in run
    assert 'python -m venv "$RUNNER_TEMP/perf-base-venv"' in run
    assert '"$base_python" -m pip install -e "$RUNNER_TEMP/perf-base-src[dev]"' in run
    # The A/B gate is used only when the base has the worker; an older base says so in a notice.
    assert (
        "find_spec('perfsuite.ab.worker')" in run and 'echo "python=$base_python" >> "$GITHUB_OUTPUT"' in run
    )
    assert "::notice::" in run


def test_a_pull_request_gates_against_its_base_and_a_push_on_the_committed_baselines(workflow):
    ab = step_named(workflow, "gpu", "Run the gated suite against the base commit (A/B)")
    assert ab["if"] == "${{ github.event_name == 'pull_request' && steps.base.outputs.python != '' }}"
    assert ab["env"]["BASE_PYTHON"] == "${{ steps.base.outputs.python }}"
    for option in (
        '--perf-ab-base "$BASE_PYTHON"',
        "--perf-strict",
        "--perf-report perf-report",
        "--perf-device cuda",
    ):
        assert option in ab["run"], f"the A/B gate lacks {option}"
    committed = step_named(workflow, "gpu", "Run the gated suite")
    # On a push (or a pull request whose base has no A/B worker) the base step does not set python.
    assert committed["if"] == "${{ !inputs.update_baselines && steps.base.outputs.python == '' }}"
    assert "--perf-ab-base" not in committed["run"]
    names = [step.get("name") for step in steps(workflow, "gpu")]
    assert names.index("Install the base commit in its own venv") < names.index(ab["name"])
