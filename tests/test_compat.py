"""What the package takes from aiohttp's and google-auth's internals holds here."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from google_auth_aiohttp import _compat
from google_auth_aiohttp._compat import (
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


async def test_session_request_returns_the_context_manager_we_name_it(
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


# -- google-auth -----------------------------------------------------------------


def test_google_auths_legacy_async_credentials_and_clock() -> None:
    import datetime
    import inspect

    from google_auth_aiohttp import _compat

    for legacy in _compat.LEGACY_ASYNC_CREDENTIALS:
        assert inspect.iscoroutinefunction(legacy.before_request)
    assert datetime.timedelta(0) < _compat.REFRESH_THRESHOLD
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    assert abs(_compat.utcnow() - now) < datetime.timedelta(seconds=5)


def test_regional_access_boundaries_follow_google_auths_switch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from google_auth_aiohttp import _compat

    name = "GOOGLE_SDK_EXPERIMENTAL_PYTHON_REGIONAL_ACCESS_BOUNDARY_LOOKUP_ENABLED"
    monkeypatch.setenv(name, "false")
    assert _compat.is_regional_access_boundary_lookup_enabled() is False
    monkeypatch.setenv(name, "true")
    # On with the switch where google-auth has them (2.63); never before (2.45).
    known = importlib.util.find_spec("google.auth._regional_access_boundary_utils")
    expected = known is not None
    assert _compat.is_regional_access_boundary_lookup_enabled() is expected


def test_google_auths_mtls_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    from google_auth_aiohttp import _compat, _mtls

    monkeypatch.setenv("GOOGLE_API_USE_CLIENT_CERTIFICATE", "false")
    assert not _compat.use_client_certificate()
    monkeypatch.setenv("GOOGLE_API_USE_CLIENT_CERTIFICATE", "true")
    assert _compat.use_client_certificate()
    is_mtls, cert, key = _compat.client_certificate(lambda: (b"cert", b"key"))
    assert (is_mtls, cert, key) == (True, b"cert", b"key")
    assert callable(_compat.rotated_client_certificate)
    # google-auth's own test for an mTLS endpoint came later than 2.45; ours
    # falls back on the host name, and agrees with it where it exists.
    checks = [_mtls.is_mtls_endpoint, _compat.google_is_mtls_endpoint]
    for check in filter(None, checks):
        assert check("https://storage.mtls.googleapis.com/")
        assert not check("https://storage.googleapis.com/")


def test_google_auths_service_account_internals(
    service_account_info: dict[str, str],
) -> None:
    from google.oauth2 import service_account

    from google_auth_aiohttp import _compat

    credentials = service_account.Credentials.from_service_account_info(
        service_account_info, scopes=["https://example.test/s"]
    )
    assert _compat.usage_metric_header(credentials)
    assert _compat.usage_metric_header(object()) is None
    credentials._always_use_jwt_access = True
    _compat.sign_own_jwts(credentials, "https://api.example.test/")
    credentials.refresh(None)  # a self-signed JWT needs no token endpoint
    assert credentials.token and credentials.token.count(".") == 2


def test_google_auths_iam_id_token_address() -> None:
    assert _compat.IAM_ID_TOKEN_ENDPOINT.format("sa@p.iam.gserviceaccount.com") == (
        "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/"
        "sa@p.iam.gserviceaccount.com:generateIdToken"
    )


async def test_request_info_is_a_live_view_of_the_requests_headers() -> None:
    # What redacting a sent request's secrets relies on.
    request = aiohttp.ClientRequest(
        "GET", URL("http://127.0.0.1/"), loop=asyncio.get_running_loop()
    )
    info = request.request_info
    request.headers["Authorization"] = "secret"
    assert info.headers["Authorization"] == "secret"
