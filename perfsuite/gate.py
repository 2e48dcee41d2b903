"""The verdict on one measured case: policy checks (bounds people chose) and history checks
(the stored baseline of this hardware profile), each naming its numbers and where its bound came from.

Plain data in, plain data out: a measurement is the dict of :meth:`perfsuite.runner.CaseResult.to_dict`
(or the ``measurement`` of a stored baseline, or one entry of a results file), so the pytest plugin
and ``perfsuite compare`` reach the same verdict on the same numbers. No torch here.

Rules, per field:

* **speedup (policy)** fails only when the whole confidence interval of the speedup over the in-run
  fp32 eager reference lies below ``min_speedup``.
* **latency (history)** fails only when the median got slower than the baseline's by more than
  ``latency_tolerance`` AND a one-sided Mann-Whitney test on the raw samples says slower at
  :data:`ALPHA`. Absolute times are compared only when the machine matches the baseline's
  (:func:`machine_fingerprint`); on other hardware of the same profile the check says so.
* **peak memory (history)** fails when the peak bytes held by the case's tensors grew by more than
  ``memory_tolerance``. It is one number per run, so there is no test of significance; peaks of
  different kinds (``peak_mem_kind``) are never compared.
* **graph breaks, recompiles (policy)**: graph breaks anywhere, recompiles after warm-up.
* **verify, dynamo (policy)**: a case that ended before it was measured (:func:`judge_failure`).
* **speedup (history)** fails when the speedup fell by more than ``speedup_tolerance`` AND the two
  confidence intervals do not overlap (the new one lies wholly below the baseline's). Like latency,
  only on the baseline's machine: a speedup over fp32 is a same-run ratio, but what bf16, int8 and
  compiled kernels gain depends on the ISA (tiny-sd bf16 over fp32: about 0.1x on an AVX2 host,
  1.1x on an avx512_bf16 host of the same profile).

Timing checks (latency and speedup) are re-measured once by the plugin before a failure stands.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perfsuite.baselines import Baseline, Bounds
from perfsuite.hardware import version_changes
from perfsuite.stats import mann_whitney_u

__all__ = [
    "AB_HINT",
    "ALPHA",
    "FAIL",
    "INCONCLUSIVE",
    "MISSING",
    "NOT_COMPARED",
    "PASS",
    "UNMEASURED_FIELDS",
    "Check",
    "Verdict",
    "check_ab",
    "check_diagnostics",
    "check_fidelity",
    "check_history",
    "check_memory_ratio",
    "check_policy",
    "interval",
    "judge",
    "judge_failure",
    "machine_fingerprint",
    "missing_baseline",
    "number",
]

#: Significance level of the one-sided Mann-Whitney test behind every latency history failure.
ALPHA = 0.01

PASS, FAIL, MISSING, NOT_COMPARED = "pass", "fail", "missing", "not compared"
#: An A/B comparison that did not decide within its cap on pairs and seconds: never a pass.
INCONCLUSIVE = "inconclusive"

#: Checks that end a case before it is measured (:mod:`perfsuite.failure`).
UNMEASURED_FIELDS = ("verify", "dynamo")
_OPTIONAL_CHECK_KEYS = {"detail", "timing", "log"}


def _seconds(value: float) -> str:
    return f"{value:.3f} s" if value >= 1 else f"{value * 1e3:.1f} ms"


def _mib(value: float) -> str:
    return f"{value / 2**20:.1f} MiB"


def _times(value: float) -> str:
    return f"{value:.2f}x"


@dataclass(frozen=True)
class Check:
    """One check of one field. ``source`` names where the bound came from; ``detail`` says why."""

    field: str
    kind: str  # "policy" or "history"
    status: str  # PASS, FAIL, MISSING or NOT_COMPARED
    obtained: str
    expected: str
    bound: str
    source: str
    detail: str = ""
    timing: bool = False
    #: The full error text behind a ``verify`` or ``dynamo`` failure: for the report, not the terminal.
    log: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Check:
        """Rebuild from :meth:`to_dict`; a missing or unknown key raises ValueError naming it."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown, missing = set(data) - names, {n for n in names if n not in data} - _OPTIONAL_CHECK_KEYS
        if unknown or missing:
            raise ValueError(
                f"not a check: unknown key(s) {sorted(unknown)}, missing key(s) {sorted(missing)}"
            )
        return cls(**data)

    def line(self) -> str:
        """One line for a table or a log: ``speedup (policy) pass: 1.02x [...] vs >= 1.00x``."""
        text = f"{self.field} ({self.kind}) {self.status}: {self.obtained}"
        if self.bound:
            text += f"; bound {self.bound}"
        return text + (f"; {self.detail}" if self.detail else "")


