"""A shared refresh outlives any one session, event loop or stalled token endpoint."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from google.auth import exceptions
from google.auth.credentials import TokenState
from google.oauth2 import _service_account_async, service_account

from google_auth_aiohttp import AuthMiddleware, AuthorizedSession
from google_auth_aiohttp._auth.refresh import refresher_for
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


@dataclass
class Threaded:
    """An emulator running on ``loop``, in another thread."""

    google: GoogleEmulator
    loop: asyncio.AbstractEventLoop

    async def token_requests_arrived(self, count: int) -> None:
        """``token_gate.arrived(count)``, awaited from any event loop."""
        arrived = self.google.token_gate.arrived(count)
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(arrived, self.loop))


@pytest.fixture
def threaded_google() -> Iterator[Threaded]:
    """An emulator on a loop of its own, in a thread: it outlives test loops."""
    loop = asyncio.new_event_loop()
    emulator = GoogleEmulator()
    thread = threading.Thread(target=loop.run_forever, name="emulator")
    thread.start()
    asyncio.run_coroutine_threadsafe(emulator.start(), loop).result(10)
    try:
        yield Threaded(emulator, loop)
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

    async def one_call(i: int) -> int:
        async with AuthorizedSession(credentials) as session:  # one per call
            return await asyncio.wait_for(_status(session, google.api_url(f"c{i}")), 5)

    assert await one_call(0) == 200
    old_token = credentials.token
    make_stale(credentials)
    google.token_gate.close()  # the background refresh is held...
    for i in range(1, 7):
        assert await one_call(i) == 200  # ...and nobody waits for it
    await google.token_gate.arrived(2)
    assert google.token_gate.held == 1  # one refresh, outliving six sessions
    google.token_gate.open()
    await until(lambda: credentials.token != old_token, "a renewed token")
    for i in range(7, 13):
        assert await one_call(i) == 200
    assert credentials.token_state is TokenState.FRESH
    assert google.token_requests == 2
    assert "Background refresh failed" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- Event loops --------------------------------------------------------------


def test_a_loop_closed_mid_refresh_leaves_nothing_stuck(
    threaded_google: Threaded, family: Any
) -> None:
    google = threaded_google.google
    credentials = family.from_service_account_info(
        google.service_account_info(), scopes=[SCOPE]
    )
    returned = threading.Event()
    if family is service_account.Credentials:
        refresh = credentials.refresh

        def announced_refresh(request: Any) -> None:
            try:
                refresh(request)
            finally:
                returned.set()

        credentials.refresh = announced_refresh

    async def warm() -> None:
        async with AuthorizedSession(credentials) as session:
            assert await _status(session, google.api_url("warm")) == 200

    async def leave_during_a_background_refresh() -> None:
        make_stale(credentials)
        google.token_delay = 5
        async with AuthorizedSession(credentials) as session:
            assert await _status(session, google.api_url("stale")) == 200
        # The refresh is in flight (held 5 s at the endpoint) as the loop closes.
        await threaded_google.token_requests_arrived(2)

    asyncio.run(warm())
    returned.clear()
    asyncio.run(leave_during_a_background_refresh())
    if family is service_account.Credentials:
        assert returned.wait(1)  # the thread returned within a second of the close

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
    threaded_google: Threaded, family: Any
) -> None:
    google = threaded_google.google
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
    loop = asyncio.get_running_loop()
    returned = asyncio.Event()
    refresh = credentials.refresh

    def announced_refresh(request: Any) -> None:
        try:
            refresh(request)
        finally:
            loop.call_soon_threadsafe(returned.set)

    credentials.refresh = announced_refresh
    google.token_gate.close()  # stalled
    async with AuthorizedSession(credentials, refresh_timeout=0.05) as session:
        for i in range(12):
            returned.clear()
            with pytest.raises(exceptions.TransportError, match="refresh_timeout"):
                await session.get(google.api_url(f"t{i}"))
            # The worker thread returns within a second, and ends.
            await asyncio.wait_for(returned.wait(), 1)
            await until(lambda: _our_threads() == 0, "the thread ended", within=1)
            # The loop's default executor is free for everything else.
            assert await asyncio.wait_for(asyncio.to_thread(lambda: 7), 1) == 7
        google.token_gate.open()  # the endpoint recovers
        assert await _status(session, google.api_url("ok")) == 200
    assert google.token_gate.arrivals == 13  # no retry behind the caller's back


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
    flights = refresher_for(credentials)._memory.flight
    timed_out: list[int] = []

    async def one_session(i: int) -> None:
        kind = i % 4
        stalls = kind == 3 and i % 20 == 3
        # Only the stalled one has a short refresh_timeout: a healthy refresh
        # on a busy machine may take longer than it.
        timeout = 0.05 if stalls else None
        async with AuthorizedSession(credentials, refresh_timeout=timeout) as session:
            if kind == 1:
                make_stale(credentials)
            elif kind == 2:
                google.revoke_all()
            elif stalls:
                expire(credentials)
                google.token_gate.close()  # this refresh times out
            try:
                assert await _status(session, google.api_url(f"l{i}")) == 200
            except exceptions.TransportError:
                timed_out.append(i)
            finally:
                google.token_gate.open()  # what it held goes on, to nobody

    def settled() -> bool:
        return flights.current() is None and _our_threads() == 0

    for i in range(20):  # warm up: pools, threads, caches
        await one_session(i)
    await until(settled, "the warm-up's refreshes and threads ended")
    fds, threads, tasks = _open_fds(), _our_threads(), len(asyncio.all_tasks())
    for i in range(20, 220):
        await one_session(i)
    assert timed_out == list(range(3, 220, 20))  # and every other call was a 200

    def flat() -> bool:
        return (
            settled()
            and _open_fds() <= fds + 2
            and _our_threads() <= threads
            and len(asyncio.all_tasks()) <= tasks
        )

    # Background refreshes, timed-out threads and closed connections end.
    await until(flat, "threads, tasks and descriptors back to where they were")
