""":class:`AuthMiddleware`: the auth flow on a plain ``aiohttp.ClientSession``.

A middleware a user installs sees each request, but not the call it belongs
to: aiohttp runs it again for every redirect hop, with a request built from
the server's ``Location``. To tell a hop from the caller's own next request,
it keeps, for each call that got a redirect, the origin its first request
went to. Calls are known by the object aiohttp shares between the requests of
one call (:func:`~google_auth_aiohttp._private.call_of`), not by
URLs, and the note lives as long as the call's redirect responses.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Collection
from typing import Any

from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from yarl import URL

from google_auth_aiohttp._flow import (
    DEFAULT_MAX_REFRESH_ATTEMPTS,
    DEFAULT_REFRESH_STATUS_CODES,
    AuthFlow,
)
from google_auth_aiohttp._private import call_of
from google_auth_aiohttp._retry import Retry

__all__ = [
    "DEFAULT_MAX_REFRESH_ATTEMPTS",
    "DEFAULT_REFRESH_STATUS_CODES",
    "AuthMiddleware",
]


class AuthMiddleware:
    """An aiohttp client middleware that authorizes requests with credentials.

    It gives a plain :class:`aiohttp.ClientSession` what
    :class:`AuthorizedSession` does::

        import aiohttp
        from google_auth_aiohttp import AuthMiddleware

        auth = AuthMiddleware(credentials)
        async with aiohttp.ClientSession(middlewares=[auth]) as session:
            async with session.get(url) as response:
                ...

    The credentials' headers go to the origin of the first request of each
    call that reaches this middleware (the URL the caller passed, unless a
    middleware before it changed it), and never to another origin a server
    redirects that call to. Token requests go through the session that made
    the request (its connector, proxy and SSL settings, and its other
    middlewares), unless ``auth_request`` is given; this middleware lets them
    pass unauthorized.

    Args:
        credentials (Any): google-auth credentials of any family.
        refresh_status_codes (Collection[int]): Statuses that make the
            credentials refresh and the request be sent again.
        max_refresh_attempts (int): How many times a request is sent again
            after a refresh.
        refresh_timeout (Optional[float]): Seconds a refresh may take.
        auth_request (Optional[Callable]): The transport refreshes use, for
            example a :class:`google_auth_aiohttp.Request`.
        retry (Optional[Retry]): Retries of transient failures; none by default.

    Raises:
        TypeError: If ``credentials`` are not google-auth credentials.
        ValueError: If ``max_refresh_attempts`` or ``refresh_timeout`` is
            negative, NaN or infinite.

    """

    __slots__ = ("_flow", "_redirected", "_retry")

    def __init__(
        self,
        credentials: Any,
        *,
        refresh_status_codes: Collection[int] = DEFAULT_REFRESH_STATUS_CODES,
        max_refresh_attempts: int = DEFAULT_MAX_REFRESH_ATTEMPTS,
        refresh_timeout: float | None = None,
        auth_request: Any = None,
        retry: Retry | None = None,
    ) -> None:
        self._flow = AuthFlow(
            credentials,
            refresh_status_codes=refresh_status_codes,
            max_refresh_attempts=max_refresh_attempts,
            refresh_timeout=refresh_timeout,
            auth_request=auth_request,
        )
        self._retry = check_retry(retry)
        self._redirected = _RedirectedCalls()

    @property
    def credentials(self) -> Any:
        """The credentials this middleware authorizes requests with; assignable.

        Requests made after an assignment use the new credentials, and share
        refreshes with every other user of those.
        """
        return self._flow.credentials

    @credentials.setter
    def credentials(self, credentials: Any) -> None:
        self._flow.credentials = credentials

    def __call__(
        self, request: ClientRequest, handler: ClientHandlerType
    ) -> Awaitable[ClientResponse]:
        """Authorize ``request``, send it, and refresh and re-send it if rejected.

        Args:
            request (aiohttp.ClientRequest): The request, as aiohttp passes it.
            handler (Callable): The rest of aiohttp's chain, which sends it.

        Returns:
            Awaitable[aiohttp.ClientResponse]: The response, after any refresh.
        """
        redirected = self._redirected
        # A call's first request, unless a redirect of this call was noted.
        asked_origin = redirected.asked_origin(request) if redirected else None
        return self._flow.send(
            request, handler, asked_origin, self._retry, None, redirected
        )


def check_retry(retry: Any) -> Retry | None:
    """Return ``retry`` if it is a :class:`Retry` or None; raise TypeError if not."""
    if retry is not None and not isinstance(retry, Retry):
        raise TypeError(
            f"retry must be a google_auth_aiohttp.Retry, not {type(retry).__name__}."
        )
    return retry


class _RedirectedCalls(dict[int, "_Note"]):
    """The origins asked for by the calls that got a redirect, by call id.

    A call's note is made when one of its requests is answered with a
    redirect, and kept while any such response of the call lives: while
    aiohttp follows a redirect the response sits in the call's history, so
    the note outlives the call's last hop. A note holds its call's object, so
    no other call can take that object's id meanwhile. Empty, it is false:
    the usual case, with no redirect in flight, costs one test.
    """

    __slots__ = ()

    def asked_origin(self, request: ClientRequest) -> URL | None:
        """The origin ``request``'s call asked for, or None for a call's first."""
        note = self.get(id(call_of(request)))
        return None if note is None else note.origin

    def add(
        self, request: ClientRequest, response: ClientResponse, asked: URL | None
    ) -> None:
        """See :meth:`~google_auth_aiohttp._flow.RedirectNotes.add`."""
        call = call_of(request)
        note = self.get(id(call))
        if note is None:
            note = self[id(call)] = _Note(call, asked or request.url.origin())
        note.responses += 1
        weakref.finalize(response, self._release, id(call), note)

    def _release(self, key: int, note: _Note) -> None:
        note.responses -= 1
        if not note.responses and self.get(key) is note:
            del self[key]


class _Note:
    """A call, the origin it asked for, and how many redirects of it live."""

    __slots__ = ("call", "origin", "responses")

    def __init__(self, call: Any, origin: URL) -> None:
        self.call = call
        self.origin = origin
        self.responses = 0
