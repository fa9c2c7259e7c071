"""A plain ``pip install google-auth-aiohttp`` works on Compute Engine.

google-auth's ``compute_engine`` imports ``requests`` when it loads; without
it, ``default()`` says no credentials were found on a real metadata server.
The package is installed, alone, into a fresh virtual environment, and run
there against the emulator's metadata server.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import sys
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

    Built once per run in ``directory``, in the background from the moment
    the suite is collected (pip takes ~15-25 s), so that the test finds it
    ready or nearly so instead of the suite waiting for it. Under
    pytest-xdist every worker collects the test and calls :meth:`start`: the
    first to claim the directory builds, the others find it claimed. The
    build holds a lock on :attr:`_lock` until it ends, which :meth:`ready`
    waits on, whichever process started it.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.python = directory / "venv" / "bin" / "python"
        self.log = directory / "install.log"
        self._lock = directory / "building"
        self._code = directory / "exit-code"
        self._group = directory / "process-group"

    def start(self) -> None:
        """Start the build in the background, unless a process of the run has."""
        claim = self.directory / f"claim-{os.getpid()}"
        with claim.open("wb") as held:
            # Locked before it is the claim: nobody sees the claim unlocked.
            fcntl.flock(held, fcntl.LOCK_EX)
            try:
                os.link(claim, self._lock)
            except FileExistsError:
                return  # another process builds
            finally:
                claim.unlink()
            make = [sys.executable, "-m", "venv", str(self.python.parent.parent)]
            install = [str(self.python), "-m", "pip", "install", "--quiet"]
            install += ["--disable-pip-version-check", str(ROOT)]
            build = f"{shlex.join(make)} && {shlex.join(install)}"
            code, log = shlex.quote(str(self._code)), shlex.quote(str(self.log))
            # The build outlives the shell, which returns at once; it keeps
            # the lock (the inherited descriptor) until it has written its code.
            starter = subprocess.Popen(
                ["sh", "-c", f"({build}; echo $? > {code}) > {log} 2>&1 &"],
                start_new_session=True,
                pass_fds=[held.fileno()],
            )
            starter.wait()
            self._group.write_text(str(starter.pid))

    async def ready(self) -> tuple[int, str]:
        """Wait for the build to end; return its exit code and its output."""

        def wait() -> int:
            with self._lock.open("rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_SH)
            return int(self._code.read_text()) if self._code.exists() else -1

        code = await asyncio.wait_for(asyncio.to_thread(wait), 600)
        return code, self.log.read_text() if self.log.exists() else ""

    def remove(self) -> None:
        """Stop the build if it still runs, and remove the directory."""
        if self._group.exists() and not self._code.exists():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(self._group.read_text()), signal.SIGKILL)
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
