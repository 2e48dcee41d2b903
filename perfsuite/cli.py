"""The ``perfsuite`` command: compare, report, merge results files and inspect ``baselines/``; set up
a repository (``init``) and list or save the models and techniques the suite knows (``models``).

Imports stay light (no torch) so the command starts fast; see ``perfsuite --help``.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from perfsuite import __version__

if TYPE_CHECKING:
    from perfsuite.gate import Check

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_REGRESSION", "build_parser", "main"]

EXIT_OK, EXIT_REGRESSION, EXIT_ERROR = 0, 1, 2
_WIDTH = 100
_DEFAULT_POLICY = Path("baselines") / "policy.toml"
_SUCCESS = "0  success"
_ERROR = "2  usage error, or a file that is missing or invalid (the message names it)"


def _epilog(*codes: str, example: str = "") -> str:
    text = "\n".join(["exit codes:", *(f"  {code}" for code in (*(codes or (_SUCCESS,)), _ERROR))])
    return text + (f"\n\nexample:\n  {example}" if example else "")


def _wrap(text: str, indent: str = "", hanging: str = "    ") -> list[str]:
    lines = textwrap.wrap(
        text,
        _WIDTH,
        initial_indent=indent,
        subsequent_indent=indent + hanging,
        break_on_hyphens=False,
        break_long_words=False,
    )
    return lines or [indent]


def _label(document: Mapping[str, Any], path: Path) -> str:
    commit = f", commit {document['commit'][:10]}" if document["commit"] else ""
    return f"{path} (profile {document['profile']}, created {document['created'][:19]}{commit})"


# --- compare -----------------------------------------------------------------------------------------


def _policy_path(given: Path | None) -> tuple[Path, bool]:
    """The policy file to judge by, and whether it is perfsuite's shipped default."""
    from perfsuite.baselines import default_policy_path

    if given is not None:
        return given, False
    if _DEFAULT_POLICY.is_file():
        return _DEFAULT_POLICY, False
    return default_policy_path(), True


def _changes_text(changes: Mapping[str, float]) -> str:
    return ", ".join(f"{label} {value:+.1%}" for label, value in changes.items()) or "no comparable numbers"


def _check_parts(check: Check) -> list[tuple[str, str]]:
    """The gate's words for one check: obtained, expected, bound, source, why (the ones it has)."""
    parts = [("obtained:", check.obtained), ("expected:", check.expected), ("bound:", check.bound)]
    parts += [("source:", check.source), ("why:", check.detail)]
    return [(label, text) for label, text in parts if text]


def _cmd_compare(args: argparse.Namespace, out: TextIO) -> int:
    from perfsuite.baselines import default_policy_notice, load_policy
    from perfsuite.compare import compare_results
    from perfsuite.report.results import load_results

    policy_path, shipped = _policy_path(args.policy)
    policy = load_policy(policy_path)
    old, new = load_results(args.old), load_results(args.new)
    result = compare_results(old, new, policy, old_path=args.old)
    lines = ["perfsuite compare", f"  old:    {_label(old, args.old)}", f"  new:    {_label(new, args.new)}"]
    lines.append(f"  policy: {policy_path}")
    if shipped:
        lines.extend(_wrap(default_policy_notice(_DEFAULT_POLICY.parent), "  "))
    if old["profile"] != new["profile"]:
        lines.extend(_wrap(f"note: the profiles differ; bounds are those of {new['profile']!r}", "  "))
    regressions = result.regressions
    if regressions:
        lines.append(f"REGRESSIONS ({len(regressions)} case(s), the most worsened first):")
        for case in regressions:
            lines.extend(_wrap(f"!! {case.case_id}: {_changes_text(case.changes())}", ""))
            for check in case.verdict.failures:
                lines.append(f"   {check.field} ({check.kind}): {check.status.upper()}")
                for label, text in _check_parts(check):
                    lines.extend(_wrap(f"{label:<9} {text}", "     ", " " * 10))
    unchanged = [case for case in result.unchanged if case.old is not None]
    if unchanged:
        lines.append(f"within bounds ({len(unchanged)} case(s)):")
        for case in unchanged:
            lines.extend(_wrap(f"{case.case_id}: {_changes_text(case.changes())}", "   "))
    if result.only_old:
        lines.extend(_wrap(f"only in {args.old} ({len(result.only_old)}): {', '.join(result.only_old)}", ""))
    if result.only_new:
        only = ", ".join(result.only_new)
        text = f"only in {args.new} ({len(result.only_new)}, policy checks only): {only}"
        lines.extend(_wrap(text, ""))
    if regressions:
        lines.append(f"result: {len(regressions)} case(s) regressed (exit {EXIT_REGRESSION})")
    else:
        lines.append(f"result: no regression in {len(result.cases)} case(s) (exit {EXIT_OK})")
    out.write("\n".join(lines) + "\n")
    return EXIT_REGRESSION if regressions else EXIT_OK


