"""Credentials' headers never leave the origin the caller asked for."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from google_auth_aiohttp import AuthMiddleware, AuthorizedSession
from google_auth_aiohttp.testing import GoogleEmulator

from .conftest import Recorder


@pytest.fixture(params=["session", "middleware"])
async def session(request: Any, credentials: Any) -> AsyncIterator[Any]:
    creds = credentials.with_quota_project("billing-1")
    if request.param == "session":
        client: aiohttp.ClientSession = AuthorizedSession(creds)
    else:
        client = aiohttp.ClientSession(middlewares=[AuthMiddleware(creds)])
    async with client:
        yield client


def _redirect(google: GoogleEmulator, to: str, status: int = 302) -> str:
    return google.api_url(f"go?redirect={quote(to, safe='')}&redirect_status={status}")


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_same_origin_redirect_stays_authorized(
    google: GoogleEmulator, session: Any, status: int
) -> None:
    async with session.get(_redirect(google, "/api/landed", status)) as response:
        assert response.status == 200
        echo = await response.json()
    assert echo["path"] == "/api/landed"
    assert echo["headers"]["x-goog-user-project"] == "billing-1"


@pytest.mark.parametrize("status", [302, 307])
async def test_cross_origin_redirect_gets_no_credentials(
    google: GoogleEmulator,
    session: Any,
    other_origin: Recorder,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="google_auth_aiohttp")
    target = f"{other_origin.url}/elsewhere"
    async with session.post(
        _redirect(google, target, status), data=b"body"
    ) as response:
        assert response.status == 200
        assert len(response.history) == 1
    [seen] = other_origin.requests
    assert seen["path"] == "/elsewhere"
    assert "authorization" not in seen["headers"]
    assert "x-goog-user-project" not in seen["headers"]
    assert f"Not authorizing {target}: the call asked for" in caplog.text


async def test_direct_request_to_another_origin_is_authorized(
    google: GoogleEmulator, session: Any, other_origin: Recorder
) -> None:
    # An origin the caller names itself is the request's own origin.
    async with session.get(_redirect(google, f"{other_origin.url}/hop")) as r:
        assert r.status == 200
    async with session.get(f"{other_origin.url}/asked") as response:
        assert response.status == 200
    hop, asked = other_origin.requests
    assert "authorization" not in hop["headers"]
    assert asked["headers"]["authorization"].startswith("Bearer ")
