"""One interface over every family of google-auth credentials.

google-auth has three families of credentials, each with its own calling
convention: the legacy async ones (``google.auth._credentials_async`` and
friends, whose ``before_request`` and usually ``refresh`` are coroutines), the
newer ``google.auth.aio.credentials`` (which expect ``google.auth.aio``
transports), and the sync ``google.auth.credentials.Credentials``. The auth
flow in :mod:`google_auth_aiohttp._flow` talks to all of them through
:class:`CredentialsAdapter`, made by :func:`adapt_credentials`.

As google-auth's transports do, the family is told by behaviour, not by base
class: anything with a ``before_request`` method is credentials, async if its
``before_request`` or ``refresh`` is a coroutine function. Duck-typed
credentials and ``unittest.mock`` mocks (spec'd, autospec'd, ``wraps=``) are
driven as google-auth's own transport would drive them.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import aiohttp
from google.auth import api_key, jwt, metrics
from google.auth import credentials as sync_credentials
from google.auth.aio import credentials as aio_credentials
from google.auth.credentials import TokenState

from google_auth_aiohttp._private import (
    LEGACY_ASYNC_CREDENTIALS,
    REFRESH_THRESHOLD,
    is_regional_access_boundary_lookup_enabled,
    usage_metric_header,
    utcnow,
)
from google_auth_aiohttp._sync_transport import LoopRequest, in_worker_thread
from google_auth_aiohttp._transport import AioTransport, Request

# google-auth's before_request implementations whose headers depend on the
# credentials' token and settings only, never on the request.
_TOKEN_ONLY_HEADERS = frozenset(
    (
        sync_credentials.Credentials.before_request,
        sync_credentials.AnonymousCredentials.before_request,
        *(legacy.before_request for legacy in LEGACY_ASYNC_CREDENTIALS),
        api_key.Credentials.before_request,
        aio_credentials.Credentials.before_request,
        aio_credentials.StaticCredentials.before_request,
        aio_credentials.AnonymousCredentials.before_request,
    )
)

# Bound once: the freshness check runs on every request.
_monotonic = time.monotonic

# Credentials whose refresh() can never yield a new token: a rejected request
# is returned as it is rather than failing with "cannot be refreshed".
_NEVER_REFRESH = (
    sync_credentials.AnonymousCredentials,
    jwt.OnDemandCredentials,
    aio_credentials.StaticCredentials,
    aio_credentials.AnonymousCredentials,
)


class CredentialsAdapter:
    """The auth flow's view of one credentials object.

    Subclasses adapt one family. The flow asks three things: the token's state
    (:meth:`token_state`: fresh, stale but usable while a refresh runs in the
    background, or unusable), to refresh (:meth:`refresh`, which the flow makes
    sure runs once for all waiters), and to put the credentials' headers on a
    request (:meth:`apply`, or :meth:`apply_stale` for a stale token).

    It also keeps the headers the credentials last produced, and until when
    the token stays fresh, so that the flow can reuse them without calling
    into google-auth (:meth:`fresh_headers`, :meth:`remember`): that is the
    per-request path, in the steady state.

    Args:
        credentials (Any): The google-auth credentials to adapt.

    """

    __slots__ = (
        "_cacheable",
        "_fresh",
        "_fresh_expiry",
        "_fresh_until",
        "can_refresh",
        "credentials",
    )

    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials
        #: Whether refreshing can produce a new token. When it cannot, a
        #: rejected request's response is returned to the caller as it is.
        self.can_refresh = not isinstance(credentials, _NEVER_REFRESH)
        # Only google-auth's own before_request implementations are known to
        # add the same headers whatever the request; an override (per-audience
        # JWTs, gcloud's access token, a user's class) is called every time.
        self._cacheable = (
            getattr(type(credentials), "before_request", None) in _TOKEN_ONLY_HEADERS
        )
        # The headers and token remember() kept, as the pair fresh_headers()
        # returns: no tuple is made per request.
        self._fresh: tuple[dict[str, str], Any] = ({}, None)
        self._fresh_expiry: Any = None
        self._fresh_until = 0.0

    def fresh_headers(self) -> tuple[dict[str, str], Any] | None:
        """Return the current token's headers and the token, if still fresh.

        The pair is the one :meth:`remember` made, not a new one: this is the
        per-request path.
        """
        credentials = self.credentials
        try:
            token = credentials.token  # cheaper than getattr() with a default
        except AttributeError:  # a mock of credentials may have none
            return None
        try:
            expiry = credentials.expiry
        except AttributeError:
            expiry = None
        fresh = self._fresh
        if (
            token is fresh[1]
            and expiry is self._fresh_expiry
            and _monotonic() < self._fresh_until
        ):
            return fresh
        return None

    @property
    def token(self) -> Any:
        """The credentials' token; None if they have none (a mock may not)."""
        try:
            return self.credentials.token
        except AttributeError:
            return None

    def remember(self, headers: dict[str, str]) -> None:
        """Keep ``headers``, just produced by :meth:`apply` for a fresh token."""
        if not self._cacheable or is_regional_access_boundary_lookup_enabled():
            return  # the lookup changes headers behind the token's back
        credentials = self.credentials
        if self.token is None:
            return
        expiry = getattr(credentials, "expiry", None)
        if expiry is None:
            fresh_until = math.inf
        else:
            fresh_for = expiry - REFRESH_THRESHOLD - utcnow()
            fresh_until = _monotonic() + fresh_for.total_seconds()
        self._fresh = (headers, self.token)
        self._fresh_expiry = expiry
        self._fresh_until = fresh_until

    def token_state(self) -> TokenState:
        """Return whether the token is fresh, stale (usable) or invalid.

        Credentials that say nothing google-auth's way (duck-typed ones, mocks)
        count as fresh: their ``before_request`` refreshes when it must.
        """
        if not self.can_refresh:
            return TokenState.FRESH
        state = getattr(self.credentials, "token_state", TokenState.FRESH)
        return state if isinstance(state, TokenState) else TokenState.FRESH

    def transport_for(self, session: aiohttp.ClientSession) -> Any:
        """Return the request object this family refreshes with, over ``session``."""
        return Request(session)

    async def refresh(self, request: Any) -> None:
        """Refresh the credentials now, whatever their state."""
        raise NotImplementedError

    async def apply(
        self, request: Any, method: str, url: str, headers: MutableMapping[str, str]
    ) -> None:
        """Add the credentials' headers (token, quota project, …) to ``headers``.

        Args:
            request (Any): The transport ``before_request`` may use.
            method (str): The request's method.
            url (str): The request's URL.
            headers (MutableMapping[str, str]): The headers to add to.
        """
        raise NotImplementedError

    def apply_stale(self, headers: MutableMapping[str, str]) -> None:
        """Add the headers of a stale token, while a refresh is under way.

        google-auth's ``before_request`` would refresh first, since it counts a
        stale token as expired; this applies the token as it is.

        Args:
            headers (MutableMapping[str, str]): The headers to add to.
        """
        self.credentials.apply(headers)


