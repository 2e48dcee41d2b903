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
