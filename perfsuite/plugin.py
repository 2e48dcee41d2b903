"""pytest glue: ``--perf-*`` options, the parametrized ``perf_case`` fixture, and the end-of-run table.

This is the only module that knows about pytest. It is registered as the ``perfsuite`` entry of the
``pytest11`` group, so any repo with perfsuite installed gets the options and fixtures.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from perfsuite import extensions, hardware, options
from perfsuite.session import PerfCase, PerfSession, worker_payload, write_session_report, write_updates

if TYPE_CHECKING:
    from perfsuite.ab.head import ABSession, ABSettings
    from perfsuite.baselines import Bounds, Policy
    from perfsuite.gate import Check
    from perfsuite.runner import CaseResult

__all__ = ["PerfCase", "PerfSession"]

DEFAULT_PRESET, DEFAULT_MODEL = options.DEFAULT_PRESET, options.DEFAULT_MODEL

# Idle OpenMP workers spin by default. On a small CPU runner the workers of eager torch and those of
# inductor-compiled C++ kernels then starve each other, and compiled calls run up to 100x slower
# than eager. Passive waiting removes that artifact; it must be set before torch loads OpenMP, which
# is why it happens at plugin import. A value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """``pytest_perfsuite_models`` and ``pytest_perfsuite_techniques`` (see :mod:`perfsuite.hookspecs`)."""
    from perfsuite import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("perfsuite", "perfsuite: diffusion inference performance suite")
    group.addoption(
        "--perf-device",
        type=options.device,
        default="auto",
        help="device to run on: auto (CUDA when present, else CPU), cpu, cuda or cuda:N. Default: auto.",
    )
    group.addoption(
        "--perf-model",
        type=options.models,
        default=[DEFAULT_MODEL],
        help="comma-separated models: a registered name (`perfsuite models` lists them), a saved "
        "pipeline directory (its baselines are filed under the pipeline class and a hash of its "
        "configs, whatever the spelling of the path), NAME=PATH (a directory filed under NAME), or a "
        f"cached hub id. Default: {DEFAULT_MODEL}.",
    )
    group.addoption(
        "--perf-preset",
        type=options.preset,
        default=DEFAULT_PRESET,
        help="which optimization combos to run: ladder, single, pairs, full, flux-fast (the ladder of "
        f"huggingface/flux-fast) or caches (each diffusers step cache alone). Default: {DEFAULT_PRESET}.",
    )
    group.addoption(
        "--perf-rounds",
        type=options.positive_int(3),
        default=None,
        help="timed rounds per combo; each round times one reference and one candidate call. "
        "Default: 10 on CPU, 20 on CUDA.",
    )
    group.addoption(
        "--perf-warmup",
        type=options.positive_int(1),
        default=None,
        help="untimed warm-up calls per combo; the first is the cold start (compile). "
        "Default: 2 on CPU, 3 on CUDA.",
    )
    group.addoption(
        "--perf-steps",
        type=options.positive_int(1),
        default=None,
        help="denoising steps per call. Default: the model's own (30 for sd15/sdxl as in the guide, "
        "8 for the tiny models). Baselines are only compared at the same steps and size.",
    )
    group.addoption(
        "--perf-size",
        type=options.size,
        default=None,
        metavar="HxW",
        help="image height x width in pixels, multiples of 8. Default: the model's native size "
        "(512x512 sd15, 1024x1024 sdxl, 128x128 tiny).",
    )
    group.addoption(
        "--perf-shard",
        type=options.shard,
        default=None,
        metavar="I/N",
        help="run only shard I of N (from 1) of the perf cases, for splitting one matrix across CI "
        "jobs. Cases are sorted by id and dealt round-robin, so the split is the same on every "
        "machine and the N shards cover every case exactly once.",
    )
    group.addoption(
        "--perf-profile",
        type=options.profile,
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
        "--perf-report",
        default=None,
        metavar="DIR",
        help="write results.json, summary.md and report.html (charts, image grid) into DIR; the "
        "summary is also appended to $GITHUB_STEP_SUMMARY when that is set. Default: no report.",
    )
    group.addoption(
        "--perf-list",
        action="store_true",
        default=False,
        help="list every registered model and technique with its source (perfsuite's, installed "
        "packages' entry points, this repository's pytest_perfsuite_* hooks and --perf-model), then exit.",
    )
    group.addoption(
        "--perf-strict",
        action="store_true",
        default=False,
        help="fail a case that has no stored baseline for this profile, or whose A/B comparison stayed "
        "inconclusive (for CI). Default: report it.",
    )
    group.addoption(
        "--perf-ab-base",
        default=None,
        metavar="PYTHON",
        help="also measure every case in another environment, the base: PYTHON is its interpreter (a "
        "venv's python, or a script that execs one) with its own perfsuite, torch and diffusers. Base and "
        "head (this run) are timed call by call in ABBA order, and the head/base ratio is gated on "
        "ab_tolerance from policy.toml. Default: no base.",
    )
    group.addoption(
        "--perf-ab-head",
        default=None,
        metavar="PYTHON",
        help="A/B: the interpreter of the head's workers, which time the head's side of each attempt of "
        "an eager case (a script that sets variables and execs a python of this environment; it must "
        "import this perfsuite). Default: this pytest's python.",
    )
    group.addoption(
        "--perf-ab-attempt-pairs",
        type=options.positive_int(2),
        default=10,
        help="A/B: pairs (one base and one head call each) per attempt; each attempt of an eager combo "
        "runs between a base and a head process of its own, which prepare the case anew, and the "
        "interval counts attempts. Even. Default: 10.",
    )
    group.addoption(
        "--perf-ab-pool",
        type=options.positive_int(0),
        default=8,
        help="A/B: pairs of worker processes (base and head) kept from one eager case to the next; "
        "attempt k of every case runs in the k-th pair, attempts past them in a new pair each. Each "
        "pair holds two Python processes with torch (about 0.5 GB each on a CPU, plus a CUDA context "
        "on a GPU). 0: a new pair for every attempt. Default: 8.",
    )
    group.addoption(
        "--perf-ab-min-pairs",
        type=options.positive_int(2),
        default=40,
        help="A/B: pairs before the first look at the ratio (two attempts at least); doubled while "
        "undecided. Default: 40.",
    )
    group.addoption(
        "--perf-ab-max-pairs",
        type=options.positive_int(2),
        default=None,
        help="A/B: at most this many pairs per case; undecided then, the case is inconclusive. Default: "
        "ab_max_pairs from policy.toml where a rule sets it, else 160; given here, it holds for every case.",
    )
    group.addoption(
        "--perf-ab-max-seconds",
        type=options.positive_float,
        default=None,
        help="A/B: stop taking pairs of a case after this many seconds of pairs and preparations between "
        "attempts (the first batch always runs; starting the session's pool of workers is not counted); "
        "undecided then, the case is inconclusive. Default: ab_max_seconds from policy.toml where a rule "
        "sets it, else 300; given here, it holds for every case.",
    )


PERF_SESSION = pytest.StashKey[PerfSession]()
INDUCTOR_CACHE = pytest.StashKey[str]()
#: A usage error met while collecting, raised once collection is over (see pytest_generate_tests).
DEFERRED_ERROR = pytest.StashKey[pytest.UsageError]()
#: Whether this process's session runs on perfsuite's shipped default policy.
DEFAULT_POLICY = pytest.StashKey[bool]()
AB_SESSION: pytest.StashKey[ABSession] = pytest.StashKey()


def _start_ab(config: pytest.Config) -> None:
    """``--perf-ab-base``: check the base interpreter and start its worker, or refuse with one line."""
    python = config.getoption("perf_ab_base", None)
    if not python:
        if config.getoption("perf_ab_head", None):
            raise pytest.UsageError(
                "--perf-ab-head names the head's interpreter of an A/B run: add --perf-ab-base"
            )
        return
    from perfsuite.ab.head import ABSession, ABSettings, WorkerStartError

    if config.getoption("perf_update_baselines", False):
        raise pytest.UsageError(
            "--perf-ab-base compares with another environment and --perf-update-baselines records this "
            "one: run them separately"
        )
    try:
        # The caps given on the command line; else the defaults, which a policy rule may override per case.
        caps = {
            "max_pairs": config.getoption("perf_ab_max_pairs"),
            "max_seconds": config.getoption("perf_ab_max_seconds"),
        }
        settings = ABSettings(
            python,
            head_python=config.getoption("perf_ab_head", None),
            min_pairs=config.getoption("perf_ab_min_pairs"),
            attempt_pairs=config.getoption("perf_ab_attempt_pairs"),
            pool=config.getoption("perf_ab_pool"),
            **{key: value for key, value in caps.items() if value is not None},
        )
    except ValueError as exc:
        flags = "--perf-ab-attempt-pairs/--perf-ab-min-pairs/--perf-ab-max-pairs"
        raise pytest.UsageError(f"{flags}: {exc}") from None
    ab = ABSession(settings)
    try:
        ab.start()
    except WorkerStartError as exc:
        raise pytest.UsageError(str(exc)) from None
    if _xdist_controller(config):
        ab.close()  # the check is done; each xdist worker starts its own base worker
        return
    config.stash[AB_SESSION] = ab


def _xdist_controller(config: pytest.Config) -> bool:
    workers = config.getoption("numprocesses", None) if config.pluginmanager.hasplugin("xdist") else None
    return bool(workers) and _xdist_workers(config) is None


def _xdist_workers(config: pytest.Config) -> tuple[int, int] | None:
    """(this worker's index, worker count) in a pytest-xdist worker, else None."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return None
    return int(str(workerinput["workerid"]).removeprefix("gw")), int(workerinput["workercount"])


def _worker_device(config: pytest.Config) -> str:
    """The device of this process. Under ``pytest -n N``, worker k gets ``cuda:k``: one GPU per worker,
    so no two timed combos ever share a GPU. On CPU each worker gets an equal share of the cores."""
    option = config.getoption("perf_device")
    device = _resolve_device(option)
    workers = _xdist_workers(config)
    if workers is None:
        return device
    index, count = workers
    if device == "cpu":
        import torch

        torch.set_num_threads(max(1, hardware.usable_cpu_cores() // count))
        return device
    if option in ("auto", "cuda"):
        return f"cuda:{index}"
    if count > 1:
        raise pytest.UsageError(
            f"--perf-device={option} with {count} xdist workers would time {count} combos on one GPU at "
            "once; use --perf-device=cuda (worker k then runs on cuda:k) or drop -n"
        )
    return device


def _check_workers(config: pytest.Config) -> None:
    """``pytest -n N``: at most one worker per GPU, and on CPU at most one per core."""
    workers = config.getoption("numprocesses", None) if config.pluginmanager.hasplugin("xdist") else None
    if not isinstance(workers, int) or workers <= 1 or _xdist_workers(config) is not None:
        return
    device = config.getoption("perf_device", "auto")
    cores = hardware.usable_cpu_cores()
    if device == "cpu" or (device == "auto" and not _cuda_count()):
        if workers > cores:
            raise pytest.UsageError(
                f"pytest -n {workers} on CPU: this machine has {cores} usable core(s); use at most "
                f"-n {cores} (each worker gets an equal share of the cores)"
            )
        return
    gpus = _cuda_count()
    if workers > gpus:
        raise pytest.UsageError(
            f"pytest -n {workers} on CUDA needs one GPU per worker; this machine has {gpus}. "
            f"Use -n {gpus} or fewer, or --perf-shard to split the matrix across machines"
        )


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


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
    extensions.register_session_entries(config)
    _check_options(config)
    _check_workers(config)
    _check_policy_before_workers(config)
    _start_ab(config)


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """``--perf-list``: print the registries (after the hooks registered theirs) and exit."""
    if not config.getoption("perf_list", False):
        return None
    from _pytest.main import wrap_session  # what pytest's own --fixtures and --markers run under

    return wrap_session(config, extensions.show_registries)


def _check_options(config: pytest.Config) -> None:
    """Reject a CUDA device that is absent and a model that cannot be found, before collection."""
    device = config.getoption("perf_device", "auto")
    if device not in ("auto", "cpu"):
        try:
            hardware.resolve_device(device)
        except ValueError as exc:
            raise pytest.UsageError(f"--perf-device: {exc}") from None
    from perfsuite.catalog import UnknownModelError, get_model

    for model in extensions.model_names(config):
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
        device_name = hardware.resolve_device(_worker_device(config))
    except ValueError as exc:
        raise pytest.UsageError(f"--perf-device: {exc}") from None
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    settings = RunSettings(
        warmup=config.getoption("perf_warmup") or (3 if cuda else 2),
        rounds=config.getoption("perf_rounds") or (20 if cuda else 10),
    )
    baselines_dir = baselines_root(config)
    policy, config.stash[DEFAULT_POLICY] = _load_policy(config)
    profile = config.getoption("perf_profile") or hardware.profile_id(device_name)
    overrides: dict[str, Any] = {}
    if config.getoption("perf_steps"):
        overrides["num_inference_steps"] = config.getoption("perf_steps")
    if config.getoption("perf_size"):
        overrides["height"], overrides["width"] = config.getoption("perf_size")
    session = PerfSession(
        device=device,
        capabilities=hardware.capabilities(device_name),
        profile=profile,
        preset=config.getoption("perf_preset"),
        model_names=extensions.model_names(config),
        settings=settings,
        call_overrides=overrides,
        baselines_dir=baselines_dir,
        policy=policy,
        strict=config.getoption("perf_strict"),
        update=config.getoption("perf_update_baselines"),
        machine=hardware.collect_machine_info(device_name, profile),
    )
    config.stash[PERF_SESSION] = session
    if AB_SESSION in config.stash:
        from perfsuite.ab.head import checkout_commit

        assert session.machine is not None
        config.stash[AB_SESSION].configure(
            device=device_name,
            warmup=settings.warmup,
            num_threads=torch.get_num_threads(),
            call_overrides=overrides,
            trace=settings.trace,
            head={"machine": session.machine.to_dict(), "commit": checkout_commit()},
        )
    return session


def _load_policy(config: pytest.Config) -> tuple[Policy, bool]:
    """The policy of ``<baselines dir>/policy.toml``, or the shipped default, and whether it is the
    default; a broken file is a one-line usage error."""
    from perfsuite.baselines import BaselineFileError, load_policy_or_default

    try:
        return load_policy_or_default(baselines_root(config))
    except BaselineFileError as exc:
        raise pytest.UsageError(
            f"{exc} (perfsuite reads policy.toml from --perf-baselines-dir, default <rootdir>/baselines)"
        ) from None


def _check_policy_before_workers(config: pytest.Config) -> None:
    """The pytest-xdist controller checks the policy before it starts workers: a worker that meets a
    usage error while collecting would end the run with an internal error instead of the message."""
    workers = config.getoption("numprocesses", None) if config.pluginmanager.hasplugin("xdist") else None
    if workers and _xdist_workers(config) is None:
        _load_policy(config)


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A usage error met while collecting is raised here, alone (no collection traceback); then
    ``--perf-shard=I/N`` keeps every N-th perf case, by sorted case id, starting at the I-th."""
    error = config.stash.get(DEFERRED_ERROR, None)
    if error is not None:
        raise error
    late = extensions.late_hooks(config)
    if late:
        raise pytest.UsageError(
            f"{'; '.join(late)}: read after the session registered its models and techniques, so it "
            "was never called; move it to the conftest.py of the rootdir or of the folder you pass to "
            "pytest (or into a plugin)"
        )
    shard = config.getoption("perf_shard", None)
    if shard is None:
        return
    index, count = shard

    def case_id(item: pytest.Item) -> str | None:
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("perf_case") if callspec is not None else None
        return case.id if isinstance(case, PerfCase) else None

    ids = sorted({cid for cid in map(case_id, items) if cid is not None})
    keep = {cid for position, cid in enumerate(ids) if position % count == index - 1}
    selected = [item for item in items if case_id(item) is None or case_id(item) in keep]
    deselected = [item for item in items if case_id(item) is not None and case_id(item) not in keep]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "perf_case" not in metafunc.fixturenames:
        return
    try:
        session = _session(metafunc.config)
    except pytest.UsageError as exc:
        # Raised here it would show as a collection error with a long traceback; it is raised again,
        # on its own, when collection is over (pytest_collection_modifyitems).
        metafunc.config.stash[DEFERRED_ERROR] = exc
        metafunc.parametrize("perf_case", [])
        return
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
    import torch

    from perfsuite.ab.head import ABError, ABSkip, WorkerDied, WorkerStartError
    from perfsuite.baselines import BaselineFileError
    from perfsuite.failure import CaseFailed
    from perfsuite.globalstate import fresh_compile_caches
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
        during = _ab_phase(request.config, perf_session, case)
        own_cache = request.config.stash.get(INDUCTOR_CACHE, None)
        caches: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        if case.combo.compiles and own_cache is not None:
            caches = fresh_compile_caches(own_cache)  # unless the user chose TORCHINDUCTOR_CACHE_DIR
        try:
            with caches:
                result = run_case(
                    spec,
                    case.combo,
                    lambda dtype: perf_session.fresh_pipe(case.model, dtype),
                    reference,
                    target,
                    perf_session.settings,
                    rounds_runner=_benchmark_rounds(benchmark),
                    remeasure=lambda first: _suspect(perf_session, first, suspects),
                    during=during,
                )
        except CaseFailed as exc:
            # A technique that cannot prove it is active, or dynamo refusing the model: a verdict.
            verdict = perf_session.record_failure(case.model, case.combo.id, exc.failure)
            benchmark.extra_info.update({"verdict": verdict.status, "failure": exc.failure.to_dict()})
            command = update_command(request, perf_session, case)
            pytest.fail(verdict.message(command, strict=perf_session.strict), pytrace=False)
        except ABSkip as exc:
            perf_session.skipped.append((case.model, case.combo.id, str(exc)))
            pytest.skip(str(exc))
        except (ABError, WorkerDied, WorkerStartError) as exc:
            pytest.fail(f"{case.id}: the A/B comparison with the base failed: {exc}", pytrace=False)
        except Unsupported as exc:
            perf_session.skipped.append((case.model, case.combo.id, f"unsupported: {exc}"))
            pytest.skip(f"unsupported on {case.model}: {exc}")
        except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
            # run_case has already released the pipeline and restored the globals: the session goes on.
            pytest.fail(_out_of_memory(case, perf_session, exc), pytrace=False)
        try:
            result = perf_session.assess(result)
            perf_session.results.append(result)
            verdict = perf_session.judge(result)
        except BaselineFileError as exc:
            pytest.fail(f"{case.id}: the stored baseline cannot be used: {exc}", pytrace=False)
        benchmark.extra_info.update(result.to_dict())
        benchmark.extra_info["profile"] = perf_session.profile
        verdict = verdict.with_notes(*perf_session.write_fidelity_artifacts(result, verdict))
        if suspects:
            first = ", ".join(f"{c.field} ({c.kind})" for c in suspects)
            outcome = "confirmed by" if verdict.timing_failures else "not confirmed by"
            verdict = verdict.with_notes(f"a first timing pass failed {first}; {outcome} a second pass")
        perf_session.verdicts[case.id] = verdict
        benchmark.extra_info["verdict"] = verdict.status
        command = update_command(request, perf_session, case)
        if not verdict.passed or (perf_session.strict and (verdict.missing or verdict.inconclusive)):
            pytest.fail(verdict.message(command, strict=perf_session.strict), pytrace=False)
        return result

    suspects: list[Check] = []
    return run


def _ab_phase(config: pytest.Config, session: PerfSession, case: PerfCase) -> Any:
    """``--perf-ab-base``: skip a case the base cannot run, before the head measures it; else the
    ``during`` step of :func:`perfsuite.runner.run_case` that compares the prepared case with the base."""
    ab = config.stash.get(AB_SESSION, None)
    if ab is None:
        return None
    import dataclasses

    from perfsuite.ab.head import ABSkip, WorkerDied, WorkerStartError

    try:
        ab.check(case.model, case.combo.id)
    except ABSkip as exc:
        session.skipped.append((case.model, case.combo.id, str(exc)))
        pytest.skip(str(exc))
    except (WorkerDied, WorkerStartError) as exc:
        pytest.fail(f"{case.id}: the base worker cannot take this case: {exc}", pytrace=False)
    bounds = session.bounds(case.model, case.combo.id)
    settings = _ab_case_settings(config, ab.settings, bounds, case)
    return lambda slot, result: dataclasses.replace(
        result, ab=ab.compare(slot, result, bounds.ab_tolerance, settings)
    )


def _ab_case_settings(
    config: pytest.Config, settings: ABSettings, bounds: Bounds, case: PerfCase
) -> ABSettings:
    """The session's A/B settings with the policy's caps for this case, where the command line did
    not give them (an option given there holds for every case)."""
    pairs = None if config.getoption("perf_ab_max_pairs") is not None else bounds.ab_max_pairs
    seconds = None if config.getoption("perf_ab_max_seconds") is not None else bounds.ab_max_seconds
    try:
        return settings.capped(None if pairs is None else int(pairs), seconds)
    except ValueError as exc:
        source = bounds.sources.get("ab_max_pairs", "policy.toml")
        pytest.fail(
            f"{case.id}: ab_max_pairs = {pairs:g} from {source} does not fit this run's A/B design "
            f"({exc}): raise ab_max_pairs there, or lower --perf-ab-min-pairs",
            pytrace=False,
        )


def _out_of_memory(case: PerfCase, session: PerfSession, exc: BaseException) -> str:
    device = session.device
    where = str(device)
    if device.type == "cuda":
        import torch

        total = torch.cuda.get_device_properties(device).total_memory
        where += f" ({total / 2**30:.1f} GiB)"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (
        f"{case.id}: out of memory on {where}: {first_line}\n"
        "  the combo was released and the session goes on. Try a smaller --perf-size or fewer "
        "--perf-steps, drop -n so one process owns the device, or run this combo alone (-k)."
    )


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
        entry = extensions.model_entry(config, case.model)
        parts.append(f"--perf-model={shlex.quote(entry)}")
    if session.preset != DEFAULT_PRESET:
        parts.append(f"--perf-preset={session.preset}")
    for option in ("perf_device", "perf_profile", "perf_baselines_dir", "perf_steps"):
        value = config.getoption(option, None)
        if value not in (None, "auto"):
            parts.append(f"--{option.replace('_', '-')}={value}")
    if config.getoption("perf_size", None):
        parts.append("--perf-size={}x{}".format(*config.getoption("perf_size")))
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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Record a perf case that raised (not a gate verdict) as an error of the results."""
    outcome = yield
    report = outcome.get_result()
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("perf_case") if callspec is not None else None
    perf = item.config.stash.get(PERF_SESSION, None)
    if not isinstance(case, PerfCase) or perf is None or not report.failed or case.id in perf.verdicts:
        return
    text = str(call.excinfo.getrepr(style="short")) if call.excinfo is not None else report.longreprtext
    perf.errors.append((case.model, case.combo.id, f"{report.when}: {text[-4000:]}"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    ab = config.stash.get(AB_SESSION, None)
    if ab is not None:  # an interrupted run does not wait for the base to finish its call
        ab.close(grace_s=1.0 if exitstatus == pytest.ExitCode.INTERRUPTED else None)
    perf = config.stash.get(PERF_SESSION, None)
    if perf is not None and perf.update:
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            perf.update_report = [
                "perfsuite: the session was interrupted; no baseline was written (the stored ones are intact)"
            ]
        else:
            perf.update_report = write_updates(perf)
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: hand everything to the controller
        if perf is not None:
            workeroutput["perfsuite"] = worker_payload(perf)
        return
    parts = config.stash.get(WORKER_PARTS, [])
    report_dir = config.getoption("perf_report", None)
    if report_dir and (perf is not None or parts):
        _write_report(config, Path(config.invocation_params.dir, report_dir), perf, parts)


WORKER_PARTS = pytest.StashKey[list[dict[str, Any]]]()


@pytest.hookimpl(optionalhook=True)  # an xdist hook: pytest without xdist must still load the plugin
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist controller: collect what a worker measured (see :func:`_worker_payload`)."""
    payload = getattr(node, "workeroutput", {}).get("perfsuite")
    if payload is not None:
        node.config.stash.setdefault(WORKER_PARTS, []).append(payload)


def _write_report(
    config: pytest.Config, folder: Path, perf: PerfSession | None, parts: list[dict[str, Any]]
) -> None:
    from perfsuite.baselines import current_commit

    if perf is not None:
        parts = [*parts, {**worker_payload(perf), "lines": []}]
    files = write_session_report(folder, parts, current_commit(config.rootpath))
    config.stash[REPORT_FILES] = [str(files.results), str(files.summary), str(files.html)]


REPORT_FILES = pytest.StashKey[list[str]]()


def pytest_unconfigure(config: pytest.Config) -> None:
    ab = config.stash.get(AB_SESSION, None)
    if ab is not None:
        ab.close()
    cache_dir = config.stash.get(INDUCTOR_CACHE, None)
    if cache_dir is not None:
        shutil.rmtree(cache_dir, ignore_errors=True)


def _uses_default_policy(config: pytest.Config) -> bool:
    """Whether the perf cases of this run were judged by perfsuite's shipped default policy."""
    if PERF_SESSION in config.stash:
        return config.stash.get(DEFAULT_POLICY, False)
    # The pytest-xdist controller: its workers loaded the policy; the same rule, from here.
    ran_on_workers = bool(config.stash.get(WORKER_PARTS, None))
    return ran_on_workers and not (baselines_root(config) / "policy.toml").exists()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if _uses_default_policy(config):
        from perfsuite.baselines import default_policy_notice

        terminalreporter.write_line(default_policy_notice(baselines_root(config)), yellow=True)
    for part in config.stash.get(WORKER_PARTS, []):
        terminalreporter.write_line(f"perfsuite worker on {part['device']}:")
        for line in part["lines"]:
            terminalreporter.write_line(line)
    if config.stash.get(WORKER_PARTS, None):
        _report_line(terminalreporter, config)
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
    _report_line(terminalreporter, config)


def _report_line(terminalreporter: Any, config: pytest.Config) -> None:
    report_files = config.stash.get(REPORT_FILES, None)
    if report_files:
        terminalreporter.write_line("perfsuite report: " + ", ".join(report_files))
