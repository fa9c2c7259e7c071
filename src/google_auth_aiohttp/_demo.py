"""``python -m google_auth_aiohttp demo``: the library at work, offline.

It starts a :class:`~google_auth_aiohttp.testing.GoogleEmulator` in process,
makes real service-account credentials for it, and drives an
:class:`~google_auth_aiohttp.AuthorizedSession` through a cold start, a token
revocation and an expiry, each under concurrent load, printing how many token
requests and API requests each took.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from dataclasses import dataclass
from typing import Any

from google.oauth2 import _service_account_async, service_account

from google_auth_aiohttp._session import AuthorizedSession
from google_auth_aiohttp.testing import GoogleEmulator

_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


@dataclass
class _Phase:
    name: str
    ok: int
    failed: int
    token_requests: int
    api_requests: int
    seconds: float


async def _phase(
    name: str, session: AuthorizedSession, google: GoogleEmulator, count: int
) -> _Phase:
    tokens_before, api_before = google.token_requests, google.api_requests

    async def fetch(i: int) -> int:
        async with session.get(google.api_url(f"items/{i}")) as response:
            await response.read()
            return response.status

    started = time.perf_counter()
    statuses = await asyncio.gather(*(fetch(i) for i in range(count)))
    seconds = time.perf_counter() - started
    ok = statuses.count(200)
    return _Phase(
        name,
        ok,
        len(statuses) - ok,
        google.token_requests - tokens_before,
        google.api_requests - api_before,
        seconds,
    )


async def _run_family(
    credentials: Any, google: GoogleEmulator, count: int
) -> list[_Phase]:
    phases = []
    async with AuthorizedSession(credentials) as session:
        phases.append(await _phase("cold start", session, google, count))
        google.revoke_all()
        phases.append(await _phase("token revoked", session, google, count))
        credentials.expiry = datetime.datetime.now(datetime.UTC).replace(
            tzinfo=None
        ) - datetime.timedelta(seconds=1)
        phases.append(await _phase("token expired", session, google, count))
        phases.append(await _phase("steady state", session, google, count))
    return phases


async def run_demo(count: int = 100) -> int:
    """Run the demo and print its report.

    Args:
        count (int): Concurrent requests in each phase.

    Returns:
        int: 0 if every phase behaved as promised, 1 otherwise.
    """
    async with GoogleEmulator() as google:
        print(f"Emulated Google endpoints at {google.url} (token endpoint, API)")
        info = google.service_account_info()
        families = {
            "async service account": _service_account_async.Credentials,
            "sync service account": service_account.Credentials,
        }
        expected_tokens = {
            "cold start": 1,
            "token revoked": 1,
            "token expired": 1,
            "steady state": 0,
        }
        good = True
        header = (
            f"  {'phase':<15}{'ok':>6}{'failed':>8}{'token requests':>16}"
            f"{'API requests':>14}{'time':>10}"
        )
        for family, credentials_class in families.items():
            # Loading the key is ~50 ms of OpenSSL checking it, with the GIL
            # held: done in a worker thread while the loop has nothing to do,
            # it holds up no callback.
            credentials = await asyncio.to_thread(
                credentials_class.from_service_account_info, info, scopes=[_SCOPE]
            )
            print(f"\n{family} credentials, {count} concurrent GETs per phase:")
            print(header)
            for phase in await _run_family(credentials, google, count):
                print(
                    f"  {phase.name:<15}{phase.ok:>6}{phase.failed:>8}"
                    f"{phase.token_requests:>16}{phase.api_requests:>14}"
                    f"{phase.seconds * 1000:>8.0f}ms"
                )
                good &= phase.failed == 0
                good &= phase.token_requests == expected_tokens[phase.name]
        print(
            "\nEvery phase made the one token request it needed and no more."
            if good
            else "\nSome phase did not behave as expected (see above)."
        )
        return 0 if good else 1
