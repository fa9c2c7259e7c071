"""No warnings from importing, subclassing or a full session lifecycle."""

from __future__ import annotations

import subprocess
import sys
import textwrap

_LIFECYCLE = textwrap.dedent(
    """
    import asyncio, gc
    from google.oauth2 import _service_account_async
    from google_auth_aiohttp import AuthMiddleware, AuthorizedSession, Request
    from google_auth_aiohttp.testing import GoogleEmulator
    import aiohttp

    async def main():
        # Debug mode logs callbacks slower than 0.1 s; generating an RSA key
        # for the emulator is one, and is not what this test is about.
        asyncio.get_running_loop().slow_callback_duration = 10
        async with GoogleEmulator() as google:
            creds = _service_account_async.Credentials.from_service_account_info(
                google.service_account_info(), scopes=["s"]
            )
            async with AuthorizedSession(creds) as session:
                async with session.get(google.api_url("a")) as response:
                    assert response.status == 200
                google.revoke_all()
                assert (await session.get(google.api_url("b"))).status == 200
            async with aiohttp.ClientSession(
                middlewares=[AuthMiddleware(creds)]
            ) as plain:
                async with plain.get(google.api_url("c")) as response:
                    assert response.status == 200
            request = Request()
            creds.token = None
            await creds.refresh(request)
            await request.close()
        gc.collect()

    asyncio.run(main())
    gc.collect()
    print("done")
    """
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120
    )


def test_import_emits_no_warnings() -> None:
    result = _run("-W", "error", "-c", "import google_auth_aiohttp")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_full_lifecycle_emits_no_warnings_even_in_debug_mode() -> None:
    # -X dev turns on asyncio's and aiohttp's debug checks (aiohttp then warns
    # about undeclared ClientSession attributes) and shows ResourceWarnings.
    result = _run("-X", "dev", "-W", "error", "-c", _LIFECYCLE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert result.stderr == ""


def test_importing_does_not_load_requests_or_urllib3() -> None:
    result = _run(
        "-c",
        "import sys, google_auth_aiohttp;"
        "print(sorted({'requests', 'urllib3'} & set(sys.modules)))",
    )
    assert result.stdout.strip() == "[]", result.stderr
