""":class:`AuthorizedSession`: an :class:`aiohttp.ClientSession` with credentials.

The session's chain is the one a plain session gets from
:class:`~google_auth_aiohttp.AuthMiddleware` (and
:class:`~google_auth_aiohttp.RetryMiddleware` ahead of it, given a ``retry``):
one auth layer (:class:`_SessionAuth`), first in every chain the session
runs, places each request in its call and runs the auth flow
(:class:`~google_auth_aiohttp._auth.flow.AuthFlow`) for it, redirect hops
included. A call with options of its own (``max_allowed_time``, a
``timeout``, a ``retry``, the caller's middlewares) gets a chain of its own,
around a :class:`_Call` that holds them for as long as the call lives. On
top are google-auth's ``AuthorizedSession`` constructor and ``request()``
signature: ``max_allowed_time``, the 180-second default ``timeout`` and
per-request ``auto_decompress``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Collection, Mapping, Sequence
from typing import Any

import aiohttp
from aiohttp import ClientHandlerType, ClientMiddlewareType, ClientRequest
from multidict import CIMultiDict
from yarl import URL

from google_auth_aiohttp._auth.flow import (
    DEFAULT_MAX_REFRESH_ATTEMPTS,
    DEFAULT_REFRESH_STATUS_CODES,
    WAIT_MARGIN,
    AuthFlow,
)
from google_auth_aiohttp._auth.origin import (
    may_authorize,
    strip_secrets,
)
from google_auth_aiohttp._checks import seconds
from google_auth_aiohttp._compat import RequestContextManager, sign_own_jwts
from google_auth_aiohttp._logging import safe_url
from google_auth_aiohttp._middleware import AuthMiddleware
from google_auth_aiohttp._mtls import ClientCertCallback, MtlsChannel
from google_auth_aiohttp._retry import Retry, RetryMiddleware, check_retry
from google_auth_aiohttp._transport import (
    DEFAULT_CLIENT_TIMEOUT,
    NO_TIME,
    client_timeout,
)


class _SessionTimeout:
    """``timeout``'s default in :meth:`AuthorizedSession.request`: the session's."""

    def __repr__(self) -> str:
        return "<the session's timeout: 180 s unless it was given one>"


_SESSION_TIMEOUT: Any = _SessionTimeout()


# aiohttp discourages subclassing ClientSession because its internals change;
# this class overrides only public methods, so the warning is silenced for
# this one definition.
with warnings.catch_warnings():
    warnings.filterwarnings(
        "ignore",
        message="Inheritance class AuthorizedSession from ClientSession is discouraged",
        category=DeprecationWarning,
    )

    class AuthorizedSession(aiohttp.ClientSession):
        """An :class:`aiohttp.ClientSession` that authorizes every request.

        Every request method (``request``, ``get``, ``post``, ``put``,
        ``patch``, ``delete``, ``head``, ``options``) and ``ws_connect`` carries
        the credentials' headers; a request rejected with a status in
        ``refresh_status_codes`` is sent again after one refresh shared by all
        concurrent requests. Each call can be awaited or used as an async
        context manager, as with ``ClientSession``::

            import google.auth
            from google_auth_aiohttp import AuthorizedSession

            credentials, _ = google.auth.default()
            async with AuthorizedSession(credentials) as session:
                async with session.get(
                    "https://storage.googleapis.com/storage/v1/b?project=p"
                ) as response:
                    buckets = await response.json()

        Args:
            credentials (Any): google-auth credentials of any family.
            refresh_status_codes (Collection[int]): Statuses that make the
                credentials refresh and the request be sent again.
            max_refresh_attempts (int): How many times a request is sent again
                after a refresh.
            refresh_timeout (Optional[float]): Seconds a refresh may take.
            auth_request (Optional[Callable]): The transport refreshes use. By
                default they go through this session (its connector, proxy,
                ``trust_env`` and SSL settings), unauthorized.
            auto_decompress (bool): Whether response bodies are decompressed by
                default. False, as in google-auth's aiohttp transport.
            default_host (Optional[str]): The API's host, such as
                ``"storage.googleapis.com"``. As in google-auth's sync session,
                service-account credentials then sign their own JWT for
                ``https://{default_host}/`` where they are allowed to (AIP-4111),
                and need no token request.
            retry (Optional[Retry]): Retries of transient failures for every
                request; none by default, as in google-auth.
            kwargs: Passed to :class:`aiohttp.ClientSession`. A ``middlewares``
                sequence runs after the auth middleware (refreshes skip it).

        Raises:
            TypeError: If ``credentials`` are not google-auth credentials.
            ValueError: If ``max_refresh_attempts`` or ``refresh_timeout`` is
                negative.

        """

        ATTRS = aiohttp.ClientSession.ATTRS | frozenset(
            (
                "_after_auth",
                "_auth",
                "_default_host",
                "_flow",
                "_lease",
                "_mtls",
                "_refresh_settings",
                "_retry",
                "_total_timeout",
            )
        )

        def __init__(
            self,
            credentials: Any,
            refresh_status_codes: Collection[int] = DEFAULT_REFRESH_STATUS_CODES,
            max_refresh_attempts: int = DEFAULT_MAX_REFRESH_ATTEMPTS,
            refresh_timeout: float | None = None,
            auth_request: Any = None,
            auto_decompress: bool = False,
            default_host: str | None = None,
            retry: Retry | None = None,
            **kwargs: Any,
        ) -> None:
            # Built before the ClientSession so that bad arguments leave no
            # unclosed session behind.
            mtls = MtlsChannel()
            flow = AuthFlow(
                credentials,
                refresh_status_codes=refresh_status_codes,
                max_refresh_attempts=max_refresh_attempts,
                refresh_timeout=refresh_timeout,
                auth_request=auth_request,
                mtls=mtls,
            )
            retry = check_retry(retry)
            _sign_own_jwts(credentials, default_host)
            after_auth = tuple(kwargs.pop("middlewares", ()))
            # google-auth's request() waits 180 s by default; a timeout given
            # to the session is taken as the caller's wish instead. Either is
            # the session's own, so that requests need not pass one.
            kwargs["timeout"] = client_timeout(
                kwargs.get("timeout", DEFAULT_CLIENT_TIMEOUT)
            )
            # Refreshes go out with this session's way out (connector, proxy,
            # trust_env, tracing), over a session of their own that shares the
            # connector: closing this one ends no refresh. Not through the
            # caller's middlewares, as google-auth's refreshes skip a
            # session's hooks: one that re-sends a request elsewhere (a
            # mirror, a failover) would take the token request's secrets.
            refresh_settings = {
                name: kwargs[name]
                for name in ("proxy", "proxy_auth", "trust_env", "trace_configs")
                if name in kwargs
            }
            connector = kwargs.pop("connector", None)
            owns_connector = kwargs.pop("connector_owner", True) or connector is None
            # The session's own chain authorizes every call without options of
            # its own. With the caller's middlewares, every call made through
            # request() gets a chain of its own, with the guard behind them;
            # one that reaches ClientSession's internals another way is not
            # authorized.
            auth = _SessionAuth(flow)
            chain: tuple[ClientMiddlewareType, ...] = after_auth
            if not after_auth:
                chain = (auth,)
                if retry is not None:
                    chain = (RetryMiddleware(retry), auth)
            super().__init__(
                auto_decompress=auto_decompress,
                middlewares=chain,
                connector=connector,
                connector_owner=False,
                **kwargs,
            )
            assert self.connector is not None  # made by ClientSession if None
            self._lease = _Lease(self.connector, owns_connector)
            self._refresh_settings = refresh_settings
            self._total_timeout = self.timeout.total
            self._flow = flow
            self._auth = auth
            self._mtls = mtls
            self._retry = retry
            self._after_auth = after_auth
            self._default_host = default_host

        async def __aenter__(self) -> AuthorizedSession:
            return self

        async def close(self) -> None:
            """Close the session; its connector once no refresh uses it any more."""
            if not self.closed:
                await super().close()
                await self._lease.release()

        @contextlib.asynccontextmanager
        async def _open_refresh_session(self) -> AsyncIterator[aiohttp.ClientSession]:
            """A session for one refresh, with this one's connector and settings."""
            lease = self._lease
            lease.acquire()
            try:
                async with aiohttp.ClientSession(
                    connector=lease.connector,
                    connector_owner=False,
                    **self._refresh_settings,
                ) as session:
                    yield session
            finally:
                await lease.release()

        @property
        def credentials(self) -> Any:
            """The credentials requests are authorized with; assignable.

            As with google-auth's session, requests made after an assignment
            use the new credentials (and share refreshes with every other
            user of those).
            """
            return self._flow.credentials

        @credentials.setter
        def credentials(self, credentials: Any) -> None:
            self._flow.credentials = credentials
            _sign_own_jwts(credentials, self._default_host)

        @property
        def is_mtls(self) -> bool:
            """bool: Whether requests present a client certificate (mutual TLS)."""
            return self._mtls.context is not None

        def configure_mtls_channel(
            self, client_cert_callback: ClientCertCallback | None = None
        ) -> None:
            """Present a client certificate on every https request (mutual TLS).

            As in google-auth's sync session, this does something only if
            ``GOOGLE_API_USE_CLIENT_CERTIFICATE`` is ``true`` (or unset with a
            workload certificate configured). Servers are still verified against
            the trust store aiohttp uses by default (the system's, honouring
            ``SSL_CERT_FILE``). A request that passes its own ``ssl=`` keeps it.

            Args:
                client_cert_callback (Optional[Callable[[], Tuple[bytes, bytes]]]):
                    Returns the client certificate and private key, PEM-encoded.
                    Without it, the application default client certificate
                    (``gcloud``'s or the workload's) is used.

            Raises:
                google.auth.exceptions.MutualTLSChannelError: If the certificate
                    could not be had or loaded; the session is left as it was.
            """
            self._mtls.configure(client_cert_callback)

        def request(  # type: ignore[override]
            self,
            method: str,
            url: str | URL,
            data: Any = None,
            headers: Any = None,
            max_allowed_time: float | None = None,
            timeout: float
            | tuple[float | None, float | None]
            | aiohttp.ClientTimeout
            | None = _SESSION_TIMEOUT,
            auto_decompress: bool | None = None,
            retry: Retry | None = None,
            stream: bool | None = None,
            **kwargs: Any,
        ) -> RequestContextManager:
            """Send an authorized request.

            Args:
                method (str): The HTTP method.
                url (Union[str, yarl.URL]): The URL.
                data (Any): The body: bytes, str, a form dict, a file object…
                    Anything but an async iterator or an unseekable stream can be
                    sent again after a refresh.
                headers (Optional[Mapping[str, Union[str, bytes]]]): Headers;
                    bytes values are decoded as UTF-8. The mapping is not changed.
                max_allowed_time (Optional[float]): Seconds the whole call may
                    take: waiting for credentials, refreshes and every attempt.
                    When they pass, :class:`TimeoutError` is raised at once.
                timeout (Union[float, Tuple, aiohttp.ClientTimeout, None]):
                    aiohttp's timeout for the call: seconds in all, a
                    ``(connect, read)`` pair as in google-auth's sync session,
                    or a ``ClientTimeout``; 0 fails at once, None is no limit.
                    Defaults to the session's own ``timeout``, which is 180 s
                    unless the session was given one; any value passed here,
                    180 included, is used instead.
                auto_decompress (Optional[bool]): Whether to decompress this
                    response's body; defaults to the session's setting.
                retry (Optional[Retry]): Retries for this call, instead of the
                    session's.
                stream (Optional[bool]): Accepted and ignored, for code written
                    for ``requests``-style sessions (google-resumable-media
                    passes it): aiohttp always streams the body. It is the only
                    ``requests`` keyword accepted; ``verify``, ``cert`` or
                    ``proxies`` raise :class:`TypeError` (use aiohttp's ``ssl``
                    and ``proxy``).
                kwargs: Passed to :meth:`aiohttp.ClientSession.request`. A
                    ``middlewares`` sequence replaces the session's own, after
                    the auth flow, as in aiohttp.

            Returns:
                aiohttp.client._RequestContextManager: Await it for the
                :class:`aiohttp.ClientResponse`, or use it with ``async with``.

            Raises:
                RuntimeError: If the session is closed.
                TypeError: If ``retry`` is not a Retry, or a time not a number.
                ValueError: If ``max_allowed_time`` or ``timeout`` is negative,
                    NaN or infinite.

            """
            if self.closed:
                raise RuntimeError(
                    f"Cannot send {method} {safe_url(url)}: this AuthorizedSession "
                    "is closed. Create a new one (for example with `async with "
                    "AuthorizedSession(credentials) as session:`)."
                )
            if kwargs and not kwargs.keys().isdisjoint(_REQUESTS_KEYWORDS):
                _refuse_requests_keywords(kwargs)
            if headers:
                headers = decode_bytes_values(headers)
            if self._mtls.context is not None:
                kwargs.setdefault("ssl", self._mtls.context)
            total = self._total_timeout
            own_options = retry is not None or "middlewares" in kwargs
            if timeout is not _SESSION_TIMEOUT:
                kwargs["timeout"] = timeout = client_timeout(timeout)
                if isinstance(timeout, aiohttp.ClientTimeout):
                    total = timeout.total
                own_options = True
            if total == NO_TIME:
                return RequestContextManager(_no_time(method, url))
            if auto_decompress is not None:
                kwargs["auto_decompress"] = auto_decompress
            retry = self._retry if retry is None else check_retry(retry)
            if max_allowed_time is None:
                if not (own_options or self._after_auth):  # the session's chain
                    return RequestContextManager(
                        self._request(method, url, data=data, headers=headers, **kwargs)
                    )
                return self._start(
                    None, total, retry, method, url, data, headers, kwargs
                )
            seconds("max_allowed_time", max_allowed_time)
            return RequestContextManager(
                self._within(
                    max_allowed_time, total, retry, method, url, data, headers, kwargs
                )
            )

        def _start(
            self,
            deadline: float | None,
            total: float | None,
            retry: Retry | None,
            method: str,
            url: str | URL,
            data: Any,
            headers: Any,
            kwargs: dict[str, Any],
        ) -> RequestContextManager:
            """Start a call with options of its own, in a chain of its own.

            The chain: the retry layer, if the call has a policy; the call's
            auth (a :class:`_Call`); the caller's middlewares (per-request
            ones replace the session's, as in aiohttp), followed by a guard.
            """
            call = _Call(self._auth, deadline, total)
            after = kwargs.pop("middlewares", None)
            chain = call.chain(self._after_auth if after is None else after)
            if retry is not None:
                chain = (RetryMiddleware._until(retry, deadline), *chain)
            # What ClientSession.request() does, less the generic alias it
            # calls and a repacking of every keyword: ~2,500 instructions of
            # ~330,000 a request (benchmarks/INSTRUCTIONS.md).
            return RequestContextManager(
                self._request(
                    method, url, data=data, headers=headers, middlewares=chain, **kwargs
                )
            )

        async def _within(
            self,
            max_allowed_time: float,
            total: float | None,
            retry: Retry | None,
            method: str,
            url: str | URL,
            data: Any,
            headers: Any,
            kwargs: dict[str, Any],
        ) -> aiohttp.ClientResponse:
            """The call, bounded as a whole by ``max_allowed_time``."""
            deadline = asyncio.get_running_loop().time() + max_allowed_time
            timeout = asyncio.timeout_at(deadline)
            try:
                async with timeout:
                    return await self._start(
                        deadline, total, retry, method, url, data, headers, kwargs
                    )
            except TimeoutError:
                if timeout.expired():
                    raise TimeoutError(
                        f"{method} {safe_url(url)} did not complete within "
                        f"max_allowed_time={max_allowed_time}s."
                    ) from None
                raise

        def _verb(
            self,
            method: str,
            url: str | URL,
            allow_redirects: bool,
            data: Any,
            kwargs: dict[str, Any],
        ) -> RequestContextManager:
            """A verb's call: :meth:`request`, or the session's chain without options.

            A verb given no options, on an open session without a client
            certificate or middlewares of the caller's, needs none of
            request()'s checks: skipping them saves ~5,000 instructions of
            ~330,000 a request (benchmarks/INSTRUCTIONS.md).
            """
            if (
                kwargs
                or self._after_auth
                or self._mtls.context is not None
                or self.closed
                or self._total_timeout == NO_TIME
            ):
                if data is not None:  # named by post(), put() and patch() only
                    kwargs["data"] = data
                return self.request(
                    method, url, allow_redirects=allow_redirects, **kwargs
                )
            return RequestContextManager(
                self._request(method, url, data=data, allow_redirects=allow_redirects)
            )

        def get(
            self, url: str | URL, *, allow_redirects: bool = True, **kwargs: Any
        ) -> RequestContextManager:
            """Send an authorized GET request; see :meth:`request`."""
            return self._verb("GET", url, allow_redirects, None, kwargs)

        def options(
            self, url: str | URL, *, allow_redirects: bool = True, **kwargs: Any
        ) -> RequestContextManager:
            """Send an authorized OPTIONS request; see :meth:`request`."""
            return self._verb("OPTIONS", url, allow_redirects, None, kwargs)

        def head(
            self, url: str | URL, *, allow_redirects: bool = False, **kwargs: Any
        ) -> RequestContextManager:
            """Send an authorized HEAD request; see :meth:`request`."""
            return self._verb("HEAD", url, allow_redirects, None, kwargs)

        def post(
            self, url: str | URL, *, data: Any = None, **kwargs: Any
        ) -> RequestContextManager:
            """Send an authorized POST request; see :meth:`request`."""
            follow = kwargs.pop("allow_redirects", True)
            return self._verb("POST", url, follow, data, kwargs)

        def put(
            self, url: str | URL, *, data: Any = None, **kwargs: Any
        ) -> RequestContextManager:
            """Send an authorized PUT request; see :meth:`request`."""
            follow = kwargs.pop("allow_redirects", True)
            return self._verb("PUT", url, follow, data, kwargs)

        def patch(
            self, url: str | URL, *, data: Any = None, **kwargs: Any
        ) -> RequestContextManager:
            """Send an authorized PATCH request; see :meth:`request`."""
            follow = kwargs.pop("allow_redirects", True)
            return self._verb("PATCH", url, follow, data, kwargs)

        def delete(self, url: str | URL, **kwargs: Any) -> RequestContextManager:
            """Send an authorized DELETE request; see :meth:`request`."""
            follow = kwargs.pop("allow_redirects", True)
            return self._verb("DELETE", url, follow, None, kwargs)


