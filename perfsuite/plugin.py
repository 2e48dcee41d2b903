"""pytest glue: ``--perf-*`` options, the parametrized ``perf_case`` fixture, and the end-of-run table.

This is the only module that knows about pytest. It is registered as the ``perfsuite`` entry of the
``pytest11`` group, so any repo with perfsuite installed gets the options and fixtures.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from perfsuite import hardware

if TYPE_CHECKING:
    import torch

    from perfsuite.baselines import Bounds, Policy
    from perfsuite.catalog import ModelSpec
    from perfsuite.gate import Check, Verdict
    from perfsuite.hardware import MachineInfo
    from perfsuite.matrix import Combo, Plan
    from perfsuite.runner import CaseResult, Reference, RunSettings

__all__ = ["PerfCase", "PerfSession"]

DEFAULT_PRESET = "ladder"
DEFAULT_MODEL = "tiny-sd"

# Idle OpenMP workers spin by default. On a small CPU runner the workers of eager torch and those of
# inductor-compiled C++ kernels then starve each other, and compiled calls run up to 100x slower
# than eager. Passive waiting removes that artifact; it must be set before torch loads OpenMP, which
# is why it happens at plugin import. A value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _preset(value: str) -> str:
    from perfsuite.matrix import PRESETS

    if value not in PRESETS:
        raise argparse.ArgumentTypeError(f"unknown preset {value!r}; choose one of: {', '.join(PRESETS)}")
    return value


def _device(value: str) -> str:
    if value == "auto":
        return value
    try:
        return hardware.validate_device(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; or 'auto' (CUDA when present, else CPU)") from None


def _models(value: str) -> list[str]:
    from perfsuite.catalog import available_models

    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"no model named; choose from {', '.join(available_models())}")
    for name in names:
        looks_like_path_or_hub_id = "/" in name or os.sep in name or os.path.isdir(name)
        if name not in available_models() and not looks_like_path_or_hub_id:
            raise argparse.ArgumentTypeError(
                f"unknown model {name!r}; choose from {', '.join(available_models())}, "
                "a local pipeline directory, or a cached hub id (org/name)"
            )
    return names


def _positive_int(minimum: int) -> Any:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {number}")
        return number

    return parse


def _profile(value: str) -> str:
    try:
        return hardware.validate_profile_id(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("perfsuite", "perfsuite: diffusion inference performance suite")
    group.addoption(
        "--perf-device",
        type=_device,
        default="auto",
        help="device to run on: auto (CUDA when present, else CPU), cpu, cuda or cuda:N. Default: auto.",
    )
    group.addoption(
        "--perf-model",
        type=_models,
        default=[DEFAULT_MODEL],
        help="comma-separated models: a catalog name (tiny-sd, tiny-sdxl, sd15, sdxl), a local "
        f"pipeline directory or a cached hub id. Default: {DEFAULT_MODEL}.",
    )
    group.addoption(
        "--perf-preset",
        type=_preset,
        default=DEFAULT_PRESET,
        help=f"which optimization combos to run: ladder, single, pairs or full. Default: {DEFAULT_PRESET}.",
    )
    group.addoption(
        "--perf-rounds",
        type=_positive_int(3),
        default=None,
        help="timed rounds per combo; each round times one reference and one candidate call. "
        "Default: 10 on CPU, 20 on CUDA.",
    )
    group.addoption(
        "--perf-warmup",
        type=_positive_int(1),
        default=None,
        help="untimed warm-up calls per combo; the first is the cold start (compile). "
        "Default: 2 on CPU, 3 on CUDA.",
    )
    group.addoption(
        "--perf-profile",
        type=_profile,
        default=None,
        help="hardware profile id to record results under (e.g. cuda-nvidia-h200). Default: detected.",
    )
    group.addoption(
        "--perf-baselines-dir",
        default=None,
        metavar="DIR",
        help="folder holding policy.toml and the stored baselines. Default: <rootdir>/baselines.",
    )
    group.addoption(
        "--perf-update-baselines",
        action="store_true",
        default=False,
        help="rewrite the stored baselines of the cases that ran (never policy.toml), once the session "
        "ends; an interrupted session writes nothing. History checks are skipped; policy checks stay.",
    )
    group.addoption(
        "--perf-strict",
        action="store_true",
        default=False,
        help="fail a case that has no stored baseline for this profile (for CI). "
        "Default: report it as missing.",
    )


@dataclass(frozen=True)
class PerfCase:
    """One test case: a model and a combo (its id is ``model/combo``)."""

    model: str
    combo: Combo

    @property
    def id(self) -> str:
        return f"{self.model}/{self.combo.id}"


@dataclass
class PerfSession:
    """Session state: the device, the models built so far, the references, and every result."""

    device: torch.device
    capabilities: hardware.Capabilities
    profile: str
    preset: str
    model_names: list[str]
    settings: RunSettings
    specs: dict[str, ModelSpec] = field(default_factory=dict)
    base_pipes: dict[str, Any] = field(default_factory=dict)
    references: dict[str, Reference] = field(default_factory=dict)
    plans: dict[str, Plan] = field(default_factory=dict)
    results: list[CaseResult] = field(default_factory=list)
    baselines_dir: Path = Path("baselines")
    policy: Policy | None = None
    strict: bool = False
    update: bool = False
    machine: MachineInfo | None = None
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    #: Outcome of --perf-update-baselines, filled at session finish for the terminal summary.
    update_report: list[str] = field(default_factory=list)

    def bounds(self, model: str, combo: str) -> Bounds:
        assert self.policy is not None
        return self.policy.bounds_for(model, combo, self.profile)

    def judge(self, result: CaseResult) -> Verdict:
        """Policy and history checks of one result; a malformed baseline file raises its error."""
        from perfsuite.baselines import MissingBaselineError, baseline_path, load_baseline
        from perfsuite.gate import judge

        measurement = result.to_dict()
        bounds = self.bounds(result.model, result.combo)
        path = baseline_path(self.baselines_dir, self.profile, result.model, result.combo)
        machine = self.machine.to_dict() if self.machine else None
        if self.update:
            return judge(result.model, result.combo, self.profile, measurement, bounds, None)
        try:
            baseline = load_baseline(self.baselines_dir, self.profile, result.model, result.combo)
        except MissingBaselineError as exc:
            return judge(
                result.model, result.combo, self.profile, measurement, bounds, None,
                baseline_file=path, missing_reason=str(exc),
            )  # fmt: skip
        return judge(result.model, result.combo, self.profile, measurement, bounds, baseline, machine=machine)

    def spec(self, model: str) -> ModelSpec:
        if model not in self.specs:
            from perfsuite.catalog import get_model

            self.specs[model] = get_model(model)
        return self.specs[model]

    def plan(self, model: str) -> Plan:
        if model not in self.plans:
            from perfsuite.matrix import build_plan

            family = self.spec(model).family
            self.plans[model] = build_plan(self.preset, self.device, self.capabilities, family)
        return self.plans[model]

    def base_pipe(self, model: str) -> Any:
        """The fp32 pipeline of ``model``, built once per session; never modified."""
        if model not in self.base_pipes:
            import torch

            self.base_pipes[model] = self.spec(model).build(self.device, torch.float32)
        return self.base_pipes[model]

    def fresh_pipe(self, model: str, dtype: str) -> Any:
        """A private copy of the base pipeline in ``dtype``, for one case to modify freely."""
        from perfsuite.optimizations import torch_dtype

        pipe = copy.deepcopy(self.base_pipe(model))
        return pipe.to(dtype=torch_dtype(dtype))

    def reference(self, model: str) -> Reference:
        if model not in self.references:
            from perfsuite.runner import Reference

            pipe = self.fresh_pipe(model, "fp32")
            self.references[model] = Reference.build(
                self.spec(model), pipe, self.device, self.settings.warmup
            )
        return self.references[model]


PERF_SESSION = pytest.StashKey[PerfSession]()
INDUCTOR_CACHE = pytest.StashKey[str]()


def _resolve_device(option: str) -> str:
    if option == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return option


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "perf: a performance case of the suite (one model x one optimization combo)",
        "compile: the combo uses torch.compile (slow to warm up)",
        "gpu: the combo needs a CUDA device",
        "slow: the combo is slow on this device (compile, or bf16/fp16/int8 on CPU)",
    ):
        config.addinivalue_line("markers", line)
    _check_options(config)


def _check_options(config: pytest.Config) -> None:
    """Reject a CUDA device that is absent and a model that cannot be found, before collection."""
    device = config.getoption("perf_device", "auto")
    if device not in ("auto", "cpu"):
        try:
            hardware.resolve_device(device)
        except ValueError as exc:
            raise pytest.UsageError(f"--perf-device: {exc}") from None
    from perfsuite.catalog import UnknownModelError, get_model

    for model in config.getoption("perf_model", [DEFAULT_MODEL]):
        try:
            get_model(model)
        except UnknownModelError as exc:
            raise pytest.UsageError(f"--perf-model: {exc}") from None


def _session(config: pytest.Config) -> PerfSession:
    """The session state, created on first use so that runs without perf tests never import torch."""
    if PERF_SESSION in config.stash:
        return config.stash[PERF_SESSION]
    import torch

    from perfsuite.runner import RunSettings

    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        # A fresh inductor cache per session: every compiled combo pays its real cold-start compile,
        # and nothing compiled by an earlier run (or another combo's leftovers on disk) hides it.
        cache_dir = tempfile.mkdtemp(prefix="perfsuite-inductor-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir
        config.stash[INDUCTOR_CACHE] = cache_dir
    try:
        device_name = hardware.resolve_device(_resolve_device(config.getoption("perf_device")))
    except ValueError as exc:
        raise pytest.UsageError(f"--perf-device: {exc}") from None
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    settings = RunSettings(
        warmup=config.getoption("perf_warmup") or (3 if cuda else 2),
        rounds=config.getoption("perf_rounds") or (20 if cuda else 10),
    )
    from perfsuite.baselines import BaselineFileError, load_policy

    baselines_dir = baselines_root(config)
    try:
        policy = load_policy(baselines_dir / "policy.toml")
    except BaselineFileError as exc:
        raise pytest.UsageError(
            f"{exc}\n(perfsuite reads policy.toml from --perf-baselines-dir, default <rootdir>/baselines)"
        ) from None
    profile = config.getoption("perf_profile") or hardware.profile_id(device_name)
    session = PerfSession(
        device=device,
        capabilities=hardware.capabilities(device_name),
        profile=profile,
        preset=config.getoption("perf_preset"),
        model_names=config.getoption("perf_model"),
        settings=settings,
        baselines_dir=baselines_dir,
        policy=policy,
        strict=config.getoption("perf_strict"),
        update=config.getoption("perf_update_baselines"),
        machine=hardware.collect_machine_info(device_name, profile),
    )
    config.stash[PERF_SESSION] = session
    return session


def baselines_root(config: pytest.Config) -> Path:
    """``--perf-baselines-dir``, relative to the invocation folder, or ``<rootdir>/baselines``."""
    option = config.getoption("perf_baselines_dir", None)
    if option:
        return Path(config.invocation_params.dir, option).resolve()
    return config.rootpath / "baselines"


def _marks(case: PerfCase, session: PerfSession) -> list[pytest.MarkDecorator]:
    from perfsuite.optimizations import get_technique

    techniques = [get_technique(t) for t in case.combo.techniques]
    marks = [pytest.mark.perf]
    names = {m for t in techniques for m in t.markers}
    if session.device.type == "cpu" and any(t.slow_on_cpu for t in techniques):
        names.add("slow")
    marks.extend(getattr(pytest.mark, name) for name in sorted(names))
    return marks


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "perf_case" not in metafunc.fixturenames:
        return
    session = _session(metafunc.config)
    params = []
    for model in session.model_names:
        plan = session.plan(model)
        for combo in plan.cases:
            case = PerfCase(model, combo)
            params.append(pytest.param(case, id=case.id, marks=_marks(case, session)))
        for pruned in plan.pruned:
            case = PerfCase(model, pruned.combo)
            skip = pytest.mark.skip(reason=f"pruned: {pruned.reason}")
            params.append(pytest.param(case, id=case.id, marks=[pytest.mark.perf, skip]))
    metafunc.parametrize("perf_case", params)


@pytest.fixture(scope="session")
def perf_session(request: pytest.FixtureRequest) -> PerfSession:
    """The perfsuite session state (device, settings, built models, results)."""
    return _session(request.config)


@pytest.fixture
def perf_run(perf_session: PerfSession, benchmark: Any, request: pytest.FixtureRequest) -> Any:
    """A callable that measures a :class:`PerfCase`, times it through pytest-benchmark, and records it."""
    from perfsuite.baselines import BaselineFileError
    from perfsuite.optimizations import Target, Unsupported
    from perfsuite.runner import run_case

    def run(case: PerfCase) -> CaseResult:
        suspects.clear()
        spec = perf_session.spec(case.model)
        reference = perf_session.reference(case.model)
        target = Target(
            perf_session.device,
            perf_session.capabilities,
            spec.family,
            case.combo.dtype,
            frozenset(case.combo.techniques),
        )
        if case.combo.compiles:
            reporter = request.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write(f" [compiling {case.id}: the first call can take minutes] ", yellow=True)
        try:
            result = run_case(
                spec,
                case.combo,
                lambda dtype: perf_session.fresh_pipe(case.model, dtype),
                reference,
                target,
                perf_session.settings,
                rounds_runner=_benchmark_rounds(benchmark),
                remeasure=lambda first: _suspect(perf_session, first, suspects),
            )
        except Unsupported as exc:
            pytest.skip(f"unsupported on {case.model}: {exc}")
        perf_session.results.append(result)
        benchmark.extra_info.update(result.to_dict())
        benchmark.extra_info["profile"] = perf_session.profile
        try:
            verdict = perf_session.judge(result)
        except BaselineFileError as exc:
            pytest.fail(f"{case.id}: the stored baseline cannot be used: {exc}", pytrace=False)
        if suspects:
            first = ", ".join(f"{c.field} ({c.kind})" for c in suspects)
            outcome = "confirmed by" if verdict.timing_failures else "not confirmed by"
            verdict = verdict.with_notes(f"a first timing pass failed {first}; {outcome} a second pass")
        perf_session.verdicts[case.id] = verdict
        benchmark.extra_info["verdict"] = verdict.status
        command = update_command(request, perf_session, case)
        if not verdict.passed or (perf_session.strict and verdict.missing):
            pytest.fail(verdict.message(command, strict=perf_session.strict), pytrace=False)
        return result

    suspects: list[Check] = []
    return run


def _suspect(session: PerfSession, first: CaseResult, suspects: list[Check]) -> bool:
    """True when the first timing pass fails a timing check: then it is measured once more."""
    from perfsuite.baselines import BaselineFileError

    try:
        suspects[:] = session.judge(first).timing_failures
    except BaselineFileError:
        return False  # the same error is raised, with its message, when the result is judged
    return bool(suspects)


def update_command(request: pytest.FixtureRequest, session: PerfSession, case: PerfCase) -> str:
    """The command that re-measures this one case and rewrites its stored baseline."""
    config = request.config
    parts = ["pytest", f"'{request.node.nodeid}'", "--perf-update-baselines"]
    if session.model_names != [DEFAULT_MODEL]:
        parts.append(f"--perf-model={case.model}")
    if session.preset != DEFAULT_PRESET:
        parts.append(f"--perf-preset={session.preset}")
    for option in ("perf_device", "perf_profile", "perf_baselines_dir"):
        value = config.getoption(option, None)
        if value not in (None, "auto"):
            parts.append(f"--{option.replace('_', '-')}={value}")
    return " ".join(parts)


def _benchmark_rounds(benchmark: Any) -> Any:
    """Interleaved rounds timed by ``benchmark.pedantic``: the reference runs in setup (even rounds)
    or teardown (odd rounds), never inside pytest-benchmark's timed region."""
    from perfsuite.runner import interleaved_rounds

    if benchmark is None or getattr(benchmark, "disabled", False):
        return interleaved_rounds

    def rounds_runner(candidate: Any, reference: Any, rounds: int) -> tuple[list[float], list[float]]:
        cand: list[float] = []
        ref: list[float] = []
        index = [0]

        def setup() -> None:
            if index[0] % 2 == 0:
                ref.append(reference())

        def teardown() -> None:
            if index[0] % 2 == 1:
                ref.append(reference())
            index[0] += 1

        def target() -> None:
            cand.append(candidate())

        benchmark.pedantic(
            target, setup=setup, teardown=teardown, rounds=rounds, warmup_rounds=0, iterations=1
        )
        return cand, ref

    return rounds_runner


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    perf = session.config.stash.get(PERF_SESSION, None)
    if perf is None or not perf.update:
        return
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        perf.update_report = [
            "perfsuite: the session was interrupted; no baseline was written (the stored ones are intact)"
        ]
        return
    perf.update_report = write_updates(perf)


