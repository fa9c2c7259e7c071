""":class:`Retry`: which failures to send again, and how long to wait first.

Retries are off unless asked for (google-auth's sessions have none). The auth
flow in :mod:`google_auth_aiohttp._middleware` applies the policy; this module
only decides.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Collection
from dataclasses import dataclass, field

import aiohttp

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
    or what the server's ``Retry-After`` asks if that is longer, and never past
    the call's ``max_allowed_time``: then the last response is returned::

        from google_auth_aiohttp import AuthorizedSession, Retry

        async with AuthorizedSession(credentials, retry=Retry()) as session:
            ...
            await session.post(url, json=body, retry=Retry(methods=("POST",)))

    Args:
        attempts (int): How many times a request may be sent in all.
        initial (float): The first backoff ceiling, in seconds.
        maximum (float): The largest backoff ceiling, in seconds.
        multiplier (float): How much the ceiling grows after each attempt.
        statuses (Collection[int]): Statuses worth another attempt.
        methods (Collection[str]): Methods that may be sent again: by default
            the idempotent ones.

    Raises:
        ValueError: If ``attempts`` is below 1 or a time is negative.
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
        if self.attempts < 1:
            raise ValueError(
                f"Retry(attempts=...) must be 1 or more, not {self.attempts}."
            )
        if self.initial < 0 or self.maximum < 0 or self.multiplier < 0:
            raise ValueError(
                "Retry's initial, maximum and multiplier must be 0 or more."
            )
        # Frozen: set the normalized forms through object.__setattr__.
        object.__setattr__(self, "statuses", frozenset(self.statuses))
        object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))

    def backoff(self, retry_number: int, retry_after: str | None = None) -> float:
        """Return how long to wait before retry number ``retry_number`` (from 0).

        Args:
            retry_number (int): How many retries came before this one.
            retry_after (Optional[str]): The response's ``Retry-After`` header:
                seconds, or an HTTP date.

        Returns:
            float: Seconds to wait.
        """
        ceiling = min(self.maximum, self.initial * self.multiplier**retry_number)
        delay = random.uniform(0, ceiling)
        asked = _parse_retry_after(retry_after)
        return delay if asked is None else max(delay, asked)


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