async def _no_time(method: str, url: str | URL) -> aiohttp.ClientResponse:
    raise TimeoutError(
        f"{method} {safe_url(url)} was not sent: its timeout of 0 leaves no time."
    )


def _sign_own_jwts(credentials: Any, default_host: str | None) -> None:
    """Let service-account credentials sign their own JWTs for ``default_host``.

    As google-auth's sync session does (AIP-4111), where they are allowed to.
    """
    # Not imported yet, google-auth's service_account module (~50 ms to
    # load) cannot have made these credentials.
    module = sys.modules.get("google.oauth2.service_account")
    if module is not None and isinstance(credentials, module.Credentials):
        sign_own_jwts(credentials, f"https://{default_host}/" if default_host else None)


class _SessionAuth(AuthMiddleware):
    """The auth layer of an :class:`AuthorizedSession`.

    The session puts it first in every chain it runs (a retry layer ahead of
    it sends the same request again), so a request it did not see redirected
    is its call's first: no frame needs to be looked at.
    """

    __slots__ = ()

    def __init__(self, flow: AuthFlow) -> None:
        self._hold(flow)

    def __call__(
        self, request: ClientRequest, handler: ClientHandlerType
    ) -> Awaitable[aiohttp.ClientResponse]:
        return self._authorize(request, handler, True, None)

    def secret_header_names(self) -> frozenset[str]:
        """The names of the secret headers its credentials add to requests."""
        return self._flow.secret_header_names()


