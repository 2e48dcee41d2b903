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
    """Run the fast tests (tests/unit, a few minutes on 2 CPU cores)."""
    _install(session)
    session.run("pytest", "tests/unit", *session.posargs)


@nox.session(default=False)
def integration(session: nox.Session) -> None:
    """Run the end-to-end tests (tests/integration: real runs of the suite through pytester)."""
    _install(session)
    session.run("pytest", "tests/integration", *session.posargs)


#: The oldest and the newest releases that pyproject.toml admits of the libraries whose APIs perfsuite
#: calls. A declared range is a promise: `nox -s versions` runs the fast tests against both ends.
VERSION_BOUNDS = {
    "floor": ("torch==2.9.0", "diffusers==0.36.0", "transformers==4.57.0", "torchao==0.14.0",
              "accelerate==1.10.0"),
    "ceiling": ("torch==2.14.1", "diffusers==0.42.1", "transformers==5.24.0", "torchao==0.18.0",
                "accelerate==1.15.0"),
}  # fmt: skip


@nox.session(default=False)
@nox.parametrize("bound", list(VERSION_BOUNDS))
def versions(session: nox.Session, bound: str) -> None:
    """Run the fast tests against the oldest and the newest torch, diffusers, transformers, torchao."""
    session.install("-e", ".[dev]", *VERSION_BOUNDS[bound])
    names = ("torch", "diffusers", "transformers", "torchao", "accelerate")
    show = "; ".join(f"import {n}; print('{n}', {n}.__version__)" for n in names)
    session.run("python", "-c", show)
    session.run("pytest", "tests/unit", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Lint with ruff and type-check with mypy."""
    _install(session)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
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
