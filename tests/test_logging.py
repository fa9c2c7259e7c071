"""DEBUG logs say what happened, and tokens appear nowhere."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from google.auth import exceptions

from google_auth_aiohttp import AuthorizedSession, Request
from google_auth_aiohttp.testing import GoogleEmulator


async def test_debug_logs_requests_and_refreshes_without_tokens(
    google: GoogleEmulator, credentials: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="google_auth_aiohttp")
    async with AuthorizedSession(credentials) as session:
        async with session.get(google.api_url("a?access_token=leak-me")) as r:
            assert r.status == 200
        google.revoke_all()
        async with session.get(google.api_url("b")) as r:
            assert r.status == 200
    text = "\n".join(record.getMessage() for record in caplog.records)
    # Requests the flow acted on are logged, the others are not.
    assert f"GET {google.api_url('b')} -> 200 after 1 refresh(es)." in text
    assert f"GET {google.api_url('a')} ->" not in text
    assert f"POST {google.token_uri}" in text
    assert "Refreshing credentials after a 401" in text
    assert "leak-me" not in text
    assert google.issued_tokens  # and not one of them was logged:
    assert not any(token in text for token in google.issued_tokens)
    assert all(r.name == "google_auth_aiohttp" for r in caplog.records)


async def test_errors_and_reprs_hold_no_token(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with AuthorizedSession(credentials) as session:
        async with session.get(google.api_url("x")) as response:
            assert response.status == 200
        token = credentials.token
        assert token not in repr(session)
        google.token_delay = 2
        google.revoke_all()
        request = Request(session)
        with pytest.raises(exceptions.TransportError) as caught:
            await request(google.token_uri, method="POST", timeout=0.1)
        assert token not in str(caught.value)
        adapted = await request(google.api_url("y"))
        assert token not in repr(adapted)
        assert await adapted.raw_content()