class _Call:
    """A call of an :class:`AuthorizedSession` with options of its own.

    Its middleware, first in its chain: the session's auth layer places and
    authorizes each request of the call, and the call waits for a refresh no
    longer than its own time (its total timeout from its first request, or
    its ``max_allowed_time``). With the caller's middlewares, its guard comes
    last: the call's first request gave the origin and proxy it is kept to.
    """

    __slots__ = ("_asked", "_auth", "_deadline", "_proxy", "_started", "_total")

    def __init__(
        self, auth: _SessionAuth, deadline: float | None, total: float | None
    ) -> None:
        self._auth = auth
        self._deadline = deadline
        self._total = total
        self._asked: URL | None = None
        self._proxy: URL | None = None
        # Made before aiohttp starts the call's timer (and awaits its trace
        # hooks): the call's own time is counted from here.
        self._started = time.monotonic()

    def __call__(
        self, request: ClientRequest, handler: ClientHandlerType
    ) -> Awaitable[aiohttp.ClientResponse]:
        if self._asked is None:  # the call's first request: what its guard keeps
            self._asked = request.url.origin()
            self._proxy = request.proxy
        return self._auth._authorize(request, handler, True, self)

    def chain(
        self, after: Sequence[ClientMiddlewareType]
    ) -> tuple[ClientMiddlewareType, ...]:
        """The call's middlewares: this one, ``after``, and then its guard."""
        if not after:
            return (self,)
        return (self, *after, self._guard)

    def _guard(
        self, request: ClientRequest, handler: ClientHandlerType
    ) -> Awaitable[aiohttp.ClientResponse]:
        """Last in the chain, behind the caller's middlewares.

        A middleware after the flow may send the request again itself (follow
        a redirect, try a mirror) with the headers the flow put on it. What
        goes to another origin than the asked one goes without the
        credentials' secrets, as aiohttp's own redirects do; so does what goes
        through another proxy than the call's own.
        """
        asked = self._asked
        if (
            asked is None
            or not may_authorize(request, asked)
            or request.proxy != self._proxy
        ):
            strip_secrets(request.headers, self._auth.secret_header_names())
        return handler(request)

    def wait_until(self) -> float | None:
        """When, in ``loop.time()``, this call stops waiting for a refresh.

        A little before aiohttp's own timer fires, so that the caller learns
        what it waited for rather than getting a bare TimeoutError().
        """
        deadline = self._deadline
        if self._total:
            elapsed = time.monotonic() - self._started
            ends = asyncio.get_running_loop().time() + self._total - elapsed
            deadline = ends if deadline is None else min(deadline, ends)
        return None if deadline is None else deadline - WAIT_MARGIN


