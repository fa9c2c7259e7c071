"""The README and the docs say what users need, in code they can paste.

tests/test_examples.py runs the examples; these tests read them: each one
complete (every name it uses defined in it), each response released, public
API only, and the reference and the testing page complete.
"""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path

import pytest

import google_auth_aiohttp
from google_auth_aiohttp import id_token, pytest_plugin, testing

from .test_examples import EXAMPLES, NEEDS_GOOGLE

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.rst"))]
VERBS = {"get", "post", "put", "patch", "delete", "head", "options", "request"}


def _text(page: str) -> str:
    return (ROOT / page).read_text(encoding="utf-8")


def _bound_names(tree: ast.AST) -> set[str]:
    # Names bound anywhere in the example, whatever the scope: an example is
    # short, and what matters is that a reader finds every name defined in it.
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound


@pytest.mark.parametrize(("where", "code"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_every_example_defines_the_names_it_uses(where: str, code: str) -> None:
    tree = ast.parse(code)
    used = {
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }
    assert used - _bound_names(tree) - set(dir(builtins)) == set()


def _session_calls(tree: ast.AST) -> list[ast.Await]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Await)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Attribute)
        and node.value.func.attr in VERBS
        and isinstance(node.value.func.value, ast.Name)
        and "session" in node.value.func.value.id
    ]


@pytest.mark.parametrize(("where", "code"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_every_example_releases_its_responses(where: str, code: str) -> None:
    tree = ast.parse(code)
    closed = {
        node.func.value.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in {"release", "close"}
        and isinstance(node.func.value, ast.Name)
    }
    kept = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id in closed
    }
    # ``async with session.get(...)`` has no await: a call awaited bare is
    # one whose response nobody releases, unless a name kept it and is closed.
    unreleased = [call for call in _session_calls(tree) if id(call) not in kept]
    assert [ast.unparse(call) for call in unreleased] == []


@pytest.mark.parametrize(("where", "code"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_every_example_uses_only_google_auths_public_modules(
    where: str, code: str
) -> None:
    imported = [
        name
        for node in ast.walk(ast.parse(code))
        for name in (
            [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            if isinstance(node, ast.ImportFrom)
            else [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else []
        )
    ]
    private = [
        name
        for name in imported
        if name.startswith(("google.auth", "google.oauth2"))
        and any(part.startswith("_") for part in name.split("."))
    ]
    assert private == []


@pytest.mark.parametrize(("where", "code"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_no_example_names_the_emulator_google(where: str, code: str) -> None:
    assert not re.search(r"\bas google\b", code)


def test_the_docs_spell_audiences_as_the_cli_help_does() -> None:
    for page in PAGES:
        for line in page.read_text(encoding="utf-8").splitlines():
            if "--audience" in line and "is the same option" not in line:
                assert re.search(r"--audience\b(?!s)", line) is None, (page, line)


@pytest.mark.parametrize(
    ("page", "fence"), [("README.md", "```sh\n"), ("docs/quickstart.rst", "   ")]
)
def test_the_quick_start_begins_with_pip_install(page: str, fence: str) -> None:
    text = _text(page)
    start = text.index("Quick start")
    first_code = text.index(fence, start) + len(fence)
    assert text[first_code:].startswith("pip install google-auth-aiohttp\n")


@pytest.mark.parametrize("page", ["README.md", "docs/quickstart.rst"])
def test_the_first_example_runs_without_a_google_account(page: str) -> None:
    heading = _text(page)[: _text(page).index("Quick start")].count("\n") + 1
    [first, second, *_] = [
        code
        for where, code in EXAMPLES
        if where.startswith(page) and int(where.rpartition(":")[2]) > heading
    ]
    assert NEEDS_GOOGLE not in first and "GoogleEmulator()" in first
    assert "asyncio.run(main())" in first
    assert second.startswith(NEEDS_GOOGLE) and "from_service_account_file" in second


def test_the_api_reference_names_every_public_name() -> None:
    reference = _text("docs/api.rst")
    public = {
        *google_auth_aiohttp.__all__,
        *id_token.__all__,
        *testing.__all__,
        "google_emulator",
    }
    assert hasattr(pytest_plugin, "google_emulator")
    missing = {name for name in public if not re.search(rf"\b{name}\b", reference)}
    assert missing == set()


def test_the_testing_page_names_every_knob_of_the_emulator() -> None:
    page = _text("docs/testing.rst")
    knobs = {
        *(name for name in vars(testing.GoogleEmulator) if name[0] != "_"),
        *(name for name in vars(testing.Gate) if name[0] != "_"),
        *("arrivals", "held"),
    }
    knobs.discard("pass_through")  # what the endpoints call, not a knob
    missing = {knob for knob in knobs if not re.search(rf"\b{knob}\b", page)}
    assert missing == set()
    assert "GCE_METADATA_HOST" in page and "GCE_METADATA_IP" in page