# --- report and merge --------------------------------------------------------------------------------


def _cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    from perfsuite.report import write_pages
    from perfsuite.report.results import load_results

    document = load_results(args.results)
    folder = args.output if args.output is not None else args.results.parent
    summary, page = write_pages(folder, document, base_dir=args.results.parent)
    out.write(f"wrote {summary}\nwrote {page}\n")
    return EXIT_OK


def _cmd_merge(args: argparse.Namespace, out: TextIO) -> int:
    from perfsuite.report.merge import merge_results, rebase_images
    from perfsuite.report.results import load_results, write_results

    target_dir = args.output.parent
    documents = [rebase_images(load_results(path), path.parent, target_dir) for path in args.results]
    merged = merge_results(documents, sources=[str(path) for path in args.results])
    write_results(args.output, merged)
    out.write(f"merged {len(args.results)} files ({len(merged['cases'])} cases) into {args.output}\n")
    return EXIT_OK


# --- baselines ---------------------------------------------------------------------------------------


def _cmd_baselines_show(args: argparse.Namespace, out: TextIO) -> int:
    from perfsuite.baselines import list_baselines
    from perfsuite.gate import number
    from perfsuite.report.units import format_bytes, format_seconds, format_speedup

    if not args.dir.is_dir():
        raise FileNotFoundError(f"no baselines folder at {args.dir}; pass --dir PATH")
    stored = list_baselines(args.dir, args.profile)
    where = f"{args.dir}" + (f" (profile {args.profile})" if args.profile else "")
    lines = [f"{len(stored)} baseline(s) under {where}"]
    header = f"{'latency':>9} {'speedup':>7} {'peak mem':>10}  {'created':<10}  {'commit':<10}"
    combo_width = _WIDTH - len("    ") - 1 - len(header)
    last: tuple[str, str] | None = None
    for baseline in stored:
        if last is None or last[0] != baseline.profile:
            lines.append(f"profile {baseline.profile}")
        if last != (baseline.profile, baseline.model):
            lines.append(f"  {baseline.model}")
            lines.append(f"    {'combo':<{combo_width}} {header}".rstrip())
        last = (baseline.profile, baseline.model)
        m = baseline.measurement
        numbers = (
            f"{format_seconds(number(m, 'latency_median_s')):>9} {format_speedup(number(m, 'speedup')):>7} "
            f"{format_bytes(number(m, 'peak_mem_bytes')):>10}  {baseline.created[:10]:<10}  "
            f"{(baseline.commit or '-')[:10]}"
        )
        if len(baseline.combo) > combo_width:
            lines.append(f"    {baseline.combo}")
            lines.append(f"    {'':<{combo_width}} {numbers}")
        else:
            lines.append(f"    {baseline.combo:<{combo_width}} {numbers}")
    if not stored:
        lines.append("  none: create them with `pytest tests/perf --perf-update-baselines`")
    out.write("\n".join(lines) + "\n")
    return EXIT_OK


