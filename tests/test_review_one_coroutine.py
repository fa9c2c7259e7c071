"""Review of the change that runs the flow's steps in the auth layer's coroutine.

AuthFlow.send is gone: AuthMiddleware._authorize places, authorizes, sends,
redacts and refreshes itself; redact() blanks each secret name without asking
whether it is there. Attacks on what that could have broken.
"""

from __future__ import annotations

import asyncio
import traceback
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from google.auth import api_key

from google_auth_aiohttp import (
    AuthMiddleware,
    AuthorizedSession,
    Request,
    Retry,
    RetryMiddleware,
)
from google_auth_aiohttp.testing import GoogleEmulator

from .conftest import expire


def _printed_with_locals(error: BaseException) -> str:
    """What an error tracker recording locals (or pytest --showlocals) prints."""
    return "".join(
        traceback.TracebackException.from_exception(error, capture_locals=True).format()
    )


class Seen:
    """A server on 127.0.0.1 that records each request's headers."""

    def __init__(self) -> None:
        self.url = ""
        self.headers: list[dict[str, str]] = []
        self.statuses: list[int] = []  # what to answer, in turn; then 200

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            await request.read()
            self.headers.append({k.lower(): v for k, v in request.headers.items()})
            status = self.statuses.pop(0) if self.statuses else 200
            return web.Response(status=status, text="x")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


@pytest.fixture
async def seen(serve: Any) -> Seen:
    server = Seen()
    server.url = await serve(server.app())
    return server


# -- 1. secrets in traceback locals ------------------------------------------------


@pytest.mark.parametrize("rejected_first", [False, True], ids=["first", "re-send"])
async def test_a_session_closed_while_waiting_leaves_no_token_in_locals(
    google: GoogleEmulator, credentials: Any, seen: Seen, rejected_first: bool
) -> None:
    """The refresh ends after the session closed: the request is not sent,
    and nothing the traceback keeps holds the token it got."""
    async with Request() as transport:
        session = aiohttp.ClientSession(
            middlewares=[AuthMiddleware(credentials, auth_request=transport)]
        )
        if rejected_first:
            async with session.get(seen.url + "/warm") as response:
                assert response.status == 200
            seen.statuses = [401]
        google.token_gate.close()
        call = asyncio.ensure_future(session.get(seen.url + "/x"))
        await google.token_gate.arrived(2 if rejected_first else 1)
        await session.close()
        google.token_gate.open()
        with pytest.raises(aiohttp.ClientConnectionError, match="was not sent"):
            await call
        error = call.exception()
        assert error is not None
    assert credentials.token  # the refresh got a token...
    printed = _printed_with_locals(error)
    assert "was not sent" in printed
    assert str(credentials.token) not in printed  # ...that no frame kept
    assert len(seen.headers) == (2 if rejected_first else 0)


# -- 4. redact without the presence check ------------------------------------------


async def test_a_header_a_later_middleware_took_off_reads_blank_and_is_not_sent(
    credentials: Any, seen: Seen
) -> None:
    """redact() now sets a secret a middleware after the flow removed: the
    view reads "<redacted>", and a retry of the request carries the real
    header again (put back by the flow), never the blank."""
    taken: list[str | None] = []

    async def take_off(request: Any, handler: Any) -> Any:
        taken.append(request.headers.pop("Authorization", None))
        return await handler(request)

    seen.statuses = [503]
    retry = RetryMiddleware(Retry(attempts=2, initial=0, maximum=0))
    async with aiohttp.ClientSession(
        middlewares=[retry, AuthMiddleware(credentials), take_off]
    ) as session:
        async with session.get(seen.url + "/x") as response:
            assert response.status == 200
            assert response.request_info.headers["Authorization"] == "<redacted>"
    assert len(seen.headers) == 2
    assert all("authorization" not in h for h in seen.headers)
    # (None: the token request, which goes through the chain as it is.)
    assert [t for t in taken if t] == [f"Bearer {credentials.token}"] * 2


async def test_credentials_swapped_between_attempts_send_no_stale_blank(
    credentials: Any, seen: Seen, google: GoogleEmulator
) -> None:
    """A retry after ``credentials`` were assigned to ones adding another
    header: the old secret's "<redacted>" blank must not reach the server."""
    auth = AuthMiddleware(credentials)

    async def swap_after_first(request: Any, handler: Any) -> Any:
        response = await handler(request)
        if len(seen.headers) == 1:
            auth.credentials = api_key.Credentials("the-api-key")
        return response

    seen.statuses = [503]
    retry = RetryMiddleware(Retry(attempts=2, initial=0, maximum=0))
    async with aiohttp.ClientSession(
        middlewares=[retry, swap_after_first, auth], trace_configs=[auth.trace_config]
    ) as session:
        async with session.get(seen.url + "/x") as response:
            assert response.status == 200
    first, second = seen.headers
    assert first["authorization"].startswith("Bearer ")
    assert second["x-goog-api-key"] == "the-api-key"
    assert "<redacted>" not in second.values()
    assert "authorization" not in second


# -- 2. refresh ----------------------------------------------------------------------


