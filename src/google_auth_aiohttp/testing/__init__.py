"""Google's auth endpoints, emulated on 127.0.0.1, for tests and demos.

:class:`GoogleEmulator` serves an OAuth 2.0 token endpoint that verifies the
signed JWT assertions of the service-account keys it issued, and an API that
accepts only the access tokens it issued, unexpired and not revoked. Real
google-auth credentials work against it unchanged::

    from google.oauth2 import service_account
    from google_auth_aiohttp import AuthorizedSession
    from google_auth_aiohttp.testing import GoogleEmulator

    async with GoogleEmulator() as emulator:
        credentials = service_account.Credentials.from_service_account_info(
            emulator.service_account_info(), scopes=["https://example.test/scope"]
        )
        async with AuthorizedSession(credentials) as session:
            async with session.get(emulator.api_url("hello")) as response:
                assert response.status == 200
        assert emulator.token_requests == 1

No network access and no Google account are needed. It needs ``cryptography``
(to make keys): ``pip install 'google-auth-aiohttp[testing]'``.
"""

from __future__ import annotations

try:
    import cryptography  # noqa: F401  (the keys the emulator hands out)
except ImportError as missing:
    raise ImportError(
        "google_auth_aiohttp.testing needs the cryptography package: "
        "pip install 'google-auth-aiohttp[testing]'"
    ) from missing

from ._emulator import GoogleEmulator
from ._state import Gate, IssuedToken

__all__ = ["Gate", "GoogleEmulator", "IssuedToken"]
