"""AioCredentials: any google-auth credentials in google-auth's own aio session."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import google.auth
import pytest
from google.auth import transport as classic_transport
from google.auth.aio.transport import aiohttp as aio_aiohttp
from google.auth.aio.transport.sessions import AsyncAuthorizedSession
from google.oauth2 import _service_account_async, service_account
from google.oauth2 import credentials as user_credentials

from google_auth_aiohttp import AioCredentials, Request
from google_auth_aiohttp.testing import GoogleEmulator

from .conftest import SCOPE, expire, make_stale, until


@contextlib.asynccontextmanager
async def aio_session(credentials: Any) -> AsyncIterator[AsyncAuthorizedSession]:
    session = AsyncAuthorizedSession(credentials)
    try:
        yield session
    finally:
        await session.close()


_GOOGLE_AUTH = tuple(map(int, google.auth.__version__.split(".")[:2]))
# Before google-auth 2.49, its session hands before_request no headers mapping
# unless the call has one; before 2.58 it does not refresh after a 401.
_CALL: dict[str, Any] = {} if _GOOGLE_AUTH >= (2, 49) else {"headers": {}}
_REFRESHES_ON_401 = _GOOGLE_AUTH >= (2, 58)


async def _echo(session: Any, url: str) -> dict[str, Any]:
    response = await session.get(url, **_CALL)
    assert response.status_code == 200, await response.read()
    data: dict[str, Any] = json.loads(await response.read())
    await response.close()
    return data


@pytest.fixture(params=["sync", "async"])
def service_account_credentials(request: Any, google: GoogleEmulator) -> Any:
    family: Any = {
        "sync": service_account.Credentials,
        "async": _service_account_async.Credentials,
    }[request.param]
    return family.from_service_account_info(
        google.service_account_info(), scopes=[SCOPE]
    ).with_quota_project("billing-9")


async def test_a_service_account_in_google_auths_aio_session(
    google: GoogleEmulator, service_account_credentials: Any
) -> None:
    wrapped = AioCredentials(service_account_credentials)
    assert wrapped.credentials is service_account_credentials
    assert wrapped.token is None and not wrapped.valid
    async with aio_session(wrapped) as session:
        echo = await _echo(session, google.api_url("a"))
        assert echo["subject"] == service_account_credentials.service_account_email
        assert echo["headers"]["x-goog-user-project"] == "billing-9"
        assert wrapped.valid and wrapped.token == service_account_credentials.token
        assert wrapped.expiry == service_account_credentials.expiry
        assert wrapped.quota_project_id == "billing-9"
        issued = google.token_requests
        expire(service_account_credentials)
        results = await asyncio.gather(
            *(_echo(session, google.api_url(f"e{i}")) for i in range(50))
        )
        assert len(results) == 50
        assert google.token_requests == issued + 1  # 50 callers, one refresh
        if _REFRESHES_ON_401:
            google.revoke_all()
            assert (await _echo(session, google.api_url("r")))["path"] == "/api/r"
            assert google.token_requests == issued + 2


async def test_user_credentials_in_google_auths_aio_session(
    google: GoogleEmulator,
) -> None:
    info = google.authorized_user_info()
    credentials = user_credentials.Credentials(
        token=None,
        refresh_token=info["refresh_token"],
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        token_uri=google.token_uri,
    )
    async with aio_session(AioCredentials(credentials)) as session:
        assert (await _echo(session, google.api_url("u")))["path"] == "/api/u"
    assert google.token_requests == 1


async def test_compute_engine_credentials_in_google_auths_aio_session(
    gce: GoogleEmulator,
) -> None:
    from google.auth import compute_engine

    wrapped = AioCredentials(compute_engine.Credentials())
    async with aio_session(wrapped) as session:
        echo = await _echo(session, gce.api_url("g"))
    assert echo["subject"] == gce.gce_service_account
    assert gce.token_requests == 1


async def test_refresh_forces_one_and_apply_adds_the_headers(
    google: GoogleEmulator, service_account_credentials: Any
) -> None:
    from google.auth.aio.transport.aiohttp import Request as AioRequest

    wrapped = AioCredentials(service_account_credentials)
    request = AioRequest()
    try:
        await wrapped.refresh(request)
        first = wrapped.token
        await wrapped.refresh(request)
        assert wrapped.token != first
    finally:
        await request.close()
    headers: dict[str, str] = {}
    await wrapped.apply(headers)
    assert headers == {
        "authorization": f"Bearer {wrapped.token}",
        "x-goog-user-project": "billing-9",
    }
    assert google.token_requests == 2


class _SyncTransport(classic_transport.Request):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing is sent")


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (Request, r"a google_auth_aiohttp\.Request, a transport of google-auth's"),
        (lambda session: _SyncTransport(), r"a tests\.test_aio_credentials\._Sync"),
        (lambda session: session, r"an aiohttp\.ClientSession;"),
    ],
    ids=["ours", "a sync one", "a ClientSession"],
)
async def test_a_transport_of_the_classic_kind_is_a_clear_type_error(
    google: GoogleEmulator, service_account_credentials: Any, make: Any, named: str
) -> None:
    wrapped = AioCredentials(service_account_credentials)
    says = named + r".*pass google\.auth\.aio\.transport\.aiohttp\.Request\(session\)"
    async with aiohttp.ClientSession() as session:
        given = make(session)
        with pytest.raises(TypeError, match=r"^AioCredentials\.refresh\(\) .*" + says):
            await wrapped.refresh(given)
        with pytest.raises(TypeError, match=r"^AioCredentials\.before_request\(\) "):
            await wrapped.before_request(given, "GET", google.api_url("a"), {})
        assert google.token_requests == 0  # refused before anything was sent
        await wrapped.refresh(aio_aiohttp.Request(session))  # what it says works
    assert wrapped.valid and google.token_requests == 1


async def test_no_headers_mapping_is_a_clear_error(
    service_account_credentials: Any,
) -> None:
    with pytest.raises(TypeError, match="headers=\\{\\}"):
        no_headers: Any = None
        await AioCredentials(service_account_credentials).before_request(
            None, "GET", "https://x.test/", no_headers
        )


def test_anything_without_the_protocol_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="before_request"):
        AioCredentials("token")


async def test_google_api_cores_async_rest_transport(
    google: GoogleEmulator, serve: Any
) -> None:
    from aiohttp import web
    from google.api_core.operations_v1 import AsyncOperationsRestTransport
    from google.longrunning import operations_pb2

    seen: list[str | None] = []

    async def operation(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        seen.append(token if token in google.issued_tokens else None)
        return web.json_response({"name": "projects/p/operations/o", "done": True})

    app = web.Application()
    app.router.add_get("/v1/{tail:.*}", operation)
    url = await serve(app)
    credentials = service_account.Credentials.from_service_account_info(
        google.service_account_info(), scopes=[SCOPE]
    )
    transport = AsyncOperationsRestTransport(
        host=url, credentials=AioCredentials(credentials)
    )
    try:
        request = operations_pb2.GetOperationRequest(name="projects/p/operations/o")
        operation_state = await transport.get_operation(request)
        assert operation_state.done
        await transport.get_operation(request)
    finally:
        # Its close() is not implemented in google-api-core: close its session.
        await transport._session.close()
    assert seen == [credentials.token, credentials.token]  # issued, and reused
    assert google.token_requests == 1


async def test_a_stale_token_is_refreshed_in_the_background(
    google: GoogleEmulator, service_account_credentials: Any
) -> None:
    wrapped = AioCredentials(service_account_credentials)
    loop = asyncio.get_running_loop()
    async with aio_session(wrapped) as session:
        await _echo(session, google.api_url("warm"))
        old = wrapped.token
        make_stale(service_account_credentials)
        google.token_delay = 0.5
        started = loop.time()
        await asyncio.gather(
            *(_echo(session, google.api_url(f"s{i}")) for i in range(10))
        )
        assert loop.time() - started < 0.4  # nobody waited for the token request
        assert wrapped.token == old
        await until(lambda: wrapped.token != old, "the background refresh landed")
        assert wrapped.valid
    assert google.token_requests == 2
