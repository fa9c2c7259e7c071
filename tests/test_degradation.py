"""A stalled, failing or garbled token endpoint degrades service; it never ends it.

Each test provokes one failure with the emulator's knobs (its gates hold
requests; ``arrived(n)`` says when they got there) and checks what callers
see: bounded waits, clear errors, recovery at the next caller, and tenants
that never wait on each other.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from google.auth import compute_engine, exceptions
from google.oauth2 import _service_account_async, service_account

from google_auth_aiohttp import AuthMiddleware, AuthorizedSession, Request
from google_auth_aiohttp._auth import single_flight as _single_flight
from google_auth_aiohttp._auth.refresh import refresher_for
from google_auth_aiohttp._credentials import threads as _sync_transport
from google_auth_aiohttp.testing import GoogleEmulator

from .conftest import SCOPE, LoopClock, expire, make_stale, until

FAMILIES = {
    "async": _service_account_async.Credentials,
    "sync": service_account.Credentials,
}


@pytest.fixture(params=sorted(FAMILIES))
def family(request: Any) -> Any:
    return FAMILIES[request.param]


def _credentials(
    google: GoogleEmulator, family: Any = service_account.Credentials
) -> Any:
    return family.from_service_account_info(
        google.service_account_info(), scopes=[SCOPE]
    )


async def _status(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> int:
    async with session.get(url, **kwargs) as response:
        return response.status


def _our_threads() -> int:
    return _sync_transport.live_threads()


# -- A lost token request -----------------------------------------------------


async def test_a_lost_token_request_holds_callers_no_longer_than_their_timeout(
    google: GoogleEmulator, family: Any, loop_clock: LoopClock
) -> None:
    credentials = _credentials(google, family)
    loop = asyncio.get_running_loop()
    async with AuthorizedSession(credentials) as session:
        google.token_gate.close()  # the token endpoint stalls: requests are lost
        started = loop.time()
        caller = asyncio.create_task(_status(session, google.api_url("a"), timeout=5))
        await google.token_gate.arrived(1)
        await loop_clock.advance(3)  # the default hedge...
        await google.token_gate.arrived(2)  # ...is lost too
        await loop_clock.advance(1.5)
        assert not caller.done()
        # The last half second runs on the real clock: our bound fires 20 ms
        # before aiohttp's own, which a jump would fire together.
        with pytest.raises(exceptions.TransportError) as caught:
            await caller
        # Its own timeout, not the transport's 180 s; and an error that says
        # what timed out and where.
        assert loop.time() - started < 5.5
        assert isinstance(caught.value, TimeoutError)
        message = str(caught.value)
        assert "Credentials to get a token" in message
        assert f"POST {google.token_uri}" in message
        google.token_gate.open(release_held=False)  # healthy again; lost stay lost
        recovering = asyncio.create_task(_status(session, google.api_url("b")))
        # Past when a newcomer's hedge is due: 3 s after the newest attempt.
        await loop_clock.advance(1.5)
        started = loop.time()
        assert await asyncio.wait_for(recovering, 5) == 200
        assert loop.time() - started < 1.0  # about one round trip after the hedge
    assert google.token_requests == 3


async def test_with_default_settings_a_stalled_refresh_is_hedged_after_three_seconds(
    google: GoogleEmulator, loop_clock: LoopClock
) -> None:
    credentials = _credentials(google)
    async with AuthorizedSession(credentials) as session:
        google.token_gate.close()
        waiting = asyncio.create_task(_status(session, google.api_url("a")))
        await google.token_gate.arrived(1)
        google.token_gate.open(release_held=False)  # the first one is lost
        [flight] = [refresher_for(credentials)._memory.flight.current()]
        assert flight is not None
        await loop_clock.advance(2.9)
        assert len(flight.notes) == 1  # no hedge yet
        await loop_clock.advance(0.2)
        assert len(flight.notes) == 2  # the hedge, at 3 s
        assert await asyncio.wait_for(waiting, 10) == 200
    assert google.token_requests == 2


async def test_the_middleware_says_what_a_caller_waited_for(
    google: GoogleEmulator,
) -> None:
    auth = AuthMiddleware(_credentials(google))
    timeout = aiohttp.ClientTimeout(total=0.5)
    async with aiohttp.ClientSession(middlewares=[auth], timeout=timeout) as session:
        google.token_gate.close()
        with pytest.raises(exceptions.TransportError, match="to get a token") as caught:
            await _status(session, google.api_url("a"))
        assert isinstance(caught.value, TimeoutError)
        google.token_gate.open()


async def test_max_allowed_time_bounds_the_wait_for_a_stalled_refresh(
    google: GoogleEmulator,
) -> None:
    loop = asyncio.get_running_loop()
    async with AuthorizedSession(_credentials(google)) as session:
        google.token_gate.close()
        started = loop.time()
        with pytest.raises(TimeoutError, match="to get a token"):
            await session.get(google.api_url("a"), max_allowed_time=0.4)
        assert loop.time() - started < 0.8
        google.token_gate.open()


# -- Tenants -------------------------------------------------------------------


async def test_four_stalled_tenants_do_not_starve_a_fifth(
    google: GoogleEmulator,
) -> None:
    async with GoogleEmulator() as stalled:
        stalled.token_gate.close()
        tenants = [_credentials(stalled) for _ in range(8)]
        sessions = [AuthorizedSession(c) for c in tenants]
        waiting = [
            asyncio.create_task(_status(s, stalled.api_url(f"t{i}")))
            for i, s in enumerate(sessions)
        ]
        await stalled.token_gate.arrived(8)  # eight refreshes hang, in eight threads
        healthy = _credentials(google)
        async with AuthorizedSession(healthy) as session:
            status = await asyncio.wait_for(_status(session, google.api_url("ok")), 5)
        assert status == 200
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)
        for s in sessions:
            await s.close()
        stalled.token_gate.open()


# -- refresh_timeout frees the thread -----------------------------------------


async def test_refresh_timeout_frees_a_compute_engine_refreshs_thread_at_once(
    gce: GoogleEmulator,
) -> None:
    credentials = compute_engine.Credentials()
    loop = asyncio.get_running_loop()
    returned = asyncio.Event()
    refresh: Any = credentials.refresh

    def timed_refresh(request: Any) -> None:
        try:
            refresh(request)
        finally:
            loop.call_soon_threadsafe(returned.set)

    credentials.refresh = timed_refresh  # type: ignore[method-assign]
    gce.token_gate.close()  # the metadata server's token endpoint stalls
    async with AuthorizedSession(credentials, refresh_timeout=0.3) as session:
        with pytest.raises(exceptions.TransportError, match=r"refresh_timeout=0\.3"):
            await session.get(gce.api_url("a"))
        # google-auth retries a failed metadata call five times, sleeping
        # 1, 2, 4 and 8 s between them; an aborted refresh does not.
        await asyncio.wait_for(returned.wait(), 1.0)
    assert gce.token_gate.arrivals == 1  # no retry was sent either
    gce.token_gate.open()


# -- Short-lived tokens --------------------------------------------------------


async def test_a_token_shorter_lived_than_the_threshold_is_renewed_once_per_half_life(
    google: GoogleEmulator, family: Any
) -> None:
    google.token_lifetime = 2  # google-auth counts it as stale at birth
    credentials = _credentials(google, family)
    loop = asyncio.get_running_loop()
    async with AuthorizedSession(credentials) as session:
        started = loop.time()
        while loop.time() - started < 1.6:
            assert await _status(session, google.api_url("s")) == 200
            await asyncio.sleep(0.05)
    # The first token, and one background refresh at half its life (1 s).
    assert google.token_requests == 2


# -- The background refresh's way out -------------------------------------------


@pytest.fixture
async def forward_proxy(google: GoogleEmulator) -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTP proxy on 127.0.0.1 that knows the host ``google.test``.

    ``google.test`` resolves nowhere else: a request reaches the emulator only
    through this proxy.
    """
    seen: list[str] = []

    async def forward(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        async with (
            aiohttp.ClientSession() as client,
            client.request(
                request.method,
                google.url + str(request.rel_url),
                data=await request.read(),
                headers={
                    k: v for k, v in request.headers.items() if k.lower() != "host"
                },
            ) as answer,
        ):
            return web.Response(
                status=answer.status,
                body=await answer.read(),
                content_type=answer.content_type,
            )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    await runner.cleanup()


def _behind_the_proxy(google: GoogleEmulator, family: Any) -> Any:
    info = google.service_account_info()
    port = google.url.rsplit(":", 1)[1]
    info["token_uri"] = f"http://google.test:{port}/token"
    return family.from_service_account_info(info, scopes=[SCOPE])


@pytest.mark.parametrize("client", ["session", "middleware"])
async def test_a_background_refresh_goes_out_through_the_sessions_proxy(
    google: GoogleEmulator,
    family: Any,
    forward_proxy: tuple[str, list[str]],
    client: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy, seen = forward_proxy
    credentials = _behind_the_proxy(google, family)
    if client == "session":
        session: aiohttp.ClientSession = AuthorizedSession(credentials, proxy=proxy)
    else:
        session = aiohttp.ClientSession(
            middlewares=[AuthMiddleware(credentials)], proxy=proxy
        )
    async with session:
        assert await _status(session, google.api_url("warm")) == 200
        old_token = credentials.token
        make_stale(credentials)
        google.token_gate.close()
        assert await _status(session, google.api_url("stale")) == 200
        await google.token_gate.arrived(2)  # the background refresh, through the proxy
        google.token_gate.open()
        await until(lambda: credentials.token != old_token, "a new token")
    assert seen.count("POST /token") == 2
    assert "Background refresh failed" not in caplog.text


async def test_a_background_refresh_uses_the_sessions_connector(
    google: GoogleEmulator, family: Any
) -> None:
    class GoogleTestResolver(aiohttp.abc.AbstractResolver):
        """Resolves ``google.test`` to 127.0.0.1, and nothing else."""

        async def resolve(self, host: str, port: int = 0, family: Any = 0) -> Any:
            assert host == "google.test"
            return [
                {
                    "hostname": host,
                    "host": "127.0.0.1",
                    "port": port,
                    "family": 2,
                    "proto": 0,
                    "flags": 0,
                }
            ]

        async def close(self) -> None:
            pass

    credentials = _behind_the_proxy(google, family)
    connector = aiohttp.TCPConnector(resolver=GoogleTestResolver())
    api = google.api_url().replace("127.0.0.1", "google.test")
    async with AuthorizedSession(credentials, connector=connector) as session:
        assert await _status(session, api + "warm") == 200
        make_stale(credentials)
        old_token = credentials.token
        google.token_gate.close()
        assert await _status(session, api + "stale") == 200
        await google.token_gate.arrived(2)
        google.token_gate.open()
        await until(lambda: credentials.token != old_token, "a new token")
    # The session owned it: closed once the refresh that shares it lets go.
    await until(lambda: connector.closed, "the connector closed")


# -- Garbled answers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/html", b"<html><body>Sign in to the Wi-Fi</body></html>"),
        ("application/json", b'["not", "a", "token"]'),
        ("application/json", b'"a string"'),
    ],
    ids=["html", "list", "string"],
)
async def test_a_garbled_token_answer_is_a_refresh_error_naming_the_endpoint(
    google: GoogleEmulator, family: Any, content_type: str, body: bytes
) -> None:
    google.token_body = (content_type, body)
    async with AuthorizedSession(_credentials(google, family)) as session:
        with pytest.raises(exceptions.RefreshError) as caught:
            await session.get(google.api_url("a"))
    message = str(caught.value)
    assert f"POST {google.token_uri} answered 200 ({content_type}" in message


