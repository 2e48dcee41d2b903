"""The performance suite: one test per model x optimization combo of the selected preset.

Written by `perfsuite init`. Run it with `python -m pytest tests/perf`; choose what runs with
`--perf-model` (a registered name, a saved pipeline folder, or NAME=PATH), `--perf-preset` (ladder,
single, pairs, full) and `--perf-device`, and filter with `-k` and `-m` (markers: compile, gpu,
slow). Each case applies its techniques, proves they are active, warms up, then times rounds
interleaved with the fp32 eager reference and gates the result against baselines/.
"""

from __future__ import annotations

import numpy as np


def test_combo(perf_case, perf_run):
    result = perf_run(perf_case)

    assert result.latency.n == result.reference_latency.n >= 3
    finite = np.isfinite(result.image)
    assert finite.all(), (
        f"{result.case_id}: {int((~finite).sum())} of {finite.size} output pixels are NaN or inf"
    )
