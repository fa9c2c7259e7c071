"""Requests that credentials make themselves, which no auth middleware authorizes.

A refresh reaches a token endpoint or a metadata server, often through the
very session whose requests wait for it: an auth middleware on that session
must let it pass as it is, or the refresh would wait on itself. The mark is a
context variable, set where such a call starts (in :class:`Request`, and in a
refresh's own task) and seen by every task the call spawns.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_making: ContextVar[bool] = ContextVar(
    "google_auth_aiohttp_credentials_request", default=False
)

#: Return whether the call in progress is one credentials make themselves.
is_credentials_request = _making.get


@contextmanager
def credentials_request() -> Iterator[None]:
    """Mark the calls made inside the block as credentials' own."""
    token = _making.set(True)
    try:
        yield
    finally:
        _making.reset(token)


def mark_task() -> None:
    """Mark every call of the current task (a refresh's own) as credentials'."""
    _making.set(True)
