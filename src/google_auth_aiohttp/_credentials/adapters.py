"""One interface over every family of google-auth credentials.

google-auth has three families of credentials, each with its own calling
convention: the legacy async ones (``google.auth._credentials_async`` and
friends, whose ``before_request`` and usually ``refresh`` are coroutines), the
newer ``google.auth.aio.credentials`` (which expect ``google.auth.aio``
transports), and the sync ``google.auth.credentials.Credentials``. The auth
flow in :mod:`google_auth_aiohttp._auth.flow` talks to all of them through
:class:`CredentialsAdapter`, made by :func:`adapt_credentials`.

As google-auth's transports do, the family is told by behaviour, not by base
class: anything with a ``before_request`` method is credentials, async if its
``before_request`` or ``refresh`` is a coroutine function. Duck-typed
credentials and ``unittest.mock`` mocks (spec'd, autospec'd, ``wraps=``) are
driven as google-auth's own transport would drive them.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import sys
from collections.abc import MutableMapping
from typing import Any

import aiohttp
from google.auth import api_key, jwt, metrics
from google.auth import credentials as sync_credentials
from google.auth.aio import credentials as aio_credentials
from google.auth.credentials import TokenState

from google_auth_aiohttp._compat import (
    LEGACY_ASYNC_CREDENTIALS,
    is_regional_access_boundary_lookup_enabled,
    usage_metric_header,
)
from google_auth_aiohttp._credentials.threads import call_blocking
from google_auth_aiohttp._transport import Request

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

    Subclasses adapt one family. What a token's state is, when to refresh and
    how a refresh is shared are decided by
    :class:`~google_auth_aiohttp._auth.refresh.Refresher`; an adapter only says what
    the credentials hold (:attr:`token`, :attr:`expiry`), refreshes them once
    (:meth:`refresh`), and puts their headers on a request, either google-auth's
    way (:meth:`before_request`, which may refresh) or with the token they hold
    (:meth:`apply_token`).

    Args:
        credentials (Any): The google-auth credentials to adapt.

    """

    __slots__ = ("can_apply", "can_refresh", "credentials", "token_only")

    def __init__(self, credentials: Any) -> None:
        self.credentials = credentials
        #: Whether refreshing can produce a new token: a refresh() to call, and
        #: not a kind that never gets one. When it cannot, a rejected
        #: request's response is returned to the caller as it is.
        self.can_refresh = callable(
            getattr(credentials, "refresh", None)
        ) and not isinstance(credentials, _NEVER_REFRESH)
        #: Whether the credentials' headers are google-auth's own, made of
        #: their token and settings alone, whatever the request: then they can
        #: be kept, and applied without calling before_request. An override
        #: (per-audience JWTs, gcloud's access token, a user's class) is
        #: called every time.
        #: Whether the credentials apply a token without refreshing (google-auth's
        #: ``apply``).
        self.can_apply = callable(getattr(credentials, "apply", None))
        self.token_only = (
            getattr(type(credentials), "before_request", None) in _TOKEN_ONLY_HEADERS
            and self.can_apply
            and not is_regional_access_boundary_lookup_enabled()
        )

    @property
    def token(self) -> Any:
        """The credentials' token; None if they have none (a mock may not)."""
        return getattr(self.credentials, "token", None)

    @property
    def expiry(self) -> datetime.datetime | None:
        """The token's expiry (naive UTC), if the credentials say one."""
        expiry = getattr(self.credentials, "expiry", None)
        return expiry if isinstance(expiry, datetime.datetime) else None

    def stated_state(self) -> TokenState:
        """The state the credentials state themselves, for those with no expiry.

        Credentials that say nothing google-auth's way (duck-typed ones, mocks)
        count as fresh: their ``before_request`` refreshes when it must.
        """
        state = getattr(self.credentials, "token_state", TokenState.FRESH)
        return state if isinstance(state, TokenState) else TokenState.FRESH

    def transport_for(self, session: aiohttp.ClientSession) -> Any:
        """Return the request object this family refreshes with, over ``session``."""
        return Request(session)

    def refreshes_in_before_request(self) -> bool:
        """Whether ``before_request`` would refresh now (``valid`` is False).

        google-auth's own ``before_request`` refreshes whenever ``valid`` is
        false, which it is from 3 min 45 s before expiry on.
        """
        return self.can_refresh and getattr(self.credentials, "valid", None) is False

    async def refresh(self, request: Any) -> None:
        """Refresh the credentials now, whatever their state."""
        raise NotImplementedError

    async def before_request(
        self, request: Any, method: str, url: str, headers: MutableMapping[str, str]
    ) -> None:
        """Add the credentials' headers to ``headers`` their own way (it may refresh).

        Args:
            request (Any): The transport ``before_request`` may use.
            method (str): The request's method.
            url (str): The request's URL.
            headers (MutableMapping[str, str]): The headers to add to.
        """
        raise NotImplementedError

    async def apply_token(self, headers: MutableMapping[str, str]) -> None:
        """Add what ``before_request`` adds, with the token held, never refreshing.

        google-auth's ``before_request`` refreshes whenever its ``valid`` is
        false, that is from 3 min 45 s before expiry on, and always for a token
        shorter-lived than that; the refresh policy decides that instead.

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

    async def before_request(
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

    def stated_state(self) -> TokenState:
        """INVALID until they hold a token, FRESH after."""
        return TokenState.INVALID if self.token is None else TokenState.FRESH

    def transport_for(self, session: aiohttp.ClientSession) -> Any:
        """Return google-auth's aio aiohttp Request over ``session``."""
        from google.auth.aio.transport import aiohttp as aio_transport

        # No redirect is followed: it could carry the request elsewhere.
        return functools.partial(
            aio_transport.Request(session),
            raise_for_status=False,
            allow_redirects=False,
        )

    async def apply_token(self, headers: MutableMapping[str, str]) -> None:
        """Add the token's headers (``apply`` is a coroutine in this family)."""
        await self.credentials.apply(headers)


class SyncAdapter(CredentialsAdapter):
    """``google.auth.credentials.Credentials`` with a blocking ``refresh``.

    A refresh runs in a thread of its own, its HTTP calls sent on the event
    loop (:func:`~google_auth_aiohttp._credentials.threads.call_blocking`). While
    the token is valid, ``before_request`` makes no HTTP call, so it runs on
    the loop directly: no thread is used in the steady state.
    """

    __slots__ = ()

    async def refresh(self, request: Any) -> None:
        """Refresh the credentials in a thread of their own."""
        await call_blocking(self.credentials.refresh, request)

    async def before_request(
        self, request: Any, method: str, url: str, headers: MutableMapping[str, str]
    ) -> None:
        """Add the credentials' headers to ``headers``."""
        credentials = self.credentials
        # Only credentials that say they are valid, google-auth's way, are
        # sure not to refresh (and block) in before_request; a mock's or a
        # duck-typed object's call runs in a thread.
        if getattr(credentials, "valid", None) is True:
            result = credentials.before_request(request, method, url, headers)
            if inspect.isawaitable(result):  # a plain function returning one
                await result
        else:
            await call_blocking(
                credentials.before_request, request, method, url, headers
            )

    async def apply_token(self, headers: MutableMapping[str, str]) -> None:
        """Add what ``before_request`` adds, usage metric included, but no refresh."""
        usage = usage_metric_header(self.credentials)
        if usage is not None:
            metrics.add_metric_header(headers, usage)
        self.credentials.apply(headers)


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
