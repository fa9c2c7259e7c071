"""No secret in anything raised through our clients: aiohttp's exceptions included.

aiohttp's ``ClientResponseError`` (``raise_for_status``, ``ContentTypeError``),
``TooManyRedirects`` and ``WSServerHandshakeError`` keep the request's
``request_info``, whose headers held ``Bearer <token>``: what ``%r`` logging,
``pytest --showlocals`` and error trackers print.
"""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from google_auth_aiohttp import AuthMiddleware, AuthorizedSession
from google_auth_aiohttp.testing import GoogleEmulator

Raise = Callable[[aiohttp.ClientSession, GoogleEmulator], Awaitable[Any]]


async def _raise_for_status(session: aiohttp.ClientSession, google: GoogleEmulator) -> Any:
    async with session.get(google.api_url("x?status=500"), raise_for_status=True):
        pass


async def _raise_for_status_later(
    session: aiohttp.ClientSession, google: GoogleEmulator
) -> Any:
    async with session.get(google.api_url("x?status=404")) as response:
        response.raise_for_status()


async def _content_type(session: aiohttp.ClientSession, google: GoogleEmulator) -> Any:
    url = google.api_url(f"x?redirect={google.api_url('y')}&redirect_status=302")
    async with session.get(url, allow_redirects=False) as response:
        await response.json()  # a 302 with text/plain: ContentTypeError


async def _too_many_redirects(
    session: aiohttp.ClientSession, google: GoogleEmulator
) -> Any:
    loop = google.api_url("loop")
    url = google.api_url(f"start?redirect={loop}?redirect={loop}")
    async with session.get(url, max_redirects=1):
        pass


async def _ws_handshake(session: aiohttp.ClientSession, google: GoogleEmulator) -> Any:
    async with session.ws_connect(google.api_url("not-a-websocket")):
        pass


RAISERS: dict[str, Raise] = {
    "raise_for_status=True": _raise_for_status,
    "response.raise_for_status()": _raise_for_status_later,
    "ContentTypeError": _content_type,
    "TooManyRedirects": _too_many_redirects,
    "WSServerHandshakeError": _ws_handshake,
}


@pytest.fixture(params=["AuthorizedSession", "AuthMiddleware"])
async def session(
    request: Any, credentials: Any
) -> AsyncIterator[aiohttp.ClientSession]:
    if request.param == "AuthorizedSession":
        client: aiohttp.ClientSession = AuthorizedSession(credentials)
    else:
        client = aiohttp.ClientSession(middlewares=[AuthMiddleware(credentials)])
    async with client:
        yield client


@pytest.mark.parametrize("name", sorted(RAISERS))
async def test_aiohttps_exceptions_raised_through_our_clients_hold_no_token(
    google: GoogleEmulator,
    credentials: Any,
    session: aiohttp.ClientSession,
    name: str,
) -> None:
    with pytest.raises(aiohttp.ClientError) as caught:
        await RAISERS[name](session, google)
    error = caught.value
    token = str(credentials.token)
    assert credentials.token  # the request was authorized...
    printed = "".join(traceback.format_exception(error)) + repr(error) + str(error)
    assert token not in printed  # ...and nothing printed of it holds the token
    request_info = getattr(error, "request_info", None)
    assert request_info is not None
    assert request_info.headers["Authorization"] == "<redacted>"
    assert request_info.url.path.startswith("/api/")  # the rest is intact
    assert request_info.method == "GET"
