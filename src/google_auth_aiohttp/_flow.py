"""The auth flow: :class:`AuthFlow`, the one place where requests are authorized.

Both clients drive it. :class:`~google_auth_aiohttp.AuthorizedSession` runs it
as the first middleware of each call; :class:`~google_auth_aiohttp.AuthMiddleware`
runs it on a plain ``aiohttp.ClientSession``. Each tells the flow which origin
the call asked for, and aiohttp calls the flow again for every redirect hop.
For one request the flow:

1. lets requests that credentials make themselves (token endpoints, metadata
   servers) pass as they are;
2. with a :class:`~google_auth_aiohttp.Retry` policy, hands the rest to it,
   which calls back into the steps below once per attempt;
3. sends a request to any origin but the asked one as it is: the credentials'
   headers never leave that origin, whatever a redirect's ``Location`` holds;
4. waits for a shared refresh if the token is missing or expired, or starts
   one in the background if it is about to expire (it is still used meanwhile),
   and puts the credentials' headers on the request (aiohttp has copied the
   caller's headers into it: the caller's object is never touched);
5. sends it, and while the status is in ``refresh_status_codes`` and
   attempts remain, releases the response, refreshes once for all concurrent
   callers and sends it again with the same body. A body that cannot be read
   twice is never re-sent: the response is returned as it is;
6. once a request is sent, blanks the credentials' secrets in its headers, of
   which aiohttp's ``request_info`` (and every exception made from it) is a
   live view.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Collection, Mapping, MutableMapping
from functools import partial
from typing import Any, Protocol

import aiohttp
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from google.auth import exceptions
from google.auth import transport as google_transport
from multidict import CIMultiDict
from yarl import URL

from google_auth_aiohttp._body import can_resend
from google_auth_aiohttp._checks import seconds, statuses
from google_auth_aiohttp._credentials_request import current_trail
from google_auth_aiohttp._logging import LOGGER, safe_url
from google_auth_aiohttp._mtls import MtlsChannel, is_mtls_endpoint
from google_auth_aiohttp._refresh import Route, refresher_for, route_over
from google_auth_aiohttp._retry import Retry, send_with_retries

DEFAULT_REFRESH_STATUS_CODES: tuple[int, ...] = tuple(
    google_transport.DEFAULT_REFRESH_STATUS_CODES
)
DEFAULT_MAX_REFRESH_ATTEMPTS: int = google_transport.DEFAULT_MAX_REFRESH_ATTEMPTS

_API_CLIENT = "x-goog-api-client"

# How much sooner than aiohttp's own timer a caller stops waiting for a
# refresh, so that it is our error that says what timed out, not aiohttp's
# bare TimeoutError().
WAIT_MARGIN = 0.02

#: The statuses aiohttp follows.
REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))


class RedirectNotes(Protocol):
    """What a host that must recognise redirect hops is told."""

    def add(
        self, request: ClientRequest, response: ClientResponse, asked: URL | None
    ) -> None:
        """Note that ``request``, of a call that asked for ``asked``, got a redirect.

        Args:
            request (aiohttp.ClientRequest): The request answered with a redirect.
            response (aiohttp.ClientResponse): The redirect.
            asked (Optional[yarl.URL]): The call's asked origin; None if
                ``request`` is the call's first, whose own origin it is.
        """


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

    def send(
        self,
        request: ClientRequest,
        handler: ClientHandlerType,
        asked_origin: URL | None,
        retry: Retry | None = None,
        deadline: float | None = None,
        redirects: RedirectNotes | None = None,
        limits: CallLimits | None = None,
    ) -> Awaitable[ClientResponse]:
        """Return the awaitable that sends ``request`` through the flow.

        Args:
            request (aiohttp.ClientRequest): The request, as aiohttp passes it
                to middlewares.
            handler (Callable): The rest of aiohttp's chain, which sends it.
            asked_origin (Optional[yarl.URL]): The origin the call asked for;
                None when ``request`` is the call's first, whose own origin it is.
            retry (Optional[Retry]): The retry policy of this call, if any.
            deadline (Optional[float]): When the call must end, in
                ``loop.time()``; no retry waits past it.
            redirects (Optional[RedirectNotes]): Told of every redirect
                response, for a host that must recognise the next hop.
            limits (Optional[CallLimits]): When the call stops waiting for a
                refresh; without it, the session's own total timeout from now.

        Returns:
            Awaitable[aiohttp.ClientResponse]: The response, after any refresh.
        """
        if current_trail() is not None:  # a credentials request
            if request.url.origin() != request.original_url.origin():
                # A middleware before this one sends the token request (its
                # body holds the credentials' secrets) somewhere else.
                return _refuse_elsewhere(request)
            return handler(request)
        if retry is None or request.method not in retry.methods:
            return self._attempt(request, handler, asked_origin, redirects, limits)
        attempt = partial(
            self._attempt,
            handler=handler,
            asked_origin=asked_origin,
            redirects=redirects,
            limits=limits,
        )
        return send_with_retries(request, attempt, retry, deadline)

    async def _attempt(
        self,
        request: ClientRequest,
        handler: ClientHandlerType,
        asked_origin: URL | None,
        redirects: RedirectNotes | None,
        limits: CallLimits | None,
    ) -> ClientResponse:
        """Send ``request`` once, authorized if it goes to the asked origin.

        A request rejected with a refresh status is refreshed and re-sent
        within this attempt.
        """
        if asked_origin is not None and request.url.origin() != asked_origin:
            LOGGER.debug(
                "Not authorizing %s: the call asked for %s.",
                safe_url(request.url),
                asked_origin,
            )
            strip_redacted(request.headers)
            response = await handler(request)
        else:
            fresh: tuple[Mapping[str, str], Any] | None
            added: Mapping[str, str] | None = None
            fresh = self._refresher.kept_headers()  # steady state: no google-auth
            try:
                if fresh is None:
                    fresh = await self._credentials_headers(request, limits)
                    _still_open(request)
                added, sent_token = fresh
                if _API_CLIENT in added and _API_CLIENT in request.headers:
                    _merge_headers(request.headers, added)
                else:
                    request.headers.update(added)  # the usual case, in C
                sent_cert = None if self._mtls is None else self._mtls.cert
                try:
                    response = await handler(request)
                finally:
                    _redact(request.headers, added)
                if response.status in self._refresh_status_codes:
                    response = await self._refresh_and_resend(
                        request, handler, response, sent_token, sent_cert, limits
                    )
            except BaseException:
                # A traceback keeps this frame, and error trackers (and
                # pytest --showlocals) print its locals: none holds a secret.
                fresh = added = sent_token = None
                raise
        if redirects is not None and response.status in REDIRECT_STATUSES:
            redirects.add(request, response, asked_origin)
        return response

    def secret_header_names(self) -> set[str]:
        """The names of the secret headers the credentials add to requests."""
        names = {"authorization", "x-goog-api-key"}
        names.update(self._refresher.added_names())
        return names - _NOT_SECRET

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

    def _credentials_headers(
        self, request: ClientRequest, limits: CallLimits | None
    ) -> Awaitable[tuple[MutableMapping[str, str], Any]]:
        """The headers the credentials add, after any refresh needed, and the token."""
        return self._refresher.headers(
            self._route(request.session),
            request.method,
            str(request.url),
            _waits_until(request, limits),
        )

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
                added, sent_token = await self._credentials_headers(request, limits)
                _still_open(request)
                _merge_headers(request.headers, added)
                sent_cert = None if self._mtls is None else self._mtls.cert
                try:
                    response = await handler(request)
                finally:
                    _redact(request.headers, added)
            except BaseException:
                added = sent_token = None  # as in _attempt: no secret in locals
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


#: What the credentials' secret headers read once a request is sent.
REDACTED = "<redacted>"

# Headers credentials add that are no secret; any other is redacted.
_NOT_SECRET = frozenset((_API_CLIENT, "x-goog-user-project"))


def _redact(headers: CIMultiDict[Any], added: Mapping[str, str]) -> None:
    """Blank the credentials' secrets in a sent request's headers.

    aiohttp's ``request_info`` (on the response, and in the
    ``ClientResponseError``, ``TooManyRedirects`` and ``WSServerHandshakeError``
    made from it) is a live view of these headers: once the request is on the
    wire, what reprs, tracebacks and error trackers print of it holds no token.
    The next send of the request (a re-send after a refresh, a retry) sets
    them again.
    """
    for name in added:
        if name not in _NOT_SECRET and name in headers:
            headers[name] = REDACTED


def strip_redacted(headers: CIMultiDict[Any]) -> None:
    """Remove the blanks :func:`_redact` left, from a request sent unauthorized.

    A middleware may send a request again itself, and the flow would then
    put no credentials on it: it goes without the placeholders too.
    """
    if REDACTED in headers.values():  # rare: a re-send of an authorized request
        for name in [name for name, value in headers.items() if value == REDACTED]:
            headers.popall(name, None)


async def _refuse_elsewhere(request: ClientRequest) -> ClientResponse:
    raise exceptions.TransportError(
        f"A middleware sent the credentials' request for "
        f"{safe_url(request.original_url)} to {safe_url(request.url)}: it is not "
        "sent, since its body and headers hold the credentials' secrets."
    )


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
