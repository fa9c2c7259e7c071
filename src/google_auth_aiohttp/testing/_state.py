"""What the emulated services share: the tokens issued, and what tests control.

:class:`Tokens` is the ledger every service writes to and the API reads: each
token issued, its lifetime, its revocation. :class:`Endpoint` is what a test
controls of a family of endpoints, written once for all of them: a request
counter, a :class:`Gate` and a delay, applied by :meth:`Endpoint.admit`.
:class:`TokenKnobs` adds the failures the token endpoints inject (an OAuth
error, a foreign body), :class:`CertsKnobs` those of the certificate endpoints
(a status, a ``max-age``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass
class IssuedToken:
    """An access token the emulator issued."""

    subject: str
    scopes: tuple[str, ...]
    expires_at: float  # time.monotonic() deadline
    revoked: bool = False


class Gate:
    """Holds an endpoint's requests while closed; counts and announces arrivals.

    Tests synchronise on it instead of sleeping: ``close()`` holds every
    request that arrives from then on (a stalled endpoint); ``open()`` lets
    them go on, or with ``release_held=False`` leaves those already held
    waiting for ever (lost requests) while new ones pass; ``await
    arrived(n)`` returns once ``n`` requests have arrived in all::

        google.token_gate.close()
        task = asyncio.create_task(session.get(url))
        await google.token_gate.arrived(1)  # the token request is held
        ...
        google.token_gate.open()

    Use it from the event loop the emulator runs on.

    Attributes:
        arrivals (int): Requests that reached the endpoint, held or not.
        held (int): Requests held now.
    """

    def __init__(self) -> None:
        self.arrivals = 0
        self.held = 0
        self._closed: asyncio.Event | None = None
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def closed(self) -> bool:
        """bool: Whether arriving requests are held."""
        return self._closed is not None

    def close(self) -> None:
        """Hold every request that arrives from now on."""
        if self._closed is None:
            self._closed = asyncio.Event()

    def open(self, *, release_held: bool = True) -> None:
        """Let requests through again.

        Args:
            release_held (bool): Whether the requests held so far go on too;
                if False they stay held until the emulator closes, as requests
                a network lost do.
        """
        if self._closed is not None and release_held:
            self._closed.set()
        self._closed = None

    async def arrived(self, count: int) -> None:
        """Return once ``count`` requests have arrived in all.

        Args:
            count (int): Arrivals to wait for, counted since the emulator started.
        """
        if self.arrivals >= count:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append((count, waiter))
        await waiter

    async def pass_through(self) -> None:
        """Count one arrival, and wait while the gate is closed."""
        self.arrivals += 1
        still = []
        for count, waiter in self._waiting:
            if self.arrivals >= count:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still.append((count, waiter))
        self._waiting = still
        closed = self._closed
        if closed is not None:
            self.held += 1
            try:
                await closed.wait()
            finally:
                self.held -= 1


class Tokens:
    """Every token the emulator issued, and whether it is still good.

    Args:
        lifetime (int): The ``expires_in`` of the access tokens issued, and
            the default lifetime of ID tokens; may be changed at any time.
    """

    def __init__(self, lifetime: int) -> None:
        self.lifetime = lifetime
        self.issued: dict[str, IssuedToken] = {}

    def issue(self, subject: str, scopes: tuple[str, ...]) -> dict[str, Any]:
        """Issue an access token, and return it as a token endpoint answers."""
        token = secrets.token_urlsafe(32)
        self.record(token, subject, scopes, self.lifetime)
        return {
            "access_token": token,
            "expires_in": self.lifetime,
            "token_type": "Bearer",
            "scope": " ".join(scopes),
        }

    def record(
        self, token: str, subject: str, scopes: tuple[str, ...], lifetime: int
    ) -> None:
        """Note a token made elsewhere (an ID token), good for ``lifetime`` s."""
        self.issued[token] = IssuedToken(
            subject=subject, scopes=scopes, expires_at=time.monotonic() + lifetime
        )

    def subject(self, token: str) -> str | None:
        """Who a token was issued to, if it is issued, unexpired and not revoked."""
        issued = self.issued.get(token)
        if issued is None or issued.revoked or time.monotonic() >= issued.expires_at:
            return None
        return issued.subject

    def revoke(self, token: str) -> None:
        """Revoke one token issued."""
        self.issued[token].revoked = True

    def revoke_all(self) -> None:
        """Revoke every token issued so far."""
        for token in self.issued.values():
            token.revoked = True


class Endpoint:
    """What a test controls of a family of endpoints: a counter, a gate, a delay."""

    def __init__(self) -> None:
        self.requests = 0
        self.gate = Gate()
        self.delay = 0.0

    async def admit(self) -> None:
        """Count a request, hold it while the gate is closed, then delay it."""
        self.requests += 1
        await self.gate.pass_through()
        if self.delay:
            await asyncio.sleep(self.delay)


class TokenKnobs(Endpoint):
    """The token endpoints' knobs (OAuth, STS, IAM and the metadata server's).

    Attributes:
        error (Optional[str]): An OAuth error code to refuse every request with.
        body (Optional[Tuple[str, bytes]]): A content type and body to answer
            200 with instead of a token.
    """

    def __init__(self) -> None:
        super().__init__()
        self.error: str | None = None
        self.body: tuple[str, bytes] | None = None

    async def refusal(self, *, oauth: bool = True) -> web.Response | None:
        """Admit a token request; return what to answer instead, if anything.

        Args:
            oauth (bool): Whether the endpoint speaks OAuth; the metadata
                server has no OAuth errors, and answers 500 instead.
        """
        await self.admit()
        if self.body is not None:
            content_type, body = self.body
            return web.Response(body=body, headers={"Content-Type": content_type})
        if self.error is not None:
            if not oauth:
                return web.Response(status=500, text=self.error)
            return oauth_error(self.error, "Refused by the emulator.")
        return None


class CertsKnobs(Endpoint):
    """The certificate endpoints' knobs.

    Attributes:
        max_age (Optional[int]): The ``max-age`` sent; None sends no
            ``Cache-Control``.
        status (int): The status to answer; anything but 200 comes with an
            error body and no keys.
    """

    def __init__(self) -> None:
        super().__init__()
        self.max_age: int | None = 3600
        self.status = 200

    async def refusal(self) -> web.Response | None:
        """Admit a request for keys; return what to answer instead, if anything."""
        await self.admit()
        if self.status != 200:
            return web.json_response(
                {"error": {"code": self.status}}, status=self.status
            )
        return None

    def headers(self) -> dict[str, str]:
        """The headers of an answer with keys."""
        if self.max_age is None:
            return {}
        return {"Cache-Control": f"public, max-age={self.max_age}"}


def oauth_error(error: str, description: str) -> web.Response:
    """An OAuth 2.0 error response (RFC 6749, 5.2)."""
    return web.json_response(
        {"error": error, "error_description": description}, status=400
    )
