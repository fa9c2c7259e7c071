"""google-auth's transport interface over aiohttp: Request and Response.

Credentials call a :class:`Request` to reach token endpoints and metadata
servers. This is the adapter google-auth's own
``google.auth.transport._aiohttp_requests`` provides, with the same names and
signatures, and with every aiohttp failure turned into
:class:`google.auth.exceptions.TransportError`.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Mapping
from typing import Any

import aiohttp
from google.auth import exceptions
from google.auth import transport as google_transport
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from google_auth_aiohttp._checks import seconds
from google_auth_aiohttp._credentials.own_requests import credentials_request
from google_auth_aiohttp._decoding import decode_body
from google_auth_aiohttp._logging import LOGGER, safe_url, scrub

_DEFAULT_TIMEOUT = 180
"""Seconds a request may take, as in google-auth's aiohttp transport."""

DEFAULT_CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=_DEFAULT_TIMEOUT)
NO_CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=None)


#: What a timeout of 0 becomes: aiohttp reads 0 as "no limit", google-auth's
#: sync transport as "no time at all"; this package means the latter.
NO_TIME = 1e-9

_TIMEOUT_FIELDS = ("total", "connect", "sock_read", "sock_connect")


def client_timeout(
    timeout: float | tuple[float | None, float | None] | aiohttp.ClientTimeout | None,
) -> aiohttp.ClientTimeout:
    """Return ``timeout`` (seconds in all, or None for none) as a ClientTimeout.

    A ``(connect, read)`` pair, as google-auth's sync session (``requests``)
    takes, bounds connecting (``sock_connect``) and each wait for data
    (``sock_read``), with no total.

    One rule for every timeout this package takes, a number or a field of an
    :class:`aiohttp.ClientTimeout`: None means no limit, 0 means fail at once
    (as google-auth's sync session does; aiohttp alone would read it as no
    limit), and anything else must be a finite number of seconds.

    Raises:
        TypeError: If ``timeout`` is neither, nor a number, nor a pair.
        ValueError: If it, or a field of it, is a negative, NaN or infinite
            number.
    """
    if timeout is None:
        return NO_CLIENT_TIMEOUT
    if isinstance(timeout, tuple):
        if len(timeout) != 2:
            raise TypeError(
                "A timeout tuple is (connect, read), as in requests; got "
                f"{len(timeout)} values."
            )
        connect, read = timeout
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect, sock_read=read
        )
    if isinstance(timeout, aiohttp.ClientTimeout):
        fields = {name: getattr(timeout, name) for name in _TIMEOUT_FIELDS}
        checked = [
            seconds(f"ClientTimeout({name}=...)", value)
            for name, value in fields.items()
            if value is not None
        ]
        if 0 not in checked:
            return timeout
        return aiohttp.ClientTimeout(
            **{name: NO_TIME if v == 0 else v for name, v in fields.items()},
            ceil_threshold=timeout.ceil_threshold,
        )
    if timeout == _DEFAULT_TIMEOUT:
        return DEFAULT_CLIENT_TIMEOUT
    return aiohttp.ClientTimeout(total=seconds("timeout", timeout) or NO_TIME)


_REDIRECTS = frozenset((301, 302, 303, 307, 308))
_MAX_HOPS = 10

#: Bytes of a credentials response read at most: token, metadata and
#: certificate answers are a few kilobytes.
MAX_BODY = 1 << 20


class Response(google_transport.Response):
    """An HTTP response, in the form google-auth's credentials read.

    The body is kept as the server sent it: :meth:`raw_content` returns those
    bytes and :meth:`content` decodes them by their ``Content-Encoding``.

    Args:
        response (aiohttp.ClientResponse): The aiohttp response to wrap.

    """

    __slots__ = ("_raw", "_response")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._raw: bytes | None = None

    @property
    def status(self) -> int:
        """int: The HTTP status code."""
        return self._response.status

    @property
    def reason(self) -> str | None:
        """Optional[str]: The HTTP reason phrase."""
        return self._response.reason

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """multidict.CIMultiDictProxy: The response headers, case-insensitive."""
        return self._response.headers

    @property
    def data(self) -> aiohttp.StreamReader:
        """aiohttp.StreamReader: The body stream (``await response.data.read()``)."""
        return self._response.content

    async def raw_content(self) -> bytes:
        """Read the whole body as sent, without decoding it.

        Returns:
            bytes: The body.

        Raises:
            google.auth.exceptions.TransportError: If the body cannot be read,
                or is larger than 1 MiB (``MAX_BODY``): no token, metadata
                or certificate answer is, and credentials read it all in memory.

        """
        if self._raw is None:
            response = self._response
            try:
                self._raw = await _read_capped(response)
            except (TimeoutError, aiohttp.ClientError) as caught:
                raise _transport_error(
                    response.method, response.url, caught, "reading"
                ) from caught
        return self._raw

    async def content(self) -> bytes:
        """Read the whole body, decoded by its ``Content-Encoding``.

        gzip and deflate are always decoded; br and zstd when the modules aiohttp
        uses for them are installed.

        Returns:
            bytes: The decoded body.

        Raises:
            google.auth.exceptions.TransportError: If the body cannot be read or
                decoded, or decodes to more than 1 MiB (``MAX_BODY``).

        """
        raw = await self.raw_content()
        return decode_body(
            raw, self._response.headers.get("Content-Encoding"), MAX_BODY
        )

    def __repr__(self) -> str:
        return f"<Response [{self.status} {self.reason}]>"


