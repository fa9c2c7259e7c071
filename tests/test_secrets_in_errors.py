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
from aiohttp import web
from google.auth import exceptions
from google.oauth2 import _service_account_async, service_account
from google.oauth2 import credentials as user_credentials
from hypothesis import given
from hypothesis import strategies as st

from google_auth_aiohttp import AuthMiddleware, AuthorizedSession
from google_auth_aiohttp._logging import scrub
from google_auth_aiohttp.testing import GoogleEmulator

from .conftest import SCOPE

Raise = Callable[[aiohttp.ClientSession, GoogleEmulator], Awaitable[Any]]


async def _raise_for_status(
    session: aiohttp.ClientSession, google: GoogleEmulator
) -> Any:
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


@pytest.mark.parametrize("rejected_first", [False, True], ids=["sent", "re-sent"])
async def test_a_failed_send_leaves_no_secret_in_the_locals_of_its_traceback(
    serve: Any, session: aiohttp.ClientSession, credentials: Any, rejected_first: bool
) -> None:
    seen: list[bool] = []  # whether each request was authorized

    async def hang_up(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization", "").startswith("Bearer "))
        if rejected_first and len(seen) == 1:
            return web.Response(status=401)
        assert request.transport is not None
        request.transport.close()  # the connection drops before any answer
        return web.Response()

    app = web.Application()
    app.router.add_get("/x", hang_up)
    url = await serve(app)
    with pytest.raises(aiohttp.ClientError) as caught:
        async with session.get(url + "/x"):
            pass
    assert len(seen) >= (2 if rejected_first else 1)  # aiohttp may retry once
    assert all(seen)
    # What an error tracker recording locals, or pytest --showlocals, prints.
    printed = "".join(
        traceback.TracebackException.from_exception(
            caught.value, capture_locals=True
        ).format()
    )
    assert "_middleware.py" in printed  # the auth layer's frame is there...
    assert str(credentials.token) not in printed  # ...and holds no token


async def test_a_refresh_that_fails_after_a_rejection_leaves_no_token_in_locals(
    google: GoogleEmulator, session: aiohttp.ClientSession, credentials: Any
) -> None:
    assert (await session.get(google.api_url("warm"))).status == 200
    google.token_error = "invalid_grant"  # the refresh the 401 causes fails
    with pytest.raises(exceptions.RefreshError) as caught:
        await session.get(google.api_url("x?status=401"))
    printed = "".join(
        traceback.TracebackException.from_exception(
            caught.value, capture_locals=True
        ).format()
    )
    assert "after_rejection" in printed  # the frame that had it is there...
    assert credentials.token  # (the rejected token, which the refresh kept)
    assert str(credentials.token) not in printed  # ...without it


# -- URLs in messages ---------------------------------------------------------------

URL_FORMS = [
    "http://user:{s}@example.test/p?x=1",
    "https://example.test/p?access_token={s}",
    "HTTP://{s}@example.test:8080/p",
    "http:user:{s}@example.test/p",  # no "//"
    "https:/user:{s}@example.test/p",
    "user:{s}@example.test/p",  # no scheme at all
    "example.test/p?key={s}",
    "example.test?key={s}&a=b",
    "wss://example.test/p#token={s}",
    "https//user:{s}@example.test/p",  # no ":"
    "//user:{s}@example.test/p",  # scheme-relative
    "http://alice@x:{s}@example.test/p",  # an "@" in the user info
]


@given(
    form=st.sampled_from(URL_FORMS),
    secret=st.text(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~",
        min_size=8,
        max_size=40,
    ),
    quote=st.sampled_from(["", "'", '"', "(", "<"]),
)
def test_a_message_shows_a_url_without_its_secrets(
    form: str, secret: str, quote: str
) -> None:
    closing = {"(": ")", "<": ">"}.get(quote, quote)
    message = f"GET {quote}{form.format(s=secret)}{closing} failed: refused"
    shown = scrub(message)
    assert secret not in shown
    assert "example.test" in shown  # where it failed is still said
    assert shown.endswith("failed: refused")


@pytest.mark.parametrize(
    "text",
    [
        "error: invalid_grant: Bad Request",
        "someone@example.test wrote",
        "what? yes",
        "Cannot connect to host 127.0.0.1:9 ssl:default",
    ],
)
def test_a_message_without_secrets_is_kept_as_it_is(text: str) -> None:
    assert scrub(text) == text


# -- The credentials' own requests ----------------------------------------------


@pytest.fixture
async def moved_token_endpoint(
    serve: Any, google: GoogleEmulator, other_origin: Any
) -> tuple[str, str]:
    """A token endpoint that moved: within its origin, and to another one."""

    async def elsewhere(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(other_origin.url + "/token")

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("/token")

    async def token(request: web.Request) -> web.Response:
        async with (
            aiohttp.ClientSession() as client,
            client.post(
                google.token_uri,
                data=await request.read(),
                headers={"Content-Type": request.content_type},
            ) as answer,
        ):
            return web.json_response(await answer.json(), status=answer.status)

    app = web.Application()
    app.router.add_post("/elsewhere", elsewhere)
    app.router.add_post("/moved", moved)
    app.router.add_post("/token", token)
    url: str = await serve(app)
    return url + "/elsewhere", url + "/moved"


def _user_credentials(google: GoogleEmulator, token_uri: str) -> Any:
    info = google.authorized_user_info()
    return user_credentials.Credentials(
        token=None,
        refresh_token=info["refresh_token"],
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        token_uri=token_uri,
    )


def _service_account(google: GoogleEmulator, token_uri: str, family: Any) -> Any:
    info = {**google.service_account_info(), "token_uri": token_uri}
    return family.from_service_account_info(info, scopes=[SCOPE])


@pytest.mark.parametrize("kind", ["user", "sync SA", "async SA"])
async def test_a_token_request_does_not_follow_a_redirect_to_another_origin(
    google: GoogleEmulator,
    moved_token_endpoint: tuple[str, str],
    other_origin: Any,
    kind: str,
) -> None:
    elsewhere, moved = moved_token_endpoint
    make: dict[str, Callable[[str], Any]] = {
        "user": lambda uri: _user_credentials(google, uri),
        "sync SA": lambda uri: _service_account(
            google, uri, service_account.Credentials
        ),
        "async SA": lambda uri: _service_account(
            google, uri, _service_account_async.Credentials
        ),
    }
    async with AuthorizedSession(make[kind](elsewhere)) as session:
        with pytest.raises(exceptions.TransportError) as caught:
            await session.get(google.api_url("a"))
    message = str(caught.value)
    assert "another origin" in message
    assert other_origin.url in message  # both origins are named
    assert elsewhere.rsplit("/", 1)[0] in message
    assert other_origin.requests == []  # the secrets never left
    # Within its own origin, a moved endpoint is followed.
    async with AuthorizedSession(make[kind](moved)) as session:
        async with session.get(google.api_url("b")) as response:
            assert response.status == 200


# -- The emulator's helpers stay offline ------------------------------------------


async def test_user_credentials_as_the_emulator_docs_say_refresh_on_loopback_only(
    google: GoogleEmulator,
) -> None:
    hosts: list[str] = []

    async def on_start(session: Any, context: Any, params: Any) -> None:
        hosts.append(params.url.host)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    credentials = google.user_credentials()
    async with AuthorizedSession(credentials, trace_configs=[trace]) as session:
        async with session.get(google.api_url("me")) as response:
            assert response.status == 200
    assert google.token_requests == 1  # the refresh token went to the emulator
    assert set(hosts) == {"127.0.0.1"}  # and nowhere else
    doc = GoogleEmulator.authorized_user_info.__doc__ or ""
    assert "user_credentials" in doc
    assert "from_authorized_user_info" in doc  # named as what not to do
