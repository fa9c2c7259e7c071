"""Seconds are finite and not negative, or a clear error before anything is sent."""

from __future__ import annotations

import math
from typing import Any

import aiohttp
import pytest

from google_auth_aiohttp import AuthMiddleware, AuthorizedSession, Request
from google_auth_aiohttp.testing import GoogleEmulator

NOT_FINITE = [math.nan, math.inf, -math.inf, -1.0]


@pytest.mark.parametrize("value", NOT_FINITE)
async def test_max_allowed_time_must_be_finite(
    google: GoogleEmulator, credentials: Any, value: float
) -> None:
    async with AuthorizedSession(credentials) as session:
        with pytest.raises(ValueError, match="max_allowed_time must be a finite"):
            await session.get(google.api_url("x"), max_allowed_time=value)
    assert google.api_requests == 0
    assert google.token_requests == 0


@pytest.mark.parametrize("value", NOT_FINITE)
async def test_a_numeric_timeout_must_be_finite(
    google: GoogleEmulator, credentials: Any, value: float
) -> None:
    async with AuthorizedSession(credentials) as session:
        with pytest.raises(ValueError, match="timeout must be a finite"):
            await session.get(google.api_url("x"), timeout=value)
    async with Request() as request:
        with pytest.raises(ValueError, match="timeout must be a finite"):
            await request(google.api_url("x"), timeout=value)
    assert google.api_requests == 0


@pytest.mark.parametrize("value", NOT_FINITE)
def test_refresh_timeout_must_be_finite(credentials: Any, value: float) -> None:
    with pytest.raises(ValueError, match="refresh_timeout must be a finite"):
        AuthorizedSession(credentials, refresh_timeout=value)
    with pytest.raises(ValueError, match="refresh_timeout must be a finite"):
        AuthMiddleware(credentials, refresh_timeout=value)


async def test_times_must_be_numbers(google: GoogleEmulator, credentials: Any) -> None:
    wrong: Any = "10"
    with pytest.raises(TypeError, match="refresh_timeout must be a number"):
        AuthMiddleware(credentials, refresh_timeout=wrong)
    async with AuthorizedSession(credentials) as session:
        with pytest.raises(TypeError, match="max_allowed_time must be a number"):
            await session.get(google.api_url("x"), max_allowed_time=wrong)
    assert google.api_requests == 0


async def test_an_explicit_timeout_of_180_is_honoured(
    google: GoogleEmulator, credentials: Any
) -> None:
    # 180 is also the default; passing it must not fall back on the session's.
    async with AuthorizedSession(
        credentials, timeout=aiohttp.ClientTimeout(total=0.3)
    ) as session:
        async with session.get(google.api_url("slow?delay=0.6"), timeout=180) as r:
            assert r.status == 200
        with pytest.raises(TimeoutError):
            await session.get(google.api_url("slow?delay=0.6"))
