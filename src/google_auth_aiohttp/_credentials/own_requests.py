"""Requests that credentials make themselves, which no auth middleware authorizes.

A refresh reaches a token endpoint or a metadata server, often through the
very session whose requests wait for it: an auth middleware on that session
must let it pass as it is, or the refresh would wait on itself. The mark is a
context variable, set where such a call starts (in :class:`Request`, and in a
refresh's own task) and seen by every task and thread the call spawns.

The mark is a :class:`Trail`: where the call's HTTP requests went and what
came back, so that a refresh that stalls or gets a garbled answer can say
which endpoint did it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class Trail:
    """Where a credentials call's HTTP requests went, for its error messages.

    Attributes:
        asking (Optional[str]): The request in flight or last sent, such as
            ``"POST https://oauth2.googleapis.com/token"`` (no query, no
            userinfo).
        answer (Optional[str]): What the last answer was: its request, status
            and content type.
    """

    __slots__ = ("answer", "asking")

    def __init__(self) -> None:
        self.asking: str | None = None
        self.answer: str | None = None

    def where(self) -> str:
        """`` (at POST https://...)``, or nothing if no request was made."""
        return "" if self.asking is None else f" (at {self.asking})"


_trail: ContextVar[Trail | None] = ContextVar(
    "google_auth_aiohttp_credentials_request", default=None
)

#: The trail of the credentials call in progress, or None outside of one
#: (so it also tells whether a request is one credentials make themselves).
current_trail = _trail.get


@contextmanager
def credentials_request() -> Iterator[Trail]:
    """Mark the calls made inside the block as credentials' own."""
    trail = _trail.get()
    if trail is not None:
        yield trail
        return
    trail = Trail()
    token = _trail.set(trail)
    try:
        yield trail
    finally:
        _trail.reset(token)


def mark_task(trail: Trail) -> None:
    """Mark every call of the current task (a refresh's own) as credentials'."""
    _trail.set(trail)