class LegacyAsyncAdapter(CredentialsAdapter):
    """Credentials whose ``before_request`` is a coroutine.

    These are google-auth's first async credentials
    (``google.auth._credentials_async``, ``google.oauth2._credentials_async``,
    ``google.oauth2._service_account_async``, ``google.auth._jwt_async``);
    their ``refresh`` may be a coroutine or, for self-signed JWTs, a plain call.
    """

    __slots__ = ()

    async def refresh(self, request: Any) -> None:
        """Refresh the credentials now, whatever their state."""
        result = self.credentials.refresh(request)
        if inspect.isawaitable(result):
            await result

    async def apply(
        self, request: Any, method: str, url: str, headers: MutableMapping[str, str]
    ) -> None:
        """Add the credentials' headers to ``headers``."""
        await self.credentials.before_request(request, method, url, headers)


class AioAdapter(LegacyAsyncAdapter):
    """``google.auth.aio.credentials.Credentials``.

    They are called as the legacy async ones are, but refresh through a
    ``google.auth.aio`` transport, whose responses have another shape than
    google-auth's classic ones: refreshes go through google-auth's own aio
    aiohttp ``Request`` over the same session. They have no expiry, so their
    token is never stale.
    """

    __slots__ = ()

    def token_state(self) -> TokenState:
        """Return INVALID if refreshable credentials hold no token yet."""
        if self.can_refresh and self.token is None:
            return TokenState.INVALID
        return TokenState.FRESH

    def transport_for(self, session: aiohttp.ClientSession) -> Any:
        """Return google-auth's aio aiohttp Request over ``session``."""
        from google.auth.aio.transport import aiohttp as aio_transport

        return functools.partial(aio_transport.Request(session), raise_for_status=False)


