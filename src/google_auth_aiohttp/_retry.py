""":class:`Retry`: which failures to send again, and how long to wait first.

Retries are off unless asked for (google-auth's sessions have none). They are
a middleware of their own, :class:`RetryMiddleware`, ahead of the auth flow:
each attempt goes through the whole flow again, refreshes included.
``AuthorizedSession`` puts one first in the chain of a call that has a
policy; on a plain session it goes before ``AuthMiddleware``.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Collection
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import ClientHandlerType, ClientRequest, ClientResponse

from google_auth_aiohttp._auth.origin import drop_blanks
from google_auth_aiohttp._body import can_resend
from google_auth_aiohttp._checks import methods, seconds, statuses
from google_auth_aiohttp._logging import LOGGER, safe_url

#: Failures that mean the request may not have reached the server, or the
#: connection broke: sending again is as safe as for a transient status.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
)


@dataclass(frozen=True)
class Retry:
    """Opt-in retries of transient failures, with exponential backoff.

    A request is sent again when its response has one of ``statuses`` or it
    failed with a connection error, if its method is one of ``methods`` and its
    body can be sent twice. Before each new attempt it waits a random time
    between 0 and ``min(maximum, initial * multiplier ** n)`` ("full jitter"),
    or what the server's ``Retry-After`` asks if that is longer (but never more
    than ``maximum``), and never past
    the call's ``max_allowed_time``: then the last response is returned::

        import google.auth
        from google_auth_aiohttp import AuthorizedSession, Retry

        credentials, _ = google.auth.default()
        url = "https://pubsub.googleapis.com/v1/projects/p/topics/t:publish"
        body = {"messages": [{"data": "aGk="}]}
        async with AuthorizedSession(credentials, retry=Retry()) as session:
            # POST is not retried by default; this call asks for it.
            async with session.post(
                url, json=body, retry=Retry(methods=("POST",))
            ) as response:
                response.raise_for_status()

    Args:
        attempts (int): How many times a request may be sent in all.
        initial (float): The first backoff ceiling, in seconds.
        maximum (float): The largest backoff ceiling, in seconds.
        multiplier (float): How much the ceiling grows after each attempt.
        statuses (Collection[int]): Statuses worth another attempt.
        methods (Collection[str]): Methods that may be sent again: by default
            the idempotent ones.

    Raises:
        TypeError: If ``attempts`` is not an int, a time not a number, or
            ``statuses`` or ``methods`` not a collection of ints or strs (a
            single str is refused: ``"GET"`` is no collection of methods).
        ValueError: If ``attempts`` is below 1, or a time or the multiplier is
            negative, NaN or infinite.
    """

    attempts: int = 3
    initial: float = 1.0
    maximum: float = 60.0
    multiplier: float = 2.0
    statuses: Collection[int] = field(default=(408, 429, 500, 502, 503, 504))
    methods: Collection[str] = field(
        default=("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
    )

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise TypeError(
                "Retry(attempts=...) must be an int, not "
                f"{type(self.attempts).__name__}."
            )
        if self.attempts < 1:
            raise ValueError(
                f"Retry(attempts=...) must be 1 or more, not {self.attempts}."
            )
        for name in ("initial", "maximum", "multiplier"):
            seconds(f"Retry({name}=...)", getattr(self, name))
        # Frozen: set the normalized forms through object.__setattr__.
        object.__setattr__(
            self, "statuses", statuses("Retry(statuses=...)", self.statuses)
        )
        object.__setattr__(self, "methods", methods("Retry(methods=...)", self.methods))

    def backoff(self, retry_number: int, retry_after: str | None = None) -> float:
        """Return how long to wait before retry number ``retry_number`` (from 0).

        Args:
            retry_number (int): How many retries came before this one.
            retry_after (Optional[str]): The response's ``Retry-After`` header:
                seconds, or an HTTP date; honoured up to ``maximum``.

        Returns:
            float: Seconds to wait.
        """
        delay = random.uniform(0, self._ceiling(retry_number))
        asked = _parse_retry_after(retry_after)
        # A server's ask is honoured up to the policy's ceiling, as urllib3
        # caps it: "Retry-After: 86400" must not park a caller for a day.
        return delay if asked is None else min(max(delay, asked), self.maximum)

    def _ceiling(self, retry_number: int) -> float:
        """``min(maximum, initial * multiplier ** retry_number)``, never overflowing."""
        if self.multiplier <= 1:
            return min(self.maximum, self.initial * self.multiplier**retry_number)
        # Grow step by step up to the maximum: the power itself overflows a
        # float within ~1,000 retries.
        ceiling = self.initial
        for _ in range(retry_number):
            if ceiling >= self.maximum or ceiling == 0:
                break
            ceiling *= self.multiplier
        return min(self.maximum, ceiling)


def _parse_retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for, or None if it is not valid.

    RFC 9110 allows delay-seconds (digits only) or an HTTP-date: "inf",
    "nan", "1e999" or "1_0", which ``float()`` accepts, are not delays.
    """
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def check_retry(retry: Any) -> Retry | None:
    """Return ``retry`` if it is a :class:`Retry` or None; raise TypeError if not."""
    if retry is not None and not isinstance(retry, Retry):
        raise TypeError(
            f"retry must be a google_auth_aiohttp.Retry, not {type(retry).__name__}."
        )
    return retry


