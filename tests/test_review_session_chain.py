"""Review of the one-chain-per-session change: attacks on redirect notes."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from google_auth_aiohttp import AuthorizedSession, Retry
from google_auth_aiohttp._auth.refresh import RefreshWaitTimeout
from google_auth_aiohttp.testing import GoogleEmulator

from .conftest import expire


class Hosts:
    """Two origins, a (asked) and b (must never see a token); each records."""

    def __init__(self) -> None:
        self.a = ""
        self.b = ""
        self.seen: list[tuple[str, str, str | None]] = []
        # path -> (status, location) answers, per origin name
        self.routes: dict[tuple[str, str], Any] = {}

    def app(self, name: str) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            await request.read()
            self.seen.append((name, request.path, request.headers.get("Authorization")))
            answer = self.routes.get((name, request.path))
            if callable(answer):
                served: web.StreamResponse = await answer(request)
                return served
            if answer is not None:
                status, location = answer
                return web.Response(status=status, headers={"Location": location})
            return web.Response(text="end")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app

    def tokens_at(self, name: str) -> list[str]:
        return [p for n, p, auth in self.seen if n == name and auth]


@pytest.fixture
async def hosts(serve: Any) -> Hosts:
    hosts = Hosts()
    hosts.a = await serve(hosts.app("a"))
    hosts.b = await serve(hosts.app("b"))
    return hosts


# -- placement by notes ---------------------------------------------------------


async def test_kept_redirects_and_concurrent_calls_place_no_hop_wrongly(
    hosts: Hosts, credentials: Any
) -> None:
    hosts.routes[("a", "/to-b")] = (302, f"{hosts.b}/landing")
    kept: list[aiohttp.ClientResponse] = []
    async with AuthorizedSession(credentials) as session:
        # Redirects not followed, kept: their notes outlive their calls.
        for _ in range(20):
            response = await session.get(f"{hosts.a}/to-b", allow_redirects=False)
            kept.append(response)

        async def followed() -> None:
            async with session.get(f"{hosts.a}/to-b") as response:
                assert response.status == 200

        async def direct_b() -> None:
            async with session.get(f"{hosts.b}/direct") as response:
                assert response.status == 200

        await asyncio.gather(*(followed() for _ in range(50)), direct_b())
        for response in kept:
            response.release()
    # b is authorized only when the caller asked for b.
    assert hosts.tokens_at("b") == ["/direct"]
    assert len(hosts.tokens_at("a")) == 70


async def test_redirect_loop_through_another_origin(
    hosts: Hosts, credentials: Any
) -> None:
    hosts.routes[("a", "/loop")] = (302, f"{hosts.b}/loop")
    hosts.routes[("b", "/loop")] = (307, f"{hosts.a}/loop")
    async with AuthorizedSession(credentials) as session:
        with pytest.raises(aiohttp.TooManyRedirects) as caught:
            await session.post(f"{hosts.a}/loop", data=b"body", max_redirects=9)
        shown = (
            repr(caught.value)
            + repr(caught.value.request_info)
            + "".join(repr(r.request_info) for r in caught.value.history)
        )
        assert str(credentials.token) not in shown
    assert hosts.tokens_at("b") == []
    assert len(hosts.tokens_at("a")) == 5


async def test_same_origin_then_another_origin(hosts: Hosts, credentials: Any) -> None:
    hosts.routes[("a", "/1")] = (308, f"{hosts.a}/2")
    hosts.routes[("a", "/2")] = (307, f"{hosts.b}/3")
    async with AuthorizedSession(credentials) as session:
        async with session.put(f"{hosts.a}/1", data=b"x" * 100) as response:
            assert response.status == 200
    assert hosts.tokens_at("a") == ["/1", "/2"]
    assert hosts.tokens_at("b") == []


async def test_through_client_session_methods_and_private_request(
    hosts: Hosts, credentials: Any
) -> None:
    hosts.routes[("a", "/to-b")] = (301, f"{hosts.b}/landing")
    async with AuthorizedSession(credentials) as session:
        calls: list[Any] = [
            lambda: aiohttp.ClientSession.get(session, f"{hosts.a}/to-b"),
            lambda: aiohttp.ClientSession.request(session, "GET", f"{hosts.a}/to-b"),
            lambda: session._request("GET", f"{hosts.a}/to-b"),
        ]
        for call in calls:
            response = await call()
            assert response.status == 200
            response.release()
    assert hosts.tokens_at("b") == []
    assert len(hosts.tokens_at("a")) == 3


async def test_base_url_session(hosts: Hosts, credentials: Any) -> None:
    hosts.routes[("a", "/to-b")] = (302, f"{hosts.b}/landing")
    async with AuthorizedSession(credentials, base_url=hosts.a) as session:
        async with session.get("/to-b") as response:
            assert response.status == 200
    assert hosts.tokens_at("b") == []
    assert hosts.tokens_at("a") == ["/to-b"]


async def test_ws_connect_redirected_to_another_origin(
    serve: Any, hosts: Hosts, credentials: Any
) -> None:
    seen: list[str | None] = []

    async def ws(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("Authorization"))
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        await socket.close()
        return socket

    app = web.Application()
    app.router.add_get("/ws", ws)
    other = await serve(app)
    hosts.routes[("a", "/ws")] = (302, f"{other}/ws")
    async with AuthorizedSession(credentials) as session:
        async with session.ws_connect(f"{hosts.a}/ws") as socket:
            await socket.receive()
    assert seen == [None]
    assert hosts.tokens_at("a") == ["/ws"]


async def test_connection_retry_of_a_hop_to_another_origin(
    hosts: Hosts, credentials: Any
) -> None:
    """aiohttp sends an idempotent request again after a dropped connection."""
    dropped: list[bool] = []

    async def drop_once(request: web.Request) -> web.StreamResponse:
        if not dropped:
            dropped.append(True)
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        return web.Response(text="end")

    hosts.routes[("a", "/to-b")] = (302, f"{hosts.b}/drop")
    hosts.routes[("b", "/drop")] = drop_once
    async with AuthorizedSession(credentials) as session:
        async with session.get(f"{hosts.a}/to-b") as response:
            assert response.status == 200
    assert [p for n, p, _ in hosts.seen if n == "b"] == ["/drop", "/drop"]
    assert hosts.tokens_at("b") == []


async def test_session_retry_of_a_hop_to_another_origin(
    hosts: Hosts, credentials: Any
) -> None:
    failed: list[bool] = []

    async def fail_once(request: web.Request) -> web.StreamResponse:
        if not failed:
            failed.append(True)
            return web.Response(status=503)
        return web.Response(text="end")

    hosts.routes[("a", "/to-b")] = (302, f"{hosts.b}/flaky")
    hosts.routes[("b", "/flaky")] = fail_once
    retry = Retry(initial=0, maximum=0, statuses=(503, 302))
    async with AuthorizedSession(credentials, retry=retry) as session:
        async with session.get(f"{hosts.a}/to-b") as response:
            assert response.status == 200
        async with session.get(f"{hosts.a}/to-b", retry=retry) as response:
            assert response.status == 200
    assert hosts.tokens_at("b") == []


# -- lifecycle -------------------------------------------------------------------


async def test_a_connector_closed_by_its_owner_says_so_and_sends_nothing(
    hosts: Hosts, credentials: Any
) -> None:
    connector = aiohttp.TCPConnector()
    session = AuthorizedSession(credentials, connector=connector, connector_owner=False)
    await connector.close()
    try:
        calls: list[Any] = [
            lambda: session.get(f"{hosts.a}/x"),
            lambda: session.request("GET", f"{hosts.a}/x"),
        ]
        for call in calls:
            with pytest.raises(RuntimeError, match="this AuthorizedSession is closed"):
                await call()
    finally:
        await session.close()
    assert hosts.seen == []


# -- memory ------------------------------------------------------------------------


async def test_notes_go_with_their_responses(hosts: Hosts, credentials: Any) -> None:
    hosts.routes[("a", "/to-b")] = (302, f"{hosts.b}/landing")
    async with AuthorizedSession(credentials) as session:
        notes = session._auth._redirected._notes
        for _ in range(300):
            async with session.get(f"{hosts.a}/to-b") as response:
                assert response.status == 200
            del response
            # Freed as the responses are, without waiting for the cyclic GC.
            assert len(notes) <= 1
        gc.collect()
        assert notes == {}


# -- time ---------------------------------------------------------------------------


async def test_a_stalled_refresh_on_a_later_hop_says_what_timed_out(
    google: GoogleEmulator, hosts: Hosts, credentials: Any, loop_clock: Any
) -> None:
    """The session's total timeout runs from the call's start, not each hop's."""

    async def slow_then_redirect(request: web.Request) -> web.StreamResponse:
        expire(credentials)  # the next hop must refresh
        google.token_gate.close()
        await loop_clock.advance(8)  # the first hop took 8 s of the call's 10
        return web.Response(status=302, headers={"Location": f"{hosts.a}/2"})

    hosts.routes[("a", "/1")] = slow_then_redirect
    async with AuthorizedSession(credentials, timeout=10) as session:
        await session.get(f"{hosts.a}/0")  # a token, first
        call = asyncio.ensure_future(session.get(f"{hosts.a}/1"))
        await google.token_gate.arrived(2)
        # To just before aiohttp's own timer (10 s from the call's start),
        # where the wait for the refresh must give up; then past it.
        await loop_clock.advance(1.985)
        await loop_clock.advance(1)
        with pytest.raises(RefreshWaitTimeout, match="own time ran out"):
            await call
        google.token_gate.open()


