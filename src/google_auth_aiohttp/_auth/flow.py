"""The auth flow: :class:`AuthFlow`, the one place where requests are authorized.

Both clients run it in one host, an aiohttp middleware: an
:class:`~google_auth_aiohttp.AuthMiddleware` on a plain
``aiohttp.ClientSession``, or the same layer first in every chain of an
:class:`~google_auth_aiohttp.AuthorizedSession`. The host first decides, by
the origin rule (:mod:`google_auth_aiohttp._auth.origin`), whether the
request may carry the credentials at all; retries are a layer ahead of the host
(:class:`~google_auth_aiohttp.RetryMiddleware`). For a request it may
authorize, the flow:

1. lets requests that credentials make themselves (token endpoints, metadata
   servers) pass as they are, unless a middleware before it sent one to
   another origin than the credentials asked for;
2. waits for a shared refresh if the token is missing or expired, or starts
   one in the background if it is about to expire (it is still used meanwhile),
   and puts the credentials' headers on the request (aiohttp has copied the
   caller's headers into it: the caller's object is never touched);
3. sends it, and while the status is in ``refresh_status_codes`` and
   attempts remain, releases the response, refreshes once for all concurrent
   callers and sends it again with the same body. A body that cannot be read
   twice is never re-sent: the response is returned as it is;
4. once a request is sent, blanks the credentials' secrets in its headers.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Collection, Mapping, MutableMapping
from typing import Any, Protocol

import aiohttp
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from google.auth import transport as google_transport
from multidict import CIMultiDict

from google_auth_aiohttp._auth.origin import (
    NOT_SECRET,
    SECRET_HEADERS,
    check_credentials_request,
    redact,
    secret_names,
)
from google_auth_aiohttp._auth.refresh import Route, refresher_for, route_over
from google_auth_aiohttp._body import can_resend
from google_auth_aiohttp._checks import seconds, statuses
from google_auth_aiohttp._credentials.own_requests import current_trail
from google_auth_aiohttp._logging import LOGGER, safe_url
from google_auth_aiohttp._mtls import MtlsChannel, is_mtls_endpoint

DEFAULT_REFRESH_STATUS_CODES: tuple[int, ...] = tuple(
    google_transport.DEFAULT_REFRESH_STATUS_CODES
)
DEFAULT_MAX_REFRESH_ATTEMPTS: int = google_transport.DEFAULT_MAX_REFRESH_ATTEMPTS

_API_CLIENT = "x-goog-api-client"

# How much sooner than aiohttp's own timer a caller stops waiting for a
# refresh, so that it is our error that says what timed out, not aiohttp's
# bare TimeoutError().
WAIT_MARGIN = 0.02


class CallLimits(Protocol):
    """What a host knows of the time one call may take."""

    def wait_until(self) -> float | None:
        """When, in ``loop.time()``, the call stops waiting for a refresh, if ever."""


class AuthFlow:
    """Authorizes requests with one credentials object; see the module docstring.

    Args:
        credentials (Any): google-auth credentials of any family.
        refresh_status_codes (Collection[int]): Statuses that make the
            credentials refresh and the request be sent again.
        max_refresh_attempts (int): How many times a request is sent again
            after a refresh.
        refresh_timeout (Optional[float]): Seconds a refresh may take.
        auth_request (Optional[Callable]): The transport refreshes use; by
            default, the session that sends the request.
        mtls (Optional[MtlsChannel]): The client certificate the session
            presents, which may rotate after a 401 from an mTLS endpoint.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``max_refresh_attempts`` or ``refresh_timeout`` is out of
            range.
    """

    __slots__ = (
        "_auth_request",
        "_max_refresh_attempts",
        "_mtls",
        "_refresh_status_codes",
        "_refresh_timeout",
        "_refresher",
        "_routes",
        "_secrets_seen",
    )

    def __init__(
        self,
        credentials: Any,
        *,
        refresh_status_codes: Collection[int] = DEFAULT_REFRESH_STATUS_CODES,
        max_refresh_attempts: int = DEFAULT_MAX_REFRESH_ATTEMPTS,
        refresh_timeout: float | None = None,
        auth_request: Any = None,
        mtls: MtlsChannel | None = None,
    ) -> None:
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
        if refresh_timeout is not None:
            seconds("refresh_timeout", refresh_timeout)
        if auth_request is not None and not callable(auth_request):
            raise TypeError(
                "auth_request must be a callable transport such as "
                f"google_auth_aiohttp.Request, not {type(auth_request).__name__}."
            )
        self._refresh_status_codes = statuses(
            "refresh_status_codes", refresh_status_codes
        )
        self._max_refresh_attempts = max_refresh_attempts
        self._refresh_timeout = refresh_timeout
        self._auth_request = auth_request
        self._mtls = mtls
        # The lower-cased names of every secret header the credentials have
        # added, kept or not (a before_request of their own is never kept):
        # what the session's guard strips from a request sent elsewhere.
        self._secrets_seen: frozenset[str] = frozenset()
        self.credentials = credentials

    @property
    def credentials(self) -> Any:
        """The credentials requests are authorized with; assignable."""
        return self._refresher.credentials

    @credentials.setter
    def credentials(self, credentials: Any) -> None:
        # Requests already on their way finish with the credentials they had.
        self._refresher = refresher_for(credentials)
        # A route per session, made once and gone with the session.
        self._routes: weakref.WeakKeyDictionary[aiohttp.ClientSession, Route] = (
            weakref.WeakKeyDictionary()
        )

    async def send(
        self,
        request: ClientRequest,
        handler: ClientHandlerType,
        limits: CallLimits | None = None,
    ) -> ClientResponse:
        """Send ``request`` authorized; refresh and re-send it if it is rejected.

        The host has decided that ``request`` may carry the credentials.

        Args:
            request (aiohttp.ClientRequest): The request, as aiohttp passes it
                to middlewares.
            handler (Callable): The rest of aiohttp's chain, which sends it.
            limits (Optional[CallLimits]): When the call stops waiting for a
                refresh; without it, the session's own total timeout from now.

        Returns:
            aiohttp.ClientResponse: The response, after any refresh.

        Raises:
            google.auth.exceptions.TransportError: If ``request`` is the
                credentials' own and a middleware sent it to another origin.
        """
        if current_trail() is not None:  # a credentials request
            check_credentials_request(request)
            return await handler(request)
        added: Mapping[str, str] | None = None
        fresh: tuple[Mapping[str, str], Any, tuple[str, ...]] | None
        fresh = self._refresher.kept_headers()  # steady state: no google-auth
        try:
            if fresh is None:
                fresh = await self._credentials_headers(request, limits)
                _still_open(request)
            added, sent_token, secrets = fresh
            sent_cert = self._put_on(request, added)
            try:
                response = await handler(request)
            finally:
                redact(request.headers, secrets)
            if response.status in self._refresh_status_codes:
                response = await self._refresh_and_resend(
                    request, handler, response, sent_token, sent_cert, limits
                )
        except BaseException:
            # A traceback keeps this frame, and error trackers (and
            # pytest --showlocals) print its locals: none holds a secret.
            fresh = added = sent_token = None
            raise
        return response

    def _put_on(self, request: ClientRequest, added: Mapping[str, str]) -> Any:
        """Put the credentials' headers on ``request``.

        Returns:
            Optional[bytes]: The client certificate it goes out with, if any.
        """
        _merge_headers(request.headers, added)
        return None if self._mtls is None else self._mtls.cert

    def secret_header_names(self) -> frozenset[str]:
        """The names of the secret headers the credentials add to requests."""
        return (
            SECRET_HEADERS.union(self._refresher.added_names(), self._secrets_seen)
            - NOT_SECRET
        )

    def _route(self, session: aiohttp.ClientSession) -> Route:
        route = self._routes.get(session) if session is not None else None
        if route is None:
            route = route_over(
                self._refresher.adapter,
                session,
                self._auth_request,
                self._refresh_timeout,
            )
            if session is not None:  # None: a request built outside a session
                self._routes[session] = route
        return route

    async def _credentials_headers(
        self, request: ClientRequest, limits: CallLimits | None
    ) -> tuple[MutableMapping[str, str], Any, tuple[str, ...]]:
        """The headers the credentials add, after any refresh needed.

        Returns:
            Tuple[MutableMapping[str, str], Any, Tuple[str, ...]]: The headers,
            the token in them and the names of the secret ones.
        """
        added, token = await self._refresher.headers(
            self._route(request.session),
            request.method,
            str(request.url),
            _waits_until(request, limits),
        )
        secrets = secret_names(added)
        # Noted before the request is sent; off the steady state's path.
        self._secrets_seen = self._secrets_seen.union(n.lower() for n in secrets)
        return added, token, secrets

    def _must_resend(self, request: ClientRequest, response: ClientResponse) -> bool:
        """Whether a refresh may turn ``response`` into a better one."""
        return (
            response.status in self._refresh_status_codes
            and self._refresher.adapter.can_refresh
            and can_resend(request, response.status)
        )

    async def _refresh_and_resend(
        self,
        request: ClientRequest,
        handler: ClientHandlerType,
        response: ClientResponse,
        sent_token: Any,
        sent_cert: bytes | None,
        limits: CallLimits | None,
    ) -> ClientResponse:
        """Refresh and re-send while the response says the token was rejected."""
        added: Mapping[str, str] | None = None
        attempt = 0
        while attempt < self._max_refresh_attempts and self._must_resend(
            request, response
        ):
            attempt += 1
            LOGGER.debug(
                "Refreshing credentials after a %s from %s %s (attempt %d of %d).",
                response.status,
                request.method,
                safe_url(request.url),
                attempt,
                self._max_refresh_attempts,
            )
            try:
                await self._rotate_certificate(request, response, sent_cert)
                response.release()
                await self._refresher.after_rejection(
                    self._route(request.session),
                    sent_token,
                    _waits_until(request, limits),
                )
                added, sent_token, secrets = await self._credentials_headers(
                    request, limits
                )
                _still_open(request)
                sent_cert = self._put_on(request, added)
                try:
                    response = await handler(request)
                finally:
                    redact(request.headers, secrets)
            except BaseException:
                added = sent_token = None  # as in send(): no secret in locals
                raise
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


def _still_open(request: ClientRequest) -> None:
    """Refuse to send ``request`` if its session closed while it waited."""
    if request.session is not None and request.session.closed:
        raise aiohttp.ClientConnectionError(
            f"{request.method} {safe_url(request.url)} was not sent: its session "
            "was closed while it waited for the credentials."
        )


def _waits_until(request: ClientRequest, limits: CallLimits | None) -> float | None:
    """When the call of ``request`` stops waiting for a refresh, in ``loop.time()``."""
    if limits is not None:
        return limits.wait_until()
    if request.session is None:
        return None
    total = request.session.timeout.total
    if not total:
        return None  # no total limit: only each refresh attempt's own bound
    return asyncio.get_running_loop().time() + total - WAIT_MARGIN


def _merge_headers(headers: CIMultiDict[Any], added: Mapping[str, str]) -> None:
    # What google-auth's before_request does to a request's headers: set each
    # one, but append to a client library's own x-goog-api-client (once: a
    # request re-sent after a refresh already has it).
    for name, value in added.items():
        current = headers.get(name) if name == _API_CLIENT else None
        if current is None:
            headers[name] = value
            continue
        if isinstance(current, bytes):  # aiohttp's stubs say str; callers differ
            current = current.decode("utf-8")
        if value not in current:
            headers[name] = f"{current} {value}"
