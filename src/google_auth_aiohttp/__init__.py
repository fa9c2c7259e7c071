"""An asyncio transport for google-auth over aiohttp.

A drop-in replacement for google-auth's ``google.auth.transport._aiohttp_requests``
(documented as ``aiohttp_requests``): change the import, keep the code::

    import google.auth
    from google_auth_aiohttp import AuthorizedSession

    credentials, project = google.auth.default()
    url = f"https://storage.googleapis.com/storage/v1/b?project={project}"
    async with AuthorizedSession(credentials) as session:
        async with session.get(url) as response:
            print(await response.json())

:class:`AuthMiddleware` gives the same behaviour to a plain
``aiohttp.ClientSession(middlewares=[...])``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from google_auth_aiohttp._version import __version__

if TYPE_CHECKING:
    from google_auth_aiohttp._auth.flow import (
        DEFAULT_MAX_REFRESH_ATTEMPTS,
        DEFAULT_REFRESH_STATUS_CODES,
    )
    from google_auth_aiohttp._credentials.aio import AioCredentials
    from google_auth_aiohttp._credentials.default import default
    from google_auth_aiohttp._middleware import AuthMiddleware
    from google_auth_aiohttp._retry import Retry, RetryMiddleware
    from google_auth_aiohttp._session import AuthorizedSession
    from google_auth_aiohttp._transport import Request, Response

__all__ = [
    "DEFAULT_MAX_REFRESH_ATTEMPTS",
    "DEFAULT_REFRESH_STATUS_CODES",
    "AioCredentials",
    "AuthMiddleware",
    "AuthorizedSession",
    "Request",
    "Response",
    "Retry",
    "RetryMiddleware",
    "__version__",
    "default",
]

# Loaded on first use, so that importing the package (as pytest does for its
# plugin, wherever the package is installed) costs nothing until it is used.
_HOMES = {
    "AioCredentials": "_credentials.aio",
    "DEFAULT_MAX_REFRESH_ATTEMPTS": "_auth.flow",
    "DEFAULT_REFRESH_STATUS_CODES": "_auth.flow",
    "AuthMiddleware": "_middleware",
    "AuthorizedSession": "_session",
    "Request": "_transport",
    "Response": "_transport",
    "Retry": "_retry",
    "RetryMiddleware": "_retry",
    "default": "_credentials.default",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'google_auth_aiohttp' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"google_auth_aiohttp.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
