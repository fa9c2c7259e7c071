"""AuthorizedSession: every request authorized, refreshed and re-sent correctly."""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from google.auth import exceptions, jwt

from google_auth_aiohttp import (
    DEFAULT_MAX_REFRESH_ATTEMPTS,
    DEFAULT_REFRESH_STATUS_CODES,
    AuthorizedSession,
    Request,
)
from google_auth_aiohttp.testing import GoogleEmulator

from .conftest import expire, refresh_waiters, statuses, trace_paths


async def _echo(response: aiohttp.ClientResponse) -> dict[str, Any]:
    assert response.status == 200, await response.text()
    data: dict[str, Any] = await response.json()
    return data


def test_constants_are_google_auths() -> None:
    from google.auth import transport

    assert tuple(transport.DEFAULT_REFRESH_STATUS_CODES) == DEFAULT_REFRESH_STATUS_CODES
    assert DEFAULT_MAX_REFRESH_ATTEMPTS == transport.DEFAULT_MAX_REFRESH_ATTEMPTS


async def test_is_a_client_session(credentials: Any) -> None:
    async with AuthorizedSession(credentials) as session:
        assert isinstance(session, aiohttp.ClientSession)
        assert session.credentials is credentials


@pytest.mark.parametrize(
    "verb", ["get", "post", "put", "patch", "delete", "options", "head"]
)
async def test_every_verb_is_authorized(
    google: GoogleEmulator, credentials: Any, verb: str
) -> None:
    async with AuthorizedSession(credentials) as session:
        async with getattr(session, verb)(google.api_url("verb")) as response:
            assert response.status == 200
    assert google.token_requests == 1


@pytest.mark.parametrize("verb", ["get", "post", "put", "patch", "delete", "options"])
async def test_every_verb_sends_its_body_and_options(
    google: GoogleEmulator, credentials: Any, verb: str
) -> None:
    async with AuthorizedSession(credentials) as session:
        send = getattr(session, verb)
        async with send(google.api_url("v"), data=b"payload") as response:
            echo = await response.json()
        assert (echo["method"], echo["body"]) == (verb.upper(), "payload")
        # Options the verbs pass on: here, not following a redirect.
        target = google.api_url("elsewhere")
        url = f"{google.api_url('from')}?redirect={target}"
        async with send(url, allow_redirects=False, max_allowed_time=5) as response:
            assert response.status == 302
        async with send(url) as response:
            assert response.status == 200
            assert (await response.json())["path"] == "/api/elsewhere"


async def test_head_does_not_follow_redirects_unless_asked(
    google: GoogleEmulator, credentials: Any
) -> None:
    url = f"{google.api_url('from')}?redirect={google.api_url('to')}"
    async with AuthorizedSession(credentials) as session:
        async with session.head(url) as response:
            assert response.status == 302
        async with session.head(url, allow_redirects=True) as response:
            assert response.status == 200


async def test_request_is_authorized(google: GoogleEmulator, credentials: Any) -> None:
    async with AuthorizedSession(credentials) as session:
        async with session.request("GET", google.api_url("r")) as response:
            echo = await _echo(response)
    assert echo["subject"] == credentials.service_account_email


