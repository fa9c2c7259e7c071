"""Refresh the cached inventories the docs build falls back on when offline.

Run it with a network, from anywhere: ``python docs/_inventories/refresh.py``.
It downloads each project's ``objects.inv`` from the site ``docs/conf.py``
links to, checks that Sphinx can read it, and writes it beside this file as
``NAME.inv``; then commit the changed files. A project that fails keeps its
old copy, and the script exits 1.
"""

from __future__ import annotations

import ast
import io
import posixpath
import sys
import urllib.request
from pathlib import Path

from sphinx.util.inventory import InventoryFile

HERE = Path(__file__).resolve().parent


def _projects() -> dict[str, str]:
    """The ``_PROJECTS`` table of docs/conf.py, read without running it."""
    tree = ast.parse((HERE.parent / "conf.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "_PROJECTS"
            for target in node.targets
        ):
            projects: dict[str, str] = ast.literal_eval(node.value)
            return projects
    raise SystemExit("docs/conf.py has no _PROJECTS table")


def main() -> int:
    failed = 0
    for name, url in _projects().items():
        address = posixpath.join(url, "objects.inv")
        try:
            with urllib.request.urlopen(address, timeout=30) as response:
                data = response.read()
            inventory = InventoryFile.load(io.BytesIO(data), url, posixpath.join)
        except Exception as error:  # reported; the exit code says so
            print(f"{name}: {address}: {error}", file=sys.stderr)
            failed += 1
            continue
        (HERE / f"{name}.inv").write_bytes(data)
        objects = sum(len(entries) for entries in inventory.values())
        print(f"{name}: {objects} objects from {address}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
