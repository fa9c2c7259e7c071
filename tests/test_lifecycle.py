"""No warnings from importing, subclassing or a full session lifecycle."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

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


_LEAVE_MID_REFRESH = textwrap.dedent(
    """
    import asyncio, datetime, threading, time
    from google.oauth2 import _service_account_async, service_account
    from google_auth_aiohttp import AuthorizedSession
    from google_auth_aiohttp.testing import GoogleEmulator

    # The token endpoint runs in a thread of its own, and outlives main().
    server_loop = asyncio.new_event_loop()
    # Under -X dev, a step over 0.1 s is logged; on a loaded machine the
    # emulator's start takes that long. What this test hears is the leaving.
    server_loop.slow_callback_duration = 10
    threading.Thread(target=server_loop.run_forever, daemon=True).start()
    google = GoogleEmulator()
    asyncio.run_coroutine_threadsafe(google.start(), server_loop).result(10)
    info = google.service_account_info()
    family = {"sync": service_account, "async": _service_account_async}[FAMILY]
    creds = family.Credentials.from_service_account_info(info, scopes=["s"])

    async def main():
        asyncio.get_running_loop().slow_callback_duration = 10
        async with AuthorizedSession(creds) as session:
            assert (await session.get(google.api_url("a"))).status == 200
        creds.expiry = datetime.datetime.now(datetime.UTC).replace(
            tzinfo=None
        ) + datetime.timedelta(seconds=60)
        google.token_delay = 30  # the background refresh is stuck
        async with AuthorizedSession(creds) as session:
            assert (await session.get(google.api_url("b"))).status == 200
        # It is in flight, at the token endpoint, as the loop goes away.
        arrived = google.token_gate.arrived(2)
        await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(arrived, server_loop)
        )

    asyncio.run(main())
    print("done", flush=True)
    """
)


@pytest.mark.parametrize("family", ["sync", "async"])
def test_leaving_during_a_background_refresh_is_quiet_and_prompt(family: str) -> None:
    script = f"FAMILY = {family!r}\n{_LEAVE_MID_REFRESH}"
    started = time.monotonic()
    result = _run("-X", "dev", "-W", "error", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert result.stderr == ""  # no "Unclosed client session", no warnings
    assert time.monotonic() - started < 5  # no thread held the exit for 30 s
