"""nox sessions for perfsuite. ``nox`` runs the cheap ones; costly sessions are opt-in with ``-s``.

Arguments after ``--`` are passed to pytest, e.g. ``nox -s perf -- --perf-preset single``.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint"]
nox.options.reuse_existing_virtualenvs = True


def _install(session: nox.Session) -> None:
    session.install("-e", ".[dev]")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the unit tests (fast, CPU)."""
    _install(session)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Lint with ruff and type-check with mypy."""
    _install(session)
    session.run("ruff", "check", ".")
    session.run("mypy")


@nox.session(default=False)
def perf(session: nox.Session) -> None:
    """Run the performance suite (default: ladder preset on tiny-sd, on CUDA if present)."""
    _install(session)
    session.run("pytest", "tests/perf", *session.posargs)


@nox.session(name="update-baselines", default=False)
def update_baselines(session: nox.Session) -> None:
    """Re-measure the selected cases and rewrite their stored baselines (never policy.toml)."""
    _install(session)
    session.run("pytest", "tests/perf", "--perf-update-baselines", *session.posargs)
    session.log("review the change with `git diff baselines/` and commit it with the pull request")


@nox.session(default=False)
def stability(session: nox.Session) -> None:
    """Run the gated suite 10 times on unchanged code and count false alarms."""
    _install(session)
    session.run("python", "scripts/gate-stability.py", *session.posargs)
