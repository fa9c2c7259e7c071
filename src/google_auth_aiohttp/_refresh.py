"""A refresh shared by everyone who needs one: :class:`SharedRefresh`.

When a token expires or is revoked, every request in flight finds out at about
the same time. They must not each ask the token endpoint for a new one: the
first starts a refresh in a task of its own, the others wait for that task,
and a caller that is cancelled (or hits its deadline) stops waiting without
cancelling the refresh the others still need. A failure reaches every waiter
and is forgotten, so the next call tries again.

A stale token (close to expiry, still valid) is refreshed in the background
(:meth:`SharedRefresh.start`) while requests go on using it; if that refresh
fails, the failure is logged and the next attempt waits a little.

There is one :class:`SharedRefresh` per credentials object, whichever sessions
and middlewares use it (:func:`shared_refresh_for`).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

from google.auth import exceptions

from google_auth_aiohttp._credentials import CredentialsAdapter
from google_auth_aiohttp._credentials_request import mark_task
from google_auth_aiohttp._logging import LOGGER

_UNSET: Any = object()

#: Seconds between background refreshes after one failed. Callers whose token
#: has expired do not wait for this: they refresh at once.
BACKGROUND_RETRY_DELAY = 5.0


class SharedRefresh:
    """Single-flight refreshes of one credentials object."""

    __slots__ = ("__weakref__", "_retry_background_at", "_task")

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._retry_background_at = 0.0

    def start(
        self, adapter: CredentialsAdapter, request: Any, timeout: float | None
    ) -> None:
        """Start a background refresh unless one is under way or just failed.

        Args:
            adapter (CredentialsAdapter): The credentials to refresh.
            request (Any): The transport the refresh uses.
            timeout (Optional[float]): Seconds the refresh may take.
        """
        if self._task is not None or time.monotonic() < self._retry_background_at:
            return
        task = asyncio.get_running_loop().create_task(
            self._refresh(adapter, request, timeout)
        )
        self._task = task
        task.add_done_callback(self._forget)
        task.add_done_callback(self._after_background)

    async def run(
        self,
        adapter: CredentialsAdapter,
        request: Any,
        timeout: float | None,
        rejected_token: Any = _UNSET,
    ) -> None:
        """Wait until the credentials have been refreshed once.

        Joins the refresh in progress, if any; otherwise starts one.

        Args:
            adapter (CredentialsAdapter): The credentials to refresh.
            request (Any): The transport the refresh uses, if this call starts it.
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
        task = self._task
        loop = asyncio.get_running_loop()
        if task is None or task.get_loop() is not loop:
            if (
                rejected_token is not _UNSET
                and adapter.credentials.token != rejected_token
            ):
                return
            task = loop.create_task(self._refresh(adapter, request, timeout))
            # A credentials object used from two event loops at once shares
            # refreshes only within each loop.
            if self._task is None:
                self._task = task
                task.add_done_callback(self._forget)
            else:
                task.add_done_callback(_retrieve)
        # shield(): a waiter that is cancelled must not cancel the refresh.
        await asyncio.shield(task)

    def _forget(self, task: asyncio.Task[None]) -> None:
        if self._task is task:
            self._task = None
        _retrieve(task)

    def _after_background(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        self._retry_background_at = time.monotonic() + BACKGROUND_RETRY_DELAY
        LOGGER.warning(
            "Background refresh failed; the current token is still valid, the "
            "next attempt is in %ss: %s",
            BACKGROUND_RETRY_DELAY,
            task.exception(),
        )

    @staticmethod
    async def _refresh(
        adapter: CredentialsAdapter, request: Any, timeout: float | None
    ) -> None:
        LOGGER.debug("Refreshing %s.", type(adapter.credentials).__name__)
        # This task's own context: whatever transport the credentials use,
        # their requests are not authorized by an auth middleware.
        mark_task()
        try:
            async with asyncio.timeout(timeout):
                await adapter.refresh(request)
        except TimeoutError as caught:
            raise exceptions.TransportError(
                f"Refreshing {type(adapter.credentials).__name__} took longer "
                f"than refresh_timeout={timeout}s."
            ) from caught
        LOGGER.debug("Refreshed %s.", type(adapter.credentials).__name__)


def _retrieve(task: asyncio.Task[None]) -> None:
    # Every waiter may have left; mark the outcome as seen so that asyncio does
    # not log "Task exception was never retrieved" for a failure they all skipped.
    if not task.cancelled():
        task.exception()


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
