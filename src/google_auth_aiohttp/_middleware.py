"""The auth flow, as an aiohttp client middleware: :class:`AuthMiddleware`.

This is the one place where requests are authorized. :class:`AuthorizedSession`
installs an :class:`AuthMiddleware` as its first middleware; users of a plain
``aiohttp.ClientSession`` install one themselves. For each request the flow:

1. leaves it alone if credentials are making it (to reach a token endpoint),
   or if it is a redirect to another origin than the one the caller asked for
   (aiohttp runs middlewares again on every redirect hop);
2. waits for a shared refresh if the token is missing or expired, or starts
   one in the background if it is about to expire (it is still used meanwhile);
3. puts the credentials' headers on the request (aiohttp has already copied
   the caller's headers into it, so the caller's object is never touched);
4. sends it, and on a status in ``refresh_status_codes`` releases the
   response, refreshes once for all concurrent callers, and sends it again,
   with the same body, up to ``max_refresh_attempts`` times (after a 401
   from an mTLS endpoint, with a rotated client certificate if there is one).
   A body that cannot be read twice is never re-sent: the response is
   returned as it is;
5. with a :class:`~google_auth_aiohttp.Retry` policy, sends it again after
   transient statuses and broken connections, within the call's deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Collection, Mapping
from typing import Any

import aiohttp
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from google.auth import transport as google_transport
from google.auth.credentials import TokenState
from multidict import CIMultiDict
from yarl import URL

from google_auth_aiohttp import _call_context
from google_auth_aiohttp._call_context import CallContext
from google_auth_aiohttp._call_context import current as current_call_context
from google_auth_aiohttp._credentials import adapt_credentials
from google_auth_aiohttp._logging import LOGGER, safe_url
from google_auth_aiohttp._mtls import MtlsChannel, is_mtls_endpoint
from google_auth_aiohttp._refresh import shared_refresh_for
from google_auth_aiohttp._retry import RETRYABLE_ERRORS, Retry

DEFAULT_REFRESH_STATUS_CODES: tuple[int, ...] = tuple(
    google_transport.DEFAULT_REFRESH_STATUS_CODES
)
DEFAULT_MAX_REFRESH_ATTEMPTS: int = google_transport.DEFAULT_MAX_REFRESH_ATTEMPTS

_REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))
_API_CLIENT = "x-goog-api-client"
# What __call__'s private keyword holds when aiohttp, not _dispatch, calls it.
_DISPATCH: Any = object()


class AuthMiddleware:
    """An aiohttp client middleware that authorizes requests with credentials.

    It gives a plain :class:`aiohttp.ClientSession` what
    :class:`AuthorizedSession` does::

        import aiohttp
        from google_auth_aiohttp import AuthMiddleware

        auth = AuthMiddleware(credentials)
        async with aiohttp.ClientSession(middlewares=[auth]) as session:
            async with session.get(url) as response:
                ...

    Token requests go through the session that made the request (its
    connector, proxy and SSL settings, and its other middlewares), unless
    ``auth_request`` is given; this middleware lets them pass unauthorized.
    The credentials' headers are only sent to the origin the caller asked
    for, never to another origin a server redirects to.

    Args:
        credentials (Any): google-auth credentials of any family.
        refresh_status_codes (Collection[int]): Statuses that make the
            credentials refresh and the request be sent again.
        max_refresh_attempts (int): How many times a request is sent again
            after a refresh.
        refresh_timeout (Optional[float]): Seconds a refresh may take.
        auth_request (Optional[Callable]): The transport refreshes use, for
            example a :class:`google_auth_aiohttp.Request`.
        retry (Optional[Retry]): Retries of transient failures; none by default.

    Raises:
        TypeError: If ``credentials`` are not google-auth credentials.
        ValueError: If ``max_refresh_attempts`` or ``refresh_timeout`` is
            negative.

    """

    __slots__ = (
        "_adapter",
        "_auth_request",
        "_decode_headers",
        "_last_session",
        "_last_transport",
        "_max_refresh_attempts",
        "_mtls",
        "_refresh_status_codes",
        "_refresh_timeout",
        "_retry",
        "_scan_headers",
        "_shared_refresh",
        "_watched_statuses",
    )

    def __init__(
        self,
        credentials: Any,
        *,
        refresh_status_codes: Collection[int] = DEFAULT_REFRESH_STATUS_CODES,
        max_refresh_attempts: int = DEFAULT_MAX_REFRESH_ATTEMPTS,
        refresh_timeout: float | None = None,
        auth_request: Any = None,
        retry: Retry | None = None,
    ) -> None:
        self._adapter = adapt_credentials(credentials)
        if isinstance(max_refresh_attempts, bool) or not isinstance(
            max_refresh_attempts, int
        ):
            raise TypeError(
                "max_refresh_attempts must be an int, not "
                f"{type(max_refresh_attempts).__name__}."
            )
        if max_refresh_attempts < 0:
            raise ValueError(
                f"max_refresh_attempts must be 0 or more, not {max_refresh_attempts}."
            )
        if refresh_timeout is not None and refresh_timeout < 0:
            raise ValueError(
                f"refresh_timeout must be None or 0 or more, not {refresh_timeout}."
            )
        if auth_request is not None and not callable(auth_request):
            raise TypeError(
                "auth_request must be a callable transport such as "
                f"google_auth_aiohttp.Request, not {type(auth_request).__name__}."
            )
        self._refresh_status_codes = frozenset(refresh_status_codes)
        self._watched_statuses = self._refresh_status_codes | _REDIRECT_STATUSES
        self._max_refresh_attempts = max_refresh_attempts
        self._refresh_timeout = refresh_timeout
        if retry is not None and not isinstance(retry, Retry):
            raise TypeError(
                "retry must be a google_auth_aiohttp.Retry, not "
                f"{type(retry).__name__}."
            )
        self._retry = retry
        self._auth_request = auth_request
        self._shared_refresh = shared_refresh_for(credentials)
        # Set by AuthorizedSession, whose client certificate may rotate and
        # which decodes bytes header values itself, where they come from.
        self._mtls: MtlsChannel | None = None
        self._decode_headers = True
        # On a plain session bytes values can only be found among all of
        # aiohttp's headers, and scanning those costs more than the rest of
        # the steady state: the scan starts once aiohttp failed to write one.
        self._scan_headers = False
        self._last_session: aiohttp.ClientSession | None = None
        self._last_transport: Any = None

    @property
    def credentials(self) -> Any:
        """The credentials this middleware authorizes requests with."""
        return self._adapter.credentials

    def _transport(self, session: aiohttp.ClientSession) -> Any:
        if self._auth_request is not None:
            return self._auth_request
        # Made once per session: a middleware usually serves a single one.
        if session is not self._last_session:
            self._last_transport = self._adapter.transport_for(session)
            self._last_session = session
        return self._last_transport

    async def __call__(
        self,
        request: ClientRequest,
        handler: ClientHandlerType,
        *,
        _asked_origin: Any = _DISPATCH,
    ) -> ClientResponse:
        """Authorize ``request``, send it, and refresh and re-send it if rejected.

        Args:
            request (aiohttp.ClientRequest): The request, as aiohttp passes it.
            handler (Callable): The rest of aiohttp's chain, which sends it.

        Returns:
            aiohttp.ClientResponse: The response, after any refresh.
        """
        # One coroutine from aiohttp's call to its handler's: the steady state
        # (no per-call context, no retries, no header scan) goes straight on;
        # anything else is sorted out by _dispatch, which calls back in with
        # the origin the caller asked for.
        if _asked_origin is _DISPATCH:
            context = current_call_context()
            if context is not None or self._retry is not None or self._scan_headers:
                return await self._dispatch(request, handler, context)
            _asked_origin = None
        adapter = self._adapter
        fresh = adapter.fresh_headers()
        if fresh is None:  # no fresh token, or not known yet: ask google-auth
            headers = await self._credentials_headers(request)
            sent_token = adapter.credentials.token
        else:
            headers, sent_token = fresh
        if _API_CLIENT in headers and _API_CLIENT in request.headers:
            if self._decode_headers:
                _decode_bytes_headers(request)  # before appending to one
            _merge_headers(request.headers, headers)
        else:
            request.headers.update(headers)  # the usual case, in C
        mtls = self._mtls
        sent_cert = None if mtls is None else mtls.cert
        try:
            response = await handler(request)
        except TypeError:
            if not self._decoded_after_failure(request):
                raise
            response = await handler(request)
        status = response.status
        if status in self._watched_statuses:  # one check for the usual 2xx
            if status in self._refresh_status_codes:
                response = await self._refresh_and_resend(
                    request, handler, response, sent_token, sent_cert
                )
                status = response.status
            if status in _REDIRECT_STATUSES:
                return _note_redirect(response, _asked_origin or request.url.origin())
        return response

    def _send(
        self,
        request: ClientRequest,
        handler: ClientHandlerType,
        asked_origin: URL | None,
    ) -> Awaitable[ClientResponse]:
        """Apply the credentials, send, and refresh and re-send while rejected."""
        return self(request, handler, _asked_origin=asked_origin)

    def _dispatch(
        self,
        request: ClientRequest,
        handler: ClientHandlerType,
        context: CallContext | None,
    ) -> Awaitable[ClientResponse]:
        """Send ``request`` as its call's context and the settings ask."""
        if context is not None and context.credentials_request:
            return handler(request)
        if self._scan_headers and bytes in map(type, request.headers.values()):
            _decode_bytes_headers(request)
        asked_origin: URL | None = None  # None: the request's own origin
        retry, deadline = self._retry, None
        if context is not None:
            if context.pending_redirect is not None:
                asked_origin = _redirected_from(request, context.pending_redirect)
                if asked_origin is not None and request.url.origin() != asked_origin:
                    return _unauthorized(request, handler, asked_origin)
            if context.options is not None:
                retry = context.options.retry or retry
                deadline = context.options.deadline
        if retry is None or request.method not in retry.methods:
            return self._send(request, handler, asked_origin)
        return self._send_with_retries(request, handler, retry, deadline, asked_origin)

    def _decoded_after_failure(self, request: ClientRequest) -> bool:
        """Decode the bytes header values aiohttp could not write, if any.

        aiohttp closed the connection it failed on; the request can be sent
        again on another. From now on this middleware decodes before sending.
        """
        if not self._decode_headers or not _decode_bytes_headers(request):
            return False
        self._scan_headers = True
        LOGGER.debug(
            "Decoded bytes header values of %s %s as UTF-8 and sent it again; "
            "requests are checked for them from now on.",
            request.method,
            safe_url(request.url),
        )
        return True

    async def _refresh_and_resend(
        self,
        request: ClientRequest,
        handler: ClientHandlerType,
        response: ClientResponse,
        sent_token: Any,
        sent_cert: bytes | None,
    ) -> ClientResponse:
        """Refresh and re-send while the response says the token was rejected."""
        adapter = self._adapter
        attempt = 0
        while (
            response.status in self._refresh_status_codes
            and attempt < self._max_refresh_attempts
            and adapter.can_refresh
        ):
            if not _replayable(request, response.status):
                break
            attempt += 1
            LOGGER.debug(
                "Refreshing credentials after a %s from %s %s (attempt %d of %d).",
                response.status,
                request.method,
                safe_url(request.url),
                attempt,
                self._max_refresh_attempts,
            )
            await self._rotate_certificate(request, response, sent_cert)
            response.release()
            await self._shared_refresh.run(
                adapter,
                self._transport(request.session),
                self._refresh_timeout,
                rejected_token=sent_token,
            )
            _merge_headers(request.headers, await self._credentials_headers(request))
            sent_token = adapter.credentials.token
            sent_cert = None if self._mtls is None else self._mtls.cert
            response = await handler(request)
        if attempt:
            # Only requests the flow acted on are logged; aiohttp's
            # TraceConfig sees every request, at no cost to the others.
            LOGGER.debug(
                "%s %s -> %s after %d refresh(es).",
                request.method,
                safe_url(request.url),
                response.status,
                attempt,
            )
        return response

    async def _credentials_headers(self, request: ClientRequest) -> dict[str, str]:
        """The headers google-auth's credentials add, after any refresh needed."""
        adapter = self._adapter
        transport = self._transport(request.session)
        state = adapter.token_state()
        headers: dict[str, str] = {}
        if state is TokenState.STALE:
            # Still valid: use it, and get the next one without anybody waiting.
            self._shared_refresh.start(adapter, transport, self._refresh_timeout)
            adapter.apply_stale(headers)
            return headers
        if state is TokenState.INVALID:
            await self._shared_refresh.run(adapter, transport, self._refresh_timeout)
        await adapter.apply(transport, request.method, str(request.url), headers)
        adapter.remember(headers)
        return headers

    async def _rotate_certificate(
        self,
        request: ClientRequest,
        response: ClientResponse,
        sent_cert: bytes | None,
    ) -> None:
        """After a 401 from an mTLS endpoint, take a rotated client certificate."""
        if (
            self._mtls is not None
            and self._mtls.context is not None
            and response.status == 401
            and is_mtls_endpoint(str(request.url))
        ):
            await self._mtls.rotate_if_changed(request, sent_cert)

    async def _send_with_retries(
        self,
        request: ClientRequest,
        handler: ClientHandlerType,
        retry: Retry,
        deadline: float | None,
        asked_origin: URL | None,
    ) -> ClientResponse:
        """:meth:`_send`, again after transient failures, as ``retry`` allows."""
        loop = asyncio.get_running_loop()
        number = 0
        while True:
            last = number + 1 >= retry.attempts
            try:
                response = await self._send(request, handler, asked_origin)
            except RETRYABLE_ERRORS as error:
                if last or not _replayable(request, type(error).__name__):
                    raise
                delay = retry.backoff(number)
                if deadline is not None and loop.time() + delay >= deadline:
                    raise
                reason = type(error).__name__
            else:
                if (
                    response.status not in retry.statuses
                    or last
                    or not _replayable(request, response.status)
                ):
                    return response
                delay = retry.backoff(number, response.headers.get("Retry-After"))
                if deadline is not None and loop.time() + delay >= deadline:
                    return response  # another attempt would end past the deadline
                response.release()
                reason = str(response.status)
            LOGGER.debug(
                "Retrying %s %s in %.2fs after %s (attempt %d of %d).",
                request.method,
                safe_url(request.url),
                delay,
                reason,
                number + 2,
                retry.attempts,
            )
            await asyncio.sleep(delay)
            number += 1


