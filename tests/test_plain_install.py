"""A plain ``pip install google-auth-aiohttp`` works on Compute Engine.

google-auth's ``compute_engine`` imports ``requests`` when it loads; without
it, ``default()`` says no credentials were found on a real metadata server.
The package is installed, alone, into a fresh virtual environment, and run
there against the emulator's metadata server.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import textwrap
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


class PlainInstall:
    """A fresh virtual environment with the package installed alone.

    Made in another process from the moment the suite is collected (pip takes
    ~25 s, most of it waiting on the registry), so that the test finds it
    ready or nearly so instead of the suite waiting for it.
    """

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="plain-install-"))
        self.python = self.directory / "venv" / "bin" / "python"
        self.log = self.directory / "install.log"
        make = [sys.executable, "-m", "venv", str(self.python.parent.parent)]
        install = [str(self.python), "-m", "pip", "install", "--quiet"]
        install += ["--disable-pip-version-check", str(ROOT)]
        commands = f"{shlex.join(make)} && {shlex.join(install)}"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                ["sh", "-c", commands], stdout=log, stderr=subprocess.STDOUT
            )

    async def ready(self) -> tuple[int, str]:
        code = await asyncio.to_thread(self.process.wait, 600)
        return code, self.log.read_text()

    def remove(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


async def test_a_plain_install_gets_compute_engine_credentials(
    gce: GoogleEmulator, tmp_path: Path, plain_install: PlainInstall
) -> None:
    code, out = await plain_install.ready()
    assert code == 0, out
    python = str(plain_install.python)
    code, out = await _run(python, "-m", "pip", "list", "--format=freeze")
    installed = {line.split("==")[0].lower() for line in out.split()}
    assert "requests" in installed  # for google-auth's import, never for sending
    modules = "from google_auth_aiohttp.id_token import _fetch, _verify, _web"
    code, out = await _run(python, "-c", modules)
    assert code == 0, out  # the wheel holds the id_token package
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