def write_updates(perf: PerfSession) -> list[str]:
    """Write the baselines of every case measured this session, all staged before any is replaced.

    Returns the report lines: per case, what changed (old -> new).
    """
    from perfsuite.baselines import (
        BaselineFileError,
        MissingBaselineError,
        atomic_write_many,
        current_commit,
        diff_measurements,
        load_baseline,
        render_baseline,
    )

    assert perf.machine is not None
    commit = current_commit(perf.baselines_dir)
    files: dict[Path, bytes] = {}
    folder = perf.baselines_dir / perf.profile
    lines = [f"perfsuite: baselines updated under {folder} (policy.toml untouched)"]
    for result in perf.results:
        measurement = result.to_dict()
        path, text = render_baseline(
            perf.baselines_dir, perf.profile, result.model, result.combo,
            measurement=measurement, machine=perf.machine, commit=commit,
        )  # fmt: skip
        files[path] = text.encode("utf-8")
        try:
            old = load_baseline(perf.baselines_dir, perf.profile, result.model, result.combo)
        except MissingBaselineError:
            lines.append(f"  {result.case_id}: new baseline {path}")
            continue
        except BaselineFileError as exc:
            lines.append(f"  {result.case_id}: replaces an unreadable file ({exc})")
            continue
        changes = "; ".join(str(c) for c in diff_measurements(old, measurement) if c.changed)
        lines.append(f"  {result.case_id}: {changes or 'unchanged'}")
    if not files:
        return ["perfsuite: --perf-update-baselines: no case was measured, so no baseline was written"]
    atomic_write_many(files)
    lines.append(f"  {len(files)} file(s) written; review them with `git diff {perf.baselines_dir}`")
    return lines


def pytest_unconfigure(config: pytest.Config) -> None:
    cache_dir = config.stash.get(INDUCTOR_CACHE, None)
    if cache_dir is not None:
        shutil.rmtree(cache_dir, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    session = config.stash.get(PERF_SESSION, None)
    if session is None or not (session.results or session.plans):
        return
    from perfsuite.report import summary_lines

    lines = summary_lines(session.results, session.plans, session.device, session.profile, session.verdicts)
    for line in lines:
        terminalreporter.write_line(line)
    missing = [v.case_id for v in session.verdicts.values() if v.missing]
    if missing and not session.update:
        label = "FAILED (--perf-strict)" if session.strict else "reported, not failed (no --perf-strict)"
        terminalreporter.write_line(
            f"perfsuite: {len(missing)} case(s) have no stored baseline for profile {session.profile} "
            f"under {session.baselines_dir}: {label}. Create them with: pytest tests/perf "
            "--perf-update-baselines (same selection options as this run)",
            yellow=True,
        )
    for line in session.update_report:
        terminalreporter.write_line(line)