async def test_max_allowed_time_bounds_a_stalled_refresh_on_a_later_hop(
    google: GoogleEmulator, hosts: Hosts, credentials: Any, loop_clock: Any
) -> None:
    async def slow_then_redirect(request: web.Request) -> web.StreamResponse:
        expire(credentials)
        google.token_gate.close()
        await loop_clock.advance(8)
        return web.Response(status=302, headers={"Location": f"{hosts.a}/2"})

    hosts.routes[("a", "/1")] = slow_then_redirect
    async with AuthorizedSession(credentials) as session:
        await session.get(f"{hosts.a}/0")
        call = asyncio.ensure_future(session.get(f"{hosts.a}/1", max_allowed_time=10))
        await google.token_gate.arrived(2)
        await loop_clock.advance(3)
        with pytest.raises(TimeoutError, match="max_allowed_time=10"):
            await call
        google.token_gate.open()
    assert hosts.tokens_at("a") == ["/0", "/1"]


async def test_many_tenants_leave_nothing_behind(
    google: GoogleEmulator, hosts: Hosts, service_account_info: Any
) -> None:
    from google.oauth2 import service_account

    from google_auth_aiohttp._auth import refresh

    hosts.routes[("a", "/to-b")] = (302, f"{hosts.b}/landing")
    gc.collect()
    before = len(refresh._MEMORIES)
    for _ in range(200):
        credentials = service_account.Credentials.from_service_account_info(
            service_account_info,
            scopes=["https://www.googleapis.com/auth/cloud-platform"],
        )
        async with AuthorizedSession(credentials) as session:
            async with session.get(f"{hosts.a}/to-b") as response:
                assert response.status == 200
        del credentials, session, response
    gc.collect()
    assert len(refresh._MEMORIES) == before
    assert hosts.tokens_at("b") == []