def _cmd_baselines_diff(args: argparse.Namespace, out: TextIO) -> int:
    from perfsuite.baselines import (
        BaselineFileError,
        MissingBaselineError,
        baseline_path,
        diff_measurements,
        list_baselines,
        load_baseline,
    )
    from perfsuite.catalog import model_key
    from perfsuite.report.results import case_key, load_results

    document = load_results(args.results)
    profile = document["profile"]
    lines = [f"an update of {args.dir / profile} from {args.results} would change:"]
    counts = {"new": 0, "changed": 0, "unchanged": 0}
    for case in document["cases"]:
        key, measurement = case_key(case), case["measurement"]
        if measurement is None:
            lines.append(f"  {key}: not measured (status {case['status']}), nothing written")
            continue
        folder = model_key(case["model"])  # a local directory's identity, as the plugin files it
        try:
            old = load_baseline(args.dir, profile, folder, case["combo"])
        except MissingBaselineError:
            counts["new"] += 1
            lines.extend(
                _wrap(f"{key}: new, {baseline_path(args.dir, profile, folder, case['combo'])}", "  ")
            )
            continue
        except BaselineFileError as exc:
            counts["changed"] += 1
            lines.extend(_wrap(f"{key}: replaces an unreadable file ({exc})", "  "))
            continue
        changes = [str(change) for change in diff_measurements(old, measurement) if change.changed]
        counts["changed" if changes else "unchanged"] += 1
        lines.extend(_wrap(f"{key}: {'; '.join(changes) or 'unchanged'}", "  "))
    ran = {case_key(case) for case in document["cases"]}
    kept = [
        f"{b.model}/{b.combo}" for b in list_baselines(args.dir, profile) if f"{b.model}/{b.combo}" not in ran
    ]
    if kept:
        lines.extend(_wrap(f"kept as they are (not in these results): {', '.join(kept)}", ""))
    lines.append(
        f"{counts['new']} new, {counts['changed']} changed, {counts['unchanged']} unchanged; "
        "policy.toml is never changed by an update"
    )
    out.write("\n".join(lines) + "\n")
    return EXIT_OK


# --- init and models ---------------------------------------------------------------------------------


def _cmd_init(args: argparse.Namespace, out: TextIO) -> int:
    from perfsuite.scaffold import init_repository

    out.write("\n".join(init_repository(args.dir).lines()) + "\n")
    return EXIT_OK


def _cmd_models(args: argparse.Namespace, out: TextIO) -> int:
    from perfsuite.inventory import registry_lines, save_model

    if getattr(args, "action", None) != "save":
        out.write("\n".join(registry_lines()) + "\n")
        return EXIT_OK
    saved = save_model(args.name, args.dir)
    out.write(
        f"saved {saved.name} as a diffusers pipeline in {saved.folder} ({len(saved.files)} files)\n"
        f"its baselines are filed under {saved.key} whatever the spelling of its path; run it with\n"
        f"  python -m pytest tests/perf --perf-model {args.dir}\n"
    )
    return EXIT_OK