class RetryMiddleware:
    """An aiohttp client middleware that sends requests again after transient failures.

    Put it before :class:`~google_auth_aiohttp.AuthMiddleware`, so that each
    attempt is authorized (and refreshed) again::

        import aiohttp
        import google.auth
        from google_auth_aiohttp import AuthMiddleware, Retry, RetryMiddleware

        credentials, _ = google.auth.default()
        middlewares = [RetryMiddleware(Retry()), AuthMiddleware(credentials)]
        async with aiohttp.ClientSession(middlewares=middlewares) as session:
            ...

    ``AuthorizedSession(retry=...)`` builds the same chain for each call.

    Args:
        retry (Optional[Retry]): The policy; ``Retry()`` by default.

    Raises:
        TypeError: If ``retry`` is not a :class:`Retry`.
    """

    __slots__ = ("_deadline", "retry")

    def __init__(self, retry: Retry | None = None) -> None:
        self.retry = check_retry(retry) or Retry()
        self._deadline: float | None = None

    @classmethod
    def _until(cls, retry: Retry, deadline: float | None) -> RetryMiddleware:
        """One for a call that must end at ``deadline``, in ``loop.time()``."""
        middleware = cls(retry)
        middleware._deadline = deadline
        return middleware

    def __call__(
        self, request: ClientRequest, handler: ClientHandlerType
    ) -> Awaitable[ClientResponse]:
        """Send ``request`` through the rest of the chain, again if it failed."""
        return send_with_retries(request, handler, self.retry, self._deadline)


async def send_with_retries(
    request: ClientRequest,
    send: ClientHandlerType,
    retry: Retry,
    deadline: float | None,
) -> ClientResponse:
    """``send(request)``, again after transient failures, as ``retry`` allows.

    Args:
        request (aiohttp.ClientRequest): The request to send.
        send (Callable): Sends it once (the rest of the chain).
        retry (Retry): The policy.
        deadline (Optional[float]): When the call must end, in
            ``loop.time()``: an attempt that would start after it is not made,
            and the last response is returned (or the last error raised).

    Returns:
        aiohttp.ClientResponse: The last response.
    """
    if request.method not in retry.methods:
        return await send(request)
    loop = asyncio.get_running_loop()
    number = 0
    while True:
        last = number + 1 >= retry.attempts
        try:
            response = await send(request)
        except RETRYABLE_ERRORS as error:
            if last or not can_resend(request, type(error).__name__):
                raise
            delay = retry.backoff(number)
            if deadline is not None and loop.time() + delay >= deadline:
                raise
            reason = type(error).__name__
        else:
            if (
                response.status not in retry.statuses
                or last
                or not can_resend(request, response.status)
            ):
                return response
            delay = retry.backoff(number, response.headers.get("Retry-After"))
            if deadline is not None and loop.time() + delay >= deadline:
                return response  # another attempt would end past the deadline
            response.release()
            reason = str(response.status)
        LOGGER.debug(
            "Retrying %s %s in %.2fs after %s (attempt %d of %d).",
            request.method,
            safe_url(request.url),
            delay,
            reason,
            number + 2,
            retry.attempts,
        )
        await asyncio.sleep(delay)
        # The auth layer blanked the secrets of the attempt that went out;
        # credentials assigned meanwhile may add other ones: no blank goes.
        drop_blanks(request.headers)
        number += 1


#: The code of the retry layer's frames, which ``AuthMiddleware`` sees between
#: itself and aiohttp's chain start and passes over: the layer sends the
#: request it was given, unchanged.
RETRY_LAYER_CODES = frozenset((id(send_with_retries.__code__),))