def _replayable(request: ClientRequest, after: object) -> bool:
    if getattr(request.body, "consumed", False):
        LOGGER.debug(
            "Not re-sending %s %s after %s: its body cannot be read twice.",
            request.method,
            safe_url(request.url),
            after,
        )
        return False
    return True


def _redirected_from(request: ClientRequest, pending: tuple[URL, URL]) -> URL | None:
    """The origin the caller asked for, if ``request`` is the pending redirect hop."""
    _call_context.change(pending_redirect=None)
    next_hop, asked_origin = pending
    return asked_origin if request.url.with_query(None) == next_hop else None


async def _unauthorized(
    request: ClientRequest, handler: ClientHandlerType, asked_origin: URL
) -> ClientResponse:
    """Send a redirect hop to another origin as it is, noting where it leads."""
    LOGGER.debug(
        "Not authorizing %s: redirected there from %s.",
        safe_url(request.url),
        asked_origin,
    )
    return _note_redirect(await handler(request), asked_origin)


def _note_redirect(response: ClientResponse, asked_origin: URL) -> ClientResponse:
    location = response.headers.get("Location") or response.headers.get("URI")
    if response.status in _REDIRECT_STATUSES and location:
        try:
            next_hop = response.url.join(URL(location))
        except ValueError:  # aiohttp rejects it and follows nothing
            return response
        next_hop = next_hop.with_query(None).with_fragment(None)
        _call_context.change(pending_redirect=(next_hop, asked_origin))
    return response


def _merge_headers(headers: CIMultiDict[str], added: dict[str, str]) -> None:
    # What google-auth's before_request would have done to the headers: set
    # each one, but append to a client library's own x-goog-api-client (once:
    # a request re-sent after a refresh already has it).
    for name, value in added.items():
        if name == _API_CLIENT and name in headers:
            if value not in headers[name]:
                headers[name] = f"{headers[name]} {value}"
        else:
            headers[name] = value


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


def _decode_bytes_headers(request: ClientRequest) -> bool:
    """Decode bytes header values in place (aiohttp has copied the caller's).

    Returns whether there were any.
    """
    decoded = decode_bytes_values(request.headers)
    if decoded is request.headers:
        return False
    request.headers.clear()
    request.headers.extend(decoded)
    return True
