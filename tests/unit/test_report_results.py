"""The results document: round trip, clear errors for bad files, merging shards."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import results_factory as factory

from perfsuite.report import case_entry, load_results, write_results
from perfsuite.report.merge import ResultsMergeError, merge_results, rebase_images
from perfsuite.report.results import (
    ACCEPTED_VERSIONS,
    KIND,
    SCHEMA_VERSION,
    ResultsFileError,
    results_document,
    ssim_of,
    validate_results,
)


def test_round_trip_keeps_every_value_at_full_precision(tmp_path):
    document = factory.document()
    path = write_results(tmp_path / "out" / "results.json", document)
    assert load_results(path) == document
    text = path.read_text()
    assert text.endswith("\n") and json.loads(text)["schema_version"] == SCHEMA_VERSION
    assert list(json.loads(text)) == sorted(json.loads(text)), "keys are sorted"
    samples = document["cases"][0]["measurement"]["latency_samples_s"]
    assert load_results(path)["cases"][0]["measurement"]["latency_samples_s"] == samples
    assert not list(path.parent.glob(".*.tmp")), "the atomic write leaves no temp file"


def test_builder_fills_the_schema_and_reads_ssim():
    document = factory.document()
    assert document["kind"] == KIND and document["created"] == "2025-01-02T03:04:05+00:00"
    case = document["cases"][0]
    assert case["status"] == "pass" and case["verdict"]["status"] == "pass"
    assert ssim_of(case["measurement"]) == 0.99
    assert ssim_of({"fidelity": None}) is None and ssim_of({}) is None
    now = results_document(
        machine={}, profile="p", device="cpu", preset="single", models=[], cases=[], commit=None
    )
    assert now["created"].endswith("+00:00")


def test_numpy_values_are_written_as_plain_numbers(tmp_path):
    document = factory.document(combos=["fp32"])
    document["cases"][0]["measurement"]["peak_mem_bytes"] = np.int64(5)
    path = write_results(tmp_path / "results.json", document)
    assert json.loads(path.read_text())["cases"][0]["measurement"]["peak_mem_bytes"] == 5


def test_a_non_finite_number_is_refused_before_writing(tmp_path):
    document = factory.document(combos=["fp32"])
    document["cases"][0]["measurement"]["speedup"] = math.nan
    with pytest.raises(ResultsFileError, match=r"results.json: cannot be written as JSON.*finite"):
        write_results(tmp_path / "results.json", document)
    assert not (tmp_path / "results.json").exists()


def test_case_entry_needs_a_verdict_or_a_status():
    with pytest.raises(ValueError, match="needs a verdict or an explicit status"):
        case_entry({"model": "m", "combo": "fp32"})
    entry = case_entry(None, model="m", combo="fp16", status="error")
    assert entry == {"model": "m", "combo": "fp16", "status": "error", "measurement": None, "verdict": None}


def _bad(tmp_path: Path, data: object, raw: str | None = None) -> str:
    path = tmp_path / "bad.json"
    path.write_text(raw if raw is not None else json.dumps(data))
    with pytest.raises(ResultsFileError) as info:
        load_results(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    return message


def _with(**changes: object) -> dict:
    document = factory.document(combos=["fp32", "bf16"])
    document.update(changes)
    return document


def test_older_schema_names_the_accepted_versions(tmp_path):
    message = _bad(tmp_path, _with(schema_version=0))
    assert "schema_version 0 is older" in message and f"accepted: {ACCEPTED_VERSIONS[0]}" in message
    assert "regenerate" in message


def test_newer_schema_says_upgrade_perfsuite(tmp_path):
    message = _bad(tmp_path, _with(schema_version=SCHEMA_VERSION + 1))
    assert "is newer than this perfsuite reads" in message and "upgrade perfsuite" in message


@pytest.mark.parametrize("version", ["1", 1.5, True, None])
def test_unknown_schema_version(tmp_path, version):
    message = _bad(tmp_path, _with(schema_version=version))
    assert f"unknown schema_version {version!r}" in message and "accepted: 1" in message


def test_missing_schema_version(tmp_path):
    document = _with()
    del document["schema_version"]
    assert "missing schema_version" in _bad(tmp_path, document)


def test_not_json(tmp_path):
    assert "not valid JSON" in _bad(tmp_path, None, raw="{ not json")


def test_not_an_object(tmp_path):
    assert "holds a JSON list, not an object" in _bad(tmp_path, [1, 2])


def test_wrong_kind(tmp_path):
    message = _bad(tmp_path, _with(kind="pytest-benchmark"))
    assert "kind is 'pytest-benchmark', not 'perfsuite-results'" in message


def test_missing_top_level_keys(tmp_path):
    document = _with()
    del document["machine"], document["errors"]
    assert "top level: missing key(s) machine, errors" in _bad(tmp_path, document)


def test_unknown_top_level_key(tmp_path):
    assert "unknown key(s) extra" in _bad(tmp_path, _with(extra=1))


def test_case_with_missing_keys(tmp_path):
    document = _with()
    del document["cases"][1]["measurement"]
    assert "cases[1]: missing key(s) measurement" in _bad(tmp_path, document)


def test_case_with_bad_status_or_verdict(tmp_path):
    document = _with()
    document["cases"][0]["status"] = "great"
    assert "cases[0] (tiny-sd/fp32).status = 'great'" in _bad(tmp_path, document)
    document = _with()
    document["cases"][0]["verdict"] = {"model": "x"}
    assert "cases[0] (tiny-sd/fp32).verdict: not a verdict" in _bad(tmp_path, document)


def test_only_an_error_or_a_failure_with_its_verdict_may_lack_a_measurement(tmp_path):
    document = _with()
    document["cases"][0]["measurement"] = None
    assert "cases[0] (tiny-sd/fp32).measurement is null" in _bad(tmp_path, document)
    document["cases"][0]["status"] = "fail"  # ended before it was measured: the verdict says why
    validate_results(document)
    document["cases"][0]["verdict"] = None
    assert "cases[0] (tiny-sd/fp32).measurement is null" in _bad(tmp_path, document)


def test_case_images_must_be_relative(tmp_path):
    document = _with()
    document["cases"][0]["images"] = {"obtained": "/etc/x.png"}
    assert "is not a relative path" in _bad(tmp_path, document)
    document["cases"][0]["images"] = {"thumbnail": "x.png"}
    assert "unknown kind 'thumbnail'" in _bad(tmp_path, document)


def test_duplicate_case_in_one_file(tmp_path):
    document = _with()
    document["cases"].append(dict(document["cases"][0]))
    assert "case tiny-sd/fp32 appears twice (cases[0] and cases[2])" in _bad(tmp_path, document)


def test_missing_file(tmp_path):
    with pytest.raises(ResultsFileError, match=r"nope\.json: no such results file"):
        load_results(tmp_path / "nope.json")


# --- merge -------------------------------------------------------------------------------------------


def test_disjoint_shards_merge_to_the_union(tmp_path):
    first = factory.document(combos=["fp32", "bf16"], created="2025-01-02T03:00:00+00:00")
    second = factory.document(combos=["bf16+sdpa-flash"], created="2025-01-02T04:00:00Z")
    second["errors"] = [{"model": factory.MODEL, "combo": "fp16", "message": "boom"}]
    merged = merge_results([first, second], sources=["a.json", "b.json"])
    keys = [f"{c['model']}/{c['combo']}" for c in merged["cases"]]
    assert keys == ["tiny-sd/fp32", "tiny-sd/bf16", "tiny-sd/bf16+sdpa-flash"]
    assert merged["errors"] == second["errors"] and len(merged["skipped"]) == 2
    assert merged["created"] == "2025-01-02T04:00:00Z" and merged["commit"] == first["commit"]
    assert [m["source"] for m in merged["merged_from"]] == ["a.json", "b.json"]
    assert merged["machine"] == first["machine"] and merged["models"] == [factory.MODEL]
    path = write_results(tmp_path / "all.json", merged)
    assert load_results(path) == merged


def test_a_case_in_two_shards_is_an_error_naming_both():
    one, two = factory.document(combos=["fp32", "bf16"]), factory.document(combos=["bf16"])
    with pytest.raises(ResultsMergeError, match=r"case tiny-sd/bf16 appears in both a.json and b.json"):
        merge_results([one, two], sources=["a.json", "b.json"])


def test_shards_of_different_profiles_do_not_merge():
    one, two = factory.document(combos=["fp32"]), factory.document(combos=["bf16"])
    two["profile"] = "cuda-nvidia-h200"
    with pytest.raises(
        ResultsMergeError, match=r"a.json has 'cpu-test-cpu-2c', b.json has 'cuda-nvidia-h200'"
    ):
        merge_results([one, two], sources=["a.json", "b.json"])


def test_an_invalid_shard_is_named():
    one, two = factory.document(combos=["fp32"]), factory.document(combos=["bf16"])
    two["schema_version"] = 99
    with pytest.raises(ResultsFileError, match=r"^b.json: schema_version 99 is newer"):
        merge_results([one, two], sources=["a.json", "b.json"])


def test_image_paths_are_rebased_to_the_merged_file(tmp_path):
    document = factory.document(combos=["fp32"])
    document["cases"][0]["images"] = {"obtained": "images/tiny-sd/fp32.obtained.png"}
    moved = rebase_images(validate_results(document), tmp_path / "shard1", tmp_path)
    assert moved["cases"][0]["images"]["obtained"] == "shard1/images/tiny-sd/fp32.obtained.png"
    assert document["cases"][0]["images"]["obtained"] == "images/tiny-sd/fp32.obtained.png"
