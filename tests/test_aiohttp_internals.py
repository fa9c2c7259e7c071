"""What the package reads of aiohttp's internals holds on the installed aiohttp."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from google_auth_aiohttp._aiohttp_internals import (
    RequestContextManager,
    call_of,
    replace_ssl_context,
)


async def test_one_call_object_for_every_hop_and_another_for_each_call(
    serve: Any,
) -> None:
    async def hop(request: web.Request) -> web.Response:
        step = int(request.match_info["step"])
        if step < 3:
            raise web.HTTPFound(f"/{step + 1}")
        return web.Response(text="end")

    app = web.Application()
    app.router.add_get("/{step}", hop)
    url = await serve(app)
    seen: list[tuple[int, Any]] = []

    async def record(request: aiohttp.ClientRequest, handler: Any) -> Any:
        seen.append((int(request.url.path[1:]), call_of(request)))
        return await handler(request)

    async with aiohttp.ClientSession(middlewares=[record]) as session:
        for _ in range(2):
            async with session.get(f"{url}/0") as response:
                assert response.status == 200
                assert len(response.history) == 3
    first, second = seen[:4], seen[4:]
    assert [step for step, _ in seen] == [0, 1, 2, 3] * 2
    assert len({id(call) for _, call in first}) == 1
    assert len({id(call) for _, call in second}) == 1
    assert first[0][1] is not second[0][1]


async def _never() -> Any:
    raise AssertionError("never awaited")


async def test_session_request_returns_the_context_manager_we_name(
    serve: Any,
) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.router.add_get("/", ok)
    url = await serve(app)
    async with aiohttp.ClientSession() as session:
        call = session.request("GET", url)
        made = RequestContextManager(_never())
        made._coro.close()
        assert type(call) is type(made)
        async with call as response:
            assert response.status == 200


def test_a_request_without_a_call_object_is_refused_not_guessed() -> None:
    class Stripped:  # a ClientRequest from an aiohttp without _traces
        url = URL("https://example.test/")

    with pytest.raises(RuntimeError, match="cannot tell redirect hops apart"):
        call_of(Stripped())  # type: ignore[arg-type]


async def test_a_built_requests_ssl_context_can_be_replaced() -> None:
    import asyncio
    import ssl

    old, new = ssl.create_default_context(), ssl.create_default_context()
    request = aiohttp.ClientRequest(
        "GET", URL("https://example.test/"), ssl=old, loop=asyncio.get_running_loop()
    )
    replace_ssl_context(request, {new}, old)  # not among the old ones: kept
    assert request.ssl is old
    replace_ssl_context(request, {old}, new)
    assert request.ssl is new