class _Lease:
    """A connector shared by a session and the refreshes it started.

    The last one to let go closes it, if the session owned it.
    """

    __slots__ = ("connector", "owned", "users")

    def __init__(self, connector: aiohttp.BaseConnector, owned: bool) -> None:
        self.connector = connector
        self.owned = owned
        self.users = 1  # the session

    def acquire(self) -> None:
        self.users += 1

    async def release(self) -> None:
        self.users -= 1
        if not self.users and self.owned:
            await self.connector.close()


# What google-auth's sync session (requests) takes, and aiohttp's equivalent.
_REQUESTS_KEYWORDS = {
    "verify": "ssl= (False, or an ssl.SSLContext made with the CA bundle)",
    "cert": "ssl= (an ssl.SSLContext with load_cert_chain()), or "
    "configure_mtls_channel() for Google's client certificates",
    "proxies": "proxy= (one URL), or trust_env=True on the session for HTTP(S)_PROXY",
}


def _refuse_requests_keywords(kwargs: Mapping[str, Any]) -> None:
    name = next(k for k in _REQUESTS_KEYWORDS if k in kwargs)
    raise TypeError(
        f"{name}= is a keyword of requests (google-auth's sync session), which "
        f"aiohttp does not take: use aiohttp's {_REQUESTS_KEYWORDS[name]}."
    )


def decode_bytes_values(headers: Any) -> Any:
    """Return ``headers`` with bytes values decoded as UTF-8, in a copy if any are.

    google-resumable-media and others pass bytes, which aiohttp cannot send;
    google-auth's transport decoded them. A mapping without bytes values, or
    anything but a mapping, is returned as it is.

    Args:
        headers (Any): Request headers, as callers give them to aiohttp.

    Returns:
        Any: ``headers``, or a :class:`multidict.CIMultiDict` copy, decoded.
    """
    if not isinstance(headers, Mapping) or bytes not in map(type, headers.values()):
        return headers  # the usual case, checked in C
    return CIMultiDict(
        (name, value.decode("utf-8") if isinstance(value, bytes) else value)
        for name, value in headers.items()
    )
