""":class:`AuthMiddleware`: the auth flow on a plain ``aiohttp.ClientSession``.

A middleware a user installs sees each request, but not the call it belongs
to: aiohttp runs it again for every redirect hop, with a request built from
the server's ``Location``. It authorizes a request only when it can place it
in its call; any other goes out unauthorized (fail closed). In the order it
asks:

* A hop of a call it saw answered with a redirect: it keeps, for each such
  call, the origin the call asked for. Calls are known by the object aiohttp
  shares between the requests of one call
  (:func:`~google_auth_aiohttp._compat.call_of`), and a note lives as long as
  the call's redirect responses.
* A call's first request: one it did not see redirected, when it is the first
  middleware of the call's chain
  (:func:`~google_auth_aiohttp._compat.first_in_chain`; a
  :class:`~google_auth_aiohttp.RetryMiddleware` before it does not count, as
  it only sends the same request again) and no middleware before it changed
  the origin. Then every hop of the call passes through it.
  :class:`~google_auth_aiohttp.AuthorizedSession` runs this same layer, first
  in every chain by construction.
* With its trace config on the session (:attr:`AuthMiddleware.trace_config`;
  added on first use), aiohttp tells it at the start of every call the URL
  the caller asked for: each request of the call is authorized only for that
  origin, whatever the middlewares before it do. Without it, a middleware
  before this one could answer a redirect itself: its calls go out
  unauthorized until the trace config is on the session.

It notes redirects itself, after the flow returns; the flow only authorizes,
sends, refreshes and re-sends.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Collection
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from yarl import URL

from google_auth_aiohttp._auth.flow import (
    DEFAULT_MAX_REFRESH_ATTEMPTS,
    DEFAULT_REFRESH_STATUS_CODES,
    WAIT_MARGIN,
    AuthFlow,
    CallLimits,
)
from google_auth_aiohttp._auth.origin import may_authorize, redact, send_unauthorized
from google_auth_aiohttp._compat import call_of, first_in_chain, trace_context
from google_auth_aiohttp._logging import LOGGER, safe_url
from google_auth_aiohttp._retry import RETRY_LAYER_CODES

__all__ = [
    "DEFAULT_MAX_REFRESH_ATTEMPTS",
    "DEFAULT_REFRESH_STATUS_CODES",
    "AuthMiddleware",
]


class AuthMiddleware:
    """An aiohttp client middleware that authorizes requests with credentials.

    It gives a plain :class:`aiohttp.ClientSession` what
    :class:`AuthorizedSession` does::

        import aiohttp
        import google.auth
        from google_auth_aiohttp import AuthMiddleware

        credentials, _ = google.auth.default()
        url = "https://storage.googleapis.com/storage/v1/b?project=p"
        auth = AuthMiddleware(credentials)
        async with aiohttp.ClientSession(middlewares=[auth]) as session:
            async with session.get(url) as response:
                buckets = await response.json()

    The credentials' headers go to the origin of the first request of each
    call that reaches this middleware (the URL the caller passed, unless a
    middleware before it changed it), and never to another origin a server
    redirects that call to. Token requests go through the session that made
    the request (its connector, proxy and SSL settings, and the middlewares
    before this one), unless ``auth_request`` is given; this middleware lets
    them pass unauthorized, and stops one that a middleware before it sent to
    another origin than the credentials asked for.

    Args:
        credentials (Any): google-auth credentials of any family.
        refresh_status_codes (Collection[int]): Statuses that make the
            credentials refresh and the request be sent again.
        max_refresh_attempts (int): How many times a request is sent again
            after a refresh.
        refresh_timeout (Optional[float]): Seconds a refresh may take.
        auth_request (Optional[Callable]): The transport refreshes use, for
            example a :class:`google_auth_aiohttp.Request`.

    Retries are a middleware of their own, ahead of this one (each attempt
    is authorized, and refreshed, again)::

        middlewares=[RetryMiddleware(Retry()), AuthMiddleware(credentials)]

    Raises:
        TypeError: If ``credentials`` are not google-auth credentials.
        ValueError: If ``max_refresh_attempts`` or ``refresh_timeout`` is
            negative, NaN or infinite.

    """

    __slots__ = ("_flow", "_redirected", "_trace_config", "_unplaced")

    def __init__(
        self,
        credentials: Any,
        *,
        refresh_status_codes: Collection[int] = DEFAULT_REFRESH_STATUS_CODES,
        max_refresh_attempts: int = DEFAULT_MAX_REFRESH_ATTEMPTS,
        refresh_timeout: float | None = None,
        auth_request: Any = None,
    ) -> None:
        self._hold(
            AuthFlow(
                credentials,
                refresh_status_codes=refresh_status_codes,
                max_refresh_attempts=max_refresh_attempts,
                refresh_timeout=refresh_timeout,
                auth_request=auth_request,
            )
        )

    def _hold(self, flow: AuthFlow) -> None:
        """Run ``flow``; what every constructor of this class and its own does."""
        self._flow = flow
        self._redirected = _RedirectedCalls()
        self._trace_config = _asked_origins()
        self._unplaced: weakref.WeakSet[aiohttp.ClientSession] = weakref.WeakSet()

    @property
    def credentials(self) -> Any:
        """The credentials this middleware authorizes requests with; assignable.

        Requests made after an assignment use the new credentials, and share
        refreshes with every other user of those.
        """
        return self._flow.credentials

    @credentials.setter
    def credentials(self, credentials: Any) -> None:
        self._flow.credentials = credentials

    @property
    def trace_config(self) -> aiohttp.TraceConfig:
        """A trace config that tells this middleware the URL each call asked for.

        With it on the session, every request is placed in its call whatever
        the middlewares before this one do; it is added to a session on first
        use, so pass it when making a session whose first calls matter and
        where another middleware runs first::

            auth = AuthMiddleware(credentials)
            session = aiohttp.ClientSession(
                middlewares=[my_cache_middleware, auth],
                trace_configs=[auth.trace_config],
            )
        """
        return self._trace_config

    def __call__(
        self, request: ClientRequest, handler: ClientHandlerType
    ) -> Awaitable[ClientResponse]:
        """Authorize ``request``, send it, and refresh and re-send it if rejected.

        Args:
            request (aiohttp.ClientRequest): The request, as aiohttp passes it.
            handler (Callable): The rest of aiohttp's chain, which sends it.

        Returns:
            Awaitable[aiohttp.ClientResponse]: The response, after any refresh.
        """
        # Seen from here, called by whoever calls it: from a coroutine of its
        # own, a middleware that returned this one's awaitable is gone.
        first = first_in_chain(RETRY_LAYER_CODES)
        return self._authorize(request, handler, first, None)

    async def _authorize(
        self,
        request: ClientRequest,
        handler: ClientHandlerType,
        placed_first: bool,
        limits: CallLimits | None,
    ) -> ClientResponse:
        """The auth layer, top to bottom: place, authorize, send, refresh, note.

        The steady state: no redirect in flight, this layer first in the
        call's chain (``placed_first``), where a request it did not see
        redirected is its call's first; the kept headers of a fresh token go
        on it; it is sent; the status is neither a rejection nor a redirect.
        The flow's steps are run here, in the layer's one coroutine: a
        coroutine of the flow's own, awaited by this one, cost ~650 to ~1,600
        instructions of ~330,000 a request, every request
        (benchmarks/INSTRUCTIONS.md).
        """
        # 1. Place the request in its call: the origin the call asked for
        # (None: this request's own, as the call's first) and its limits.
        asked: URL | None = None
        began: float | None = None
        note = self._redirected.note_of(request)
        if note is not None:  # a hop of a call that got a redirect
            asked = note.origin
            if limits is None:  # the call's time runs from its first request
                limits = note
        else:
            # When the call started, near enough: in the loop's own time,
            # as aiohttp's timer counts it.
            began = asyncio.get_running_loop().time()
            if not (placed_first and _as_the_caller_asked(request)):
                traced = trace_context(request, self._trace_config)
                if traced is None:
                    return await self._unplaced_request(request, handler)
                asked = traced.asked_origin  # aiohttp said where the call started
        # 2. Authorize it (or not), send it, refresh and re-send if rejected.
        flow = self._flow
        if asked is not None and not may_authorize(request, asked):
            response = await send_unauthorized(request, handler, asked)
        elif flow.passes(request):  # a request the credentials make themselves
            response = await handler(request)
        else:
            authorization = None
            try:
                authorization = flow.kept_authorization()
                if authorization is None:
                    authorization = await flow.authorization(request, limits)
                sent_cert = flow.put_on(request, authorization)
                try:
                    response = await handler(request)
                finally:
                    redact(request.headers, authorization.secrets)
                if response.status in flow.refresh_status_codes:
                    response = await flow.refresh_and_resend(
                        request,
                        handler,
                        response,
                        authorization.token,
                        sent_cert,
                        limits,
                    )
            except BaseException:
                # A traceback keeps this frame, and error trackers (and
                # pytest --showlocals) print its locals: none holds a secret.
                authorization = None
                raise
        # 3. Note where a redirect came from, for the call's next hop.
        if response.status in REDIRECT_STATUSES:
            # The URL was kept, not its origin: one is worked out only here.
            self._redirected.add(
                request, response, asked or request.url.origin(), began
            )
        return response

    def _unplaced_request(
        self, request: ClientRequest, handler: ClientHandlerType
    ) -> Awaitable[ClientResponse]:
        """Send a request this middleware cannot place in its call, unauthorized.

        A middleware before this one may have answered a redirect itself, so
        this request may be a hop to anywhere. The session gets this
        middleware's trace config, which places every later call.
        """
        session = request.session
        if session is not None and session not in self._unplaced:
            self._unplaced.add(session)
            if self._trace_config not in session.trace_configs:
                session.trace_configs.append(self._trace_config)
            LOGGER.warning(
                "AuthMiddleware is not the first middleware of this session and "
                "its trace config was not on it: %s %s is sent unauthorized. "
                "Later calls are placed; pass trace_configs=[auth.trace_config] "
                "to aiohttp.ClientSession to place the first ones too.",
                request.method,
                safe_url(request.url),
            )
        return send_unauthorized(request, handler, None)


def _as_the_caller_asked(request: ClientRequest) -> bool:
    """Whether no middleware before this one changed the origin of the URL."""
    url, asked = request.url, request.original_url
    # aiohttp makes them one object unless the URL has a fragment.
    return url is asked or url.origin() == asked.origin()


def _asked_origins() -> aiohttp.TraceConfig:
    """A trace config that notes the origin each call asked for."""

    async def on_request_start(
        session: aiohttp.ClientSession,
        context: SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        context.asked_origin = params.url.origin()

    trace_config = aiohttp.TraceConfig()
    trace_config.on_request_start.append(on_request_start)
    trace_config.freeze()
    return trace_config


#: The statuses aiohttp follows.
REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))


class _RedirectedCalls:
    """The origins asked for by the calls that got a redirect, by call id.

    A call's note is made when one of its requests is answered with a
    redirect, and kept while any such response of the call lives: while
    aiohttp follows a redirect the response sits in the call's history, so
    the note outlives the call's last hop. A note holds its call's object, so
    no other call can take that object's id meanwhile.
    """

    __slots__ = ("_notes",)

    def __init__(self) -> None:
        self._notes: dict[int, _Note] = {}

    def note_of(self, request: ClientRequest) -> _Note | None:
        """The note of ``request``'s call, or None for a call's first request."""
        if not self._notes:  # no redirect in flight: the usual case
            return None
        return self._notes.get(id(call_of(request)))

    def add(
        self,
        request: ClientRequest,
        response: ClientResponse,
        asked: URL,
        started: float | None = None,
    ) -> None:
        """Note that ``request``, of a call that asked for ``asked``, got a redirect.

        ``started``: when the call's first request reached this layer, in
        ``loop.time()``, for the call's first note; None: no time limit known.
        """
        call = call_of(request)
        note = self._notes.get(id(call))
        if note is None:
            session = request.session
            total = None
            if session is not None and started is not None:
                total = session.timeout.total
            note = self._notes[id(call)] = _Note(call, asked, started, total)
        note.responses += 1
        weakref.finalize(response, self._release, id(call), note)

    def _release(self, key: int, note: _Note) -> None:
        note.responses -= 1
        if not note.responses and self._notes.get(key) is note:
            del self._notes[key]


class _Note:
    """A call, the origin it asked for, and how many redirects of it live.

    Also the call's limits (:class:`~google_auth_aiohttp._auth.flow.CallLimits`)
    for a hop that has no others: aiohttp's total timeout counts from the
    call's start, so a hop waits for a refresh no longer than what is left.
    """

    __slots__ = ("call", "origin", "responses", "started", "total")

    def __init__(
        self, call: Any, origin: URL, started: float | None, total: float | None
    ) -> None:
        self.call = call
        self.origin = origin
        self.responses = 0
        self.started = started
        self.total = total

    def wait_until(self) -> float | None:
        """When, in ``loop.time()``, the call stops waiting for a refresh."""
        if not self.total or self.started is None:
            return None
        return self.started + self.total - WAIT_MARGIN