def _add_project_commands(commands: Any) -> None:
    init = _command(
        commands,
        "init",
        _cmd_init,
        "write a starter perfsuite layout into a repository (never overwrites a file)",
        "Write baselines/policy.toml (the default policy, every key explained),\n"
        "tests/perf/test_inference.py, .github/workflows/perf.yml, noxfile.py, and pytest.ini when nothing\n"
        "marks the folder as pytest's rootdir. A file that exists is left as it is; the output lists what\n"
        "was written and what was skipped.",
        _epilog(example="perfsuite init && python -m pytest tests/perf --perf-update-baselines"),
    )
    init.add_argument("dir", type=Path, nargs="?", default=Path("."), metavar="DIR", help="default: .")
    models = _command(
        commands,
        "models",
        _cmd_models,
        "list the registered models and techniques, or save a model as a pipeline folder",
        "List every registered model and technique with its source (perfsuite's own and installed\n"
        "packages' entry points); `python -m pytest --perf-list` adds those of pytest_perfsuite_* hooks.\n"
        "`perfsuite models save NAME DIR` writes a registered model as a diffusers pipeline folder.",
        _epilog(example="perfsuite models save tiny-sd ./my-pipeline"),
    )
    actions = models.add_subparsers(dest="action", required=False, metavar="ACTION")
    save = actions.add_parser(
        "save",
        help="write a registered model as a diffusers pipeline folder (safetensors)",
        description="Build NAME (fp32, CPU) and save it with save_pretrained(safe_serialization=True) into\n"
        "DIR, which must not exist or be empty. The folder then works as --perf-model DIR.",
        epilog=_epilog(example="perfsuite models save tiny-sd ./my-pipeline"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    save.add_argument("name", metavar="NAME", help="a registered model, e.g. tiny-sd")
    save.add_argument("dir", type=Path, metavar="DIR", help="the folder to create")


# --- parser ------------------------------------------------------------------------------------------


def _command(
    subparsers: Any,
    name: str,
    handler: Callable[[argparse.Namespace, TextIO], int],
    summary: str,
    description: str,
    epilog: str,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(handler=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``perfsuite`` command, with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="perfsuite",
        description="Compare, report and merge perfsuite results files; inspect stored baselines; set up a\n"
        "repository (init) and list or save the models and techniques the suite knows (models).",
        epilog=_epilog(_SUCCESS + " (compare: no regression)", "1  compare found a regression"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"perfsuite {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    compare = _command(
        commands,
        "compare",
        _cmd_compare,
        "judge NEW results against OLD ones with the gate's checks",
        "Judge each case of NEW.json against the same model/combo in OLD.json, as the pytest gate judges\n"
        "a run against its stored baseline: the policy checks (speedup and SSIM floors) and the history\n"
        "checks (latency, peak memory, speedup beyond tolerance and noise). Absolute latency is compared\n"
        "only when both files come from the same machine. Regressions are printed first, the most\n"
        "worsened first. A case only in NEW gets the policy checks alone.",
        _epilog(
            "0  no regression",
            "1  at least one case regressed (a failed check)",
            example="perfsuite compare main/results.json pr/results.json",
        ),
    )
    compare.add_argument("old", type=Path, metavar="OLD.json", help="results file playing the baseline")
    compare.add_argument("new", type=Path, metavar="NEW.json", help="results file to judge")
    compare.add_argument(
        "--policy",
        type=Path,
        metavar="PATH",
        help=f"policy.toml with the bounds (default: {_DEFAULT_POLICY} in the current folder, else the "
        "default policy shipped with perfsuite)",
    )

    report = _command(
        commands,
        "report",
        _cmd_report,
        "rebuild summary.md and report.html from a results file",
        "Write summary.md (Markdown for a pull request or job summary) and report.html (one\n"
        "self-contained page with charts and images) from a results.json. Image paths are read relative\n"
        "to the folder of the results file.",
        _epilog(example="perfsuite report perf-report/results.json -o /tmp/report"),
    )
    report.add_argument("results", type=Path, metavar="RESULTS.json", help="the results file")
    report.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="DIR",
        help="folder to write into (default: the folder of RESULTS.json)",
    )

    merge = _command(
        commands,
        "merge",
        _cmd_merge,
        "merge the results files of several shards into one",
        "Merge results files of shards of one run (same hardware profile) into one file. A case present in\n"
        "two files is an error. Image paths are rewritten relative to the output file.",
        _epilog(example="perfsuite merge shard1/results.json shard2/results.json -o all/results.json"),
    )
    merge.add_argument("results", type=Path, nargs="+", metavar="RESULTS.json", help="results files to merge")
    merge.add_argument(
        "-o", "--output", type=Path, required=True, metavar="ALL.json", help="merged file to write"
    )

    baselines = commands.add_parser(
        "baselines",
        help="show stored baselines, or what an update would change",
        description="Inspect the machine-written measurements under baselines/ (policy.toml is not shown).",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = baselines.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = _command(
        actions,
        "show",
        _cmd_baselines_show,
        "list the stored baselines",
        "List the stored baselines per hardware profile and model: median latency, speedup over fp32\n"
        "eager, peak memory, when and at which commit each was recorded.",
        _epilog(example="perfsuite baselines show --profile cuda-nvidia-h200"),
    )
    show.add_argument(
        "--dir",
        type=Path,
        default=Path("baselines"),
        metavar="PATH",
        help="the baselines folder (default: baselines)",
    )
    show.add_argument("--profile", metavar="P", help="only this hardware profile (default: all)")
    diff = _command(
        actions,
        "diff",
        _cmd_baselines_diff,
        "what updating the baselines from a results file would change",
        "For each measured case of RESULTS.json, what `pytest tests/perf --perf-update-baselines` would\n"
        "write under <dir>/<profile>/: old -> new of latency, peak memory and speedup, or 'new'.",
        _epilog(example="perfsuite baselines diff perf-report/results.json"),
    )
    diff.add_argument("results", type=Path, metavar="RESULTS.json", help="the results file")
    diff.add_argument(
        "--dir",
        type=Path,
        default=Path("baselines"),
        metavar="PATH",
        help="the baselines folder (default: baselines)",
    )
    _add_project_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command; return its exit code (0 ok, 1 regression found by compare, 2 error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    try:
        return int(args.handler(args, out or sys.stdout))
    except (ValueError, OSError) as exc:  # results, policy and baseline file errors are ValueErrors
        filename = getattr(exc, "filename", None)
        text = f"{filename}: {exc.strerror}" if isinstance(exc, OSError) and filename else str(exc)
        name = " ".join(p for p in ("perfsuite", args.command, getattr(args, "action", None)) if p)
        print(f"{name}: error: {text}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
