"""The refresh policy of one credentials object: :class:`Refresher`.

Everything about *when* and *how* credentials refresh is decided here, once,
for every client that uses them (:class:`~google_auth_aiohttp.AuthorizedSession`,
:class:`~google_auth_aiohttp.AuthMiddleware`,
:class:`~google_auth_aiohttp.AioCredentials`, the ID-token helpers):

* **What a token's state is.** Fresh, stale (still valid, renewed in the
  background while it is used) or invalid (missing or expired: callers wait
  for a refresh). google-auth counts a token as stale 3 min 45 s before its
  expiry; a token this package obtained is stale at the later of that and
  half its lifetime, so a token shorter-lived than the threshold is renewed
  once per lifetime, not on every request.
* **How a refresh is shared.** One flight per credentials object and event
  loop (:class:`~google_auth_aiohttp._auth.single_flight.SingleFlight`): N callers,
  one token request; a cancelled caller does not cancel it; a failure reaches
  every waiter and is forgotten; a stalled attempt is hedged by another, so
  the next caller after an endpoint recovers is served in about one round trip.
* **How a refresh is routed and bounded** (:class:`Route`, made once per
  session): through ``auth_request`` if the user gave one; else through the
  session that needs the token, with its proxy, SSL and connector settings,
  in the background too (an ``AuthorizedSession``'s refreshes skip the
  caller's middlewares). Each attempt is bounded by
  ``refresh_timeout`` (120 s by default), and each caller's wait by its own
  time (the call's timeout or ``max_allowed_time``): then it gets a
  :class:`RefreshWaitTimeout` saying what it waited for and where.
* **What a rejected token means.** A 401 for the token the credentials still
  hold starts (or joins) a refresh; one for a token already replaced does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import math
import time
import weakref
from collections.abc import Callable, Mapping, MutableMapping
from contextlib import AbstractAsyncContextManager
from typing import Any, NamedTuple

import aiohttp
from google.auth import exceptions
from google.auth.credentials import TokenState

from google_auth_aiohttp._auth.origin import secret_names
from google_auth_aiohttp._auth.single_flight import REFRESH_BUDGET, Flight, SingleFlight
from google_auth_aiohttp._compat import REFRESH_THRESHOLD, utcnow
from google_auth_aiohttp._credentials.adapters import (
    CredentialsAdapter,
    adapt_credentials,
)
from google_auth_aiohttp._credentials.own_requests import Trail, mark_task
from google_auth_aiohttp._logging import LOGGER

#: Seconds one refresh attempt may take when ``refresh_timeout`` is None.
DEFAULT_REFRESH_TIMEOUT = 120.0

#: Seconds between background refreshes after one failed. Callers whose token
#: has expired do not wait for this: they refresh at once.
BACKGROUND_RETRY_DELAY = 5.0

# What a refresh raises when google-auth trips over an answer it did not
# expect (HTML, a JSON list): turned into a RefreshError that says which.
_GARBLED = (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError)


class RefreshWaitTimeout(exceptions.TransportError, TimeoutError):
    """A caller's time ran out while it waited for the credentials' refresh.

    Both a :class:`google.auth.exceptions.TransportError` and a
    :class:`TimeoutError`. The refresh goes on for the callers still waiting.

    Args:
        message (str): What the caller waited for, and where.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)  # type: ignore[no-untyped-call]


