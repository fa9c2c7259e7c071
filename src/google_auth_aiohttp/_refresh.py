"""A refresh shared by everyone who needs one: :class:`SharedRefresh`.

When a token expires or is revoked, every request in flight finds out at about
the same time. They must not each ask the token endpoint for a new one: the
first starts a refresh in a task of its own, the others wait for that task.
A failure reaches every waiter and is forgotten, so the next call tries again.

Its lifecycle:

* **One per credentials object and event loop.** Whichever sessions and
  middlewares use the credentials share it (:func:`shared_refresh_for`); a
  loop never waits on another loop's refresh, and a loop that closes with a
  refresh in flight leaves nothing behind for the next one.
* **Waited-for refreshes go through the session of the caller that started
  them** (its proxy, SSL settings, middlewares), or ``auth_request``. If that
  session closes before the refresh ends, a waiter from another, open session
  does it again over its own, once. A caller that is cancelled (or hits its
  deadline) stops waiting without cancelling the refresh: others may need it,
  and a token endpoint slower than every caller's deadline must still deliver
  a token. ``refresh_timeout`` bounds it, and cancels its HTTP call (a sync
  refresh's thread returns within a second).
* **A stale token** (close to expiry, still valid) **is refreshed in the
  background** (:meth:`SharedRefresh.start`) while requests go on using it.
  Nobody waits for it, and the session that noticed may be closed at once
  (one session per call is a common pattern), so it goes through a session of
  its own, opened for it with the ``trust_env`` of the session that noticed,
  and closed when it ends; or through ``auth_request``. If it fails, the
  failure is logged and the next attempt waits a little.
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from google.auth import exceptions
from google.auth.credentials import TokenState

from google_auth_aiohttp._credentials import CredentialsAdapter
from google_auth_aiohttp._credentials_request import mark_task
from google_auth_aiohttp._logging import LOGGER

_UNSET: Any = object()

#: Seconds between background refreshes after one failed. Callers whose token
#: has expired do not wait for this: they refresh at once.
BACKGROUND_RETRY_DELAY = 5.0


@dataclass(eq=False)
class _Run:
    """One refresh in flight on one event loop."""

    task: asyncio.Task[None]
    # The session its HTTP goes through, when a caller's: it may close.
    session: aiohttp.ClientSession | None
    # Started for a stale token, by nobody who waits for it.
    background: bool


class SharedRefresh:
    """Single-flight refreshes of one credentials object, per event loop."""

    __slots__ = ("__weakref__", "_retry_background_at", "_runs")

    def __init__(self) -> None:
        self._runs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Run] = (
            weakref.WeakKeyDictionary()
        )
        self._retry_background_at = 0.0

    def start(
        self,
        adapter: CredentialsAdapter,
        session: aiohttp.ClientSession | None,
        auth_request: Any,
        timeout: float | None,
    ) -> None:
        """Start a background refresh unless one is under way or just failed.

        Args:
            adapter (CredentialsAdapter): The credentials to refresh.
            session (Optional[aiohttp.ClientSession]): The session whose
                request noticed the stale token; only its ``trust_env`` is used.
            auth_request (Optional[Callable]): The transport to refresh with,
                if the user gave one.
            timeout (Optional[float]): Seconds the refresh may take.
        """
        loop = asyncio.get_running_loop()
        if self._runs.get(loop) is not None:
            return
        if time.monotonic() < self._retry_background_at:
            return
        trust_env = session is not None and session.trust_env
        refresh = functools.partial(
            _refresh_in_background, adapter, trust_env, auth_request
        )
        self._begin(loop, refresh, adapter, timeout, None, background=True)

    def _begin(
        self,
        loop: asyncio.AbstractEventLoop,
        refresh: Callable[[], Awaitable[None]],
        adapter: CredentialsAdapter,
        timeout: float | None,
        session: aiohttp.ClientSession | None,
        background: bool,
    ) -> _Run:
        task = loop.create_task(_bounded(refresh, adapter, timeout))
        run = self._runs[loop] = _Run(task, session, background)
        task.add_done_callback(functools.partial(self._finished, loop, run))
        return run

    async def run(
        self,
        adapter: CredentialsAdapter,
        request: Any,
        session: aiohttp.ClientSession | None,
        timeout: float | None,
        rejected_token: Any = _UNSET,
    ) -> None:
        """Wait until the credentials have been refreshed once.

        Joins the refresh in progress on this event loop, if any; otherwise
        starts one.

        Args:
            adapter (CredentialsAdapter): The credentials to refresh.
            request (Any): The transport the refresh uses, if this call starts it.
            session (Optional[aiohttp.ClientSession]): The session ``request``
                sends through, if it is the caller's.
            timeout (Optional[float]): Seconds the refresh may take, if this call
                starts it.
            rejected_token (Any): The token a server just rejected. If the
                credentials already hold another one, somebody refreshed since
                and no new refresh is started.

        Raises:
            google.auth.exceptions.RefreshError: If the refresh failed.
            google.auth.exceptions.TransportError: If the token endpoint could not
                be reached or the refresh took longer than ``timeout``.

        """
        loop = asyncio.get_running_loop()
        redone = False
        while True:
            run = self._runs.get(loop)
            if run is None:
                if rejected_token is not _UNSET and adapter.token != rejected_token:
                    return
                refresh = functools.partial(adapter.refresh, request)
                run = self._begin(loop, refresh, adapter, timeout, session, False)
            try:
                # shield(): a waiter that is cancelled (or whose deadline
                # passes) must not cancel the refresh others may need.
                await asyncio.shield(run.task)
                return
            except Exception:
                if redone or not _lost_its_session(run, session):
                    raise
                LOGGER.debug(
                    "The session a shared refresh ran over closed; refreshing "
                    "again over this caller's own."
                )
                redone = True

    def _finished(
        self, loop: asyncio.AbstractEventLoop, run: _Run, task: asyncio.Task[None]
    ) -> None:
        if self._runs.get(loop) is run:
            del self._runs[loop]
        if not task.done() or task.cancelled():
            return
        failure = task.exception()  # seen, even if every waiter has left
        if failure is not None and run.background:
            self._retry_background_at = time.monotonic() + BACKGROUND_RETRY_DELAY
            LOGGER.warning(
                "Background refresh failed; the current token is still valid, "
                "the next attempt is in %ss: %s",
                BACKGROUND_RETRY_DELAY,
                failure,
            )


async def _bounded(
    refresh: Callable[[], Awaitable[None]],
    adapter: CredentialsAdapter,
    timeout: float | None,
) -> None:
    """Run ``refresh()`` within ``timeout``, in a task of its own."""
    name = type(adapter.credentials).__name__
    LOGGER.debug("Refreshing %s.", name)
    # This task's own context: whatever transport the credentials use,
    # their requests are not authorized by an auth middleware.
    mark_task()
    try:
        async with asyncio.timeout(timeout):
            await refresh()
    except TimeoutError as caught:
        raise exceptions.TransportError(
            f"Refreshing {name} took longer than refresh_timeout={timeout}s."
        ) from caught
    LOGGER.debug("Refreshed %s.", name)


async def _refresh_in_background(
    adapter: CredentialsAdapter, trust_env: bool, auth_request: Any
) -> None:
    if auth_request is not None:
        await adapter.refresh(auth_request)
        return
    async with aiohttp.ClientSession(trust_env=trust_env) as own:
        await adapter.refresh(adapter.transport_for(own))


async def headers_after_refresh(
    adapter: CredentialsAdapter,
    shared: SharedRefresh,
    transport: Any,
    method: str,
    url: str,
    *,
    session: aiohttp.ClientSession | None,
    auth_request: Any,
    timeout: float | None,
) -> tuple[dict[str, str], Any]:
    """The headers the credentials add to a request, and the token they hold.

    A stale token is used as it is while a background refresh starts; a
    missing or expired one is refreshed first, once for all callers.

    Args:
        adapter (CredentialsAdapter): The credentials.
        shared (SharedRefresh): Their shared refresh.
        transport (Any): What ``before_request`` and a refresh send through.
        method (str): The request's method.
        url (str): The request's URL.
        session (Optional[aiohttp.ClientSession]): The session ``transport``
            sends through, if it is the caller's.
        auth_request (Any): The transport the user gave for refreshes, if any.
        timeout (Optional[float]): Seconds a refresh may take.

    Returns:
        Tuple[Dict[str, str], Any]: The headers, and the token.
    """
    state = adapter.token_state()
    headers: dict[str, str] = {}
    if state is TokenState.STALE:
        # Still valid: use it, and get the next one without anybody waiting.
        shared.start(adapter, session, auth_request, timeout)
        adapter.apply_stale(headers)
        return headers, adapter.token
    if state is TokenState.INVALID:
        await shared.run(adapter, transport, session, timeout)
    await adapter.apply(transport, method, url, headers)
    adapter.remember(headers)
    return headers, adapter.token


def _lost_its_session(run: _Run, session: aiohttp.ClientSession | None) -> bool:
    """Whether ``run`` failed for a session that closed, while ``session`` is open."""
    return (
        run.session is not None
        and run.session is not session
        and run.session.closed
        and session is not None
        and not session.closed
    )


_SHARED: weakref.WeakKeyDictionary[Any, SharedRefresh] = weakref.WeakKeyDictionary()


def shared_refresh_for(credentials: Any) -> SharedRefresh:
    """Return the :class:`SharedRefresh` of ``credentials``, made on first use.

    Args:
        credentials (Any): A credentials object (held weakly).

    Returns:
        SharedRefresh: The same object for every caller with these credentials.

    """
    try:
        shared = _SHARED.get(credentials)
        if shared is None:
            shared = _SHARED[credentials] = SharedRefresh()
    except TypeError:  # not weak-referenceable or not hashable: share per user
        shared = SharedRefresh()
    return shared
