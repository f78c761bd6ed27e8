"""Sessions: ``tests`` (the README's test command), ``lint`` and ``bench``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite, end-to-end tests with real nginx, Caddy and app servers included."""
    session.run("bash", ".ci/system-deps", external=True)
    session.install("-e", ".[test,s3]")
    session.run("pytest", "-ra", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy --strict."""
    session.install("-e", ".[lint,s3]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
def bench(session: nox.Session) -> None:
    """Every contender in one run; ``-- --quick`` for the CI smoke run."""
    session.run("bash", ".ci/system-deps", external=True)
    session.install("-e", ".[bench,s3]")
    session.run("python", "benchmarks/run.py", *session.posargs)
