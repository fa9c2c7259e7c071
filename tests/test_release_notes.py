"""The release workflow's notes are the changelog section of the tag."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / ".github" / "scripts" / "release_notes.py"

pytestmark = pytest.mark.skipif(
    not SCRIPT.exists(), reason="a git checkout's .github/, not in the sdist"
)

CHANGELOG = """\
# Changelog

## [Unreleased]

### Fixed
- Not yet released.

## [1.2.0] - 2027-01-02

### Added
- A feature.

### Fixed
- A bug.

## [1.1.0] - 2026-12-01

### Added
- An older feature.

[1.2.0]: https://example.test/compare/v1.1.0...v1.2.0
[1.1.0]: https://example.test/releases/v1.1.0
"""


def notes(
    tmp_path: Path, version: str, changelog: str = CHANGELOG
) -> tuple[int, str, str]:
    path = tmp_path / "CHANGELOG.md"
    path.write_text(changelog, "utf-8")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), version, "--changelog", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def test_the_tag_s_section_is_printed_without_its_heading(tmp_path: Path) -> None:
    status, out, _ = notes(tmp_path, "v1.2.0")
    assert status == 0
    assert out == "### Added\n- A feature.\n\n### Fixed\n- A bug.\n"


def test_the_last_section_ends_before_the_link_definitions(tmp_path: Path) -> None:
    status, out, _ = notes(tmp_path, "1.1.0")
    assert status == 0
    assert out == "### Added\n- An older feature.\n"


def test_a_version_is_not_a_prefix_of_another(tmp_path: Path) -> None:
    status, _, err = notes(tmp_path, "v1.2")
    assert status == 1
    assert "no section ## [1.2]" in err


def test_a_version_without_notes_is_an_error(tmp_path: Path) -> None:
    status, out, err = notes(
        tmp_path, "v2.0.0", "## [2.0.0] - 2027-02-03\n\n## [1.0.0]\n- x\n"
    )
    assert status == 1
    assert out == ""
    assert "section ## [2.0.0] is empty" in err
