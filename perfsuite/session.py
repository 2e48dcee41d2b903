"""The state of one perfsuite session, and what it turns into: verdicts, baselines and reports.

Plain Python (no pytest): :mod:`perfsuite.plugin` creates one :class:`PerfSession` per process and
feeds it; under pytest-xdist each worker sends :func:`worker_payload` to the controller, which
writes one report from all of them with :func:`write_session_report`.
"""

from __future__ import annotations

import copy
import dataclasses
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfsuite import hardware

if TYPE_CHECKING:
    import torch

    from perfsuite.baselines import Bounds, Policy
    from perfsuite.catalog import ModelSpec
    from perfsuite.failure import CaseFailure
    from perfsuite.gate import Verdict
    from perfsuite.hardware import MachineInfo
    from perfsuite.matrix import Combo, Plan
    from perfsuite.report import ReportFiles
    from perfsuite.runner import CaseResult, Reference, RunSettings

__all__ = ["PerfCase", "PerfSession", "worker_payload", "write_session_report", "write_updates"]


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
    call_overrides: dict[str, Any] = field(default_factory=dict)
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
    #: Cases skipped at run time (unsupported on this model) and cases that raised: (model, combo, text).
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    errors: list[tuple[str, str, str]] = field(default_factory=list)
    #: Outcome of --perf-update-baselines, filled at session finish for the terminal summary.
    update_report: list[str] = field(default_factory=list)

    def record_failure(self, model: str, combo: str, failure: CaseFailure) -> Verdict:
        """The verdict on a case that ended before it was measured; kept for the table and report."""
        from perfsuite.gate import judge_failure

        verdict = judge_failure(model, combo, self.profile, failure.to_dict())
        self.verdicts[verdict.case_id] = verdict
        return verdict

    def bounds(self, model: str, combo: str) -> Bounds:
        assert self.policy is not None
        return self.policy.bounds_for(model, combo, self.profile)

    def assess(self, result: CaseResult) -> CaseResult:
        """``result`` with its fidelity against the in-run reference and the stored reference image."""
        from perfsuite.baselines import BaselineFileError, reference_image_path
        from perfsuite.fidelity import ImageFileError, assess, load_png

        png = reference_image_path(self.baselines_dir, self.profile, self.key(result.model), result.combo)
        stored, note, missing = None, "", False
        if not self.update:  # an update rewrites the stored image, so there is nothing to compare with
            try:
                stored = load_png(png)
            except FileNotFoundError:
                note, missing = f"no stored reference image at {png}", True
            except ImageFileError as exc:
                raise BaselineFileError(f"{exc}; regenerate it with --perf-update-baselines") from exc
        reference = self.reference(result.model).image
        fidelity = assess(result.image, reference, stored, result.case_id, note)
        fidelity["stored_missing"] = missing
        fidelity["stored_checked"] = not self.update
        return dataclasses.replace(result, fidelity=fidelity)

    def write_fidelity_artifacts(self, result: CaseResult, verdict: Verdict) -> list[str]:
        """On a failed SSIM check: ``.obtained.png``, ``.diff.png`` (and ``.expected.png`` for the in-run
        reference) next to the stored reference. Returns a note naming the files, or nothing."""
        from perfsuite.baselines import diff_path, expected_path, obtained_path, reference_image_path
        from perfsuite.fidelity import diff_image, load_png, save_png, to_float01

        failed = [c for c in verdict.failures if c.field == "ssim"]
        if not failed:
            return []
        where = (self.baselines_dir, self.profile, self.key(result.model), result.combo)
        obtained = save_png(obtained_path(*where, ext="png"), result.image)
        if any(c.kind == "policy" for c in failed):
            expected = save_png(expected_path(*where), self.reference(result.model).image)
            against = self.reference(result.model).image
        else:
            expected = reference_image_path(*where)
            against = to_float01(load_png(expected))
        diff = save_png(diff_path(*where), diff_image(result.image, against))
        return [f"images: obtained {obtained}; expected {expected}; diff (|obtained - expected| x10) {diff}"]

    def judge(self, result: CaseResult) -> Verdict:
        """Policy and history checks of one result; a malformed baseline file raises its error."""
        from perfsuite.baselines import MissingBaselineError, baseline_path, load_baseline
        from perfsuite.gate import judge

        measurement = result.to_dict()
        bounds = self.bounds(result.model, result.combo)
        path = baseline_path(self.baselines_dir, self.profile, self.key(result.model), result.combo)
        machine = self.machine.to_dict() if self.machine else None
        if self.update:
            return judge(result.model, result.combo, self.profile, measurement, bounds, None)
        try:
            baseline = load_baseline(self.baselines_dir, self.profile, self.key(result.model), result.combo)
        except MissingBaselineError as exc:
            return judge(
                result.model, result.combo, self.profile, measurement, bounds, None,
                baseline_file=path, missing_reason=str(exc),
            )  # fmt: skip
        return judge(result.model, result.combo, self.profile, measurement, bounds, baseline, machine=machine)

    def key(self, model: str) -> str:
        """The key ``model``'s baselines are filed under (``ModelSpec.key``)."""
        return self.spec(model).key

    def spec(self, model: str) -> ModelSpec:
        """The model's spec, with the session's ``--perf-steps`` / ``--perf-size`` applied."""
        if model not in self.specs:
            from perfsuite.catalog import get_model

            spec = get_model(model)
            call = dict(spec.call_kwargs)
            call.update(self.call_overrides)
            self.specs[model] = dataclasses.replace(spec, call_kwargs=call)
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
            from perfsuite.fidelity import check_finite, check_structure
            from perfsuite.measure import CaseMemory
            from perfsuite.runner import Reference

            memory = CaseMemory(self.device)
            memory.before_build()
            pipe = self.fresh_pipe(model, "fp32")
            reference = Reference.build(
                self.spec(model), pipe, self.device, self.settings.warmup, memory, self.settings.trace
            )
            what = f"the fp32 eager reference output of {model}"
            check_finite(reference.image, what)
            check_structure(reference.image, what)
            self.references[model] = reference
        return self.references[model]


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
        reference_image_path,
        render_baseline,
    )
    from perfsuite.fidelity import encode_png

    assert perf.machine is not None
    commit = current_commit(perf.baselines_dir)
    files: dict[Path, bytes] = {}
    folder = perf.baselines_dir / perf.profile
    lines = [f"perfsuite: baselines updated under {folder} (policy.toml untouched)"]
    for result in perf.results:
        measurement = result.to_dict()
        if (result.fidelity or {}).get("non_finite"):
            lines.append(f"  {result.case_id}: NOT written: its output is not finite")
            continue
        key = perf.key(result.model)
        path, text = render_baseline(
            perf.baselines_dir, perf.profile, key, result.combo,
            measurement=measurement, machine=perf.machine, commit=commit, display_name=result.model,
        )  # fmt: skip
        files[path] = text.encode("utf-8")
        png = reference_image_path(perf.baselines_dir, perf.profile, key, result.combo)
        files[png] = encode_png(result.image)
        try:
            old = load_baseline(perf.baselines_dir, perf.profile, key, result.combo)
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


