"""The performance suite: one test per model x optimization combo of the selected preset.

Select with ``--perf-model``, ``--perf-preset`` and ``--perf-device``; filter with ``-k`` and ``-m``
(markers: ``compile``, ``gpu``, ``slow``). Each case applies its techniques, proves they are active,
warms up (recording the cold start), then times rounds interleaved with the fp32 eager reference.
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
