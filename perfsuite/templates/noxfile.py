"""nox sessions for the performance suite (written by `perfsuite init`).

`nox -s perf -- <pytest args>` runs the suite and `nox -s update-baselines -- <pytest args>`
re-measures the selected cases and rewrites their stored baselines (never policy.toml). Both are
costly, so neither runs by default. If your repository already had a noxfile.py, copy these two
sessions into it.
"""

from __future__ import annotations

from pathlib import Path

import nox


def _install(session: nox.Session) -> None:
    # On a GPU machine, install the CUDA build of torch first (the one that matches your driver).
    session.install("perfsuite")
    if Path("pyproject.toml").is_file() or Path("setup.py").is_file():
        session.install("-e", ".")  # this repository's own models and techniques (entry points)


@nox.session(default=False)
def perf(session: nox.Session) -> None:
    """Run the performance suite, gated by baselines/ (arguments after -- go to pytest)."""
    _install(session)
    session.run("pytest", "tests/perf", *session.posargs)


@nox.session(name="update-baselines", default=False)
def update_baselines(session: nox.Session) -> None:
    """Re-measure the selected cases and rewrite their stored baselines (never policy.toml)."""
    _install(session)
    session.run("pytest", "tests/perf", "--perf-update-baselines", *session.posargs)
    session.log("review the change with `git diff baselines/` and commit it with the pull request")
