"""Sync google-auth credentials of every kind, refreshed off the event loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.auth import exceptions

import google_auth_aiohttp
from google_auth_aiohttp import AuthorizedSession
from google_auth_aiohttp.testing import GoogleEmulator

from .conftest import (
    SCOPE,
    exercise,
    expire,
    impersonated,
    loop_lag,
    statuses,
    trace_paths,
)


async def test_compute_engine_credentials_use_the_metadata_server_over_aiohttp(
    gce: GoogleEmulator,
) -> None:
    from google.auth import compute_engine

    trace, seen = trace_paths()
    credentials = compute_engine.Credentials()
    await exercise(gce, credentials, trace_configs=[trace])
    token_path = "/computeMetadata/v1/instance/service-accounts/default/token"
    assert seen.count(token_path) == 3  # every metadata call went through aiohttp


async def test_default_finds_compute_engine_credentials_without_blocking(
    gce: GoogleEmulator,
) -> None:
    from google.auth import compute_engine

    async with loop_lag() as lags:
        credentials, project_id = await google_auth_aiohttp.default(scopes=[SCOPE])
    # Where google-auth is already loaded, default() may end before a tick.
    assert max(lags, default=0.0) < 0.05
    assert isinstance(credentials, compute_engine.Credentials)
    assert project_id == gce.project_id
    async with AuthorizedSession(credentials) as session:
        assert await statuses(session, gce.api_url("adc"), 10) == {200}


async def test_default_reads_google_application_credentials(
    google: GoogleEmulator,
    service_account_info: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from google.oauth2 import service_account

    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(service_account_info))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    credentials, project_id = await google_auth_aiohttp.default(
        scopes=[SCOPE], quota_project_id="billing-2"
    )
    assert isinstance(credentials, service_account.Credentials)
    assert project_id == service_account_info["project_id"]
    assert credentials.quota_project_id == "billing-2"
    await exercise(google, credentials)


async def test_default_without_credentials_says_where_it_looked() -> None:
    # No key file, no gcloud credentials, and nothing on the metadata port.
    with pytest.raises(
        exceptions.DefaultCredentialsError, match="Application Default Credentials"
    ):
        await google_auth_aiohttp.default()


async def test_service_account_credentials(
    google: GoogleEmulator, service_account_info: dict[str, str]
) -> None:
    from google.oauth2 import service_account

    credentials = service_account.Credentials.from_service_account_info(
        service_account_info, scopes=[SCOPE]
    )
    await exercise(google, credentials)


async def test_authorized_user_credentials(google: GoogleEmulator) -> None:
    from google.oauth2 import credentials as user_credentials

    info = google.authorized_user_info()
    credentials = user_credentials.Credentials(
        token=None,
        refresh_token=info["refresh_token"],
        token_uri=info["token_uri"],
        client_id=info["client_id"],
        client_secret=info["client_secret"],
    )
    await exercise(google, credentials)


async def test_impersonated_credentials(
    google: GoogleEmulator, service_account_info: dict[str, str]
) -> None:
    credentials = impersonated(google, service_account_info)
    async with AuthorizedSession(credentials) as session:
        async with session.get(google.api_url("who")) as response:
            assert (await response.json())[
                "subject"
            ] == credentials.service_account_email
    assert google.token_requests == 2  # the source's token, then the target's
    async with AuthorizedSession(credentials) as session:
        google.revoke(str(credentials.token))
        assert await statuses(session, google.api_url("revoked"), 1) == {200}
        assert google.token_requests == 3
        expire(credentials)
        assert await statuses(session, google.api_url("expired"), 100) == {200}
    assert google.token_requests == 4


def _external_account_info(google: GoogleEmulator, source: dict[str, Any]) -> Any:
    return {
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/123/locations/global/"
        "workloadIdentityPools/pool/providers/provider",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": google.sts_url,
        "credential_source": source,
    }


async def test_identity_pool_credentials_exchange_a_file_sourced_token(
    google: GoogleEmulator, tmp_path: Path
) -> None:
    from google.auth import identity_pool

    token_file = tmp_path / "subject-token"
    token_file.write_text(google.external_subject_token())
    info = _external_account_info(google, {"file": str(token_file)})
    credentials = identity_pool.Credentials.from_info(info, scopes=[SCOPE])
    await exercise(google, credentials)


async def test_pluggable_credentials_run_their_executable_off_the_loop(
    google: GoogleEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.auth import pluggable

    response = {
        "version": 1,
        "success": True,
        "token_type": "urn:ietf:params:oauth:token-type:jwt",
        "id_token": google.external_subject_token(),
        "expiration_time": 4102444800,
    }
    script = tmp_path / "token.sh"
    script.write_text(f"#!/bin/sh\necho '{json.dumps(response)}'\n")
    script.chmod(0o755)
    monkeypatch.setenv("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1")
    info = _external_account_info(
        google, {"executable": {"command": str(script), "timeout_millis": 5000}}
    )
    credentials = pluggable.Credentials.from_info(info, scopes=[SCOPE])
    await exercise(google, credentials)


async def test_aws_credentials_exchange_a_signed_caller_identity_request(
    google: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.auth import aws

    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv(
        "AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    )
    info = _external_account_info(
        google,
        {
            "environment_id": "aws1",
            "regional_cred_verification_url": "https://sts.{region}.amazonaws.com"
            "?Action=GetCallerIdentity&Version=2011-06-15",
        },
    )
    info["subject_token_type"] = "urn:ietf:params:aws:token-type:aws4_request"
    credentials = aws.Credentials.from_info(info, scopes=[SCOPE])
    await exercise(google, credentials)


async def test_external_account_authorized_user_credentials(
    google: GoogleEmulator,
) -> None:
    from google.auth import external_account_authorized_user

    client = google.authorized_user_info()
    credentials = external_account_authorized_user.Credentials(
        audience="//iam.googleapis.com/locations/global/workforcePools/pool/"
        "providers/provider",
        refresh_token=client["refresh_token"],
        token_url=google.token_uri,
        client_id=client["client_id"],
        client_secret=client["client_secret"],
    )
    await exercise(google, credentials)


async def test_id_token_credentials(
    google: GoogleEmulator, service_account_info: dict[str, str]
) -> None:
    from google.oauth2 import service_account

    credentials = service_account.IDTokenCredentials.from_service_account_info(
        service_account_info, target_audience="https://my-service.example"
    )
    await exercise(google, credentials)
    assert credentials.token.count(".") == 2  # a JWT