class Route:
    """How a refresh reaches the token endpoint, decided once per session.

    Args:
        transport (Any): What ``before_request`` and a refresh send through.
        session (Optional[aiohttp.ClientSession]): The caller's session the
            route goes out through, if any (it may close).
        timeout (Optional[float]): Seconds one attempt may take; None for
            :data:`DEFAULT_REFRESH_TIMEOUT`.
        open_session (Optional[Callable]): Opens a session of ``session``'s
            settings for one refresh, instead of riding on ``session`` (what
            :class:`~google_auth_aiohttp.AuthorizedSession` offers, so that
            closing it ends no refresh in flight).
    """

    __slots__ = ("_open_session", "session", "timeout", "transport")

    def __init__(
        self,
        transport: Any,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float | None = None,
        open_session: Callable[[], AbstractAsyncContextManager[aiohttp.ClientSession]]
        | None = None,
    ) -> None:
        self.transport = transport
        self.session = session
        self.timeout = DEFAULT_REFRESH_TIMEOUT if timeout is None else timeout
        self._open_session = open_session

    async def refresh(self, adapter: CredentialsAdapter) -> None:
        """Refresh ``adapter``'s credentials once, over this route."""
        if self._open_session is None:
            await adapter.refresh(self.transport)
            return
        async with self._open_session() as session:
            await adapter.refresh(adapter.transport_for(session))

    def lost(self) -> bool:
        """Whether a refresh in flight over this route ended with its session."""
        return (
            self._open_session is None
            and self.session is not None
            and self.session.closed
        )

    def usable(self) -> bool:
        """Whether a new refresh can still go out over this route."""
        return self.session is None or not self.session.closed


def route_over(
    adapter: CredentialsAdapter,
    session: aiohttp.ClientSession,
    auth_request: Any,
    timeout: float | None,
) -> Route:
    """The route of refreshes needed by requests of ``session``.

    Args:
        adapter (CredentialsAdapter): The credentials.
        session (aiohttp.ClientSession): The session whose request needs a token.
        auth_request (Optional[Callable]): The user's transport for refreshes.
        timeout (Optional[float]): ``refresh_timeout``.
    """
    if auth_request is not None:
        return Route(auth_request, timeout=timeout)
    transport = adapter.transport_for(session)
    open_session = getattr(session, "_open_refresh_session", None)
    return Route(transport, session=session, timeout=timeout, open_session=open_session)


class Authorization(NamedTuple):
    """What a request is authorized with; made once per token and kept."""

    #: The credentials' headers as ``(name, value)`` pairs, not a mapping:
    #: putting one on a request from a tuple costs ~900 instructions, from a
    #: dict's ``items()`` ~1,500 (of ~330,000 a request).
    headers: tuple[tuple[str, str], ...]
    #: The token in them.
    token: Any
    #: The names of the secret ones.
    secrets: tuple[str, ...]

    @classmethod
    def made_of(cls, headers: Mapping[str, str], token: Any) -> Authorization:
        """The authorization of the headers the credentials made for ``token``."""
        return cls(tuple(headers.items()), token, secret_names(headers))


class _Kept:
    """Headers made for one token, reused until the token goes stale."""

    __slots__ = ("authorization", "expiry", "fresh_until", "token")

    def __init__(
        self, headers: dict[str, str], token: Any, expiry: Any, fresh_until: float
    ) -> None:
        self.authorization = Authorization.made_of(headers, token)
        self.token = token
        self.expiry = expiry
        self.fresh_until = fresh_until  # time.monotonic()


class _Memory:
    """What a credentials object's refresh policy remembers, for every user.

    It lives as long as the credentials do, and holds nothing of them: users
    come and go (one session per call), the memory stays.
    """

    __slots__ = ("background_after", "flight", "kept", "ours", "trails")

    def __init__(self) -> None:
        self.flight: SingleFlight[None] = SingleFlight(REFRESH_BUDGET)
        self.kept: _Kept | None = None
        # The token our last refresh obtained, its expiry and when it goes stale.
        self.ours: tuple[Any, datetime.datetime, datetime.datetime] | None = None
        self.background_after = 0.0  # time.monotonic()
        self.trails: list[Trail] = []  # of the attempts in the air


