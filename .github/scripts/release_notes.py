"""Print the CHANGELOG.md section of one version: the GitHub Release's notes.

    python .github/scripts/release_notes.py v1.2.3 > notes.md

The section is the text under ``## [1.2.3]`` (a date may follow) up to the next
``## `` heading. A version with no section, or an empty one, is an error: a
release is not published without its notes.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path


def section(changelog: str, version: str) -> str:
    """The notes of ``version`` (``v1.2.3`` or ``1.2.3``) in ``changelog``.

    Raises:
        LookupError: The changelog has no section for the version, or it is empty.
    """
    version = version.removeprefix("v")
    heading = re.compile(rf"^## \[{re.escape(version)}\](?:\s.*)?$", re.MULTILINE)
    found = heading.search(changelog)
    if found is None:
        raise LookupError(f"CHANGELOG.md has no section ## [{version}]")
    following = re.compile(r"^## ", re.MULTILINE).search(changelog, found.end())
    end = following.start() if following else len(changelog)
    notes = changelog[found.end() : end].strip()
    # Keep a Changelog's link definitions close the file, not a section.
    notes = re.sub(r"(?m)^\[[^\]]+\]: \S+\s*$", "", notes).strip()
    if not notes:
        raise LookupError(f"CHANGELOG.md's section ## [{version}] is empty")
    return notes + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the notes; 1, with the reason on stderr, when there are none."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version", help="the tag, v1.2.3, or the version, 1.2.3")
    parser.add_argument("--changelog", type=Path, default=Path("CHANGELOG.md"))
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(section(args.changelog.read_text("utf-8"), args.version))
    except LookupError as error:
        print(f"release_notes: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
