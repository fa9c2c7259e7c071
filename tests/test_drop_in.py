"""Code and tests written for google-auth's transport work unchanged.

Users pass duck-typed credentials and ``unittest.mock`` mocks to google-auth's
transports; google-auth tells credentials apart by what they do. So do we:
these run against the emulator's API, which accepts only tokens it issued.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import aiohttp
import pytest
from google.auth import credentials as google_credentials
from google.oauth2 import _credentials_async, _service_account_async, service_account

from google_auth_aiohttp import AuthMiddleware, AuthorizedSession, Request
from google_auth_aiohttp.testing import GoogleEmulator

from .conftest import SCOPE


async def _issued_token(google: GoogleEmulator) -> str:
    real = _service_account_async.Credentials.from_service_account_info(
        google.service_account_info(), scopes=[SCOPE]
    )
    async with Request() as request:
        await real.refresh(request)
    return str(real.token)


async def _subject(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["subject"])


class DuckCredentials:
    """Credentials by protocol only: no google-auth base class."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[tuple[str, str]] = []

    def refresh(self, request: Any) -> None:
        raise AssertionError("a valid token needs no refresh")

    def before_request(
        self, request: Any, method: str, url: str, headers: dict[str, str]
    ) -> None:
        self.calls.append((method, url))
        headers["authorization"] = f"Bearer {self.token}"


class AsyncDuckCredentials(DuckCredentials):
    async def before_request(  # type: ignore[override]
        self, request: Any, method: str, url: str, headers: dict[str, str]
    ) -> None:
        super().before_request(request, method, url, headers)


@pytest.mark.parametrize("duck", [DuckCredentials, AsyncDuckCredentials])
async def test_duck_typed_credentials_are_driven_as_google_auth_would(
    google: GoogleEmulator, duck: Any
) -> None:
    credentials = duck(await _issued_token(google))
    async with AuthorizedSession(credentials) as session:
        assert await _subject(session, google.api_url("d")) != ""
    assert credentials.calls == [("GET", google.api_url("d"))]


async def test_a_mock_wrapping_sync_credentials_sees_every_call(
    google: GoogleEmulator, service_account_info: dict[str, str]
) -> None:
    real = service_account.Credentials.from_service_account_info(
        service_account_info, scopes=[SCOPE]
    )
    wrapped = mock.Mock(wraps=real)
    async with AuthorizedSession(wrapped) as session:
        assert await _subject(session, google.api_url("a")) == real.signer_email
        assert await _subject(session, google.api_url("b")) == real.signer_email
    assert wrapped.before_request.call_count == 2  # a mock's calls are not cached
    assert google.token_requests == 1


async def test_a_mock_wrapping_async_credentials_is_awaited(
    google: GoogleEmulator, credentials: Any
) -> None:
    wrapped = mock.Mock(wraps=credentials)
    async with AuthorizedSession(wrapped) as session:
        assert await _subject(session, google.api_url("a")) != ""
        google.revoke_all()
        assert await _subject(session, google.api_url("b")) != ""
    # a, a re-sent after the revocation, b; the first token came from
    # before_request itself, the second from the flow's refresh.
    assert wrapped.before_request.call_count == 3
    assert wrapped.refresh.call_count == 1


@pytest.mark.parametrize(
    "make",
    [
        lambda: mock.Mock(spec=google_credentials.Credentials),
        lambda: mock.create_autospec(google_credentials.Credentials, instance=True),
    ],
    ids=["spec", "autospec"],
)
async def test_a_spec_mock_of_sync_credentials_is_driven_as_sync(
    google: GoogleEmulator, make: Any
) -> None:
    token = await _issued_token(google)
    credentials = make()

    def authorize(request: Any, method: str, url: str, headers: Any) -> None:
        headers["authorization"] = f"Bearer {token}"

    credentials.before_request.side_effect = authorize
    async with AuthorizedSession(credentials) as session:
        assert await _subject(session, google.api_url("s")) != ""
    credentials.before_request.assert_called_once()
    _, method, url, _ = credentials.before_request.call_args.args
    assert (method, url) == ("GET", google.api_url("s"))


@pytest.mark.parametrize(
    "make",
    [
        lambda: mock.Mock(spec=_credentials_async.Credentials),
        lambda: mock.create_autospec(_credentials_async.Credentials, instance=True),
        lambda: mock.AsyncMock(spec=_credentials_async.Credentials),
    ],
    ids=["spec", "autospec", "AsyncMock"],
)
async def test_a_mock_of_async_credentials_is_awaited(
    google: GoogleEmulator, make: Any
) -> None:
    token = await _issued_token(google)
    credentials = make()

    async def authorize(request: Any, method: str, url: str, headers: Any) -> None:
        headers["authorization"] = f"Bearer {token}"

    credentials.before_request.side_effect = authorize
    async with AuthorizedSession(credentials) as session:
        assert await _subject(session, google.api_url("s")) != ""
    credentials.before_request.assert_awaited_once()


async def test_a_rejected_mock_is_refreshed_through_a_real_transport(
    google: GoogleEmulator,
) -> None:
    # A test double whose first token is refused, as a revoked one would be.
    tokens = iter(["not-issued", await _issued_token(google)])
    credentials = mock.create_autospec(google_credentials.Credentials, instance=True)
    current = [next(tokens)]

    def authorize(request: Any, method: str, url: str, headers: Any) -> None:
        headers["authorization"] = f"Bearer {current[0]}"

    def refresh(request: Any) -> None:
        assert callable(request)  # a transport that works from this thread
        current[0] = next(tokens)

    credentials.before_request.side_effect = authorize
    credentials.refresh.side_effect = refresh
    async with AuthorizedSession(credentials) as session:
        assert await _subject(session, google.api_url("r")) != ""
    credentials.refresh.assert_called_once()


@pytest.mark.parametrize("value", [None, "token", 42, object()])
def test_anything_without_the_protocol_is_a_clear_type_error(value: Any) -> None:
    with pytest.raises(TypeError, match="before_request"):
        AuthorizedSession(value)
    with pytest.raises(TypeError, match="before_request"):
        AuthMiddleware(value)


async def test_credentials_can_be_replaced_on_a_session(
    google: GoogleEmulator, credentials: Any
) -> None:
    other_info = google.service_account_info()
    other = service_account.Credentials.from_service_account_info(
        other_info, scopes=[SCOPE]
    )
    async with AuthorizedSession(credentials) as session:
        first = await _subject(session, google.api_url("1"))
        session.credentials = other
        assert session.credentials is other
        assert (
            await _subject(session, google.api_url("2")) == other_info["client_email"]
        )
    assert first != other_info["client_email"]
    auth = AuthMiddleware(credentials)
    auth.credentials = other
    async with aiohttp.ClientSession(middlewares=[auth]) as plain:
        assert await _subject(plain, google.api_url("3")) == other_info["client_email"]
