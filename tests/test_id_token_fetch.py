"""Fetching ID tokens: from a key file, an impersonation file or the metadata server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from google.auth import exceptions

from google_auth_aiohttp import AuthorizedSession, Request, id_token
from google_auth_aiohttp.testing import GoogleEmulator

from .conftest import expire, loop_lag, statuses

AUDIENCE = "https://service.example.test"


def _use_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, info: Any) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps(info))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))


@pytest.fixture
async def service(serve: Any, google: GoogleEmulator) -> str:
    """A service that accepts only Google ID tokens for AUDIENCE."""

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"caller": request[id_token.REQUEST_KEY]["email"]})

    app = web.Application(
        middlewares=[id_token.middleware(AUDIENCE, certs_url=google.certs_url)]
    )
    app.router.add_get("/{tail:.*}", hello)
    url: str = await serve(app)
    return url


async def test_a_service_account_key_calls_a_service_with_id_tokens(
    google: GoogleEmulator,
    service: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    info = google.service_account_info()
    _use_file(monkeypatch, tmp_path, info)
    async with Request() as request:
        token = await id_token.fetch_id_token(request, AUDIENCE)
        claims = await id_token.verify_token(
            token, request, audience=AUDIENCE, certs_url=google.certs_url
        )
    assert claims["email"] == info["client_email"]
    credentials = await id_token.fetch_id_token_credentials(AUDIENCE)
    async with AuthorizedSession(credentials) as session:
        async with session.get(f"{service}/hello") as response:
            assert response.status == 200
            assert (await response.json())["caller"] == info["client_email"]
        before = google.token_requests
        expire(credentials)  # 20 callers, one new ID token
        assert await statuses(session, f"{service}/x", 20) == {200}
    assert google.token_requests == before + 1


async def test_an_impersonation_file_gets_its_id_token_from_iam_over_aiohttp(
    google: GoogleEmulator,
    service: str,
    other_origin: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    target = "runner@emulator-project.iam.gserviceaccount.com"
    # IAM's address, here the emulator's: google-auth's, whatever the file says.
    monkeypatch.setattr(
        id_token,
        "IAM_ID_TOKEN_ENDPOINT",
        google.iam_url("{}").replace(":generateAccessToken", ":generateIdToken"),
    )
    _use_file(
        monkeypatch,
        tmp_path,
        {
            "type": "impersonated_service_account",
            "service_account_impersonation_url": (
                f"{other_origin.url}/v1/projects/-/serviceAccounts/{target}"
                ":generateAccessToken"
            ),
            "source_credentials": google.service_account_info(),
            "delegates": [],
        },
    )
    credentials = await id_token.fetch_id_token_credentials(AUDIENCE)
    async with AuthorizedSession(credentials) as session:
        async with session.get(f"{service}/hello") as response:
            assert response.status == 200
            assert (await response.json())["caller"] == target
    assert google.token_requests == 2  # the source's token, then IAM's ID token
    assert other_origin.requests == []  # the file's address got no token


async def test_the_metadata_server_gives_id_tokens_without_blocking_the_loop(
    gce: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    # What is measured is waiting on the network: the emulator's RSA key and
    # google-auth's modules (requests, for compute_engine) are made and loaded
    # before, as in a running service.
    import google.auth.compute_engine
    import google.oauth2.id_token  # noqa: F401

    gce.token_delay = 0.5
    gce.rotate_id_token_key()
    async with Request() as request:
        async with loop_lag() as lags:
            token = await id_token.fetch_id_token(request, AUDIENCE)
        claims = await id_token.verify_token(
            token, request, audience=AUDIENCE, certs_url=gce.certs_url
        )
    assert claims["email"] == gce.gce_service_account
    assert len(lags) > 30 and max(lags) < 0.05


async def test_without_a_source_the_error_says_where_it_looked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    with pytest.raises(exceptions.DefaultCredentialsError, match="metadata server"):
        await asyncio.wait_for(id_token.fetch_id_token_credentials(AUDIENCE), 30)
