"""A sync google-auth transport whose requests run on the event loop.

Sync credentials refresh with a blocking ``refresh(request)``. We run that
call in a worker thread and give it a :class:`LoopRequest`: each HTTP call it
makes is handed to the event loop, sent through aiohttp (so the session's
proxy, ``trust_env`` and SSL settings apply), and its result handed back to
the waiting thread. The event loop never blocks and ``requests`` is not needed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Mapping
from typing import Any

from google.auth import exceptions
from google.auth import transport as google_transport

from google_auth_aiohttp._logging import safe_url
from google_auth_aiohttp._transport import _DEFAULT_TIMEOUT, Request

# Beyond the request's own timeout, how long a worker thread waits for the
# event loop to answer before deciding it has gone away.
_LOOP_GRACE = 10.0


class LoopResponse(google_transport.Response):
    """A response read in full, in the form sync credentials expect."""

    __slots__ = ("_data", "_headers", "_status")

    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self._status = status
        self._headers = headers
        self._data = data

    @property
    def status(self) -> int:
        """int: The HTTP status code."""
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        """Mapping[str, str]: The response headers, case-insensitive."""
        return self._headers

    @property
    def data(self) -> bytes:
        """bytes: The body, decoded by its ``Content-Encoding``."""
        return self._data

    def __repr__(self) -> str:
        return f"<LoopResponse [{self._status}]>"


class LoopRequest(google_transport.Request):
    """A sync transport for worker threads that sends through the event loop.

    Args:
        request (google_auth_aiohttp.Request): The async transport to use.
        loop (asyncio.AbstractEventLoop): The loop ``request``'s session runs on.

    """

    __slots__ = ("_loop", "_request")

    def __init__(self, request: Request, loop: asyncio.AbstractEventLoop) -> None:
        self._request = request
        self._loop = loop

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> LoopResponse:
        """Make an HTTP request from a worker thread, and wait for its response.

        Args:
            url (str): The URL.
            method (str): The HTTP method.
            body (Optional[bytes]): The body.
            headers (Optional[Mapping[str, str]]): Request headers.
            timeout (Optional[float]): Seconds the request may take; 180 if None.
            kwargs: Passed to :class:`google_auth_aiohttp.Request`.

        Returns:
            LoopResponse: The response, body read.

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
        if self._loop.is_closed():
            raise exceptions.TransportError(
                f"Cannot request {safe_url(url)}: the event loop is closed."
            )
        if timeout is None:
            timeout = _DEFAULT_TIMEOUT
        future = asyncio.run_coroutine_threadsafe(
            self._fetch(url, method, body, headers, timeout, **kwargs), self._loop
        )
        try:
            return future.result(timeout=timeout + _LOOP_GRACE)
        except concurrent.futures.TimeoutError as caught:
            future.cancel()
            raise exceptions.TransportError(
                f"{method} {safe_url(url)}: the event loop did not answer within "
                f"{timeout + _LOOP_GRACE}s."
            ) from caught

    async def _fetch(
        self,
        url: str,
        method: str,
        body: Any,
        headers: Mapping[str, str] | None,
        timeout: float,
        **kwargs: Any,
    ) -> LoopResponse:
        response = await self._request(
            url, method=method, body=body, headers=headers, timeout=timeout, **kwargs
        )
        data = await response.content()
        return LoopResponse(response.status, response.headers, data)