@dataclass(frozen=True)
class Verdict:
    """Every check of one case (``model/combo`` on ``profile``)."""

    model: str
    combo: str
    profile: str
    checks: tuple[Check, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def case_id(self) -> str:
        return f"{self.model}/{self.combo}"

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == FAIL)

    @property
    def missing(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == MISSING)

    @property
    def inconclusive(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status == INCONCLUSIVE)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def timing_failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.failures if c.timing)

    @property
    def status(self) -> str:
        if self.failures:
            return FAIL
        if self.inconclusive:
            return INCONCLUSIVE
        if self.missing:
            return MISSING
        return PASS

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``status``, every check, and the notes."""
        return {
            "model": self.model,
            "combo": self.combo,
            "profile": self.profile,
            "status": self.status,
            "checks": [check.to_dict() for check in self.checks],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        """Rebuild from :meth:`to_dict` (``status`` is derived, so it is ignored)."""
        try:
            checks = tuple(Check.from_dict(c) for c in data["checks"])
            return cls(data["model"], data["combo"], data["profile"], checks, tuple(data.get("notes", ())))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a verdict: {exc!r}") from None

    def with_notes(self, *notes: str) -> Verdict:
        return Verdict(self.model, self.combo, self.profile, self.checks, (*self.notes, *notes))

    def message(self, update_command: str, *, strict: bool = False) -> str:
        """The full failure text: one block per failed check (under ``strict``, missing and inconclusive
        ones too)."""
        bad = [*self.failures, *((*self.missing, *self.inconclusive) if strict else ())]
        lines = [f"{self.case_id} on profile {self.profile}: {len(bad)} check(s) failed"]
        for check in bad:
            lines.append(f"  {check.field} ({check.kind}): {check.status.upper()}")
            lines.append(f"    obtained: {check.obtained}")
            if check.expected:
                lines.append(f"    expected: {check.expected}")
            if check.bound:
                lines.append(f"    bound:    {check.bound}")
            lines.append(f"    source:   {check.source}")
            if check.detail:
                lines.append(f"    why:      {check.detail}")
        lines.extend(f"  note: {note}" for note in self.notes)
        if bad and all(c.field in UNMEASURED_FIELDS for c in bad):
            lines.append(
                "  the case was not measured: no baseline update or policy edit changes this; the full "
                "error is in the report (--perf-report DIR: results.json and report.html)"
            )
            return "\n".join(lines)
        lines.append(
            "  if the change is intended, record it (the diff of baselines/ goes into the pull request): "
            f"{update_command}"
        )
        if any(c.kind == "policy" for c in bad):
            lines.append("  a policy bound is changed only by editing baselines/policy.toml, in review")
        if any(c.kind == "ab" for c in bad):
            lines.append(AB_HINT)
        return "\n".join(lines)


# --- machine identity --------------------------------------------------------------------------------


def machine_fingerprint(machine: Mapping[str, Any]) -> str:
    """What must match for absolute times to be comparable: the GPU, or the CPU model, cores and ISA.

    Takes :meth:`perfsuite.hardware.MachineInfo.to_dict` output (a baseline's ``machine``).
    """
    gpu = machine.get("gpu_name")
    if gpu:
        return f"gpu {gpu} (capability {machine.get('gpu_capability')})"
    flags = machine.get("cpu_flags") or {}
    isa = "+".join(sorted(name for name, present in flags.items() if present)) or "unknown ISA"
    return f"cpu {machine.get('cpu_model') or 'unknown model'}, {machine.get('cpu_cores')} cores, {isa}"


# --- the checks --------------------------------------------------------------------------------------


def number(measurement: Mapping[str, Any] | None, key: str) -> float | None:
    """A finite number of the measurement, or None."""
    value = (measurement or {}).get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def interval(measurement: Mapping[str, Any] | None, key: str) -> tuple[float, float] | None:
    """A ``[low, high]`` pair of finite numbers of the measurement, or None."""
    value = (measurement or {}).get(key)
    if not (isinstance(value, list | tuple) and len(value) == 2):
        return None
    if all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        return float(value[0]), float(value[1])
    return None


def _samples(measurement: Mapping[str, Any], key: str) -> list[float]:
    value = measurement.get(key)
    if not isinstance(value, Sequence):
        return []
    return [float(v) for v in value if isinstance(v, int | float) and math.isfinite(v)]


def _speedup_text(measurement: Mapping[str, Any]) -> str:
    estimate = number(measurement, "speedup")
    if estimate is None:
        return "(none)"
    ci = interval(measurement, "speedup_ci")
    return _times(estimate) + (f" [95% CI {ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _latency_text(measurement: Mapping[str, Any]) -> str:
    median = number(measurement, "latency_median_s")
    if median is None:
        return "(none)"
    ci = interval(measurement, "latency_ci_s")
    n = len(_samples(measurement, "latency_samples_s"))
    ci_text = f", CI [{_seconds(ci[0])}, {_seconds(ci[1])}]" if ci else ""
    return f"{_seconds(median)} median{ci_text} ({n} samples)"


def check_policy(measurement: Mapping[str, Any], bounds: Bounds) -> list[Check]:
    """The policy's speed floor, judged on the speedup's confidence interval."""
    floor = bounds.min_speedup
    obtained = _speedup_text(measurement)
    source = f"min_speedup from {bounds.sources.get('min_speedup', 'policy')}"
    estimate = number(measurement, "speedup")
    ci = interval(measurement, "speedup_ci")
    if floor <= 0.0:
        return [Check("speedup", "policy", PASS, obtained, "", "none (min_speedup = 0)", source, timing=True)]
    if estimate is None:
        detail = "the measurement holds no speedup"
        return [Check("speedup", "policy", FAIL, obtained, "", f">= {_times(floor)}", source, detail, True)]
    high = ci[1] if ci else estimate
    if high < floor:
        detail = f"the whole interval lies below the floor (upper end {high:.2f} < {floor:.2f})"
        return [Check("speedup", "policy", FAIL, obtained, "", f">= {_times(floor)}", source, detail, True)]
    detail = "" if estimate >= floor else "the point estimate is below the floor but the interval reaches it"
    return [Check("speedup", "policy", PASS, obtained, "", f">= {_times(floor)}", source, detail, True)]


def _ssim_text(comparison: Mapping[str, Any]) -> str:
    psnr = comparison.get("psnr_db")
    psnr_text = "identical" if psnr is None else f"PSNR {psnr:.1f} dB"
    return f"SSIM {comparison['ssim']:.4f}, {psnr_text}, max |diff| {comparison['max_abs_diff']:.3f}"


def check_fidelity(measurement: Mapping[str, Any], bounds: Bounds) -> list[Check]:
    """Non-finite output, SSIM against the in-run reference (policy) and against the stored image.

    A measurement without a ``fidelity`` entry (an older results file) has no fidelity checks.
    """
    fidelity = measurement.get("fidelity")
    if not isinstance(fidelity, Mapping):
        return []
    if fidelity.get("non_finite"):
        source = "perfsuite: a NaN or inf output is always a failure, never 'similar'"
        return [Check("image", "policy", FAIL, "non-finite output", "", "every value finite", source,
                      str(fidelity["non_finite"]))]  # fmt: skip
    checks = []
    reference = fidelity.get("reference")
    source = f"min_ssim from {bounds.sources.get('min_ssim', 'policy')}"
    bound = f"SSIM >= {bounds.min_ssim:.4f}"
    if isinstance(reference, Mapping):
        status = PASS if reference["ssim"] >= bounds.min_ssim else FAIL
        expected = "the in-run fp32 eager output (same model, seed and prompt)"
        checks.append(Check("ssim", "policy", status, _ssim_text(reference), expected, bound, source))
    stored = fidelity.get("stored")
    if fidelity.get("stored_checked") is False:
        return checks
    source = f"min_ssim_stored from {bounds.sources.get('min_ssim_stored', 'policy')}"
    bound = f"SSIM >= {bounds.min_ssim_stored:.4f}"
    expected = "the stored reference image of this combo"
    if isinstance(stored, Mapping):
        status = PASS if stored["ssim"] >= bounds.min_ssim_stored else FAIL
        checks.append(Check("ssim", "history", status, _ssim_text(stored), expected, bound, source))
    else:
        note = str(fidelity.get("stored_note") or "no stored reference image")
        status = MISSING if fidelity.get("stored_missing") else NOT_COMPARED
        checks.append(Check("ssim", "history", status, "(not compared)", expected, bound, source, note))
    return checks


def _warmup_text(measurement: Mapping[str, Any]) -> str:
    """``warm-up (not gated): 3 graphs, 2 recompiles`` when the measurement records its warm-up."""
    graphs, recompiles = number(measurement, "unique_graphs"), number(measurement, "warmup_recompiles")
    if recompiles is None:  # a measurement from before warm-up and steady state were told apart
        return ""
    return f"warm-up (not gated): {graphs or 0:.0f} graphs, {recompiles:.0f} recompiles"


def check_diagnostics(measurement: Mapping[str, Any], bounds: Bounds) -> list[Check]:
    """Compile health (graph breaks anywhere, recompiles after warm-up) and host-device syncs per step.

    Graph breaks and recompiles are checked when the measurement has them. Recompiles count only
    after warm-up (the profiled call, the timed rounds, a re-measure): warm-up recompiles are how
    regional compilation meets blocks of other shapes, and they are reported as information. A graph
    break is never benign, so it counts wherever it happens. Syncs per denoising step are checked
    only where the policy sets ``max_syncs_per_step`` (the guide's sigmas-on-CPU advice: 0).
    """
    checks = []
    warmup = _warmup_text(measurement)
    for key, field_name, what in (
        ("graph_breaks", "graph breaks", "graph breaks (warm-up and after)"),
        ("recompiles", "recompiles", "recompilations after warm-up"),
    ):
        value = number(measurement, key)
        if value is None:
            continue
        bound = float(getattr(bounds, f"max_{key}"))
        source = f"max_{key} from {bounds.sources.get(f'max_{key}', 'perfsuite built-in default')}"
        status = FAIL if value > bound else PASS
        detail = warmup if key == "recompiles" else ""
        checks.append(
            Check(field_name, "policy", status, f"{value:.0f} {what}", "", f"<= {bound:.0f}", source, detail)
        )
    limit = bounds.max_syncs_per_step
    if limit is None:
        return checks
    diagnostics = measurement.get("diagnostics")
    syncs = diagnostics.get("host_syncs") if isinstance(diagnostics, Mapping) else None
    per_step = syncs.get("per_step_syncs") if isinstance(syncs, Mapping) else None
    source = f"max_syncs_per_step from {bounds.sources.get('max_syncs_per_step', 'policy')}"
    if not per_step:
        why = (syncs or {}).get("unavailable_reason") if isinstance(syncs, Mapping) else None
        detail = str(why or "no per-step sync count in the measurement")
        checks.append(
            Check("syncs per step", "policy", NOT_COMPARED, "(none)", "", f"<= {limit:g}", source, detail)
        )
        return checks
    worst = max(float(n) for n in per_step)
    status = FAIL if worst > limit else PASS
    obtained = f"{worst:g} host-device syncs in the worst denoising step ({sum(per_step):g} in all)"
    checks.append(Check("syncs per step", "policy", status, obtained, "", f"<= {limit:g}", source))
    return checks


def check_memory_ratio(measurement: Mapping[str, Any], bounds: Bounds) -> list[Check]:
    """The memory-drop floor of the memory techniques: the case's peak over the in-run reference's.

    Checked only where the policy sets ``max_memory_ratio``. Both peaks must be of the same kind
    (``peak_mem_kind`` and ``reference_peak_mem_kind``); a measurement without the reference's peak
    reports the check as not compared, with the reason.
    """
    limit = bounds.max_memory_ratio
    if limit is None:
        return []
    source = f"max_memory_ratio from {bounds.sources.get('max_memory_ratio', 'policy')}"
    bound = f"<= {limit:.2f}x the reference's peak"
    peak, reference = number(measurement, "peak_mem_bytes"), number(measurement, "reference_peak_mem_bytes")
    kind, reference_kind = measurement.get("peak_mem_kind"), measurement.get("reference_peak_mem_kind")
    if peak is None or not reference or kind != reference_kind:
        obtained = "(none)" if peak is None else f"{_mib(peak)} ({kind})"
        detail = (
            "the measurement holds no peak memory of the in-run reference"
            if not reference
            else f"peaks of different kinds ({kind} vs the reference's {reference_kind}) are not comparable"
        )
        return [Check("memory ratio", "policy", NOT_COMPARED, obtained, "", bound, source, detail)]
    ratio = peak / reference
    status = FAIL if ratio > limit else PASS
    obtained = f"{_mib(peak)} = {ratio:.2f}x the reference's {_mib(reference)} ({kind})"
    return [Check("memory ratio", "policy", status, obtained, "", bound, source)]


def _baseline_label(baseline: Baseline) -> str:
    commit = f", commit {baseline.commit[:10]}" if baseline.commit else ""
    return f"{baseline.path} ({baseline.created[:10]}{commit})"


def _other_machine(machine: Mapping[str, Any] | None, baseline: Baseline) -> str | None:
    """ "baseline: X; this run: Y" when ``machine`` is known and is not the baseline's, else None."""
    if machine is None:
        return None
    here, there = machine_fingerprint(machine), machine_fingerprint(baseline.machine)
    return None if here == there else f"baseline: {there}; this run: {here}"


def _latency_history(
    measurement: Mapping[str, Any],
    baseline: Baseline,
    bounds: Bounds,
    other_machine: str | None,
) -> Check:
    old = baseline.measurement
    tolerance = bounds.latency_tolerance
    source = f"{_baseline_label(baseline)}; latency_tolerance from {bounds.sources['latency_tolerance']}"
    obtained, expected = _latency_text(measurement), _latency_text(old)
    new_median, old_median = number(measurement, "latency_median_s"), number(old, "latency_median_s")
    new_samples, old_samples = _samples(measurement, "latency_samples_s"), _samples(old, "latency_samples_s")
    if None in (new_median, old_median) or not new_samples or not old_samples or not old_median:
        return Check("latency", "history", NOT_COMPARED, obtained, expected, "", source,
                     "the baseline or the measurement holds no latency samples", True)  # fmt: skip
    assert new_median is not None
    limit = _seconds(old_median * (1 + tolerance))
    bound = f"at most {limit} (+{tolerance:.0%}), unless not significantly slower"
    if other_machine is not None:
        detail = (
            f"absolute times are not compared across machines ({other_machine}); "
            "memory and image checks still apply"
        )
        return Check("latency", "history", NOT_COMPARED, obtained, expected, bound, source, detail, True)
    change = new_median / old_median - 1.0
    test = mann_whitney_u(new_samples, old_samples)
    significant = test.p_greater < ALPHA
    detail = (
        f"{change:+.1%} vs baseline, Mann-Whitney p = {test.p_greater:.2g} "
        f"({test.method}; slower if p < {ALPHA})"
    )
    status = FAIL if change > tolerance and significant else PASS
    return Check("latency", "history", status, obtained, expected, bound, source, detail, True)


def _memory_history(measurement: Mapping[str, Any], baseline: Baseline, bounds: Bounds) -> Check:
    old = baseline.measurement
    tolerance = bounds.memory_tolerance
    source = f"{_baseline_label(baseline)}; memory_tolerance from {bounds.sources['memory_tolerance']}"
    new, before = number(measurement, "peak_mem_bytes"), number(old, "peak_mem_bytes")
    kind_new, kind_old = measurement.get("peak_mem_kind"), old.get("peak_mem_kind")
    obtained = "(none)" if new is None else f"{_mib(new)} ({kind_new})"
    expected = "(none)" if before is None else f"{_mib(before)} ({kind_old})"
    if new is None or not before or kind_new != kind_old:
        detail = (
            "no peak memory on one side, or peaks of different kinds"
            if kind_new == kind_old
            else (f"peaks of different kinds ({kind_old} vs {kind_new}) are not comparable")
        )
        return Check("peak memory", "history", NOT_COMPARED, obtained, expected, "", source, detail)
    change = new / before - 1.0
    bound = f"at most {_mib(before * (1 + tolerance))} (+{tolerance:.0%})"
    status = FAIL if change > tolerance else PASS
    return Check("peak memory", "history", status, obtained, expected, bound, source, f"{change:+.1%}")


def _speedup_history(
    measurement: Mapping[str, Any],
    baseline: Baseline,
    bounds: Bounds,
    other_machine: str | None,
) -> Check:
    old = baseline.measurement
    tolerance = bounds.speedup_tolerance
    source = f"{_baseline_label(baseline)}; speedup_tolerance from {bounds.sources['speedup_tolerance']}"
    obtained, expected = _speedup_text(measurement), _speedup_text(old)
    new, before = number(measurement, "speedup"), number(old, "speedup")
    if new is None or not before:
        return Check("speedup", "history", NOT_COMPARED, obtained, expected, "", source,
                     "no speedup on one side", True)  # fmt: skip
    ci, old_ci = interval(measurement, "speedup_ci"), interval(old, "speedup_ci")
    high = ci[1] if ci else new
    old_low = old_ci[0] if old_ci else before
    change = new / before - 1.0
    floor = _times(before * (1 - tolerance))
    bound = f"at least {floor} (-{tolerance:.0%}), unless the two intervals overlap"
    if other_machine is not None:
        detail = (
            "speedups are not compared across machines, since what a technique gains depends on "
            f"the hardware ({other_machine}); the speedup policy floor still applies"
        )
        return Check("speedup", "history", NOT_COMPARED, obtained, expected, bound, source, detail, True)
    status = FAIL if change < -tolerance and high < old_low else PASS
    detail = (
        f"{change:+.1%} vs baseline; new interval ends at {high:.2f}, the baseline's starts at {old_low:.2f}"
    )
    return Check("speedup", "history", status, obtained, expected, bound, source, detail, True)


def check_history(
    measurement: Mapping[str, Any],
    baseline: Baseline,
    bounds: Bounds,
    machine: Mapping[str, Any] | None = None,
) -> list[Check]:
    """Latency, peak memory and speedup against one stored baseline.

    ``machine`` describes where ``measurement`` was taken (a ``MachineInfo.to_dict()``); when it is
    given and differs from the baseline's, latency and speedup are reported as not compared.
    """
    other_machine = _other_machine(machine, baseline)
    return [
        _latency_history(measurement, baseline, bounds, other_machine),
        _memory_history(measurement, baseline, bounds),
        _speedup_history(measurement, baseline, bounds, other_machine),
    ]


def missing_baseline(path: Path, reason: str) -> Check:
    """The history check when there is no usable baseline: names the file and how to create it."""
    return Check("baseline", "history", MISSING, "(no history check ran)", "", "", str(path), reason)


def judge_failure(model: str, combo: str, profile: str, failure: Mapping[str, Any]) -> Verdict:
    """The verdict on a case that ended before it was measured (a :class:`perfsuite.failure.CaseFailure`
    as a dict): one failed policy check, ``verify`` or ``dynamo``, naming the technique, what it
    promises and what was found; the full error text rides along in :attr:`Check.log`."""
    kind, technique = str(failure.get("kind", "")), str(failure.get("technique", ""))
    where = str(failure.get("where", ""))
    if kind == "verify":
        source = f"perfsuite: every technique proves it is active ({technique}: {where})"
        bound = f"{technique} proves it is active"
        detail = ""
    elif kind == "dynamo":
        source = f"perfsuite: a compile technique must compile the model as asked ({technique})"
        bound = "no dynamo error"
        detail = f"at {where}" if where else ""
    else:
        raise ValueError(f"unknown failure kind {kind!r}; expected one of {', '.join(UNMEASURED_FIELDS)}")
    obtained, expected = f"{technique}: {failure.get('found', '')}", str(failure.get("expected", ""))
    log = str(failure.get("log", ""))
    check = Check(kind, "policy", FAIL, obtained, expected, bound, source, detail, log=log)
    return Verdict(model, combo, profile, (check,))


def judge(
    model: str,
    combo: str,
    profile: str,
    measurement: Mapping[str, Any],
    bounds: Bounds,
    baseline: Baseline | None,
    *,
    baseline_file: Path | None = None,
    missing_reason: str = "",
    machine: Mapping[str, Any] | None = None,
) -> Verdict:
    """Policy checks, then history checks against ``baseline`` (or a MISSING check naming the file)."""
    checks = [
        *check_policy(measurement, bounds),
        *check_fidelity(measurement, bounds),
        *check_diagnostics(measurement, bounds),
        *check_memory_ratio(measurement, bounds),
        *check_ab(measurement, bounds),
    ]
    if baseline is not None and measurement.get("call") != baseline.measurement.get("call"):
        detail = (
            f"the baseline was measured with other call settings ({baseline.measurement.get('call')}; "
            f"this run: {measurement.get('call')}): re-record it, or run with its steps and size"
        )
        checks.append(Check("baseline", "history", MISSING, "", "", "", str(baseline.path), detail))
    elif baseline is not None:
        checks.extend(check_history(measurement, baseline, bounds, machine))
    elif baseline_file is not None:
        checks.append(missing_baseline(baseline_file, missing_reason or "no baseline for this profile"))
    verdict = Verdict(model, combo, profile, tuple(checks))
    history_failed = any(c.kind == "history" for c in verdict.failures)
    changes = version_changes(baseline.machine, machine) if baseline and machine and history_failed else []
    if changes:
        verdict = verdict.with_notes(f"versions differ from the baseline's: {'; '.join(changes)}")
    return verdict


# --- A/B: the head against the base environment, measured in the same run ----------------------------

AB_HINT = (
    "  an ab check compares this environment (head) with the base one (--perf-ab-base), call by call in "
    "the same run: an intended slowdown is accepted in review, or ab_tolerance raised in policy.toml; "
    "an inconclusive one needs more pairs (--perf-ab-max-pairs, --perf-ab-max-seconds, or ab_max_pairs, "
    "ab_max_seconds for its combo in policy.toml) or a quieter machine"
)


def _ab_latency(ab: Mapping[str, Any], bounds: Bounds) -> Check:
    tolerance = bounds.ab_tolerance
    limit = 1.0 + tolerance
    ratio, ci = number(ab, "ratio"), interval(ab, "ratio_ci")
    pairs, confidence = number(ab, "pairs") or 0, number(ab, "confidence") or 0.0
    base: Mapping[str, Any] = ab["base"] if isinstance(ab.get("base"), Mapping) else {}
    commit = str(base.get("commit") or "-")[:10]
    source = (
        f"ab_tolerance from {bounds.sources.get('ab_tolerance', 'perfsuite built-in default')}; base "
        f"{base.get('python_command') or base.get('executable')} (commit {commit})"
    )
    bound = f"head/base at most {limit:.3f}x (+{tolerance:.0%})"
    expected = "the base environment's latency, measured call by call in the same run (ABBA pairs)"
    if ratio is None or ci is None:
        return Check("latency", "ab", NOT_COMPARED, "(none)", expected, bound, source,
                     "the A/B section holds no ratio")  # fmt: skip
    head_s, base_s = number(ab, "head_latency_median_s"), number(ab, "base_latency_median_s")
    times = f"; head {_seconds(head_s)} vs base {_seconds(base_s)} median" if head_s and base_s else ""
    seconds = number(ab, "seconds")
    obtained = (
        f"head/base {ratio:.3f}x [{confidence:.1%} CI {ci[0]:.3f}, {ci[1]:.3f}], {pairs:.0f} pairs"
        + (f" in {seconds:.0f} s" if seconds is not None else "")
        + times
    )
    alpha, per_look = number(ab, "alpha"), number(ab, "alpha_per_look")
    attempts, attempt_pairs = number(ab, "attempts"), number(ab, "attempt_pairs")
    if attempts is not None and attempt_pairs is not None:
        if ab.get("head_pids"):
            kind = "each attempt between a base and a head process of its own"
        elif ab.get("refreshed"):
            kind = "both sides prepared again between attempts"  # written before attempts had new processes
        else:
            kind = "blocks of one prepared case (a compiled case is not prepared again)"
        method = (
            f"per-attempt Hodges-Lehmann ratio, Student t interval over {attempts:.0f} attempts of "
            f"{attempt_pairs:.0f} pairs, {kind}"
        )
    else:
        method = "Hodges-Lehmann ratio, Wilcoxon signed-rank interval"
    design = (
        f"{method}; error level {alpha:g} per direction over "
        f"{len(ab.get('planned_looks') or [])} looks ({per_look:g} each)"
        if alpha is not None and per_look is not None
        else str(ab.get("method") or "")
    )
    changes = [str(c) for c in ab.get("version_changes") or []]
    differs = f"; differs from the base: {'; '.join(changes)}" if changes else "; same versions on both sides"
    coverage = number(ab, "coverage")
    if coverage is not None and confidence and coverage < confidence:
        unit = "attempts" if attempts is not None else "pairs"
        why = f"too few {unit} for a {confidence:.1%} interval (it covers {coverage:.1%})"
        status = INCONCLUSIVE
    elif ci[0] > limit:
        status, why = FAIL, f"the whole interval lies above {limit:.3f}: the head is slower than the base"
    elif ci[1] < limit:
        status, why = PASS, f"the whole interval lies below {limit:.3f}"
    else:
        stopped = ab.get("stopped") or "the cap"
        cap = {"max pairs": number(ab, "max_pairs"), "max seconds": number(ab, "max_seconds")}.get(stopped)
        if cap is not None:  # absent from results written before the caps were recorded
            stopped += f" {cap:g}" + (" s" if stopped == "max seconds" else "")
        status, why = INCONCLUSIVE, f"the interval still holds {limit:.3f} when sampling stopped ({stopped})"
    return Check("latency", "ab", status, obtained, expected, bound, source, f"{why}; {design}{differs}")


def _ab_memory(ab: Mapping[str, Any], bounds: Bounds) -> Check:
    tolerance = bounds.memory_tolerance
    source = f"memory_tolerance from {bounds.sources.get('memory_tolerance', 'policy')}"
    head, base = number(ab, "head_peak_mem_bytes"), number(ab, "base_peak_mem_bytes")
    kinds = ab.get("head_peak_mem_kind"), ab.get("base_peak_mem_kind")
    obtained = "(none)" if head is None else f"head {_mib(head)} ({kinds[0]})"
    expected = "(none)" if base is None else f"base {_mib(base)} ({kinds[1]})"
    if head is None or not base or kinds[0] != kinds[1]:
        detail = "no peak on one side, or peaks of different kinds"
        return Check("peak memory", "ab", NOT_COMPARED, obtained, expected, "", source, detail)
    change = head / base - 1.0
    bound = f"at most {_mib(base * (1 + tolerance))} (+{tolerance:.0%})"
    return Check("peak memory", "ab", FAIL if change > tolerance else PASS, obtained, expected, bound, source,
                 f"{change:+.1%} vs the base")  # fmt: skip


def _ab_image(ab: Mapping[str, Any], bounds: Bounds) -> Check:
    fidelity: Mapping[str, Any] = ab["fidelity"] if isinstance(ab.get("fidelity"), Mapping) else {}
    source = f"min_ssim_stored from {bounds.sources.get('min_ssim_stored', 'policy')}"
    bound = f"SSIM >= {bounds.min_ssim_stored:.4f}"
    expected = "the base environment's image of the same case (same seed and prompt)"
    if fidelity.get("non_finite") or not isinstance(fidelity.get("ssim"), int | float):
        detail = str(fidelity.get("non_finite") or "no image comparison in the A/B section")
        return Check("ssim", "ab", NOT_COMPARED, "(not compared)", expected, bound, source, detail)
    status = PASS if fidelity["ssim"] >= bounds.min_ssim_stored else FAIL
    return Check("ssim", "ab", status, _ssim_text(fidelity), expected, bound, source)


def check_ab(measurement: Mapping[str, Any], bounds: Bounds) -> list[Check]:
    """The head against the base environment (``--perf-ab-base``), from the measurement's ``ab`` section.

    * **latency (ab)** fails when the whole interval of the head/base ratio lies above
      ``1 + ab_tolerance``, passes when it lies wholly below, and is INCONCLUSIVE otherwise (never a
      pass; a failure under ``--perf-strict``). The versions that differ between the sides are named.
    * **peak memory (ab)** fails when the head's peak exceeds the base's by more than ``memory_tolerance``.
    * **ssim (ab)** fails when the head's image scores below ``min_ssim_stored`` against the base's.

    A measurement without an ``ab`` section (a run without ``--perf-ab-base``) has no ab checks.
    """
    ab = measurement.get("ab")
    if not isinstance(ab, Mapping):
        return []
    return [_ab_latency(ab, bounds), _ab_memory(ab, bounds), _ab_image(ab, bounds)]
