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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from google_auth_aiohttp.testing import GoogleEmulator

# pytest loads this plugin in every run wherever the package is installed: the
# emulator (aiohttp.web, google-auth, cryptography) is imported only by a test
# that asks for it. The fixture is async: without pytest-asyncio, none.
if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def google_emulator() -> AsyncIterator[GoogleEmulator]:
        """A running GoogleEmulator on 127.0.0.1, closed after the test."""
        from google_auth_aiohttp.testing import GoogleEmulator

        async with GoogleEmulator() as emulator:
            yield emulator