async def test_a_token_answer_larger_than_a_mebibyte_is_refused(
    google: GoogleEmulator,
) -> None:
    google.token_body = ("application/json", json.dumps({"x": "y" * 2**21}).encode())
    async with AuthorizedSession(_credentials(google)) as session:
        with pytest.raises(exceptions.GoogleAuthError, match="more than 1048576 bytes"):
            await session.get(google.api_url("a"))


# -- Bad values -------------------------------------------------------------------


def test_a_string_of_statuses_is_a_type_error(credentials: Any) -> None:
    with pytest.raises(TypeError, match="refresh_status_codes"):
        AuthMiddleware(credentials, refresh_status_codes="401")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="refresh_status_codes must hold ints"):
        AuthMiddleware(credentials, refresh_status_codes=["401"])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"methods": "GET"}, r"Retry\(methods=...\) must be a collection"),
        ({"statuses": ["503"]}, r"Retry\(statuses=...\) must hold ints"),
        ({"statuses": 503}, r"Retry\(statuses=...\) must be a collection"),
    ],
)
def test_retry_refuses_what_would_never_fire(kwargs: Any, message: str) -> None:
    from google_auth_aiohttp import Retry

    with pytest.raises(TypeError, match=message):
        Retry(**kwargs)


async def test_a_timeout_of_zero_fails_at_once_everywhere(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with AuthorizedSession(credentials) as session:
        assert await _status(session, google.api_url("warm")) == 200
        with pytest.raises(TimeoutError):
            await session.get(google.api_url("a"), timeout=0)
        with pytest.raises(TimeoutError):
            await session.get(google.api_url("a"), max_allowed_time=0)
        with pytest.raises(TimeoutError):
            await session.get(
                google.api_url("a"), timeout=aiohttp.ClientTimeout(total=0)
            )
        with pytest.raises(ValueError, match=r"ClientTimeout\(total=...\)"):
            await session.get(
                google.api_url("a"), timeout=aiohttp.ClientTimeout(total=-1)
            )
    with pytest.raises(ValueError, match=r"ClientTimeout\(sock_read=...\)"):
        AuthorizedSession(
            credentials, timeout=aiohttp.ClientTimeout(sock_read=float("nan"))
        )
    async with Request() as request:
        with pytest.raises(exceptions.TransportError, match="timed out"):
            await request(google.token_uri, "POST", timeout=0)


async def test_credentials_without_refresh_get_the_401_as_it_is(
    google: GoogleEmulator,
) -> None:
    class HeaderOnly:
        """Speaks before_request, and has no refresh()."""

        def before_request(
            self, request: Any, method: str, url: str, headers: Any
        ) -> None:
            headers["Authorization"] = "Bearer not-a-token"

    async with AuthorizedSession(HeaderOnly()) as session:
        assert await _status(session, google.api_url("a")) == 401
    assert google.token_requests == 0


# -- Found by review: tenants, waiters that left, secrets, identity ------------


async def test_stalled_tenants_do_not_spend_the_hedges_of_a_healthy_one(
    google: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_single_flight, "HEDGE_AFTER", 0.05)
    async with GoogleEmulator() as stalled:
        stalled.token_gate.close()
        stalled_sessions = [AuthorizedSession(_credentials(stalled)) for _ in range(8)]
        waiting = [
            asyncio.create_task(_status(s, stalled.api_url("t"), timeout=1))
            for s in stalled_sessions
        ]
        # 1 s of hedging: each would make four hedges (at 0.05, 0.15, 0.35 and
        # 0.75 s) if its own budget let it...
        await asyncio.gather(*waiting, return_exceptions=True)
        # ...but each stalled tenant spent its own three hedges at most.
        assert stalled.token_gate.arrivals <= 8 * 4
        async with AuthorizedSession(_credentials(google)) as session:
            google.token_gate.close()
            first = asyncio.create_task(_status(session, google.api_url("a")))
            await google.token_gate.arrived(1)
            google.token_gate.open(release_held=False)  # its first request is lost
            assert await asyncio.wait_for(first, 2) == 200  # and hedged
        for s in stalled_sessions:
            await s.close()
        stalled.token_gate.open()


async def test_a_hedge_goes_out_for_a_caller_still_waiting_not_one_that_left(
    google: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_single_flight, "HEDGE_AFTER", 0.2)
    credentials = _credentials(google)

    async def one_session_per_call(timeout: float) -> int:
        async with AuthorizedSession(credentials) as session:
            return await _status(session, google.api_url("a"), timeout=timeout)

    google.token_gate.close()
    staying = asyncio.create_task(one_session_per_call(5))
    await google.token_gate.arrived(1)
    with pytest.raises(TimeoutError):
        await one_session_per_call(0.1)  # gives up, and its session closes
    google.token_gate.open(release_held=False)
    assert await asyncio.wait_for(staying, 3) == 200


async def test_a_refresh_error_holds_nothing_of_the_token_endpoints_answer(
    google: GoogleEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    credentials = _credentials(google)
    async with AuthorizedSession(credentials) as session:
        assert await _status(session, google.api_url("warm")) == 200
        google.token_body = (
            "application/json",
            b'{"id_token": "SECRET-ID-TOKEN", "refresh_token": "SECRET-RT",'
            b' "error": "invalid_grant", "expires_in": 3600}',
        )
        make_stale(credentials)
        assert await _status(session, google.api_url("stale")) == 200
        await google.token_gate.arrived(2)
        expire(credentials)
        with pytest.raises(exceptions.RefreshError) as caught:
            await session.get(google.api_url("expired"))
    printed = str(caught.value) + repr(caught.value) + caplog.text
    assert "SECRET" not in printed
    assert "invalid_grant" in repr(caught.value)  # the OAuth error stays


@pytest.mark.parametrize("status", [200, 400])
async def test_a_refresh_error_of_an_answer_without_an_oauth_error_holds_none_of_it(
    google: GoogleEmulator, serve: Any, status: int
) -> None:
    # google-auth's message for an error answer without "error" is the answer.
    answer = {"id_token": "SECRET-ID-TOKEN", "refresh_token": "SECRET-RT", "n": 1}

    async def token(request: web.Request) -> web.Response:
        return web.json_response(answer, status=status)

    app = web.Application()
    app.router.add_post("/token", token)
    info = {**google.service_account_info(), "token_uri": await serve(app) + "/token"}
    credentials = service_account.Credentials.from_service_account_info(
        info, scopes=[SCOPE]
    )
    async with AuthorizedSession(credentials) as session:
        with pytest.raises(exceptions.RefreshError) as caught:
            await session.get(google.api_url("a"))
    printed = str(caught.value) + repr(caught.value)
    assert "SECRET" not in printed
    if status == 400:
        assert '"id_token": "<redacted>"' in printed  # what it was, not its value


async def test_credentials_that_compare_equal_keep_their_own_tokens(
    google: GoogleEmulator,
) -> None:
    class Named(service_account.Credentials):
        def __eq__(self, other: object) -> bool:
            return isinstance(other, Named)

        def __hash__(self) -> int:
            return 1

    info = google.service_account_info()
    make: Any = Named.from_service_account_info
    first, second = make(info, scopes=[SCOPE]), make(info, scopes=[SCOPE])
    first.token, second.token = "token-of-first", "token-of-second"
    far = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + datetime.timedelta(
        hours=1
    )
    first.expiry = second.expiry = far
    async with AuthorizedSession(first) as one, AuthorizedSession(second) as two:
        assert one.credentials is first
        assert two.credentials is second
        async with two.get(google.api_url("x")) as response:
            assert response.status == 200  # refreshed: the emulator never issued it
    assert second.token != "token-of-first"
    assert first.token == "token-of-first"


async def test_numbers_too_large_for_a_float_are_value_errors(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with AuthorizedSession(credentials) as session:
        with pytest.raises(ValueError, match="timeout"):
            await session.get(google.api_url("a"), timeout=10**400)
        with pytest.raises(ValueError, match="max_allowed_time"):
            await session.get(google.api_url("a"), max_allowed_time=10**400)


async def test_a_trace_hook_that_awaits_does_not_cost_the_caller_its_message(
    google: GoogleEmulator,
) -> None:
    async def slow_start(session: Any, context: Any, params: Any) -> None:
        await asyncio.sleep(0.2)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(slow_start)
    async with AuthorizedSession(_credentials(google), trace_configs=[trace]) as s:
        google.token_gate.close()
        with pytest.raises(exceptions.TransportError, match="to get a token"):
            await _status(s, google.api_url("a"), timeout=1)
        google.token_gate.open()
    with pytest.raises(TimeoutError, match="timeout of 0"):
        async with AuthorizedSession(_credentials(google)) as s:
            await s.get(google.api_url("a"), timeout=0)
