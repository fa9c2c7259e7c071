"""Sync credentials' blocking calls, each in a thread of its own, with HTTP on the loop.

Sync credentials refresh with a blocking ``refresh(request)``. We run that
call in a thread (:func:`call_blocking`) and give it a :class:`LoopRequest`:
each HTTP call it makes is handed to the event loop, sent through aiohttp (so
the session's proxy, ``trust_env`` and SSL settings apply), and its result
handed back to the waiting thread. The event loop never blocks and
``requests`` is not needed.

Every blocking call gets a thread of its own (:func:`live_threads` counts
them), never the loop's default executor and never a fixed pool: a thousand
credentials refreshing at once are a thousand threads waiting on the loop,
and four stalled token endpoints cannot make a fifth tenant queue behind
them. Like daemons, the threads hold up no exit.

When the awaiting coroutine is cancelled (a ``refresh_timeout``, a hedged
attempt that lost, the loop shutting down), the thread's HTTP call is
cancelled on the loop and the thread gets :class:`RefreshAborted`, which
google-auth's retry loops do not catch: the thread returns at once rather
than sleeping through google-auth's backoff and trying again.
"""

from __future__ import annotations

import _thread
import asyncio
import concurrent.futures
import contextlib
import contextvars
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from google.auth import exceptions
from google.auth import transport as google_transport

from google_auth_aiohttp._logging import safe_url
from google_auth_aiohttp._transport import (
    _DEFAULT_TIMEOUT,
    AioTransport,
    ReadResponse,
    Request,
)

# Beyond the request's own timeout, how long a thread waits for the event
# loop to answer before deciding it has gone away.
_LOOP_GRACE = 10.0

_T = TypeVar("_T")


class RefreshAborted(BaseException):
    """Raised in a thread whose blocking call nobody waits for any more.

    A ``BaseException``, as :class:`asyncio.CancelledError` is: google-auth's
    retry loops catch :class:`~google.auth.exceptions.TransportError` and
    sleep before trying again, and must not catch this.
    """


async def call_blocking(function: Callable[..., _T], request: Any, *args: Any) -> _T:
    """Run ``function(request, *args)`` in a thread of its own.

    Args:
        function (Callable): A blocking call whose first argument is the
            transport it sends HTTP through, such as ``credentials.refresh``.
        request (Any): An async transport of ours (:class:`Request` or
            :class:`AioTransport`), which the thread gets as a
            :class:`LoopRequest` over this loop; any other transport (a sync
            one the caller gave) is passed as it is.
        args: The call's other arguments.

    Returns:
        Any: What ``function`` returned.

    Raises:
        Exception: What ``function`` raised.
    """
    loop = asyncio.get_running_loop()
    sync_request: Any = request
    if isinstance(request, (Request, AioTransport)):
        sync_request = LoopRequest(request, loop)
    outcome: asyncio.Future[_T] = loop.create_future()
    context = contextvars.copy_context()

    def work() -> None:
        try:
            result = context.run(function, sync_request, *args)
        except RefreshAborted:
            return  # nobody waits for it
        except BaseException as error:  # handed to the awaiting coroutine
            _settle(loop, outcome, None, error)
        else:
            _settle(loop, outcome, result, None)

    _start_thread(work)
    try:
        return await outcome
    except asyncio.CancelledError:
        if isinstance(sync_request, LoopRequest):
            sync_request.abort()
        raise


_live_threads = 0
_live_lock = threading.Lock()


def live_threads() -> int:
    """How many of the package's threads are running now."""
    return _live_threads


def _start_thread(work: Callable[[], None]) -> None:
    """Run ``work()`` in a new thread, without waiting for it to start.

    ``threading.Thread.start()`` waits until the new thread runs; on a loop
    starting a thousand refreshes at once, with other threads holding the
    GIL, that wait alone held the loop for half a second. A bare thread is
    started in microseconds, and, like a daemon, holds up no exit.
    """

    def counted() -> None:
        global _live_threads
        try:
            work()
        finally:
            with _live_lock:
                _live_threads -= 1

    global _live_threads
    with _live_lock:
        _live_threads += 1
    _thread.start_new_thread(counted, ())


