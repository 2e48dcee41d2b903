"""Base and head in one run (``--perf-ab-base=PYTHON``): every case measured in two environments,
call by call, so that the machine's drift cancels out of the head/base ratio.

* :mod:`~perfsuite.ab.protocol` -- the versioned JSON-lines protocol between head and base.
* :mod:`~perfsuite.ab.worker` -- the base side, ``PYTHON -m perfsuite.ab.worker``.
* :mod:`~perfsuite.ab.client` -- the head's handle on one worker process: start, requests, stop.
* :mod:`~perfsuite.ab.schedule` -- ABBA order and adaptive sampling of the pairs.
* :mod:`~perfsuite.ab.head` -- the session's base worker and one case's comparison: both sides
  prepared, paired, judged input.

Importing this package is cheap (no torch): the head checks a base interpreter with it.
"""

from __future__ import annotations

__all__: list[str] = []
