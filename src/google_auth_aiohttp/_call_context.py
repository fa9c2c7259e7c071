"""What the auth flow knows about the call in progress, in one context variable.

Three things travel with a call, in the task that makes it: whether
credentials are making it (to reach a token endpoint, unauthorized), an
:class:`~google_auth_aiohttp.AuthorizedSession` call's own options (retry and
deadline), and a redirect the flow has just seen (so that it recognises the
next hop). They share one :class:`~contextvars.ContextVar`, which holds None
for an ordinary call: the steady state reads it once.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass, replace
from typing import Any

from yarl import URL

from google_auth_aiohttp._retry import Retry


@dataclass(frozen=True, slots=True)
class CallOptions:
    """What one AuthorizedSession call asks of the flow beyond the session's."""

    retry: Retry | None  # None: the session's
    deadline: float | None  # loop.time() when max_allowed_time runs out


@dataclass(frozen=True, slots=True)
class CallContext:
    """The state of the call in progress; see the module's docstring."""

    credentials_request: bool = False
    options: CallOptions | None = None
    # The next hop of a redirect, without its query, and the origin the
    # caller asked for. aiohttp follows a redirect in the same task.
    pending_redirect: tuple[URL, URL] | None = None


_EMPTY = CallContext()

_call_context: ContextVar[CallContext | None] = ContextVar(
    "google_auth_aiohttp_call_context", default=None
)

#: Return the current :class:`CallContext`, or None for an ordinary call.
#: Bound once: ``ContextVar.get`` looked up on every call makes a method object.
current = _call_context.get


def change(**fields: Any) -> Token[CallContext | None]:
    """Set ``fields`` of the current context; :func:`restore` undoes it."""
    return _call_context.set(replace(current() or _EMPTY, **fields))


def restore(token: Token[CallContext | None]) -> None:
    """Put back the context :func:`change` replaced."""
    _call_context.reset(token)