class Request(google_transport.Request):
    """Makes HTTP requests for credentials, through an aiohttp session.

    What google-auth's async helpers send through: ID-token verification
    here, google-auth's legacy async credentials. :class:`AuthorizedSession`
    makes its own::

        from google_auth_aiohttp import Request, id_token

        async def caller_of(token: str) -> str:
            async with Request() as request:
                claims = await id_token.verify_oauth2_token(
                    token, request, audience="my-client-id"
                )
            return claims["email"]

    Args:
        session (Optional[aiohttp.ClientSession]): The session to send requests
            through. It may use ``auto_decompress=True``: requests made here ask
            for the body undecoded. A session passed in is never closed by this
            object; if none is given, one is created on first use and closed by
            :meth:`close`.

    Raises:
        TypeError: If ``session`` is not an :class:`aiohttp.ClientSession`.

    .. automethod:: __call__

    """

    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError(
                "Request(session=...) takes an aiohttp.ClientSession or None, "
                f"not {type(session).__name__}."
            )
        self.session = session
        self._owns_session = session is None
        self._closed = False

    async def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float
        | tuple[float | None, float | None]
        | aiohttp.ClientTimeout
        | None = _DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> Response:
        """Make an HTTP request.

        Args:
            url (str): The URL to request.
            method (str): The HTTP method. Defaults to ``"GET"``.
            body (Optional[Any]): The body: bytes, str, or anything
                ``aiohttp.ClientSession.request`` takes as ``data``.
            headers (Optional[Mapping[str, str]]): Request headers.
            timeout (Union[float, Tuple, aiohttp.ClientTimeout, None]): Seconds
                the request may take in all, a ``(connect, read)`` pair, or an
                :class:`aiohttp.ClientTimeout`; 0 fails at once, None is no limit.
            kwargs: Passed through to :meth:`aiohttp.ClientSession.request`.
                Redirects are followed within the request's origin only
                (``allow_redirects=False`` follows none).

        Returns:
            google_auth_aiohttp.Response: The response; its body is not yet read.

        Raises:
            google.auth.exceptions.TransportError: If the request failed or
                timed out, was redirected to another origin, or this object or
                its session is closed; the original exception is its
                ``__cause__``.

        """
        if self._closed:
            raise exceptions.TransportError(
                f"Cannot request {safe_url(url)}: this Request was closed."
            )
        session = self.session
        if session is None:
            session = self.session = aiohttp.ClientSession()
        elif session.closed:
            raise exceptions.TransportError(
                f"Cannot request {safe_url(url)}: its aiohttp.ClientSession is "
                "closed. Give Request an open session."
            )
        # Credentials read error bodies themselves and decode bodies through
        # Response.content(), whatever the session's defaults.
        kwargs.setdefault("auto_decompress", False)
        kwargs.setdefault("raise_for_status", False)
        described = f"{method} {safe_url(url)}"
        LOGGER.debug("Credentials request: %s", described)
        # Credentials' own requests (token endpoints, metadata servers) pass
        # an auth middleware on the session unauthorized; a refresh would
        # otherwise wait on itself.
        follow = kwargs.pop("allow_redirects", True)
        timeout = client_timeout(timeout)
        with credentials_request() as trail:
            trail.asking = described
            hops = 0
            while True:
                try:
                    response = await session.request(
                        method,
                        url,
                        data=body,
                        headers=headers,
                        timeout=timeout,
                        allow_redirects=False,
                        **kwargs,
                    )
                except (TimeoutError, aiohttp.ClientError) as caught:
                    raise _transport_error(method, url, caught, "sending") from caught
                location = response.headers.get("Location")
                if not follow or response.status not in _REDIRECTS or not location:
                    break
                # A token request's body and headers are secrets (a refresh
                # token, a client secret, an assertion, a source token): they
                # follow a redirect only within the origin they were meant for.
                target = _redirect_target(response, location, described)
                hops += 1
                if hops > _MAX_HOPS:
                    response.release()
                    raise exceptions.TransportError(
                        f"{described} was redirected more than {_MAX_HOPS} times."
                    )
                response.release()
                if response.status == 303 or (
                    response.status in (301, 302) and method == "POST"
                ):
                    method, body = "GET", None
                url = str(target)
            content_type = response.headers.get("Content-Type", "no Content-Type")
            trail.answer = f"{described} answered {response.status} ({content_type})"
        LOGGER.debug("Credentials response: %s -> %s", described, response.status)
        return Response(response)

    async def close(self) -> None:
        """Close the session this object created; a session passed in stays open."""
        self._closed = True
        if self._owns_session and self.session is not None:
            await self.session.close()

    async def __aenter__(self) -> Request:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await self.close()