class Refresher:
    """The refresh policy of one credentials object; see the module docstring.

    Made by :func:`refresher_for`: every refresher of one credentials object
    shares its memory (its flights, the headers kept, when the token goes
    stale).

    Args:
        adapter (CredentialsAdapter): The credentials, adapted.
        memory (_Memory): What the credentials' refresh policy remembers.
    """

    __slots__ = ("_memory", "adapter")

    def __init__(self, adapter: CredentialsAdapter, memory: _Memory) -> None:
        self.adapter = adapter
        self._memory = memory

    @property
    def credentials(self) -> Any:
        """The credentials."""
        return self.adapter.credentials

    # -- What the token's state is ------------------------------------------

    def kept_headers(self) -> Authorization | None:
        """The headers made for the current token, the token and its secrets' names.

        Returns them while the token is fresh: the per-request path in the
        steady state, with no google-auth call and no allocation.
        """
        kept = self._memory.kept
        if kept is None:
            return None
        credentials = self.adapter.credentials
        if (
            credentials.token is kept.token
            and getattr(credentials, "expiry", None) is kept.expiry
            and time.monotonic() < kept.fresh_until
        ):
            return kept.authorization
        return None

    def added_names(self) -> list[str]:
        """The lower-cased names of the headers last made for the credentials."""
        kept = self._memory.kept
        return (
            []
            if kept is None
            else [name.lower() for name, _ in kept.authorization.headers]
        )

    def state(self) -> TokenState:
        """Whether the token is fresh, stale (usable) or invalid."""
        adapter = self.adapter
        if not adapter.can_refresh:
            return TokenState.FRESH
        expiry = adapter.expiry
        if expiry is None:
            return adapter.stated_state()
        token = adapter.token
        if token is None:
            return TokenState.INVALID
        now = utcnow()
        if now >= expiry:
            return TokenState.INVALID
        if now >= self._stale_at(token, expiry):
            return TokenState.STALE
        return TokenState.FRESH

    def _stale_at(self, token: Any, expiry: datetime.datetime) -> datetime.datetime:
        ours = self._memory.ours
        if ours is not None and ours[0] is token and ours[1] == expiry:
            return ours[2]
        return expiry - REFRESH_THRESHOLD  # a token we did not see born

    def _keep(self, headers: dict[str, str]) -> None:
        token, expiry = self.adapter.token, self.adapter.expiry
        if token is None:
            return
        if expiry is None:
            fresh_until = math.inf
        else:
            fresh_for = (self._stale_at(token, expiry) - utcnow()).total_seconds()
            fresh_until = time.monotonic() + fresh_for
        raw_expiry = getattr(self.adapter.credentials, "expiry", None)
        self._memory.kept = _Kept(headers, token, raw_expiry, fresh_until)

    # -- Headers ------------------------------------------------------------

    async def headers(
        self,
        route: Route,
        method: str,
        url: str,
        wait_until: float | None,
        into: MutableMapping[str, str] | None = None,
    ) -> tuple[MutableMapping[str, str], Any]:
        """The headers the credentials add to a request, and the token in them.

        A stale token is used as it is while a background refresh starts; a
        missing or expired one is refreshed first, once for all callers.

        Args:
            route (Route): How a refresh goes out.
            method (str): The request's method.
            url (str): The request's URL.
            wait_until (Optional[float]): When, in ``loop.time()``, the caller
                stops waiting for a refresh.
            into (Optional[MutableMapping[str, str]]): The caller's headers, to
                add to (a ``before_request`` sees them); by default a new dict,
                which may be kept and reused for this token.

        Returns:
            Tuple[MutableMapping[str, str], Any]: The headers, and the token.

        Raises:
            RefreshWaitTimeout: If ``wait_until`` passed first.
            google.auth.exceptions.GoogleAuthError: If the refresh failed.
        """
        state = self.state()
        if state is TokenState.INVALID:
            await self.refresh(route, wait_until)
            state = self.state()
        elif state is TokenState.STALE:
            self.refresh_in_background(route)
        adapter = self.adapter
        headers: MutableMapping[str, str] = {} if into is None else into
        if adapter.token_only:
            await adapter.apply_token(headers)
            if state is TokenState.FRESH and into is None:
                self._keep(dict(headers))
            return headers, adapter.token
        if state is TokenState.STALE and adapter.refreshes_in_before_request():
            # Their own before_request would refresh now, each caller on its
            # own: one refresh for all of them first. The token still works
            # if it fails.
            with contextlib.suppress(exceptions.GoogleAuthError):
                await self.refresh(route, wait_until)
        try:
            await adapter.before_request(route.transport, method, url, headers)
        except (exceptions.RefreshError, exceptions.TransportError):
            if state is TokenState.INVALID or not adapter.can_apply:
                raise
            LOGGER.debug("before_request failed to refresh; the token still works.")
            await adapter.apply_token(headers)
        return headers, adapter.token

    # -- Refreshing ---------------------------------------------------------

    async def refresh(self, route: Route, wait_until: float | None = None) -> None:
        """Refresh once: join the flight in the air, or start one, and wait.

        If the flight failed because the session it rode on closed while this
        caller's is open, it is made again, once, over this caller's route.

        Args:
            route (Route): How an attempt started for this caller goes out.
            wait_until (Optional[float]): When, in ``loop.time()``, this caller
                stops waiting.

        Raises:
            RefreshWaitTimeout: If ``wait_until`` passed first.
            google.auth.exceptions.GoogleAuthError: If the refresh failed.
        """
        redone = False
        while True:
            flight = self._memory.flight.start(lambda: self._attempt(route), route)
            try:
                await self._wait(flight, route, wait_until)
                return
            except Exception:
                failed: Route | None = flight.failed_note
                if redone or failed is None or not failed.lost() or not route.usable():
                    raise
                LOGGER.debug(
                    "The session a shared refresh ran over closed; refreshing "
                    "again over this caller's own."
                )
                redone = True

    async def after_rejection(
        self, route: Route, sent_token: Any, wait_until: float | None
    ) -> None:
        """A server rejected ``sent_token``: refresh, unless it was replaced since.

        Args:
            route (Route): How a refresh goes out.
            sent_token (Any): The token the rejected request carried.
            wait_until (Optional[float]): When this caller stops waiting.
        """
        if (
            self._memory.flight.current() is None
            and self.adapter.token is not sent_token
        ):
            return  # somebody refreshed since: send the new token
        del sent_token  # a traceback of the refresh would show it (locals)
        await self.refresh(route, wait_until)

    def refresh_in_background(self, route: Route) -> None:
        """Start a refresh nobody waits for, unless one is in the air or just failed."""
        if self._memory.flight.current() is not None:
            return
        if time.monotonic() < self._memory.background_after:
            return
        flight = self._memory.flight.start(lambda: self._attempt(route), route)
        flight.result.add_done_callback(self._background_landed)

    def _background_landed(self, result: asyncio.Future[None]) -> None:
        if result.cancelled():
            return
        failure = result.exception()
        if failure is None:
            return
        self._memory.background_after = time.monotonic() + BACKGROUND_RETRY_DELAY
        LOGGER.warning(
            "Background refresh failed (%s); the current token is still valid, "
            "the next attempt is in %ss at the earliest: %s",
            type(self.adapter.credentials).__name__,
            BACKGROUND_RETRY_DELAY,
            failure,
        )

    async def _wait(
        self, flight: Flight[None], route: Route, wait_until: float | None
    ) -> None:
        def job() -> Any:  # what a hedge started for this caller runs
            return self._attempt(route)

        if wait_until is None:
            await flight.wait(job, route, route.usable)
            return
        loop = asyncio.get_running_loop()
        began = loop.time()
        bound = asyncio.timeout_at(wait_until)
        try:
            async with bound:
                await flight.wait(job, route, route.usable)
        except TimeoutError:
            if not bound.expired():
                raise
            raise RefreshWaitTimeout(
                f"Gave up waiting for {self._name()} to get a token after "
                f"{loop.time() - began:.1f}s: the call's own time ran out"
                f"{self._where(loop.time() - flight.started)}. The refresh goes "
                "on for later callers."
            ) from None

    def _where(self, in_air: float) -> str:
        asking = next(
            (t.asking for t in reversed(self._memory.trails) if t.asking), None
        )
        if asking is None:
            return f" (the refresh has run for {in_air:.1f}s)"
        return f" ({asking} has run for {in_air:.1f}s)"

    def _name(self) -> str:
        return type(self.adapter.credentials).__name__

    async def _attempt(self, route: Route) -> None:
        """One attempt, in a task of its own, bounded by the route's timeout."""
        name = self._name()
        trail = Trail()
        # This task's own context: whatever transport the credentials use,
        # their requests are not authorized by an auth middleware.
        mark_task(trail)
        self._memory.trails.append(trail)
        LOGGER.debug("Refreshing %s.", name)
        bound = asyncio.timeout(route.timeout)
        try:
            async with bound:
                await route.refresh(self.adapter)
        except TimeoutError as caught:
            if not bound.expired():
                raise
            raise exceptions.TransportError(
                f"Refreshing {name} took longer than refresh_timeout="
                f"{route.timeout:g}s{trail.where()}."
            ) from caught
        except exceptions.RefreshError as caught:
            raise _without_response(caught) from None
        except _GARBLED as caught:
            if isinstance(caught, exceptions.GoogleAuthError) or trail.answer is None:
                raise
            raise exceptions.RefreshError(
                f"Refreshing {name} failed on an answer google-auth could not "
                f"read: {trail.answer}, not a token response "
                f"({type(caught).__name__}: {caught})."
            ) from caught
        finally:
            self._memory.trails.remove(trail)
        self._note_obtained()
        LOGGER.debug("Refreshed %s.", name)

    def _note_obtained(self) -> None:
        """Note the new token's lifetime: stale at half of it at the earliest."""
        token, expiry = self.adapter.token, self.adapter.expiry
        if token is None or expiry is None:
            self._memory.ours = None
            return
        now = utcnow()
        stale_at = max(expiry - REFRESH_THRESHOLD, now + (expiry - now) / 2)
        self._memory.ours = (token, expiry, stale_at)


