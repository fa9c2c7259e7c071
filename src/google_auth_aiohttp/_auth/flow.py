"""The auth flow: :class:`AuthFlow`, the steps by which requests are authorized.

Both clients run it in one host, an aiohttp middleware: an
:class:`~google_auth_aiohttp.AuthMiddleware` on a plain
``aiohttp.ClientSession``, or the same layer first in every chain of an
:class:`~google_auth_aiohttp.AuthorizedSession`. The host places each
request in its call and decides by the origin rule
(:mod:`google_auth_aiohttp._auth.origin`) whether it may carry the
credentials at all; retries are a layer ahead of the host
(:class:`~google_auth_aiohttp.RetryMiddleware`). The host sends the request
itself, in its one coroutine (``AuthMiddleware._authorize``, where the
steady state reads top to bottom); the flow decides and does the rest:

1. requests that credentials make themselves (token endpoints, metadata
   servers) pass as they are (:meth:`AuthFlow.passes`), unless a middleware
   before the host sent one to another origin than the credentials asked for;
2. the headers kept for a fresh token go on the request with no google-auth
   call (:meth:`AuthFlow.kept_authorization`, :meth:`AuthFlow.put_on`); a
   missing or expired token is waited for in a shared refresh, one about to
   expire is refreshed in the background and still used meanwhile
   (:meth:`AuthFlow.authorization`). aiohttp has copied the caller's headers
   into the request: the caller's object is never touched;
3. while the status is in ``refresh_status_codes`` and attempts remain, the
   response is released, the credentials refresh once for all concurrent
   callers and the request is sent again with the same body
   (:meth:`AuthFlow.refresh_and_resend`). A body that cannot be read twice is
   never re-sent: the response is returned as it is;
4. once a request is sent, the credentials' secrets in its headers are
   blanked (:func:`~google_auth_aiohttp._auth.origin.redact`).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Collection
from typing import Any, Protocol

import aiohttp
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from google.auth import transport as google_transport
from multidict import CIMultiDict

from google_auth_aiohttp._auth.origin import (
    NOT_SECRET,
    SECRET_HEADERS,
    check_credentials_request,
    drop_blanks,
    redact,
)
from google_auth_aiohttp._auth.refresh import (
    Authorization,
    Route,
    refresher_for,
    route_over,
)
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
        "_refresh_timeout",
        "_refresher",
        "_routes",
        "_secrets_seen",
        "refresh_status_codes",
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
        self.refresh_status_codes = statuses(
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

    def passes(self, request: ClientRequest) -> bool:
        """Whether ``request`` is one the credentials make themselves, sent as it is.

        Raises:
            google.auth.exceptions.TransportError: If it is, and a middleware
                sent it to another origin than the credentials asked for.
        """
        if current_trail() is None:
            return False
        check_credentials_request(request)
        return True

    def kept_authorization(self) -> Authorization | None:
        """The steady state: the headers kept for a fresh token, with no google-auth.

        Returns:
            Optional[Authorization]: None if the credentials must be asked
            (:meth:`authorization`).
        """
        return self._refresher.kept_headers()

    async def authorization(
        self, request: ClientRequest, limits: CallLimits | None
    ) -> Authorization:
        """The credentials' headers for ``request``, after any refresh needed.

        Args:
            request (aiohttp.ClientRequest): The request they are for.
            limits (Optional[CallLimits]): When its call stops waiting for a
                refresh; without it, the session's own total timeout from now.

        Raises:
            aiohttp.ClientConnectionError: If the session closed meanwhile.
        """
        added, token = await self._refresher.headers(
            self._route(request.session),
            request.method,
            str(request.url),
            _waits_until(request, limits),
        )
        made = Authorization.made_of(added, token)
        # Noted before the request is sent; off the steady state's path.
        self._secrets_seen = self._secrets_seen.union(n.lower() for n in made.secrets)
        try:
            _still_open(request)
        except BaseException:
            # A traceback keeps this frame too: none of its locals holds a secret.
            del added, token, made
            raise
        return made

    def put_on(self, request: ClientRequest, authorization: Authorization) -> Any:
        """Put the credentials' headers on ``request``, about to be sent.

        aiohttp copied the caller's headers into the request: the caller's
        object is never touched.

        Returns:
            Optional[bytes]: The client certificate it goes out with, if any.
        """
        _merge_headers(request.headers, authorization.headers)
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

    def _must_resend(self, request: ClientRequest, response: ClientResponse) -> bool:
        """Whether a refresh may turn ``response`` into a better one."""
        return (
            response.status in self.refresh_status_codes
            and self._refresher.adapter.can_refresh
            and can_resend(request, response.status)
        )

    async def refresh_and_resend(
        self,
        request: ClientRequest,
        handler: ClientHandlerType,
        response: ClientResponse,
        sent_token: Any,
        sent_cert: bytes | None,
        limits: CallLimits | None,
    ) -> ClientResponse:
        """Refresh and re-send while the response says the token was rejected.

        Args:
            request (aiohttp.ClientRequest): The rejected request.
            handler (Callable): The rest of aiohttp's chain, which sends it.
            response (aiohttp.ClientResponse): Its response.
            sent_token (Any): The token it was sent with.
            sent_cert (Optional[bytes]): The client certificate it presented.
            limits (Optional[CallLimits]): See :meth:`authorization`.

        Returns:
            aiohttp.ClientResponse: The last response.
        """
        authorization: Authorization | None = None
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
                authorization = await self.authorization(request, limits)
                sent_token = authorization.token
                # Credentials assigned meanwhile may add other headers: no
                # blank of the ones it went with goes out.
                drop_blanks(request.headers)
                sent_cert = self.put_on(request, authorization)
                try:
                    response = await handler(request)
                finally:
                    redact(request.headers, authorization.secrets)
            except BaseException:
                # A traceback keeps this frame, and error trackers (and
                # pytest --showlocals) print its locals: none holds a secret.
                authorization = sent_token = None
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


def _merge_headers(
    headers: CIMultiDict[Any], added: tuple[tuple[str, str], ...]
) -> None:
    # What google-auth's before_request does to a request's headers: set each
    # one, but append to a client library's own x-goog-api-client (once: a
    # request re-sent after a refresh already has it).
    for name, value in added:
        current = headers.get(name) if name == _API_CLIENT else None
        if current is None:
            headers[name] = value
            continue
        if isinstance(current, bytes):  # aiohttp's stubs say str; callers differ
            current = current.decode("utf-8")
        if value not in current:
            headers[name] = f"{current} {value}"