async def _read_capped(response: aiohttp.ClientResponse) -> bytes:
    """The body of ``response``, refused beyond :data:`MAX_BODY` bytes."""
    declared = response.content_length
    if declared is None or declared <= MAX_BODY:
        chunks = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > MAX_BODY:
                break
            chunks.append(chunk)
        else:
            return b"".join(chunks)
    response.close()  # the rest is not worth reading
    raise exceptions.TransportError(
        f"{response.method} {safe_url(response.url)} answered more than "
        f"{MAX_BODY} bytes, which is no credentials response; refused."
    )


def _redirect_target(
    response: aiohttp.ClientResponse, location: str, described: str
) -> URL:
    """Where ``response`` redirects to, refused if another origin."""
    try:
        target = response.url.join(URL(location))
    except ValueError:
        target = None
    if target is None or target.origin() != response.url.origin():
        response.release()
        where = "an unparsable URL" if target is None else str(target.origin())
        raise exceptions.TransportError(
            f"{described} was redirected from {response.url.origin()} to {where}: "
            "credentials' requests do not follow a redirect to another origin, "
            "which would carry their secrets there."
        )
    return target


def _transport_error(
    method: str, url: Any, caught: BaseException, doing: str
) -> exceptions.TransportError:
    if isinstance(caught, asyncio.TimeoutError):
        cause = "timed out"
    else:
        # aiohttp's texts may quote the URL with its query or user info.
        cause = scrub(f"{type(caught).__name__}: {caught}")
    return exceptions.TransportError(
        f"{method} {safe_url(url)} failed while {doing}: {cause}"
    )


class AioTransport:
    """google-auth's classic async transport interface over a ``google.auth.aio`` one.

    Credentials refresh through a transport called as :class:`Request` is; a
    ``google.auth.aio.transport.Request`` (such as google-auth's aiohttp one)
    is called another way and answers another kind of response. This makes
    one look like the other, the body read at once.

    Args:
        request (google.auth.aio.transport.Request): The transport to send with.
    """

    def __init__(self, request: Any) -> None:
        from google.auth.aio.transport import aiohttp as aio_aiohttp

        self.aio_request = request
        # google-auth's own aiohttp transport takes aiohttp's keywords: it is
        # told not to follow redirects, which could carry a request elsewhere.
        self._options = (
            {"allow_redirects": False}
            if isinstance(request, aio_aiohttp.Request)
            else {}
        )

    async def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = _DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> ReadResponse:
        """Send the request through the ``google.auth.aio`` transport.

        Returns:
            ReadResponse: The response, its body read.

        Raises:
            google.auth.exceptions.TransportError: If it failed.
        """
        if timeout is None:
            timeout = _DEFAULT_TIMEOUT
        response = await self.aio_request(
            url,
            method,
            body,
            headers,
            seconds("timeout", timeout) or NO_TIME,
            **{**self._options, **kwargs},
        )
        try:
            data = await response.read()
        finally:
            await response.close()
        # Case-insensitive, as credentials read them (google's aio aiohttp
        # response gives a plain dict).
        headers = CIMultiDictProxy(CIMultiDict(response.headers))
        return ReadResponse(response.status_code, headers, data)


class ReadResponse(google_transport.Response):
    """A response whose body was read in full, in the form credentials read."""

    __slots__ = ("_data", "_headers", "_status")

    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self._status = status
        self._headers = headers
        self._data = data

    @property
    def status(self) -> int:
        """int: The HTTP status code."""
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        """Mapping[str, str]: The response headers."""
        return self._headers

    @property
    def data(self) -> bytes:
        """bytes: The body."""
        return self._data

    async def content(self) -> bytes:
        """Return the body (already read)."""
        return self._data

    async def raw_content(self) -> bytes:
        """Return the body (already read)."""
        return self._data