def case_entries(
    perf: PerfSession,
) -> tuple[list[dict[str, Any]], list[dict[str, str]], list[dict[str, str]]]:
    from perfsuite.report import case_entry, skipped_entries

    cases = [case_entry(r.to_dict(), perf.verdicts.get(r.case_id), status=None if r.case_id in perf.verdicts
             else "error") for r in perf.results]  # fmt: skip
    measured = {r.case_id for r in perf.results}
    cases += [case_entry(None, v, model=v.model, combo=v.combo) for v in unmeasured(perf.verdicts, measured)]
    skipped = [*skipped_entries({m: perf.plans[m] for m in perf.plans}),
               *({"model": m, "combo": c, "reason": why} for m, c, why in perf.skipped)]  # fmt: skip
    errors = [{"model": m, "combo": c, "message": text} for m, c, text in perf.errors]
    return cases, skipped, errors


def unmeasured(verdicts: Mapping[str, Verdict], measured: set[str]) -> list[Verdict]:
    """The verdicts of cases that ended before they were measured (verify or dynamo failures)."""
    return [verdict for case_id, verdict in verdicts.items() if case_id not in measured]


def case_images(perf: PerfSession) -> dict[str, dict[str, bytes]]:
    """PNG bytes of each case's output, its in-run reference and their amplified difference."""
    from perfsuite.fidelity import diff_image, encode_png

    images = {}
    for result in perf.results:
        if (result.fidelity or {}).get("non_finite"):
            continue
        reference = perf.references[result.model].image
        images[result.case_id] = {
            "obtained": encode_png(result.image),
            "reference": encode_png(reference),
            "diff": encode_png(diff_image(result.image, reference)),
        }
    return images


def worker_payload(perf: PerfSession) -> dict[str, Any]:
    from perfsuite.report import summary_lines

    cases, skipped, errors = case_entries(perf)
    return {
        "cases": cases,
        "skipped": skipped,
        "errors": errors,
        "images": case_images(perf),
        "machine": perf.machine.to_dict() if perf.machine else None,
        "profile": perf.profile,
        "device": str(perf.device),
        "preset": perf.preset,
        "models": perf.model_names,
        "lines": [
            *summary_lines(perf.results, perf.plans, perf.device, perf.profile, perf.verdicts),
            *perf.update_report,
        ],
    }


def write_session_report(folder: Path, parts: list[dict[str, Any]], commit: str | None) -> ReportFiles:
    """One report from the payloads of every process of the session (see :func:`worker_payload`)."""
    import numpy as np
    from PIL import Image

    from perfsuite.report import append_step_summary, results_document, write_report

    first = parts[0]
    cases = [case for part in parts for case in part["cases"]]
    ran = {(c["model"], c["combo"]) for c in cases}
    skipped = list({(e["model"], e["combo"]): e for part in parts for e in part["skipped"]}.values())
    skipped = [e for e in skipped if (e["model"], e["combo"]) not in ran]
    images = {
        case_id: {kind: np.asarray(Image.open(io.BytesIO(png)).convert("RGB")) for kind, png in kinds.items()}
        for part in parts
        for case_id, kinds in part["images"].items()
    }
    document = results_document(
        machine=first["machine"],
        profile=first["profile"],
        device=", ".join(sorted({part["device"] for part in parts})),
        preset=first["preset"],
        models=first["models"],
        cases=cases,
        skipped=skipped,
        errors=[e for part in parts for e in part["errors"]],
        commit=commit,
    )
    files = write_report(folder, document, images)
    append_step_summary(files.summary.read_text(encoding="utf-8"))
    return files