async def test_concurrent_rejections_refresh_once_and_resend_with_the_new_token(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with aiohttp.ClientSession(
        middlewares=[AuthMiddleware(credentials)]
    ) as session:
        async with session.get(google.api_url("warm")) as response:
            assert response.status == 200
        old = str(credentials.token)
        issued = google.token_requests
        google.revoke(old)
        google.token_gate.close()
        calls = [
            asyncio.ensure_future(session.get(google.api_url(f"c{i}")))
            for i in range(20)
        ]
        await google.token_gate.arrived(2)
        google.token_gate.open()
        responses = await asyncio.gather(*calls)
        assert {r.status for r in responses} == {200}
        for r in responses:
            r.release()
            assert r.request_info.headers["Authorization"] == "<redacted>"
    assert google.token_requests == issued + 1
    assert str(credentials.token) != old


async def test_a_stalled_first_refresh_raises_the_packages_error(
    google: GoogleEmulator, credentials: Any, seen: Seen, loop_clock: Any
) -> None:
    from google_auth_aiohttp._auth.refresh import RefreshWaitTimeout

    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(
        middlewares=[AuthMiddleware(credentials)], timeout=timeout
    ) as session:
        google.token_gate.close()
        call = asyncio.ensure_future(session.get(seen.url + "/x"))
        await google.token_gate.arrived(1)
        await loop_clock.advance(9.985)
        await loop_clock.advance(1)
        with pytest.raises(RefreshWaitTimeout):
            await call
        google.token_gate.open()
    assert seen.headers == []


async def test_an_expired_token_in_authorized_session_with_max_allowed_time(
    google: GoogleEmulator, credentials: Any, seen: Seen, loop_clock: Any
) -> None:
    async with AuthorizedSession(credentials) as session:
        async with session.get(seen.url + "/warm") as response:
            assert response.status == 200
        expire(credentials)
        google.token_gate.close()
        call = asyncio.ensure_future(session.get(seen.url + "/x", max_allowed_time=5))
        await google.token_gate.arrived(2)
        await loop_clock.advance(6)
        with pytest.raises(TimeoutError, match="max_allowed_time=5"):
            await call
        google.token_gate.open()
    assert len(seen.headers) == 1


async def test_a_credentials_request_rejected_with_401_triggers_no_refresh(
    serve: Any, google: GoogleEmulator, seen: Seen
) -> None:
    """The token request passes as it is: its 401 is not the flow's to refresh."""
    from google.auth import exceptions
    from google.oauth2 import _service_account_async

    token_requests: list[str | None] = []

    async def reject(request: web.Request) -> web.Response:
        await request.read()
        token_requests.append(request.headers.get("Authorization"))
        return web.json_response({"error": "invalid_client"}, status=401)

    app = web.Application()
    app.router.add_post("/token", reject)
    token_uri = await serve(app) + "/token"
    info = dict(google.service_account_info(), token_uri=token_uri)
    credentials = _service_account_async.Credentials.from_service_account_info(
        info, scopes=["https://www.googleapis.com/auth/cloud-platform"]
    )
    async with aiohttp.ClientSession(
        middlewares=[AuthMiddleware(credentials, max_refresh_attempts=3)]
    ) as session:
        with pytest.raises(exceptions.RefreshError):
            await session.get(seen.url + "/x")
    assert token_requests == [None]  # one, unauthorized, not refreshed again
    assert seen.headers == []


# -- 3. cancellation, many tenants --------------------------------------------------


async def test_a_cancelled_waiter_leaves_the_shared_refresh_to_the_others(
    google: GoogleEmulator, credentials: Any, seen: Seen
) -> None:
    from .conftest import refresh_waiters

    async with aiohttp.ClientSession(
        middlewares=[AuthMiddleware(credentials)]
    ) as session:
        async with session.get(seen.url + "/warm") as response:
            assert response.status == 200
        expire(credentials)
        issued = google.token_requests
        google.token_gate.close()
        calls = [
            asyncio.ensure_future(session.get(seen.url + f"/{i}")) for i in range(3)
        ]
        await refresh_waiters(credentials, 3)
        calls[0].cancel()
        google.token_gate.open()
        with pytest.raises(asyncio.CancelledError):
            await calls[0]
        for call in calls[1:]:
            (await call).release()
    assert google.token_requests == issued + 1
    token = f"Bearer {credentials.token}"
    assert [h.get("authorization") for h in seen.headers[1:]] == [token, token]


async def test_many_middleware_tenants_leave_nothing_behind(
    google: GoogleEmulator, seen: Seen, service_account_info: Any
) -> None:
    import gc

    from google.oauth2 import _service_account_async

    from google_auth_aiohttp._auth import refresh

    # Copies share the parsed key (loading one costs ~50 ms of CPU).
    base = _service_account_async.Credentials.from_service_account_info(
        service_account_info
    )
    gc.collect()
    before = len(refresh._MEMORIES)
    for _ in range(30):
        credentials = base.with_scopes(
            ["https://www.googleapis.com/auth/cloud-platform"]
        )
        async with aiohttp.ClientSession(
            middlewares=[AuthMiddleware(credentials)]
        ) as session:
            async with session.get(seen.url + "/x") as response:
                assert response.status == 200
        del credentials, session, response
    gc.collect()
    assert len(refresh._MEMORIES) == before
    assert all(h["authorization"].startswith("Bearer ") for h in seen.headers)


# -- 1. redirects to another port, any status ---------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("kind", ["AuthMiddleware", "AuthorizedSession"])
async def test_a_redirect_to_another_port_carries_no_secret_nor_blank(
    serve: Any, credentials: Any, seen: Seen, status: int, kind: str
) -> None:
    async def redirect(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=status, headers={"Location": seen.url + "/to"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    asked = await serve(app)
    if kind == "AuthorizedSession":
        session: aiohttp.ClientSession = AuthorizedSession(credentials)
    else:
        session = aiohttp.ClientSession(middlewares=[AuthMiddleware(credentials)])
    async with session:
        async with session.post(asked + "/from", data=b"body") as response:
            assert response.status == 200
            first = response.history[0].request_info.headers
            assert first["Authorization"] == "<redacted>"
            assert "Authorization" not in response.request_info.headers
    assert credentials.token
    (landed,) = seen.headers
    assert "authorization" not in landed
    assert "<redacted>" not in landed.values()
