"""google-auth's contract on the surfaces beside the transport.

Code written for google-auth 2.63 (its sync ``requests`` session,
``google.auth.default``, ``google.auth.aio`` credentials) runs unchanged, or
gets an error that says what to write instead.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from google.auth import api_key
from google.auth.aio.transport.aiohttp import Request as AioRequest
from google.oauth2 import service_account

import google_auth_aiohttp
from google_auth_aiohttp import AioCredentials, AuthorizedSession, Request
from google_auth_aiohttp.testing import GoogleEmulator

from .conftest import SCOPE, expire

# -- Code written for google-auth's sync session ---------------------------------


async def test_a_connect_read_timeout_pair_works_as_in_requests(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with AuthorizedSession(credentials) as session:
        async with session.get(google.api_url("a"), timeout=(3.05, 27)) as response:
            assert response.status == 200
        # The read part bounds each wait for data.
        with pytest.raises(TimeoutError):
            await session.get(google.api_url("slow?delay=2"), timeout=(3.05, 0.2))
    async with Request() as request:
        answer = await request(google.token_uri, "POST", timeout=(1, 1))
        assert answer.status == 400  # reached: the form was empty
    with pytest.raises(TypeError, match=r"\(connect, read\)"):
        async with AuthorizedSession(credentials) as session:
            await session.get(google.api_url("a"), timeout=(1, 2, 3))


@pytest.mark.parametrize(
    ("keyword", "instead"),
    [("verify", "ssl="), ("cert", "ssl="), ("proxies", "proxy=")],
)
async def test_requests_keywords_say_what_aiohttp_takes_instead(
    google: GoogleEmulator, credentials: Any, keyword: str, instead: str
) -> None:
    async with AuthorizedSession(credentials) as session:
        with pytest.raises(TypeError, match=f"{keyword}=.*{instead}") as caught:
            await session.get(google.api_url("a"), **{keyword: False})
    assert "unexpected keyword" not in str(caught.value)
    assert google.api_requests == 0  # nothing was sent


# -- default() -------------------------------------------------------------------


async def test_default_takes_google_auths_arguments_in_its_order(
    gce: GoogleEmulator,
) -> None:
    from google.auth import compute_engine

    hosts: list[str] = []

    async def on_start(session: Any, context: Any, params: Any) -> None:
        hosts.append(params.url.path)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        credentials, project = await google_auth_aiohttp.default(
            [SCOPE], Request(session), "billing-project", ["https://default.test/s"]
        )
    assert isinstance(credentials, compute_engine.Credentials)
    assert credentials.quota_project_id == "billing-project"
    assert project == gce.project_id
    assert hosts  # the metadata server was asked through the session given
    async with aiohttp.ClientSession() as session:
        found, _ = await google_auth_aiohttp.default(request=AioRequest(session))
    assert isinstance(found, compute_engine.Credentials)


# -- AioCredentials ----------------------------------------------------------------


async def test_aio_credentials_apply_with_the_wrapped_credentials_own_logic() -> None:
    key = AioCredentials(api_key.Credentials("the-key"))
    headers: dict[str, str] = {}
    await key.apply(headers)
    assert headers == {"x-goog-api-key": "the-key"}  # not "Authorization: Bearer"
    assert key.expired is False


async def test_aio_credentials_have_the_wrapped_credentials_attributes(
    google: GoogleEmulator,
) -> None:
    info = google.service_account_info()
    wrapped = service_account.Credentials.from_service_account_info(
        info, scopes=[SCOPE]
    ).with_quota_project("billing-7")
    credentials = AioCredentials(wrapped)
    assert credentials.expired is False  # no expiry yet, as google-auth says
    expire(wrapped)
    assert credentials.expired is True
    assert credentials.service_account_email == info["client_email"]
    assert credentials.universe_domain == "googleapis.com"
    with pytest.raises(AttributeError):
        credentials.no_such_attribute  # noqa: B018
    headers: dict[str, str] = {}
    await credentials.apply(headers, token="given")
    assert headers["authorization"] == "Bearer given"
    assert headers["x-goog-user-project"] == "billing-7"


async def test_aio_credentials_pass_the_callers_headers_to_before_request(
    google: GoogleEmulator,
) -> None:
    seen: list[dict[str, str]] = []

    class Recording(service_account.Credentials):
        def before_request(
            self, request: Any, method: str, url: str, headers: Any
        ) -> None:
            seen.append(dict(headers))
            super().before_request(request, method, url, headers)  # type: ignore[no-untyped-call]

    make: Any = Recording.from_service_account_info
    credentials = AioCredentials(make(google.service_account_info(), scopes=[SCOPE]))
    async with aiohttp.ClientSession() as session:
        headers = {"x-goog-api-client": "gl-python/3.11 gccl/1.0"}
        await credentials.before_request(
            AioRequest(session), "GET", google.api_url("x"), headers
        )
    assert seen and seen[-1]["x-goog-api-client"].startswith("gl-python/3.11")
    assert headers["authorization"].startswith("Bearer ")
    assert json.dumps(headers)  # a plain mapping still
