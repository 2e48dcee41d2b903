"""nox sessions for perfsuite. ``nox`` runs the cheap ones; costly sessions are opt-in with ``-s``.

Arguments after ``--`` are passed to pytest, e.g. ``nox -s perf -- --perf-preset single``.
"""

from __future__ import annotations

from pathlib import Path

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
# The ends of the ranges in pyproject.toml; keep them in step. Older releases were tried and dropped:
# see "Supported versions" in the README for what failed there.
VERSION_BOUNDS = {
    "floor": ("torch==2.13.0", "diffusers==0.42.1", "transformers==5.0.0", "torchao==0.18.0",
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


def ab_ref(posargs: list[str]) -> tuple[str, list[str]]:
    """``nox -s ab -- REF [pytest args]``: the git ref to compare with (default ``main``) and the rest."""
    if posargs and not posargs[0].startswith("-"):
        return posargs[0], posargs[1:]
    return "main", list(posargs)


@nox.session(default=False)
def ab(session: nox.Session) -> None:
    """Gate this checkout against a git ref (default main): base and head measured call by call."""
    ref, pytest_args = ab_ref(list(session.posargs))
    _install(session)
    sha = session.run("git", "rev-parse", "--verify", f"{ref}^{{commit}}", silent=True, external=True)
    sha = str(sha).strip()
    folder = Path(session.cache_dir) / "ab-base" / sha[:12]
    source, venv = folder / "src", folder / "venv"
    if not (source / "pyproject.toml").exists():
        session.run("git", "worktree", "prune", external=True)
        session.run("git", "worktree", "add", "--detach", "--force", str(source), sha, external=True)
    python = venv / "bin" / "python"
    installed = folder / "installed"
    if not installed.exists():  # a worktree and an environment per commit, reused by later runs
        session.run("python", "-m", "venv", "--clear", str(venv))
        session.run(str(python), "-m", "pip", "install", "-q", "-e", f"{source}[dev]", external=True)
        installed.write_text(sha + "\n")
    session.log(f"base: {ref} ({sha[:12]}) in {source}, python {python}")
    session.run("pytest", "tests/perf", f"--perf-ab-base={python}", *pytest_args)
