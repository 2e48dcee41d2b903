"""--perf-ab-base end to end, through pytester: base and head in one run, the verdicts, the report, a
base that cannot build a combo, a base worker killed mid-case, and Ctrl-C. Every run checks that no
base worker outlives it (processes are found by a token in their environment)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

FAST = ("--perf-device=cpu", "--perf-steps=2", "--perf-rounds=3", "--perf-warmup=1", "-p", "no:randomly")
AB = (
    "--perf-ab-attempt-pairs=4",
    "--perf-ab-min-pairs=8",
    "--perf-ab-max-pairs=16",
    "--perf-ab-max-seconds=120",
)
TOKEN_ENV = "PERFSUITE_AB_TEST_TOKEN"

# In the head only (a conftest, which the base worker never loads): a technique the base does not
# know; a UNet that takes five times as long when its weights are channels_last (so large that a
# loaded 2-core machine, whose calls vary 2x, still decides within 16 pairs); and, for fp32, a head
# whose calls read 2x their time in every other attempt (of 4 pairs), so that the attempts disagree
# and the head/base ratio never settles on either side of its bound of 1.5 (an A/A ratio cannot be
# relied on to stay undecided: on a loaded machine it has decided at 0.96).
SLOW_CHANNELS_LAST = """
import time

import diffusers
import torch

_forward = diffusers.UNet2DConditionModel.forward


def forward(self, *args, **kwargs):
    started = time.perf_counter()
    out = _forward(self, *args, **kwargs)
    if self.conv_in.weight.is_contiguous(memory_format=torch.channels_last):  # a 3x3 kernel: NHWC only
        time.sleep(4 * (time.perf_counter() - started))
    return out


diffusers.UNet2DConditionModel.forward = forward
"""

# The head's code is what this pytest imports and what its workers import: the UNet change goes into
# both, the conftest for this process and a site hook for the head's workers (--perf-ab-head).
HEAD_CONFTEST = (
    SLOW_CHANNELS_LAST
    + """
from perfsuite.ab import head as ab_head
from perfsuite.optimizations import Technique


def pytest_perfsuite_techniques():
    return [
        Technique(
            name="head-only", group="head-only", summary="a technique only the head knows", rank=90,
            verify=lambda pipe, target: ["head-only: nothing to verify"],
        )
    ]

_compare = ab_head.ABSession.compare
_run_pairs = ab_head.run_pairs


def alternating(head_call):
    calls = [0]

    def call():
        seconds = head_call()
        calls[0] += 1
        return 2 * seconds if (calls[0] - 1) // 4 % 2 == 0 else seconds

    return call


def compare(self, slot, result, *args):
    if slot.prepared.combo.id != "fp32":
        return _compare(self, slot, result, *args)
    ab_head.run_pairs = lambda head_call, *args, **kwargs: _run_pairs(alternating(head_call), *args, **kwargs)
    try:
        return _compare(self, slot, result, *args)
    finally:
        ab_head.run_pairs = _run_pairs


ab_head.ABSession.compare = compare
"""
)

TOLERANCES = """
[[rule]]
combo = '*'
ab_max_pairs = 16
ab_max_seconds = 120
note = "the caps of AB, from policy instead of the command line"

[[rule]]
combo = 'fp32'
ab_tolerance = 0.5
note = "head calls read 2x in every other attempt: the interval spans 1.5, so the comparison cannot decide"

[[rule]]
combo = 'fp32+sdpa-math'
ab_tolerance = 9.0
ab_max_pairs = 24
note = "A/A against a tenfold bound: decided at once, however loaded the machine; its own cap, a third look"
"""


def leftover_workers(token: str) -> list[int]:
    """Pids of live processes that carry ``token`` in their environment."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "status").read_text()
        except OSError:
            continue
        if f"{TOKEN_ENV}={token}".encode() in environ and "State:\tZ" not in state:
            found.append(int(entry.name))
    return found


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    value = uuid.uuid4().hex
    monkeypatch.setenv(TOKEN_ENV, value)
    return value


