"""A plain ``pip install google-auth-aiohttp`` works on Compute Engine.

google-auth's ``compute_engine`` imports ``requests`` when it loads; without
it, ``default()`` says no credentials were found on a real metadata server.
The package is installed, alone, into a fresh virtual environment, and run
there against the emulator's metadata server.
"""

from __future__ import annotations

import asyncio
import os
import textwrap
import venv
from pathlib import Path

from google_auth_aiohttp.testing import GoogleEmulator

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys

    import requests

    def refuse(*args, **kwargs):
        raise AssertionError("something was sent through requests")

    requests.Session.request = refuse

    import google_auth_aiohttp
    from google.auth import compute_engine

    async def main():
        credentials, project = await google_auth_aiohttp.default()
        assert isinstance(credentials, compute_engine.Credentials), credentials
        async with google_auth_aiohttp.AuthorizedSession(credentials) as session:
            async with session.get(sys.argv[1]) as response:
                print(project, response.status)

    asyncio.run(main())
    """
)


async def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 600)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_a_plain_install_gets_compute_engine_credentials(
    gce: GoogleEmulator, tmp_path: Path
) -> None:
    target = tmp_path / "venv"
    await asyncio.to_thread(venv.create, target, with_pip=True)
    python = str(target / "bin" / "python")
    code, out = await _run(
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        str(ROOT),
    )
    assert code == 0, out
    code, out = await _run(python, "-m", "pip", "list", "--format=freeze")
    installed = {line.split("==")[0].lower() for line in out.split()}
    assert "requests" in installed  # for google-auth's import, never for sending
    script = tmp_path / "plain.py"
    script.write_text(SCRIPT)
    env = {
        key: value
        for key, value in os.environ.items()
        if key.startswith("GCE_METADATA") or key in ("PATH", "HOME", "CLOUDSDK_CONFIG")
    }
    code, out = await _run(python, str(script), gce.api_url("plain"), env=env)
    assert code == 0, out
    assert out.split() == [gce.project_id, "200"]
