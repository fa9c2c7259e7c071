""":class:`AuthorizedSession`: an :class:`aiohttp.ClientSession` with credentials.

It is a ``ClientSession`` whose first middleware is an
:class:`~google_auth_aiohttp.AuthMiddleware` (where all the auth flow lives),
with google-auth's ``AuthorizedSession`` constructor and ``request()``
signature on top: ``max_allowed_time``, the 180-second default ``timeout`` and
per-request ``auto_decompress``.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Collection, Coroutine
from typing import Any

import aiohttp
from aiohttp.client import _RequestContextManager
from google.oauth2 import service_account
from yarl import URL

from google_auth_aiohttp import _call_context
from google_auth_aiohttp._call_context import CallOptions
from google_auth_aiohttp._logging import safe_url
from google_auth_aiohttp._middleware import (
    DEFAULT_MAX_REFRESH_ATTEMPTS,
    DEFAULT_REFRESH_STATUS_CODES,
    AuthMiddleware,
    decode_bytes_values,
)
from google_auth_aiohttp._mtls import ClientCertCallback, MtlsChannel
from google_auth_aiohttp._retry import Retry
from google_auth_aiohttp._transport import (
    _DEFAULT_CLIENT_TIMEOUT,
    _DEFAULT_TIMEOUT,
    client_timeout,
)

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

            from google_auth_aiohttp import AuthorizedSession

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
                sequence runs after the auth middleware.

        Raises:
            TypeError: If ``credentials`` are not google-auth credentials.
            ValueError: If ``max_refresh_attempts`` or ``refresh_timeout`` is
                negative.

        """

        ATTRS = aiohttp.ClientSession.ATTRS | frozenset(("_auth", "_mtls"))

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
            auth = AuthMiddleware(
                credentials,
                refresh_status_codes=refresh_status_codes,
                max_refresh_attempts=max_refresh_attempts,
                refresh_timeout=refresh_timeout,
                auth_request=auth_request,
                retry=retry,
            )
            auth._decode_headers = False  # request() does it, for the caller's only
            if isinstance(credentials, service_account.Credentials):
                credentials._create_self_signed_jwt(
                    f"https://{default_host}/" if default_host else None
                )
            middlewares = (auth, *kwargs.pop("middlewares", ()))
            # google-auth's request() waits 180 s by default; a timeout given
            # to the session is taken as the caller's wish instead. Either is
            # the session's own, so that requests need not pass one.
            kwargs.setdefault("timeout", _DEFAULT_CLIENT_TIMEOUT)
            super().__init__(
                auto_decompress=auto_decompress, middlewares=middlewares, **kwargs
            )
            self._auth = auth
            self._mtls = mtls

        async def __aenter__(self) -> AuthorizedSession:
            return self

        @property
        def credentials(self) -> Any:
            """The credentials requests are authorized with."""
            return self._auth.credentials

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
            # The flow looks at the certificate only after a 401 from an mTLS
            # endpoint; without one it has nothing to read per request.
            self._auth._mtls = self._mtls if self._mtls.context is not None else None

        def request(  # type: ignore[override]
            self,
            method: str,
            url: str | URL,
            data: Any = None,
            headers: Any = None,
            max_allowed_time: float | None = None,
            timeout: float | aiohttp.ClientTimeout | None = _DEFAULT_TIMEOUT,
            auto_decompress: bool | None = None,
            retry: Retry | None = None,
            stream: bool | None = None,
            **kwargs: Any,
        ) -> _RequestContextManager:
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
                timeout (Union[float, aiohttp.ClientTimeout, None]): aiohttp's
                    timeout for the call. Defaults to 180 s, or to the session's
                    own ``timeout`` if one was given.
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
                kwargs: Passed to :meth:`aiohttp.ClientSession.request`.

            Returns:
                aiohttp.client._RequestContextManager: Await it for the
                :class:`aiohttp.ClientResponse`, or use it with ``async with``.

            Raises:
                RuntimeError: If the session is closed.
                ValueError: If ``max_allowed_time`` is negative.

            """
            if self.closed:
                raise RuntimeError(
                    f"Cannot send {method} {safe_url(url)}: this AuthorizedSession "
                    "is closed. Create a new one (for example with `async with "
                    "AuthorizedSession(credentials) as session:`)."
                )
            if max_allowed_time is not None and max_allowed_time < 0:
                raise ValueError(
                    f"max_allowed_time must be None or 0 or more, not "
                    f"{max_allowed_time}."
                )
            if headers:
                headers = decode_bytes_values(headers)
            if self._mtls.context is not None:
                kwargs.setdefault("ssl", self._mtls.context)
            if timeout is not _DEFAULT_TIMEOUT:
                kwargs["timeout"] = client_timeout(timeout)
            if auto_decompress is not None:
                kwargs["auto_decompress"] = auto_decompress
            if kwargs.get("middlewares") is not None:
                # Per-request middlewares replace the session's in aiohttp;
                # keep authorizing.
                kwargs["middlewares"] = (self._auth, *kwargs["middlewares"])
            # ClientSession.request() only wraps _request() (which its own
            # get() and post() call): one call less on every request.
            call = _RequestContextManager(
                self._request(method, url, data=data, headers=headers, **kwargs)
            )
            if max_allowed_time is None and retry is None:
                return call
            return _RequestContextManager(
                _with_options(call, retry, max_allowed_time, method, url)
            )

        def _verb(
            self,
            method: str,
            url: str | URL,
            allow_redirects: bool,
            data: Any,
            kwargs: dict[str, Any],
        ) -> _RequestContextManager:
            # The verbs' common case (no options, open, no client certificate)
            # goes to aiohttp at once: the middleware does the rest. close()
            # drops the connector (what `closed` reads, through two properties);
            # request() explains a closed session.
            if kwargs or self._connector is None or self._mtls.context is not None:
                if data is not None:  # named by post(), put() and patch() only
                    kwargs["data"] = data
                return self.request(
                    method, url, allow_redirects=allow_redirects, **kwargs
                )
            return _RequestContextManager(
                self._request(method, url, data=data, allow_redirects=allow_redirects)
            )

        def get(
            self, url: str | URL, *, allow_redirects: bool = True, **kwargs: Any
        ) -> _RequestContextManager:
            """Send an authorized GET request; see :meth:`request`."""
            return self._verb("GET", url, allow_redirects, None, kwargs)

        def options(
            self, url: str | URL, *, allow_redirects: bool = True, **kwargs: Any
        ) -> _RequestContextManager:
            """Send an authorized OPTIONS request; see :meth:`request`."""
            return self._verb("OPTIONS", url, allow_redirects, None, kwargs)

        def head(
            self, url: str | URL, *, allow_redirects: bool = False, **kwargs: Any
        ) -> _RequestContextManager:
            """Send an authorized HEAD request; see :meth:`request`."""
            return self._verb("HEAD", url, allow_redirects, None, kwargs)

        def post(
            self, url: str | URL, *, data: Any = None, **kwargs: Any
        ) -> _RequestContextManager:
            """Send an authorized POST request; see :meth:`request`."""
            return self._verb(
                "POST", url, kwargs.pop("allow_redirects", True), data, kwargs
            )

        def put(
            self, url: str | URL, *, data: Any = None, **kwargs: Any
        ) -> _RequestContextManager:
            """Send an authorized PUT request; see :meth:`request`."""
            return self._verb(
                "PUT", url, kwargs.pop("allow_redirects", True), data, kwargs
            )

        def patch(
            self, url: str | URL, *, data: Any = None, **kwargs: Any
        ) -> _RequestContextManager:
            """Send an authorized PATCH request; see :meth:`request`."""
            return self._verb(
                "PATCH", url, kwargs.pop("allow_redirects", True), data, kwargs
            )

        def delete(self, url: str | URL, **kwargs: Any) -> _RequestContextManager:
            """Send an authorized DELETE request; see :meth:`request`."""
            return self._verb(
                "DELETE", url, kwargs.pop("allow_redirects", True), None, kwargs
            )


async def _with_options(
    call: Coroutine[Any, Any, aiohttp.ClientResponse],
    retry: Retry | None,
    max_allowed_time: float | None,
    method: str,
    url: str | URL,
) -> aiohttp.ClientResponse:
    loop = asyncio.get_running_loop()
    deadline = None if max_allowed_time is None else loop.time() + max_allowed_time
    marker = _call_context.change(options=CallOptions(retry, deadline))
    try:
        if max_allowed_time is None:
            return await call
        timeout = asyncio.timeout_at(deadline)
        try:
            async with timeout:
                return await call
        except TimeoutError:
            if timeout.expired():
                raise TimeoutError(
                    f"{method} {safe_url(url)} did not complete within "
                    f"max_allowed_time={max_allowed_time}s."
                ) from None
            raise
    finally:
        _call_context.restore(marker)
