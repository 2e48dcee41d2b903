"""Merging the results documents of several shards of one run into one document."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from perfsuite.report.results import case_key, results_document, validate_results

__all__ = ["ResultsMergeError", "merge_results", "rebase_images"]


class ResultsMergeError(ValueError):
    """Results that cannot be merged; the message names the files involved."""


def rebase_images(
    document: Mapping[str, Any], source_dir: str | os.PathLike[str], target_dir: str | os.PathLike[str]
) -> dict[str, Any]:
    """A copy of ``document`` with its image paths, relative to ``source_dir``, made relative to
    ``target_dir`` (for a results file written to another folder)."""
    copy = dict(document)
    cases = []
    for case in document["cases"]:
        case = dict(case)
        if case.get("images"):
            case["images"] = {
                kind: Path(os.path.relpath(Path(source_dir) / path, target_dir)).as_posix()
                for kind, path in case["images"].items()
            }
        cases.append(case)
    copy["cases"] = cases
    return copy


def _joined(values: Iterable[str]) -> str:
    return ",".join(dict.fromkeys(values))


def merge_results(
    documents: Sequence[Mapping[str, Any]], sources: Sequence[str] | None = None
) -> dict[str, Any]:
    """One document from the results of several shards of one run (same profile).

    ``sources`` name the inputs in error messages and in ``merged_from`` (default ``input #1``...).
    Cases, skipped combos and errors are concatenated in input order; a case present in two inputs is
    an error. The machine info is the first input's; ``created`` is the latest input's, ``commit`` the
    shared commit (null when the inputs disagree), ``preset`` the distinct presets joined by commas.
    """
    if not documents:
        raise ResultsMergeError("nothing to merge: give at least one results document")
    names = list(sources) if sources is not None else [f"input #{i}" for i in range(1, len(documents) + 1)]
    if len(names) != len(documents):
        raise ValueError(f"{len(documents)} documents but {len(names)} source names")
    for name, document in zip(names, documents, strict=True):
        validate_results(dict(document), name)
    first = documents[0]
    for name, document in zip(names[1:], documents[1:], strict=True):
        if document["profile"] != first["profile"]:
            raise ResultsMergeError(
                f"cannot merge results of different hardware profiles: {names[0]} has "
                f"{first['profile']!r}, {name} has {document['profile']!r}"
            )
    owner: dict[str, str] = {}
    cases: list[dict[str, Any]] = []
    for name, document in zip(names, documents, strict=True):
        for case in document["cases"]:
            key = case_key(case)
            if key in owner:
                raise ResultsMergeError(f"case {key} appears in both {owner[key]} and {name}")
            owner[key] = name
            cases.append(dict(case))
    commits = {document["commit"] for document in documents}
    merged = results_document(
        machine=first["machine"],
        profile=first["profile"],
        device=_joined(document["device"] for document in documents),
        preset=_joined(document["preset"] for document in documents),
        models=dict.fromkeys(model for document in documents for model in document["models"]),
        cases=cases,
        skipped=[entry for document in documents for entry in document["skipped"]],
        errors=[entry for document in documents for entry in document["errors"]],
        commit=commits.pop() if len(commits) == 1 else None,
        created=max((document["created"] for document in documents), key=_timestamp),
    )
    merged["merged_from"] = [
        {"source": name, "created": document["created"], "commit": document["commit"]}
        for name, document in zip(names, documents, strict=True)
    ]
    return validate_results(merged, "merged results")


def _timestamp(created: str) -> float:
    moment = datetime.fromisoformat(created.replace("Z", "+00:00"))
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