async def test_calls_can_be_awaited_or_used_with_async_with(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with AuthorizedSession(credentials) as session:
        response = await session.get(google.api_url("awaited"))
        assert (await _echo(response))["path"] == "/api/awaited"
        response = await session.request(
            "GET", google.api_url("deadline"), max_allowed_time=5
        )
        assert (await _echo(response))["path"] == "/api/deadline"
        async with session.post(google.api_url("ctx"), max_allowed_time=5) as r:
            assert (await _echo(r))["method"] == "POST"


async def test_ws_connect_is_authorized(
    google: GoogleEmulator, credentials: Any, serve: Any
) -> None:
    async def socket(request: web.Request) -> web.WebSocketResponse:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("issued" if token in google.issued_tokens else "unknown")
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/ws", socket)
    url = await serve(app)
    async with AuthorizedSession(credentials) as session:
        async with session.ws_connect(f"{url}/ws") as ws:
            assert await ws.receive_str() == "issued"


async def test_caller_headers_are_not_changed(
    google: GoogleEmulator, credentials: Any
) -> None:
    headers = {"X-Custom": "1"}
    async with AuthorizedSession(credentials) as session:
        async with session.get(google.api_url("h"), headers=headers) as response:
            echo = await _echo(response)
    assert headers == {"X-Custom": "1"}
    assert echo["headers"]["x-custom"] == "1"


async def test_bytes_header_values_are_decoded(
    google: GoogleEmulator, credentials: Any
) -> None:
    headers = {"X-Bytes": "é".encode(), "X-Str": "s"}
    async with AuthorizedSession(credentials) as session:
        async with session.get(google.api_url("b"), headers=headers) as response:
            echo = await _echo(response)
    assert echo["headers"]["x-bytes"] == "é"
    assert echo["headers"]["x-str"] == "s"
    assert headers["X-Bytes"] == "é".encode()


async def test_quota_project_header_is_sent(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with AuthorizedSession(credentials.with_quota_project("billing-1")) as s:
        async with s.get(google.api_url("q")) as response:
            echo = await _echo(response)
    assert echo["headers"]["x-goog-user-project"] == "billing-1"


async def test_session_defaults_still_apply(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with (
        AuthorizedSession(
            credentials, headers={"X-Default": "d"}, base_url=google.url
        ) as session,
        session.get("/api/base") as response,
    ):
        echo = await _echo(response)
    assert echo["headers"]["x-default"] == "d"
    assert echo["path"] == "/api/base"


async def test_revoked_token_is_refreshed_once_and_request_resent(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with AuthorizedSession(credentials) as session:
        async with session.get(google.api_url("1")) as response:
            await _echo(response)
        first = credentials.token
        google.revoke_all()
        async with session.get(google.api_url("2")) as response:
            await _echo(response)
    assert credentials.token != first
    assert google.token_requests == 2
    assert google.api_requests == 3  # 200, then 401 and the re-sent 200


@pytest.fixture
def seekable_file(tmp_path: Path) -> Any:
    path = tmp_path / "body.bin"
    path.write_bytes(b"skip:file-body")
    handle = path.open("rb")
    handle.read(5)  # a file handed over part-read is sent from there on
    yield handle
    handle.close()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("bytes", "bytes-body"),
        ("str", "str-body"),
        ("form", "a=1&b=2"),
        ("json", '{"k": "v"}'),
        ("bytesio", "bytesio-body"),
        ("file", "file-body"),
    ],
)
async def test_body_is_resent_intact_after_a_refresh(
    google: GoogleEmulator,
    credentials: Any,
    seekable_file: Any,
    kind: str,
    expected: str,
) -> None:
    bodies: dict[str, dict[str, Any]] = {
        "bytes": {"data": b"bytes-body"},
        "str": {"data": "str-body"},
        "form": {"data": {"a": "1", "b": "2"}},
        "json": {"json": {"k": "v"}},
        "bytesio": {"data": io.BytesIO(b"bytesio-body")},
        "file": {"data": seekable_file},
    }
    body = bodies[kind]
    async with AuthorizedSession(credentials) as session:
        await credentials.refresh(Request(session))
        google.revoke_all()
        async with session.post(google.api_url("body"), **body) as response:
            echo = await _echo(response)
    assert echo["body"] == expected
    assert google.api_requests == 2
    assert google.token_requests == 2


async def _chunks() -> AsyncIterator[bytes]:
    yield b"once"


@pytest.mark.parametrize("kind", ["async-iterator", "pipe"])
async def test_body_that_cannot_be_resent_returns_the_401(
    google: GoogleEmulator, credentials: Any, kind: str
) -> None:
    if kind == "pipe":
        read_end, write_end = os.pipe()
        os.write(write_end, b"piped")
        os.close(write_end)
        data: Any = os.fdopen(read_end, "rb")
    else:
        data = _chunks()
    async with AuthorizedSession(credentials) as session:
        await credentials.refresh(Request(session))
        google.revoke_all()
        async with session.post(google.api_url("once"), data=data) as response:
            assert response.status == 401
    if kind == "pipe":
        data.close()
    assert google.api_requests == 1
    assert google.token_requests == 1


@pytest.mark.parametrize("attempts", [0, 1, 3])
async def test_max_refresh_attempts_bounds_the_retries(
    google: GoogleEmulator, credentials: Any, attempts: int
) -> None:
    async with AuthorizedSession(credentials, max_refresh_attempts=attempts) as s:
        async with s.get(google.api_url("x?status=401")) as response:
            assert response.status == 401
    assert google.api_requests == 1 + attempts
    assert google.token_requests == 1 + attempts


async def test_refresh_status_codes_are_configurable(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with AuthorizedSession(
        credentials, refresh_status_codes=(403,), max_refresh_attempts=1
    ) as session:
        async with session.get(google.api_url("x?status=403")) as response:
            assert response.status == 403
        async with session.get(google.api_url("x?status=401")) as response:
            assert response.status == 401
    assert google.api_requests == 3  # 403, re-sent 403, 401 not retried
    assert google.token_requests == 2


async def test_token_replaced_behind_the_sessions_back_is_sent_at_once(
    google: GoogleEmulator, any_credentials: Any, serve: Any
) -> None:
    # The headers are cached while the token is fresh; a token set on the
    # credentials by anybody else (a refresh elsewhere) must still be used.
    seen: list[str | None] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/", record)
    url = await serve(app)
    async with AuthorizedSession(any_credentials) as session:
        for _ in range(2):
            async with session.get(url) as response:
                assert response.status == 200
        first = any_credentials.token
        any_credentials.token = f"{first}-replaced"
        async with session.get(url) as response:
            assert response.status == 200
    assert seen == [f"Bearer {first}"] * 2 + [f"Bearer {first}-replaced"]
    assert google.token_requests == 1


async def test_concurrent_expiry_makes_one_token_request(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with AuthorizedSession(credentials) as session:
        assert await statuses(session, google.api_url("c"), 200) == {200}
        assert google.token_requests == 1
        expire(credentials)
        assert await statuses(session, google.api_url("e"), 200) == {200}
    assert google.token_requests == 2


async def test_concurrent_401s_make_one_token_request(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with AuthorizedSession(credentials) as session:
        await credentials.refresh(Request(session))
        google.revoke_all()
        google.token_delay = 0.2  # every request is rejected before it returns
        assert await statuses(session, google.api_url("c"), 200) == {200}
    assert google.token_requests == 2


async def test_cancelled_caller_does_not_cancel_the_shared_refresh(
    google: GoogleEmulator, credentials: Any
) -> None:
    google.token_gate.close()
    async with AuthorizedSession(credentials) as session:
        first = asyncio.create_task(session.get(google.api_url("1")))
        second = asyncio.create_task(session.get(google.api_url("2")))
        await refresh_waiters(credentials, 2)  # both wait for the one refresh
        first.cancel()
        google.token_gate.open()
        response = await second
        assert response.status == 200
        response.release()
        with pytest.raises(asyncio.CancelledError):
            await first
    assert google.token_requests == 1


async def test_failed_refresh_reaches_every_waiter_and_is_not_cached(
    google: GoogleEmulator, any_credentials: Any
) -> None:
    google.token_error = "invalid_grant"
    google.token_delay = 0.1
    async with AuthorizedSession(any_credentials) as session:
        results = await asyncio.gather(
            *(session.get(google.api_url("f")) for _ in range(20)),
            return_exceptions=True,
        )
        assert all(isinstance(r, exceptions.RefreshError) for r in results)
        assert "invalid_grant" in str(results[0])
        assert google.token_requests == 1
        google.token_error = None
        async with session.get(google.api_url("ok")) as response:
            assert response.status == 200
    assert google.token_requests == 2


async def test_max_allowed_time_stops_a_slow_response_promptly(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with AuthorizedSession(credentials) as session:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError, match=r"max_allowed_time=0\.5"):
            await session.get(google.api_url("slow?delay=3"), max_allowed_time=0.5)
        assert loop.time() - started < 1.5


async def test_max_allowed_time_covers_the_refresh(
    google: GoogleEmulator, credentials: Any
) -> None:
    google.token_gate.close()  # the token request is held until opened
    async with AuthorizedSession(credentials) as session:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await session.get(google.api_url("x"), max_allowed_time=0.5)
        assert loop.time() - started < 1.5
        # The refresh goes on for others; the next call gets its token, no new one.
        following = asyncio.ensure_future(
            session.get(google.api_url("y"), max_allowed_time=5)
        )
        google.token_gate.open()
        async with await following as response:
            assert response.status == 200
    assert google.token_requests == 1


async def test_max_allowed_time_covers_every_attempt(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with AuthorizedSession(credentials, max_refresh_attempts=5) as session:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await session.get(
                google.api_url("x?status=401&delay=0.3"), max_allowed_time=0.8
            )
        assert loop.time() - started < 1.5
    assert google.api_requests <= 3


async def test_refresh_timeout_bounds_each_refresh(
    google: GoogleEmulator, credentials: Any
) -> None:
    google.token_delay = 2
    async with AuthorizedSession(credentials, refresh_timeout=0.2) as session:
        with pytest.raises(exceptions.TransportError, match=r"refresh_timeout=0\.2"):
            await session.get(google.api_url("x"))


async def test_auth_request_is_what_refreshes_use(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with aiohttp.ClientSession() as token_session:
        auth_request = Request(token_session)
        async with AuthorizedSession(credentials, auth_request=auth_request) as s:
            async with s.get(google.api_url("x")) as response:
                assert response.status == 200
        assert not token_session.closed
    assert google.token_requests == 1


async def test_refreshes_go_through_the_sessions_own_settings(
    google: GoogleEmulator, credentials: Any
) -> None:
    trace, seen = trace_paths()
    async with AuthorizedSession(credentials, trace_configs=[trace]) as session:
        async with session.get(google.api_url("x")) as response:
            assert response.status == 200
    assert sorted(seen) == ["/api/x", "/token"]


async def test_connection_limit_of_one_survives_refresh_cycles(
    google: GoogleEmulator, credentials: Any
) -> None:
    connector = aiohttp.TCPConnector(limit=1)
    async with AuthorizedSession(credentials, connector=connector) as session:
        async with asyncio.timeout(20):
            for i in range(15):
                google.revoke_all()
                async with session.get(google.api_url(f"cycle{i}")) as response:
                    assert response.status == 200
    assert google.token_requests == 15


async def test_auto_decompress_is_off_by_default_and_per_request(
    google: GoogleEmulator, credentials: Any
) -> None:
    url = google.api_url("z?gzip=1")
    async with AuthorizedSession(credentials) as session:
        async with session.get(url) as response:
            assert (await response.read())[:2] == b"\x1f\x8b"
        async with session.get(url, auto_decompress=True) as response:
            assert json.loads(await response.read())["path"] == "/api/z"
    async with AuthorizedSession(credentials, auto_decompress=True) as session:
        async with session.get(url) as response:
            assert json.loads(await response.read())["path"] == "/api/z"


async def test_session_timeout_is_honoured(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with AuthorizedSession(
        credentials, timeout=aiohttp.ClientTimeout(total=0.3)
    ) as session:
        with pytest.raises(asyncio.TimeoutError):
            await session.get(google.api_url("x?delay=2"))
        with pytest.raises(asyncio.TimeoutError):
            await session.get(google.api_url("x?delay=2"), timeout=0.2)


async def test_user_middlewares_run_after_authorization(
    google: GoogleEmulator, credentials: Any
) -> None:
    seen: list[tuple[str, bool]] = []

    async def spy(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        seen.append((request.url.path, "Authorization" in request.headers))
        return await handler(request)

    async with AuthorizedSession(credentials, middlewares=[spy]) as session:
        async with session.get(google.api_url("x")) as response:
            assert response.status == 200
        async with session.get(google.api_url("y"), middlewares=[spy]) as response:
            assert response.status == 200
    # Not the token request: a refresh skips them, as google-auth's do.
    assert seen == [("/api/x", True), ("/api/y", True)]


async def test_closed_session_is_a_clear_error(credentials: Any) -> None:
    session = AuthorizedSession(credentials)
    await session.close()
    with pytest.raises(RuntimeError, match="AuthorizedSession is closed"):
        await session.get("http://127.0.0.1/")
    with pytest.raises(RuntimeError, match="AuthorizedSession is closed"):
        await session.post("http://127.0.0.1/", data=b"x", headers={"A": "b"})
    # A shared connector closed by its owner: aiohttp's own error.
    connector = aiohttp.TCPConnector()
    shared = AuthorizedSession(credentials, connector=connector, connector_owner=False)
    await connector.close()
    with pytest.raises(RuntimeError, match="closed"):
        await shared.get("http://127.0.0.1/")
    await shared.close()


async def test_bad_arguments_are_clear_errors(credentials: Any) -> None:
    with pytest.raises(TypeError, match="google-auth credentials"):
        AuthorizedSession("not credentials")
    with pytest.raises(ValueError, match="max_refresh_attempts"):
        AuthorizedSession(credentials, max_refresh_attempts=-1)
    with pytest.raises(ValueError, match="refresh_timeout"):
        AuthorizedSession(credentials, refresh_timeout=-1)
    with pytest.raises(TypeError, match="auth_request"):
        AuthorizedSession(credentials, auth_request="nope")
    async with AuthorizedSession(credentials) as session:
        with pytest.raises(ValueError, match="max_allowed_time"):
            session.get("http://127.0.0.1/", max_allowed_time=-1)


async def test_default_host_lets_service_accounts_sign_their_own_jwt(
    google: GoogleEmulator, service_account_info: dict[str, str]
) -> None:
    from google.oauth2 import service_account

    credentials = service_account.Credentials.from_service_account_info(
        service_account_info, always_use_jwt_access=True
    )
    host = google.url.removeprefix("http://")
    async with AuthorizedSession(credentials, default_host=host) as session:
        async with session.get(google.api_url("jwt")) as response:
            assert (await response.json())[
                "subject"
            ] == credentials.service_account_email
    assert google.token_requests == 0
    claims = jwt.decode(credentials.token, verify=False)
    assert claims["aud"] == f"https://{host}/"


async def test_without_default_host_service_accounts_get_tokens(
    google: GoogleEmulator, service_account_info: dict[str, str]
) -> None:
    from google.oauth2 import service_account

    credentials = service_account.Credentials.from_service_account_info(
        service_account_info, scopes=["https://example.test/s"]
    )
    async with AuthorizedSession(credentials, default_host="api.example.test") as s:
        async with s.get(google.api_url("token")) as response:
            assert response.status == 200
    assert google.token_requests == 1


async def test_quota_project_and_metrics_headers_for_sync_credentials(
    google: GoogleEmulator, service_account_info: dict[str, str]
) -> None:
    from google.oauth2 import service_account

    credentials = service_account.Credentials.from_service_account_info(
        service_account_info, scopes=["https://example.test/s"]
    ).with_quota_project("billing-3")
    async with AuthorizedSession(credentials) as session:
        async with session.get(google.api_url("q")) as response:
            echo = await _echo(response)
    assert echo["headers"]["x-goog-user-project"] == "billing-3"
    assert "cred-type/sa" in echo["headers"]["x-goog-api-client"]


async def test_a_client_librarys_api_client_header_is_extended_once(
    google: GoogleEmulator, service_account_info: dict[str, str]
) -> None:
    from google.oauth2 import service_account

    credentials = service_account.Credentials.from_service_account_info(
        service_account_info, scopes=["https://example.test/s"]
    )
    headers = {"x-goog-api-client": "gl-python/3 gccl/1.0"}
    async with AuthorizedSession(credentials) as session:
        for _ in range(2):  # first with google-auth, then from the cache
            async with session.get(google.api_url("a"), headers=headers) as r:
                first = (await _echo(r))["headers"]["x-goog-api-client"]
            assert first.startswith("gl-python/3 gccl/1.0 ")
            assert first.count("cred-type/sa") == 1
        google.revoke_all()  # re-sent after a refresh: still once
        async with session.get(google.api_url("b"), headers=headers) as r:
            again = (await _echo(r))["headers"]["x-goog-api-client"]
    assert again.count("cred-type/sa") == 1
    assert headers == {"x-goog-api-client": "gl-python/3 gccl/1.0"}


async def test_bytes_header_values_in_a_multidict_or_pairs(
    google: GoogleEmulator, credentials: Any
) -> None:
    from multidict import CIMultiDict

    multi = CIMultiDict([("X-Many", b"1"), ("X-Many", "2")])
    async with AuthorizedSession(credentials) as session:
        async with session.get(google.api_url("m"), headers=multi) as response:
            assert response.status == 200
        pairs = [("X-Pair", "p")]
        async with session.get(google.api_url("p"), headers=pairs) as response:
            assert (await _echo(response))["headers"]["x-pair"] == "p"
    assert multi.getall("X-Many") == [b"1", "2"]
