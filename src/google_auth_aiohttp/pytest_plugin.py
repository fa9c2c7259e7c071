"""pytest fixtures for testing code that uses google-auth-aiohttp.

Installed as a pytest plugin with the package. With pytest-asyncio, a test
can ask for ``google_emulator``: a running
:class:`~google_auth_aiohttp.testing.GoogleEmulator`, fresh for each test::

    from google.oauth2 import service_account
    from google_auth_aiohttp import AuthorizedSession

    async def test_lists_buckets(google_emulator):
        credentials = service_account.Credentials.from_service_account_info(
            google_emulator.service_account_info(), scopes=["https://x.test/s"]
        )
        async with AuthorizedSession(credentials) as session:
            async with session.get(google_emulator.api_url("b")) as response:
                assert response.status == 200
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator

from google_auth_aiohttp.testing import GoogleEmulator

# The fixture is async: without pytest-asyncio, the plugin offers none.
if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def google_emulator() -> AsyncIterator[GoogleEmulator]:
        """A running GoogleEmulator on 127.0.0.1, closed after the test."""
        async with GoogleEmulator() as emulator:
            yield emulator
