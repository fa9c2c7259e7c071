"""Every async google-auth credentials family works, refreshes and is shared."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from google.auth import _credentials_async, _jwt_async
from google.auth.aio import credentials as aio_credentials
from google.oauth2 import _credentials_async as oauth2_async

from google_auth_aiohttp import AuthMiddleware, AuthorizedSession, Request
from google_auth_aiohttp.testing import GoogleEmulator

from .conftest import SCOPE, Recorder, exercise


async def _status(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url) as response:
        return response.status


@pytest.fixture
def user_credentials(google: GoogleEmulator) -> Any:
    # from_authorized_user_info() always points at Google's token endpoint.
    info = google.authorized_user_info()
    return oauth2_async.Credentials(
        token=None,
        refresh_token=info["refresh_token"],
        token_uri=info["token_uri"],
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        scopes=[SCOPE],
    )


async def test_async_service_account_credentials(
    google: GoogleEmulator, credentials: Any
) -> None:
    await exercise(google, credentials)


async def test_authorized_user_credentials(
    google: GoogleEmulator, user_credentials: Any
) -> None:
    await exercise(google, user_credentials)


async def test_self_signed_jwt_credentials_need_no_token_request(
    google: GoogleEmulator, service_account_info: dict[str, str]
) -> None:
    credentials = _jwt_async.Credentials.from_service_account_info(
        service_account_info, audience=f"{google.url}/"
    )
    async with AuthorizedSession(credentials) as session:
        async with session.get(google.api_url("jwt")) as response:
            assert response.status == 200
            echo = await response.json()
    assert echo["subject"] == service_account_info["client_email"]
    assert google.token_requests == 0


async def test_on_demand_jwt_credentials_sign_per_audience(
    google: GoogleEmulator, service_account_info: dict[str, str]
) -> None:
    credentials = _jwt_async.OnDemandCredentials.from_service_account_info(
        service_account_info
    )
    async with AuthorizedSession(credentials) as session:
        assert await _status(session, google.api_url("a")) == 200
        assert await _status(session, google.api_url("b")) == 200
        # They cannot be refreshed: a rejection is returned, not an exception.
        assert await _status(session, google.api_url("c?status=401")) == 401
    assert google.token_requests == 0


async def test_aio_static_credentials_are_sent_and_never_refreshed(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with Request() as request:
        await credentials.refresh(request)
    static = aio_credentials.StaticCredentials(token=credentials.token)
    async with aiohttp.ClientSession(middlewares=[AuthMiddleware(static)]) as session:
        assert await _status(session, google.api_url("static")) == 200
        google.revoke_all()
        assert await _status(session, google.api_url("static")) == 401
    assert google.token_requests == 1
    assert google.api_requests == 2


@pytest.mark.parametrize(
    "anonymous",
    [aio_credentials.AnonymousCredentials(), _credentials_async.AnonymousCredentials()],
)
async def test_anonymous_credentials_send_nothing(
    other_origin: Recorder, anonymous: Any
) -> None:
    async with AuthorizedSession(anonymous) as session:
        assert await _status(session, f"{other_origin.url}/anon") == 200
        assert await _status(session, f"{other_origin.url}/anon") == 200
    assert all("authorization" not in r["headers"] for r in other_origin.requests)
    assert len(other_origin.requests) == 2
