""":class:`AioCredentials`: any google-auth credentials as ``google.auth.aio`` ones.

google-auth's newer async API (``google.auth.aio``), its
``AsyncAuthorizedSession`` and the async REST transports of google-api-core
take only ``google.auth.aio.credentials.Credentials``, of which google-auth
ships static and anonymous ones. This wraps any credentials the rest of the
package drives: the same adapters, the same refresh shared with every session
that uses them, and all HTTP through aiohttp (the ``google.auth.aio`` transport
passed in), never ``requests``.
"""

from __future__ import annotations

import datetime
import inspect
from collections.abc import MutableMapping
from typing import Any

import aiohttp
from google.auth import transport as classic_transport
from google.auth.aio import credentials as aio_credentials
from google.auth.aio import transport as aio_transport

from google_auth_aiohttp._auth.refresh import Route, refresher_for
from google_auth_aiohttp._compat import REFRESH_THRESHOLD, utcnow
from google_auth_aiohttp._credentials.adapters import AioAdapter
from google_auth_aiohttp._transport import AioTransport, Request


class AioCredentials(aio_credentials.Credentials):
    """Any google-auth credentials, as ``google.auth.aio.credentials.Credentials``.

    For google-auth's ``AsyncAuthorizedSession`` and google-api-core's async
    REST transports::

        import google.auth
        from google.auth.aio.transport.sessions import AsyncAuthorizedSession
        from google_auth_aiohttp import AioCredentials

        credentials, _ = google.auth.default()
        url = "https://storage.googleapis.com/storage/v1/b?project=p"
        session = AsyncAuthorizedSession(AioCredentials(credentials))
        try:
            response = await session.get(url)
            buckets = await response.read()
        finally:
            await session.close()

    ``before_request`` refreshes when needed, one refresh for every caller
    (these sessions' and ours), in the background while the token is only
    stale; sync credentials refresh in a worker thread whose HTTP is sent on
    the event loop through the transport passed in.

    Args:
        credentials (Any): google-auth credentials of any family, or anything
            with their ``before_request``.

    Raises:
        TypeError: If ``credentials`` have no ``before_request``.
    """

    def __init__(self, credentials: Any) -> None:
        # google.auth.aio's base class keeps a token of its own; these read
        # the wrapped credentials' instead, so it is not called.
        self._refresher = refresher_for(credentials)
        self._adapter = self._refresher.adapter

    @property
    def credentials(self) -> Any:
        """The wrapped credentials."""
        return self._adapter.credentials

    @property
    def token(self) -> Any:
        """The wrapped credentials' token."""
        return self._adapter.token

    @token.setter
    def token(self, token: Any) -> None:
        self._adapter.credentials.token = token

    @property
    def expiry(self) -> datetime.datetime | None:
        """The wrapped credentials' expiry (naive UTC), if they have one."""
        return getattr(self._adapter.credentials, "expiry", None)

    @property
    def valid(self) -> bool:
        """Whether the wrapped credentials' token can be used now."""
        return bool(getattr(self._adapter.credentials, "valid", self.token is not None))

    @property
    def quota_project_id(self) -> str | None:
        """The wrapped credentials' quota project, if any."""
        return getattr(self._adapter.credentials, "quota_project_id", None)

    def _route(self, request: Any, called: str) -> Route:
        _check_aio_transport(request, called)
        if isinstance(self._adapter, AioAdapter):
            return Route(request)  # google.auth.aio credentials take it as it is
        return Route(AioTransport(request))

    async def before_request(
        self, request: Any, method: str, url: str, headers: MutableMapping[str, str]
    ) -> None:
        """Refresh if needed, then add the credentials' headers to ``headers``.

        Args:
            request (google.auth.aio.transport.Request): What refreshes send
                through.
            method (str): The request's method.
            url (str): The request's URL.
            headers (MutableMapping[str, str]): The headers to add to.

        Raises:
            TypeError: If ``headers`` is None, or ``request`` is no
                ``google.auth.aio`` transport (a :class:`google_auth_aiohttp.Request`,
                say).
        """
        if headers is None:
            raise TypeError(
                "before_request() was given no headers mapping to add to. "
                "google-auth's AsyncAuthorizedSession passes none before 2.49 "
                "when the call has no headers: pass headers={}, or upgrade."
            )
        await self._refresher.headers(
            self._route(request, "before_request"),
            method,
            url,
            wait_until=None,
            into=headers,
        )

    async def refresh(self, request: Any) -> None:
        """Refresh now, or join the refresh already under way.

        Args:
            request (google.auth.aio.transport.Request): What it sends through.

        Raises:
            TypeError: If ``request`` is no ``google.auth.aio`` transport (a
                :class:`google_auth_aiohttp.Request`, say).
        """
        await self._refresher.refresh(self._route(request, "refresh"))

    async def apply(
        self, headers: MutableMapping[str, str], token: str | None = None
    ) -> None:
        """Add the wrapped credentials' headers for their token (or ``token``).

        Their own ``apply`` decides what goes on: ``Authorization: Bearer``,
        ``x-goog-api-key`` for an API key, the quota project, whatever a
        subclass adds.
        """
        credentials = self._adapter.credentials
        if token is None:
            result = credentials.apply(headers)
        else:
            result = credentials.apply(headers, token=token)
        if inspect.isawaitable(result):
            await result

    @property
    def expired(self) -> bool:
        """Whether the wrapped credentials' token has expired, as they say."""
        stated = getattr(self._adapter.credentials, "expired", None)
        if isinstance(stated, bool):
            return stated
        expiry = self.expiry
        return expiry is not None and utcnow() >= expiry - REFRESH_THRESHOLD

    def __getattr__(self, name: str) -> Any:
        # Anything else google-auth's credentials have (universe_domain,
        # service_account_email, token_state...) is the wrapped credentials'.
        if name.startswith("__") or name in ("_adapter", "_refresher"):
            raise AttributeError(name)
        return getattr(self._adapter.credentials, name)


def _check_aio_transport(request: Any, called: str) -> None:
    """Refuse, before anything is sent, a transport of the classic kind.

    A classic transport (ours, google-auth's sync or legacy async ones) is
    called the same way but answers another kind of response, which a refresh
    fails on deep inside google-auth, maybe an hour after the mistake: it is
    refused at every call, whether a refresh is due or not. Anything else is
    taken as a ``google.auth.aio`` transport, as google-auth takes it.
    """
    if isinstance(request, aio_transport.Request):
        return
    if isinstance(request, aiohttp.ClientSession):
        given = "an aiohttp.ClientSession"
    elif isinstance(request, classic_transport.Request):
        kind = type(request)
        name = (
            "google_auth_aiohttp.Request"
            if isinstance(request, Request)
            else f"{kind.__module__}.{kind.__qualname__}"
        )
        given = f"a {name}, a transport of google-auth's classic kind"
    else:
        return
    raise TypeError(
        f"AioCredentials.{called}() was given {given}; google.auth.aio "
        "credentials take a google.auth.aio transport: pass "
        "google.auth.aio.transport.aiohttp.Request(session) instead, over the "
        "same aiohttp session."
    )
