"""Every Python example in README.md and the docs runs, against the emulator.

An example that needs a real Google account says so in its first line
(``# Needs a Google account``): it is compiled, not run. The others run as a
reader pastes them, with no name defined beforehand (they start their own
emulator), and a ``test_*`` coroutine function they define that takes no
argument is awaited too. One that sets ``os.environ`` (what google-auth reads
when it is imported) runs in a process of its own. tests/test_docs.py checks
that every example, run or not, defines each name it uses.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
NEEDS_GOOGLE = "# Needs a Google account"


def _markdown_blocks(path: Path) -> list[tuple[str, str]]:
    text = path.read_text(encoding="utf-8")
    return [
        (f"{path.name}:{text[: m.start()].count(chr(10)) + 2}", m.group(1))
        for m in re.finditer(r"^```python\n(.*?)^```", text, re.M | re.S)
    ]


def _rst_blocks(path: Path) -> list[tuple[str, str]]:
    blocks = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if line.strip() != ".. code-block:: python":
            continue
        indent = len(line) - len(line.lstrip()) + 3
        body = []
        for following in lines[number + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) < indent:
                break
            body.append(following)
        code = textwrap.dedent("\n".join(body)).strip("\n")
        code = "\n".join(
            line for line in code.splitlines() if not line.lstrip().startswith(":")
        )
        blocks.append((f"{path.relative_to(ROOT)}:{number + 1}", code.strip() + "\n"))
    return blocks


EXAMPLES = _markdown_blocks(ROOT / "README.md") + [
    block
    for page in sorted((ROOT / "docs").glob("*.rst"))
    for block in _rst_blocks(page)
]


def test_the_docs_have_examples() -> None:
    assert len(EXAMPLES) >= 20
    assert any(NEEDS_GOOGLE not in code for _, code in EXAMPLES)


@pytest.mark.parametrize(("where", "code"), EXAMPLES, ids=[w for w, _ in EXAMPLES])
async def test_example(where: str, code: str) -> None:
    compiled = compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if code.startswith(NEEDS_GOOGLE):
        return  # compiled: its syntax and top-level awaits are sound
    names: dict[str, Any] = {"__name__": "__example__"}
    if "os.environ[" in code:  # sets what google-auth reads at import
        await _run_in_a_process_of_its_own(code)
        return
    if "asyncio.run(" in code:  # a script of its own: its own event loop
        await asyncio.to_thread(exec, compiled, names)
        return
    result = eval(compiled, names)
    if asyncio.iscoroutine(result):
        await result
    for name, value in names.items():
        if (
            name.startswith("test_")
            and inspect.iscoroutinefunction(value)
            and not inspect.signature(value).parameters
        ):
            await value()


async def _run_in_a_process_of_its_own(code: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-c",
        code,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, out.decode()


@pytest.mark.parametrize("mode", ["strict", "auto"])
async def test_the_fixture_example_passes_in_pytest_asyncios_modes(
    mode: str, tmp_path: Path
) -> None:
    [code] = [c for _, c in EXAMPLES if "def test_my_client(google_emulator)" in c]
    if mode == "auto":
        code = code.replace("@pytest.mark.asyncio\n", "")
    (tmp_path / "test_user.py").write_text(code)
    (tmp_path / "pytest.ini").write_text(
        f"[pytest]\nasyncio_mode = {mode}\n"
        "asyncio_default_fixture_loop_scope = function\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-W",
        "error",
        str(tmp_path),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, out.decode()
    assert "1 passed" in out.decode()
