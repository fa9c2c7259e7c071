"""An asyncio transport for google-auth over aiohttp.

A drop-in replacement for google-auth's ``google.auth.transport._aiohttp_requests``
(documented as ``aiohttp_requests``): change the import, keep the code::

    from google_auth_aiohttp import AuthorizedSession, Request

    async with AuthorizedSession(credentials) as session:
        async with session.get(url) as response:
            print(await response.json())

:class:`AuthMiddleware` gives the same behaviour to a plain
``aiohttp.ClientSession(middlewares=[...])``.
"""

from google_auth_aiohttp._default import default
from google_auth_aiohttp._middleware import (
    DEFAULT_MAX_REFRESH_ATTEMPTS,
    DEFAULT_REFRESH_STATUS_CODES,
    AuthMiddleware,
)
from google_auth_aiohttp._retry import Retry
from google_auth_aiohttp._session import AuthorizedSession
from google_auth_aiohttp._transport import Request, Response
from google_auth_aiohttp._version import __version__

__all__ = [
    "DEFAULT_MAX_REFRESH_ATTEMPTS",
    "DEFAULT_REFRESH_STATUS_CODES",
    "AuthMiddleware",
    "AuthorizedSession",
    "Request",
    "Response",
    "Retry",
    "__version__",
    "default",
]