def _without_response(caught: exceptions.RefreshError) -> exceptions.RefreshError:
    """``caught`` without the token endpoint's answer google-auth puts in it.

    google-auth's ``RefreshError`` carries the endpoint's whole JSON answer as
    its second argument, which may hold an ID token or a refresh token beside
    the error; its ``str`` and ``repr`` (and every log line made of them)
    would print those. Only the OAuth error fields are kept.
    """
    args = caught.args
    message = args[0] if args and isinstance(args[0], str) else type(caught).__name__
    kept: list[Any] = []
    if len(args) > 1 and isinstance(args[1], Mapping):
        answer = args[1]
        kept.append({k: answer[k] for k in _OAUTH_ERROR_FIELDS if k in answer})
        # Without an "error" field, google-auth's message is the whole answer.
        for name, value in answer.items():
            if name not in _OAUTH_ERROR_FIELDS and isinstance(value, str) and value:
                message = message.replace(value, "<redacted>")
    kept.insert(0, message[:500])
    try:
        cleaned = type(caught)(*kept)
    except TypeError:  # a subclass with another signature
        cleaned = exceptions.RefreshError(*kept)
    if hasattr(caught, "_retryable"):
        cleaned._retryable = caught._retryable
    return cleaned


_OAUTH_ERROR_FIELDS = ("error", "error_description", "error_uri")

# By the credentials' identity, not equality: two credentials objects that
# compare equal may hold different tokens. An entry goes with its credentials.
_MEMORIES: dict[int, _Memory] = {}


def refresher_for(credentials: Any) -> Refresher:
    """Return a :class:`Refresher` of ``credentials``.

    Every refresher of one credentials object shares one memory, for as long
    as the credentials live: one refresh at a time for all their users.

    Args:
        credentials (Any): A credentials object.

    Returns:
        Refresher: A refresher sharing the credentials' memory.

    Raises:
        TypeError: If ``credentials`` have no ``before_request`` method.
    """
    adapter = adapt_credentials(credentials)
    key = id(credentials)
    memory = _MEMORIES.get(key)
    if memory is None:
        memory = _Memory()
        try:
            weakref.finalize(credentials, _MEMORIES.pop, key, None)
        except TypeError:  # not weak-referenceable: this user's own memory
            return Refresher(adapter, memory)
        _MEMORIES[key] = memory
    return Refresher(adapter, memory)