class SyncAdapter(CredentialsAdapter):
    """``google.auth.credentials.Credentials`` with a blocking ``refresh``.

    A refresh runs in a worker thread, its HTTP calls sent on the event loop
    through a :class:`~google_auth_aiohttp._sync_transport.LoopRequest`. While
    the token is valid, ``before_request`` makes no HTTP call, so it runs on
    the loop directly: no thread is used in the steady state.
    """

    __slots__ = ()

    def _sync_request(self, request: Any) -> Any:
        if not isinstance(request, (Request, AioTransport)):
            return request  # a sync transport given by the caller
        # One per refresh: aborting it stops that refresh's thread only.
        return LoopRequest(request, asyncio.get_running_loop())

    async def refresh(self, request: Any) -> None:
        """Refresh the credentials in a worker thread."""
        sync_request = self._sync_request(request)
        await in_worker_thread(
            self.credentials.refresh, sync_request, loop_request=_aborter(sync_request)
        )

    async def apply(
        self, request: Any, method: str, url: str, headers: MutableMapping[str, str]
    ) -> None:
        """Add the credentials' headers to ``headers``."""
        credentials = self.credentials
        sync_request = self._sync_request(request)
        # Only credentials that say they are valid, google-auth's way, are
        # sure not to refresh (and block) in before_request; a mock's or a
        # duck-typed object's call runs in a worker thread.
        if getattr(credentials, "valid", None) is True:
            result = credentials.before_request(sync_request, method, url, headers)
            if inspect.isawaitable(result):  # a plain function returning one
                await result
        else:
            await in_worker_thread(
                credentials.before_request,
                sync_request,
                method,
                url,
                headers,
                loop_request=_aborter(sync_request),
            )

    def apply_stale(self, headers: MutableMapping[str, str]) -> None:
        """Add what ``before_request`` adds, usage metric included, but no refresh."""
        usage = usage_metric_header(self.credentials)
        if usage is not None:
            metrics.add_metric_header(headers, usage)
        self.credentials.apply(headers)


def _aborter(sync_request: Any) -> LoopRequest | None:
    return sync_request if isinstance(sync_request, LoopRequest) else None


def _is_async(method: Any) -> bool:
    """Whether calling ``method`` gives an awaitable, by what it is.

    A coroutine function, or a ``unittest.mock`` mock of one: an ``AsyncMock``
    (what spec'd and autospec'd mocks make of ``async def`` methods), or a
    mock that wraps one (``Mock(wraps=async_credentials)``). Other mocks are
    sync: ``inspect`` takes any ``MagicMock`` for a coroutine function.
    """
    mocks = sys.modules.get("unittest.mock")  # no mock exists unless imported
    while mocks is not None and isinstance(method, mocks.NonCallableMock):
        if isinstance(method, mocks.AsyncMock):
            return True
        method = method._mock_wraps
    return method is not None and inspect.iscoroutinefunction(method)


def adapt_credentials(credentials: Any) -> CredentialsAdapter:
    """Return the adapter for ``credentials``' family.

    Args:
        credentials (Any): google-auth credentials of any family, or anything
            that speaks their protocol (``before_request``, ``refresh``,
            ``token``).

    Returns:
        CredentialsAdapter: The adapter the auth flow uses.

    Raises:
        TypeError: If ``credentials`` have no ``before_request`` method.

    """
    if isinstance(credentials, aio_credentials.Credentials):
        return AioAdapter(credentials)
    before_request = getattr(credentials, "before_request", None)
    if not callable(before_request):
        raise TypeError(
            "credentials must be google-auth credentials, or an object with "
            "their before_request(request, method, url, headers) method, not "
            f"{type(credentials).__name__}."
        )
    if _is_async(before_request) or _is_async(getattr(credentials, "refresh", None)):
        return LegacyAsyncAdapter(credentials)
    return SyncAdapter(credentials)