def wrapper_with_hook(folder: Path, name: str, hook: str, exports: str = "") -> str:
    """An interpreter: this python with ``hook`` as its sitecustomize (first on PYTHONPATH)."""
    hooks = folder / f"{name}-hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(hook)
    wrapper = folder / name
    path = f"export PYTHONPATH={hooks}${{PYTHONPATH:+:$PYTHONPATH}}\n"
    wrapper.write_text(f'#!/bin/sh\n{exports}{path}exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def test_base_and_head_in_one_run(project, token, tmp_path):
    project.makeconftest(HEAD_CONFTEST)
    head = wrapper_with_hook(tmp_path, "head-python", SLOW_CHANNELS_LAST)
    with open(project.path / "baselines" / "policy.toml", "a", encoding="utf-8") as policy:
        policy.write(TOLERANCES)
    measured = ("--perf-preset=single", "-k", "fp32] or fp32+sdpa-math or fp32+channels-last")
    project.runpytest_subprocess(*FAST, *measured, "--perf-update-baselines").assert_outcomes(passed=3)

    selection = ("--perf-preset=single", "-k", "fp32] or fp32+sdpa-math or fp32+channels-last or head-only")
    result = project.runpytest_subprocess(
        *FAST,
        *AB[:2],  # the caps come from the policy's rules
        *selection,
        f"--perf-ab-base={sys.executable}",
        f"--perf-ab-head={head}",
        "--perf-ab-pool=2",
        "--perf-strict",
        "--perf-report=report",
        "-rs",
    )
    result.assert_outcomes(passed=1, failed=2, skipped=1)
    result.stdout.fnmatch_lines_random(
        [
            "*SKIPPED*the base (*) cannot run tiny-sd/fp32+head-only: cannot parse combo*unknown token(s)*",
            "*latency (ab): INCONCLUSIVE*",
            "*the interval still holds 1.500 when sampling stopped*",
            "*latency (ab): FAIL*",
            "*the whole interval lies above 1.050: the head is slower than the base*",
            "perfsuite A/B: head (this environment) vs base *",
            "*same versions",
        ]
    )
    assert leftover_workers(token) == []

    document = json.loads((project.path / "report" / "results.json").read_text())
    cases = {case["combo"]: case for case in document["cases"]}
    assert cases["fp32"]["status"] == "inconclusive" and cases["fp32+sdpa-math"]["status"] == "pass"
    undecided = cases["fp32"]["measurement"]["ab"]
    assert undecided["decision"] == "inconclusive"
    assert undecided["ratio_ci"][0] < 1.5 < undecided["ratio_ci"][1]
    assert undecided["max_pairs"] == 16 and undecided["max_seconds"] == 120
    assert undecided["planned_looks"] == [8, 16]
    assert cases["fp32+channels-last"]["status"] == "fail"
    same = cases["fp32+sdpa-math"]["measurement"]["ab"]
    assert same["pairs"] in (8, 16, 24) and same["decision"] == "pass" and same["version_changes"] == []
    assert same["max_pairs"] == 24 and same["planned_looks"] == [8, 16, 24]  # this combo's own rule
    assert same["fidelity"]["ssim"] == 1.0  # same code, same seed: the very same image
    assert len(same["head_samples_s"]) == len(same["base_samples_s"]) == same["pairs"]
    # Eager: both sides prepared the case again between its attempts of 4 pairs.
    assert same["refreshed"] is True and same["attempts"] == same["pairs"] // 4
    assert same["attempt"] == [pair // 4 for pair in range(same["pairs"])] and same["refresh_s"] > 0
    # ... each attempt between a base and a head process of its own: an offset lasts one attempt.
    assert len(same["base_pids"]) == len(same["head_pids"]) == same["attempts"]
    assert len(set(same["base_pids"]) | set(same["head_pids"])) == 2 * same["attempts"]
    # Attempts 0 and 1 of every case ran in the session's two kept pairs, later attempts in new ones.
    compared = [
        cases[combo]["measurement"]["ab"] for combo in ("fp32", "fp32+sdpa-math", "fp32+channels-last")
    ]
    for side in ("base_pids", "head_pids"):
        for attempt in (0, 1):
            assert len({ab[side][attempt] for ab in compared}) == 1, (side, attempt, compared)
        later = [pid for ab in compared for pid in ab[side][2:]]
        assert len(later) == len(set(later)) and not set(later) & {compared[0][side][0], compared[0][side][1]}
    assert sorted(ab["kept_attempts"] for ab in compared) == [0, 2, 2] and same["pool"] == 2
    # Starting pool pair 1 (its processes, their pipelines and references) fell in the first case's
    # preparations, and the time cap left it out; later cases found all that done.
    opener = next(ab for ab in compared if ab["kept_attempts"] == 0)
    assert 0 < opener["startup_s"] <= opener["refresh_s"]
    assert all(ab["startup_s"] < 0.1 * opener["startup_s"] for ab in compared if ab["kept_attempts"])
    assert same["head"]["python_command"] == head
    assert same["base"]["machine"]["versions"] == document["machine"]["versions"]
    slow = cases["fp32+channels-last"]["measurement"]["ab"]
    assert slow["decision"] == "regression" and slow["ratio"] > 2
    assert "fp32+head-only" in {entry["combo"] for entry in document["skipped"]}
    summary = (project.path / "report" / "summary.md").read_text()
    assert "### A/B: head vs base" in summary and "1 inconclusive" in summary
    html = (project.path / "report" / "report.html").read_text()
    assert html.count('class="chart ab-chart"') == 3

    compared = project.run("perfsuite", "compare", "report/results.json", "report/results.json")
    assert compared.ret == 0, compared.stdout.str() + compared.stderr.str()


# In the base only (a site hook its wrapper puts on PYTHONPATH): the first worker is killed during its
# third timed call; a marker file keeps the next worker alive.
KILLER = """
import os
import signal
import sys
from pathlib import Path

from perfsuite.ab import worker

_call = worker.Worker.call
_calls = [0]
_marker = Path(os.environ["PERFSUITE_AB_TEST_MARKER"])


def call(self, args):
    _calls[0] += 1
    if _calls[0] == 3 and not _marker.exists():
        _marker.write_text(str(os.getpid()))
        print("planted: this base worker is killed in a timed call", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("PERFSUITE_AB_TEST_STARTED"):
        Path(os.environ["PERFSUITE_AB_TEST_STARTED"]).touch()
    return _call(self, args)


worker.Worker.call = call
"""


def killing_base(folder: Path, marker: Path, started: Path | None = None) -> str:
    exports = f"export PERFSUITE_AB_TEST_MARKER={marker}\n"
    if started is not None:
        exports += f"export PERFSUITE_AB_TEST_STARTED={started}\n"
    return wrapper_with_hook(folder, "base-python", KILLER, exports)


def test_a_base_worker_killed_mid_case_fails_only_that_case_and_leaves_no_process(project, token, tmp_path):
    marker = tmp_path / "killed"
    base = killing_base(tmp_path, marker)
    selection = ("--perf-preset=single", "-k", "fp32] or fp32+sdpa-math")
    result = project.runpytest_subprocess(*FAST, *AB, *selection, f"--perf-ab-base={base}")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*tiny-sd/fp32: the A/B comparison with the base failed: "
            "the base worker was killed by SIGKILL during 'call'*",
            "*planted: this base worker is killed in a timed call*",
        ]
    )
    assert marker.exists()
    assert "perfsuite A/B" in result.stdout.str()  # the next case ran with a new worker
    assert leftover_workers(token) == []