def _settle(
    loop: asyncio.AbstractEventLoop,
    outcome: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    def settle() -> None:
        if outcome.done():
            return
        if error is None:
            outcome.set_result(result)
        else:
            outcome.set_exception(error)

    # If the loop closed, nobody is left to tell.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(settle)


class LoopRequest(google_transport.Request):
    """A sync transport for threads that sends through the event loop.

    Args:
        request (Union[Request, AioTransport]): The async transport to use.
        loop (asyncio.AbstractEventLoop): The loop ``request``'s session runs on.

    """

    __slots__ = ("_aborted", "_loop", "_request", "_wake")

    def __init__(
        self, request: Request | AioTransport, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._request = request
        self._loop = loop
        self._aborted = False
        # Set when the call in flight ends, or when it is aborted.
        self._wake: threading.Event | None = None

    def abort(self) -> None:
        """Stop the HTTP call in flight, and refuse any further one.

        The waiting thread gets :class:`RefreshAborted` at once.
        """
        self._aborted = True
        wake = self._wake
        if wake is not None:
            wake.set()

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> ReadResponse:
        """Make an HTTP request from a thread, and wait for its response.

        Args:
            url (str): The URL.
            method (str): The HTTP method.
            body (Optional[bytes]): The body.
            headers (Optional[Mapping[str, str]]): Request headers.
            timeout (Optional[float]): Seconds the request may take; 180 if None.
            kwargs: Passed to :class:`google_auth_aiohttp.Request`.

        Returns:
            ReadResponse: The response, body read.

        Raises:
            google.auth.exceptions.TransportError: If the request failed, or the
                event loop is closed or does not answer.
            RefreshAborted: If nobody waits for the call any more.
            RuntimeError: If called on the event loop's own thread, where it
                would block the loop it waits for.

        """
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RuntimeError(
                "Sync credentials tried to make an HTTP request on the event loop's "
                "thread, which would block it; google_auth_aiohttp runs their "
                "refresh in a thread of its own. Refresh them with "
                "`await asyncio.to_thread(credentials.refresh, request)`."
            )
        if self._aborted:
            raise RefreshAborted
        if self._loop.is_closed():
            raise exceptions.TransportError(
                f"Cannot request {safe_url(url)}: the event loop is closed."
            )
        if timeout is None:
            timeout = _DEFAULT_TIMEOUT
        wake = self._wake = threading.Event()
        try:
            future = asyncio.run_coroutine_threadsafe(
                self._fetch(url, method, body, headers, timeout, **kwargs), self._loop
            )
        except RuntimeError as closed:  # the loop closed meanwhile
            raise exceptions.TransportError(
                f"Cannot request {safe_url(url)}: the event loop is closed."
            ) from closed
        future.add_done_callback(lambda _: wake.set())
        # One wait, woken by the answer or by abort(): no polling, so that a
        # thousand waiting threads cost the loop nothing.
        answered = wake.wait(timeout + _LOOP_GRACE)
        if self._aborted or not answered:
            if not self._loop.is_closed():
                future.cancel()  # cancels the HTTP call on the loop
            if self._aborted:
                raise RefreshAborted
            raise exceptions.TransportError(
                f"{method} {safe_url(url)}: the event loop did not answer within "
                f"{timeout + _LOOP_GRACE}s."
            )
        try:
            return future.result()
        except concurrent.futures.CancelledError as caught:
            raise exceptions.TransportError(
                f"{method} {safe_url(url)}: cancelled on the event loop."
            ) from caught

    async def _fetch(
        self,
        url: str,
        method: str,
        body: Any,
        headers: Mapping[str, str] | None,
        timeout: float,
        **kwargs: Any,
    ) -> ReadResponse:
        response = await self._request(
            url, method=method, body=body, headers=headers, timeout=timeout, **kwargs
        )
        data = await response.content()
        return ReadResponse(response.status, response.headers, data)
