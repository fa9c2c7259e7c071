"""AuthMiddleware: the same auth flow on a plain aiohttp.ClientSession."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from google_auth_aiohttp import AuthMiddleware, Request
from google_auth_aiohttp.testing import GoogleEmulator

from .conftest import expire


async def test_plain_session_is_authorized(
    google: GoogleEmulator, credentials: Any
) -> None:
    auth = AuthMiddleware(credentials)
    assert auth.credentials is credentials
    async with aiohttp.ClientSession(middlewares=[auth]) as session:
        async with session.get(google.api_url("m")) as response:
            assert response.status == 200
            echo = await response.json()
    assert echo["subject"] == credentials.service_account_email
    assert google.token_requests == 1


async def test_revoked_token_is_refreshed_and_request_resent(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with aiohttp.ClientSession(middlewares=[AuthMiddleware(credentials)]) as s:
        async with s.get(google.api_url("1")) as response:
            assert response.status == 200
        google.revoke_all()
        async with s.post(google.api_url("2"), data=b"payload") as response:
            assert response.status == 200
            assert (await response.json())["body"] == "payload"
    assert google.token_requests == 2


async def test_sessions_sharing_credentials_share_one_refresh(
    google: GoogleEmulator, credentials: Any
) -> None:
    google.token_delay = 0.2
    first = aiohttp.ClientSession(middlewares=[AuthMiddleware(credentials)])
    second = aiohttp.ClientSession(middlewares=[AuthMiddleware(credentials)])
    async with first, second:
        expire(credentials)
        responses = await asyncio.gather(
            *(s.get(google.api_url("x")) for s in [first, second] * 50)
        )
        assert {r.status for r in responses} == {200}
        for response in responses:
            response.release()
    assert google.token_requests == 1


async def test_refresh_goes_through_the_requesting_session(
    google: GoogleEmulator, credentials: Any
) -> None:
    seen: list[str] = []

    async def on_start(session: Any, context: Any, params: Any) -> None:
        seen.append(params.url.path)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with (
        aiohttp.ClientSession(
            middlewares=[AuthMiddleware(credentials)], trace_configs=[trace]
        ) as session,
        session.get(google.api_url("x")) as response,
    ):
        assert response.status == 200
    assert sorted(seen) == ["/api/x", "/token"]


async def test_auth_request_and_options_are_honoured(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with aiohttp.ClientSession() as token_session:
        auth = AuthMiddleware(
            credentials,
            refresh_status_codes=(403,),
            max_refresh_attempts=1,
            auth_request=Request(token_session),
        )
        async with aiohttp.ClientSession(middlewares=[auth]) as session:
            async with session.get(google.api_url("x?status=403")) as response:
                assert response.status == 403
    assert google.api_requests == 2
    assert google.token_requests == 2


async def test_refresh_timeout_is_honoured(
    google: GoogleEmulator, credentials: Any
) -> None:
    from google.auth import exceptions

    google.token_delay = 2
    auth = AuthMiddleware(credentials, refresh_timeout=0.1)
    async with aiohttp.ClientSession(middlewares=[auth]) as session:
        with pytest.raises(exceptions.TransportError, match="refresh_timeout"):
            await session.get(google.api_url("x"))


def test_bad_arguments_are_clear_errors(credentials: Any) -> None:
    with pytest.raises(TypeError, match="google-auth credentials"):
        AuthMiddleware(object())
    with pytest.raises(ValueError, match="max_refresh_attempts"):
        AuthMiddleware(credentials, max_refresh_attempts=-2)
    with pytest.raises(TypeError, match="max_refresh_attempts must be an int"):
        AuthMiddleware(credentials, max_refresh_attempts=1.5)  # type: ignore[arg-type]


async def test_a_plain_session_sends_header_values_as_aiohttp_does(
    google: GoogleEmulator, credentials: Any
) -> None:
    # AuthorizedSession decodes bytes values; on a plain session they are
    # aiohttp's to refuse, and nothing is sent.
    bytes_headers: Any = {"X-Bytes": b"v"}
    async with aiohttp.ClientSession(middlewares=[AuthMiddleware(credentials)]) as s:
        with pytest.raises(TypeError, match="non-str"):
            await s.get(google.api_url("b"), headers=bytes_headers)
    assert google.api_requests == 0


async def test_a_type_error_that_is_not_about_bytes_reaches_the_caller(
    google: GoogleEmulator, credentials: Any
) -> None:
    int_headers: Any = {"X-Number": 5}
    async with aiohttp.ClientSession(middlewares=[AuthMiddleware(credentials)]) as s:
        with pytest.raises(TypeError):
            await s.get(google.api_url("n"), headers=int_headers)
    assert google.api_requests == 0
