"""A shared refresh outlives any one session, event loop or stalled token endpoint."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from google.auth import exceptions
from google.auth.credentials import TokenState
from google.oauth2 import _service_account_async, service_account

from google_auth_aiohttp import AuthMiddleware, AuthorizedSession
from google_auth_aiohttp._credentials import threads as _sync_transport
from google_auth_aiohttp.testing import GoogleEmulator

from .conftest import SCOPE, expire, make_stale, refresh_waiters, until

FAMILIES = {
    "async": _service_account_async.Credentials,
    "sync": service_account.Credentials,
}


@pytest.fixture(params=sorted(FAMILIES))
def family(request: Any) -> Any:
    return FAMILIES[request.param]


async def _status(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as response:
        return response.status


@pytest.fixture
def threaded_google() -> Iterator[GoogleEmulator]:
    """An emulator on a loop of its own, in a thread: it outlives test loops."""
    loop = asyncio.new_event_loop()
    emulator = GoogleEmulator()
    thread = threading.Thread(target=loop.run_forever, name="emulator")
    thread.start()
    asyncio.run_coroutine_threadsafe(emulator.start(), loop).result(10)
    try:
        yield emulator
    finally:
        asyncio.run_coroutine_threadsafe(emulator.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# -- Sessions -----------------------------------------------------------------


async def test_closing_the_session_a_refresh_runs_over_fails_no_other_session(
    google: GoogleEmulator, family: Any
) -> None:
    credentials = family.from_service_account_info(
        google.service_account_info(), scopes=[SCOPE]
    )
    google.token_gate.close()  # the token request is held
    first = AuthorizedSession(credentials)
    async with AuthorizedSession(credentials) as second:
        starter = asyncio.create_task(_status(first, google.api_url("a")))
        await google.token_gate.arrived(1)  # its refresh is on its way, over `first`
        waiter = asyncio.create_task(_status(second, google.api_url("b")))
        await refresh_waiters(credentials, 2)
        await first.close()
        google.token_gate.open()
        assert await waiter == 200
    with pytest.raises(aiohttp.ClientConnectionError, match="session was closed"):
        await starter  # the closed session's own call is not sent
    assert google.token_requests == 1  # closing `first` did not end its refresh


async def test_a_plain_session_closing_mid_refresh_fails_no_other(
    google: GoogleEmulator, credentials: Any
) -> None:
    google.token_gate.close()
    first = aiohttp.ClientSession(middlewares=[AuthMiddleware(credentials)])
    async with aiohttp.ClientSession(middlewares=[AuthMiddleware(credentials)]) as s:
        starter = asyncio.create_task(_status(first, google.api_url("a")))
        await google.token_gate.arrived(1)
        waiter = asyncio.create_task(_status(s, google.api_url("b")))
        await refresh_waiters(credentials, 2)
        await first.close()
        google.token_gate.open()
        assert await waiter == 200
    with pytest.raises((exceptions.TransportError, aiohttp.ClientError)):
        await starter


async def test_one_session_per_call_renews_a_stale_token_in_the_background(
    google: GoogleEmulator, family: Any, caplog: pytest.LogCaptureFixture
) -> None:
    credentials = family.from_service_account_info(
        google.service_account_info(), scopes=[SCOPE]
    )
    loop = asyncio.get_running_loop()
    async with AuthorizedSession(credentials) as session:
        assert await _status(session, google.api_url("warm")) == 200
    old_token = credentials.token
    make_stale(credentials)
    google.token_delay = 0.3
    slowest = 0.0
    for i in range(12):
        started = loop.time()
        async with AuthorizedSession(credentials) as session:  # one per call
            assert await _status(session, google.api_url(f"c{i}")) == 200
        slowest = max(slowest, loop.time() - started)
        await asyncio.sleep(0.05)
    assert slowest < 0.25  # nobody waited for the 0.3 s token request
    assert credentials.token != old_token  # renewed before it expired
    assert credentials.token_state is TokenState.FRESH
    assert google.token_requests == 2
    assert "Background refresh failed" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- Event loops --------------------------------------------------------------


def test_a_loop_closed_mid_refresh_leaves_nothing_stuck(
    threaded_google: GoogleEmulator, family: Any
) -> None:
    google = threaded_google
    credentials = family.from_service_account_info(
        google.service_account_info(), scopes=[SCOPE]
    )
    returned: list[float] = []
    if family is service_account.Credentials:
        refresh = credentials.refresh

        def timed_refresh(request: Any) -> None:
            try:
                refresh(request)
            finally:
                returned.append(time.monotonic())

        credentials.refresh = timed_refresh

    async def warm() -> None:
        async with AuthorizedSession(credentials) as session:
            assert await _status(session, google.api_url("warm")) == 200

    async def leave_during_a_background_refresh() -> None:
        make_stale(credentials)
        google.token_delay = 5
        async with AuthorizedSession(credentials) as session:
            assert await _status(session, google.api_url("stale")) == 200
        await asyncio.sleep(0.2)  # the refresh is in flight as the loop closes

    asyncio.run(warm())
    returned.clear()
    asyncio.run(leave_during_a_background_refresh())
    closed_at = time.monotonic()
    if family is service_account.Credentials:
        deadline = closed_at + 1
        while not returned and time.monotonic() < deadline:
            time.sleep(0.02)
        assert returned and returned[0] - closed_at < 1  # the thread returned

    google.token_delay = 0.3
    before = google.token_requests

    async def many_expired_callers() -> set[int]:
        expire(credentials)
        async with AuthorizedSession(credentials) as session:
            return set(
                await asyncio.gather(
                    *(_status(session, google.api_url(f"e{i}")) for i in range(20))
                )
            )

    assert asyncio.run(many_expired_callers()) == {200}
    assert google.token_requests == before + 1

    async def stale_again() -> None:
        make_stale(credentials)
        token = credentials.token
        async with AuthorizedSession(credentials) as session:
            assert await _status(session, google.api_url("s")) == 200
            # The background refresh works again.
            await until(lambda: credentials.token != token, "a renewed token")

    asyncio.run(stale_again())
    assert google.token_requests == before + 2


def test_two_loops_in_two_threads_each_share_one_refresh(
    threaded_google: GoogleEmulator, family: Any
) -> None:
    google = threaded_google
    credentials = family.from_service_account_info(
        google.service_account_info(), scopes=[SCOPE]
    )
    google.token_delay = 0.3
    both_ready = threading.Barrier(2)

    def in_a_loop_of_its_own(name: str) -> set[int]:
        async def callers() -> set[int]:
            async with AuthorizedSession(credentials) as session:
                both_ready.wait(5)
                urls = [google.api_url(f"{name}{i}") for i in range(20)]
                return set(await asyncio.gather(*(_status(session, u) for u in urls)))

        return asyncio.run(callers())

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(in_a_loop_of_its_own, ["x", "y"]))
    assert results == [{200}, {200}]
    assert google.token_requests <= 2  # one per loop at most, not one per caller


# -- A stalled token endpoint, sync credentials --------------------------------


async def test_timed_out_sync_refreshes_leave_no_thread_behind(
    google: GoogleEmulator, service_account_info: dict[str, str]
) -> None:
    credentials = service_account.Credentials.from_service_account_info(
        service_account_info, scopes=[SCOPE]
    )
    in_refresh = [0]
    refresh = credentials.refresh

    def counted_refresh(request: Any) -> None:
        in_refresh[0] += 1
        try:
            refresh(request)
        finally:
            in_refresh[0] -= 1

    credentials.refresh = counted_refresh
    loop = asyncio.get_running_loop()
    google.token_delay = 60  # stalled
    async with AuthorizedSession(credentials, refresh_timeout=0.2) as session:
        for i in range(12):
            with pytest.raises(exceptions.TransportError, match="refresh_timeout"):
                await session.get(google.api_url(f"t{i}"))
            gave_up = loop.time()
            while in_refresh[0]:  # the worker thread returns...
                assert loop.time() - gave_up < 1  # ...within a second
                await asyncio.sleep(0.02)
            # The loop's default executor is free for everything else.
            assert await asyncio.wait_for(asyncio.to_thread(lambda: 7), 1) == 7
        google.token_delay = 0  # the endpoint recovers
        assert await _status(session, google.api_url("ok")) == 200


# -- Nothing left behind --------------------------------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _our_threads() -> int:
    return _sync_transport.live_threads()


async def test_threads_tasks_and_descriptors_stay_flat_over_200_sessions(
    google: GoogleEmulator, family: Any
) -> None:
    credentials = family.from_service_account_info(
        google.service_account_info(), scopes=[SCOPE]
    )

    async def one_session(i: int) -> None:
        async with AuthorizedSession(credentials, refresh_timeout=0.3) as session:
            kind = i % 4
            if kind == 1:
                make_stale(credentials)
            elif kind == 2:
                google.revoke_all()
            elif kind == 3 and i % 20 == 3:
                expire(credentials)
                google.token_delay = 1  # this refresh times out
            try:
                await _status(session, google.api_url(f"l{i}"))
            except exceptions.TransportError:
                pass
            finally:
                google.token_delay = 0

    for i in range(20):  # warm up: pools, threads, caches
        await one_session(i)
    await asyncio.sleep(0.5)
    fds, threads, tasks = _open_fds(), _our_threads(), len(asyncio.all_tasks())
    for i in range(20, 220):
        await one_session(i)
    await asyncio.sleep(1.2)  # background refreshes and timed-out threads end
    assert _open_fds() <= fds + 2
    assert _our_threads() <= threads
    assert len(asyncio.all_tasks()) <= tasks
