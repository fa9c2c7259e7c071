"""Sessions CI runs (tests, lint, typecheck, docs), and the benchmark."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "tests_floors", "lint", "typecheck", "docs", "dist"]
nox.options.error_on_missing_interpreters = False

# .ci/run tests 3.11-3.13; GitHub Actions also 3.14 (.github/workflows/ci.yml).
PYTHONS = ["3.11", "3.12", "3.13", "3.14"]

PYPROJECT = nox.project.load_toml("pyproject.toml")


def _groups(*names: str) -> tuple[str, ...]:
    """A dependency group as requirements: nox's venvs need no pip >= 25.1."""
    return nox.project.dependency_groups(PYPROJECT, *names)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    session.install("-e", ".", *_groups("test"))
    session.run("python", "-m", "pytest", "-W", "error", *session.posargs)


@nox.session(python="3.11")
def tests_floors(session: nox.Session) -> None:
    """The suite on the lowest versions pyproject.toml declares."""
    session.install("-c", "constraints/floors.txt", "-e", ".", *_groups("test"))
    session.run("python", "-m", "pytest", "-W", "error", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install(*_groups("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".", *_groups("typecheck"))
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    session.install("-e", ".", *_groups("docs"))
    session.run("sphinx-build", "-W", "-n", "-b", "html", "docs", "docs/_build/html")


@nox.session
def dist(session: nox.Session) -> None:
    """Build the sdist and wheel, and check what PyPI and users will get."""
    session.install("build", "twine", "check-wheel-contents")
    session.run("rm", "-rf", "dist", external=True)
    session.run("python", "-m", "build")
    session.run("python", "-m", "twine", "check", "--strict", *_dists())
    session.run("check-wheel-contents", *_dists(".whl"))


def _dists(suffix: str = "") -> list[str]:
    import glob

    return sorted(glob.glob(f"dist/*{suffix}"))


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark against raw aiohttp and the peers; writes benchmarks/RESULTS.md."""
    _benchmark(session, "bench.py", "RESULTS.md", "--chart", "benchmarks/ratios.png")
    # ID-token verifications, a section of the same report.
    session.run("python", "benchmarks/verify.py", "--markdown", "benchmarks/RESULTS.md")


@nox.session
def instructions(session: nox.Session) -> None:
    """Count instructions per request (needs valgrind); benchmarks/INSTRUCTIONS.md."""
    _benchmark(session, "instructions.py", "INSTRUCTIONS.md")


def _benchmark(session: nox.Session, script: str, report: str, *args: str) -> None:
    session.install("-e", ".", *_groups("bench"))
    session.run(
        "python",
        f"benchmarks/{script}",
        "--markdown",
        f"benchmarks/{report}",
        *args,
        *session.posargs,
    )