def test_ctrl_c_leaves_no_base_worker_behind(project, token, tmp_path):
    marker = tmp_path / "killed"
    marker.write_text("never kill")  # only signal that the pairs have started
    started = tmp_path / "started"
    base = killing_base(tmp_path, marker, started)
    args = (*FAST, "--perf-ab-min-pairs=400", "--perf-ab-max-pairs=400", "--perf-ab-max-seconds=600",
            "--perf-preset=single", "-k", "fp32]", f"--perf-ab-base={base}")  # fmt: skip
    # A shell's background job (`command &`, as a CI runner or nohup may start this suite) inherits
    # SIGINT ignored, and Python then never installs its handler: give the run the default, as a
    # terminal would, so that the test sends the Ctrl-C a user would.
    process = project.popen(
        [sys.executable, "-m", "pytest", *args],
        stdout=None,
        stderr=None,
        stdin=None,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 600
    while not started.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert started.exists(), "the A/B pairs never started"
    assert leftover_workers(token), "the base worker should be running now"
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == pytest.ExitCode.INTERRUPTED
    assert leftover_workers(token) == []


def test_a_bad_base_is_refused_before_anything_runs(project, tmp_path):
    missing = project.runpytest_subprocess(
        "--perf-device=cpu", f"--perf-ab-base={tmp_path / 'nope' / 'python'}"
    )
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(
        ["ERROR: --perf-ab-base: */nope/python does not exist; give the python of the base*"]
    )
    bare = tmp_path / "bare-python"
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    unimportable = project.runpytest_subprocess("--perf-device=cpu", f"--perf-ab-base={bare}")
    assert unimportable.ret == pytest.ExitCode.USAGE_ERROR
    unimportable.stderr.fnmatch_lines(["ERROR: --perf-ab-base: *bare-python cannot import perfsuite*"])
    pairs = project.runpytest_subprocess(
        f"--perf-ab-base={sys.executable}", "--perf-ab-min-pairs=20", "--perf-ab-max-pairs=10"
    )
    assert pairs.ret == pytest.ExitCode.USAGE_ERROR
    flags = "--perf-ab-attempt-pairs/--perf-ab-min-pairs/--perf-ab-max-pairs"
    pairs.stderr.fnmatch_lines([f"ERROR: {flags}: need 2 attempts <= min_pairs <= max_pairs*"])
    odd = project.runpytest_subprocess(f"--perf-ab-base={sys.executable}", "--perf-ab-attempt-pairs=5")
    assert odd.ret == pytest.ExitCode.USAGE_ERROR
    odd.stderr.fnmatch_lines([f"ERROR: {flags}: attempt_pairs must be an even number of at least 2, got 5"])
    both = project.runpytest_subprocess(f"--perf-ab-base={sys.executable}", "--perf-update-baselines")
    assert both.ret == pytest.ExitCode.USAGE_ERROR
    both.stderr.fnmatch_lines(["*--perf-ab-base compares with another environment*run them separately*"])
    alone = project.runpytest_subprocess(f"--perf-ab-head={sys.executable}")
    assert alone.ret == pytest.ExitCode.USAGE_ERROR
    alone.stderr.fnmatch_lines(["ERROR: --perf-ab-head names the head's interpreter*add --perf-ab-base"])
    pool = project.runpytest_subprocess(f"--perf-ab-base={sys.executable}", "--perf-ab-pool=-1")
    assert pool.ret == pytest.ExitCode.USAGE_ERROR
    pool.stderr.fnmatch_lines(["*argument --perf-ab-pool: must be at least 0, got -1"])
    other = tmp_path / "other" / "perfsuite"  # another checkout, with the worker module
    (other / "ab").mkdir(parents=True)
    for module in ("__init__.py", "ab/__init__.py", "ab/worker.py"):
        (other / module).write_text("__version__ = '0.0.1'\n")
    foreign = wrapper_with_hook(tmp_path, "foreign-python", "", f"export PYTHONPATH={other.parent}\n")
    wrong = project.runpytest_subprocess(f"--perf-ab-base={sys.executable}", f"--perf-ab-head={foreign}")
    assert wrong.ret == pytest.ExitCode.USAGE_ERROR
    elsewhere = "imports perfsuite from */other/perfsuite, this pytest from *"
    wrong.stderr.fnmatch_lines([f"ERROR: --perf-ab-head: *foreign-python {elsewhere}"])


def test_helper_finds_processes_by_token(token):
    import subprocess

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert sleeper.pid in leftover_workers(token)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert sleeper.pid not in leftover_workers(token)
