"""Sync credentials' blocking calls, in threads of our own, with HTTP on the loop.

Sync credentials refresh with a blocking ``refresh(request)``. We run that
call in a worker thread (:func:`in_worker_thread`) and give it a
:class:`LoopRequest`: each HTTP call it makes is handed to the event loop, sent
through aiohttp (so the session's proxy, ``trust_env`` and SSL settings
apply), and its result handed back to the waiting thread. The event loop
never blocks and ``requests`` is not needed.

The threads are the library's own, a few at most and named
``google-auth-aiohttp-N``, never the loop's default executor: a stalled token
endpoint cannot starve aiohttp's DNS resolution or ``asyncio.to_thread``.
When the awaiting coroutine is cancelled (a ``refresh_timeout``, every caller
gone, the loop shutting down), the thread's HTTP call is cancelled on the loop
and the thread returns within a second; so it does when the loop closes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
import time
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

# Beyond the request's own timeout, how long a worker thread waits for the
# event loop to answer before deciding it has gone away.
_LOOP_GRACE = 10.0

#: How often a waiting worker thread checks whether it should stop waiting.
_CHECK_EVERY = 0.1

#: Worker threads at most: refreshes are rare and brief, and a stalled endpoint
#: must not make more of them wait than this.
MAX_WORKERS = 4

_T = TypeVar("_T")
_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _worker_executor() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=MAX_WORKERS, thread_name_prefix="google-auth-aiohttp"
            )
        return _executor


async def in_worker_thread(
    function: Callable[..., _T],
    *args: Any,
    loop_request: LoopRequest | None = None,
) -> _T:
    """Run ``function(*args)`` in one of the library's worker threads.

    Args:
        function (Callable): A blocking call, such as ``credentials.refresh``.
        args: Its arguments.
        loop_request (Optional[LoopRequest]): The transport ``function`` sends
            HTTP through; if this coroutine is cancelled, it is aborted, and the
            thread returns instead of waiting for an answer.

    Returns:
        Any: What ``function`` returned.
    """
    loop = asyncio.get_running_loop()
    call = contextvars.copy_context().run
    try:
        return await loop.run_in_executor(_worker_executor(), call, function, *args)
    except asyncio.CancelledError:
        if loop_request is not None:
            loop_request.abort()
        raise


class LoopRequest(google_transport.Request):
    """A sync transport for worker threads that sends through the event loop.

    Args:
        request (Union[Request, AioTransport]): The async transport to use.
        loop (asyncio.AbstractEventLoop): The loop ``request``'s session runs on.

    """

    __slots__ = ("_aborted", "_loop", "_request")

    def __init__(
        self, request: Request | AioTransport, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._request = request
        self._loop = loop
        self._aborted = threading.Event()

    def abort(self) -> None:
        """Stop the HTTP call in flight, and refuse any further one.

        The waiting thread gets :class:`google.auth.exceptions.TransportError`
        within a fraction of a second.
        """
        self._aborted.set()

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> ReadResponse:
        """Make an HTTP request from a worker thread, and wait for its response.

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
                "refresh in a worker thread. Refresh them with "
                "`await asyncio.to_thread(credentials.refresh, request)`."
            )
        if self._aborted.is_set():
            raise exceptions.TransportError(
                f"Cannot request {safe_url(url)}: the refresh was cancelled."
            )
        if self._loop.is_closed():
            raise exceptions.TransportError(
                f"Cannot request {safe_url(url)}: the event loop is closed."
            )
        if timeout is None:
            timeout = _DEFAULT_TIMEOUT
        future = asyncio.run_coroutine_threadsafe(
            self._fetch(url, method, body, headers, timeout, **kwargs), self._loop
        )
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        give_up_at = time.monotonic() + timeout + _LOOP_GRACE
        while not done.wait(_CHECK_EVERY):
            if self._aborted.is_set():
                why = "the refresh was cancelled"
            elif self._loop.is_closed():
                why = "the event loop closed"
            elif time.monotonic() > give_up_at:
                why = f"the event loop did not answer within {timeout + _LOOP_GRACE}s"
            else:
                continue
            if not self._loop.is_closed():
                future.cancel()  # cancels the HTTP call on the loop
            raise exceptions.TransportError(f"{method} {safe_url(url)}: {why}.")
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
