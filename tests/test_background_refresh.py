"""A stale token keeps working while one refresh runs; sync refreshes never block."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any

import pytest
from google.auth import exceptions
from google.auth.credentials import TokenState
from google.oauth2 import service_account

from google_auth_aiohttp import AuthorizedSession
from google_auth_aiohttp._credentials import threads as _sync_transport
from google_auth_aiohttp.testing import GoogleEmulator

from .conftest import SCOPE, expire, loop_lag, make_stale, until


async def _get(session: AuthorizedSession, url: str) -> int:
    async with session.get(url) as response:
        return response.status


async def test_stale_token_is_refreshed_in_the_background(
    google: GoogleEmulator, any_credentials: Any
) -> None:
    async with AuthorizedSession(any_credentials) as session:
        assert await _get(session, google.api_url("warm")) == 200
        old_token = any_credentials.token
        make_stale(any_credentials)
        google.token_gate.close()  # the background refresh is held...
        statuses = await asyncio.wait_for(
            asyncio.gather(
                *(_get(session, google.api_url(f"s{i}")) for i in range(50))
            ),
            5,
        )
        assert set(statuses) == {200}  # ...and nobody waited for it
        assert any_credentials.token == old_token
        await google.token_gate.arrived(2)
        assert google.token_gate.held == 1  # one refresh for the 50
        google.token_gate.open()
        await until(lambda: any_credentials.token != old_token, "a renewed token")
        assert any_credentials.token_state is TokenState.FRESH
        assert await _get(session, google.api_url("after")) == 200
    assert google.token_requests == 2


async def test_failed_background_refresh_is_logged_not_raised(
    google: GoogleEmulator, any_credentials: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with AuthorizedSession(any_credentials) as session:
        assert await _get(session, google.api_url("warm")) == 200
        make_stale(any_credentials)
        google.token_error = "invalid_grant"
        assert await _get(session, google.api_url("stale")) == 200
        await until(
            lambda: "Background refresh failed" in caplog.text, "the refresh failed"
        )
        for _ in range(4):
            assert await _get(session, google.api_url("stale")) == 200
        # One attempt, then a pause before the next one.
        assert google.token_requests == 2
        assert "Background refresh failed" in caplog.text
        assert caplog.records[-1].levelno == logging.WARNING
        # Once the token has expired, the failure reaches the caller.
        expire(any_credentials)
        with pytest.raises(exceptions.RefreshError, match="invalid_grant"):
            await session.get(google.api_url("expired"))


class _CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


async def test_sync_refresh_never_blocks_the_loop_and_fresh_tokens_use_no_thread(
    google: GoogleEmulator,
    service_account_info: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    credentials = service_account.Credentials.from_service_account_info(
        service_account_info, scopes=[SCOPE]
    )
    started = [0]
    start_thread = _sync_transport._start_thread

    def counted(work: Callable[[], None]) -> None:
        started[0] += 1
        start_thread(work)

    monkeypatch.setattr(_sync_transport, "_start_thread", counted)
    default = _CountingExecutor(max_workers=4)
    asyncio.get_running_loop().set_default_executor(default)
    google.token_delay = 0.5
    async with loop_lag(0.01) as lags, AuthorizedSession(credentials) as session:
        statuses = await asyncio.gather(
            *(_get(session, google.api_url(f"c{i}")) for i in range(20))
        )
        assert set(statuses) == {200}
        assert started == [1]  # the one refresh, in a thread of its own
        for i in range(100):
            assert await _get(session, google.api_url(f"f{i}")) == 200
        assert started == [1]  # no thread while fresh
    assert default.submitted == 0  # never the loop's default executor
    assert len(lags) > 30  # the ticker ran all through the 0.5 s refresh
    assert max(lags) < 0.05
    assert google.token_requests == 1
