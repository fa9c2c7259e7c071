"""The protected API (``/api/...``): it echoes requests that carry a good token.

A good token is a bearer token the emulator issued, unexpired and not
revoked, or a self-signed JWT (AIP-4111) of one of its service-account keys,
addressed to this host or, scoped, to no one. IAM checks its callers by the
same rule (:meth:`Api.caller`).
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Callable

from aiohttp import web

from ._accounts import Accounts
from ._state import Tokens

PATH = "/api/{tail:.*}"


class Api:
    """The API, and who its callers are.

    Args:
        url (Callable[[], str]): The emulator's base URL, once it serves: the
            audience self-signed JWTs must name.

    Attributes:
        requests (int): API requests received, authorized or not.
    """

    def __init__(
        self, url: Callable[[], str], tokens: Tokens, accounts: Accounts
    ) -> None:
        self._url = url
        self._tokens = tokens
        self._accounts = accounts
        self.requests = 0

    def caller(self, request: web.Request) -> str | None:
        """Return who the request's bearer token belongs to, if it is good."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        if token in self._tokens.issued:
            return self._tokens.subject(token)
        try:
            claims = self._accounts.verify(token, audience=None)
        except ValueError:
            return None
        # Addressed to this host (as https://host/, when a session's default_host
        # is this emulator), or, for scoped self-signed JWTs, to no one.
        audience = str(claims.get("aud", ""))
        url = self._url()
        https_url = url.replace("http://", "https://", 1)
        if not (
            audience.startswith((url, https_url))
            or ("aud" not in claims and "scope" in claims)
        ):
            return None
        return str(claims["iss"])

    async def echo(self, request: web.Request) -> web.StreamResponse:
        """Any method on ``/api/...``: the request as JSON, shaped by its query."""
        self.requests += 1
        body = await request.read()
        subject = self.caller(request)
        if subject is None:
            return web.json_response(
                {"error": {"code": 401, "status": "UNAUTHENTICATED"}},
                status=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        query = request.query
        if "delay" in query:
            await asyncio.sleep(float(query["delay"]))
        if "redirect" in query:
            return web.Response(
                status=int(query.get("redirect_status", 302)),
                headers={"Location": query["redirect"]},
            )
        payload = {
            "method": request.method,
            "path": request.path,
            "query": dict(query),
            "subject": subject,
            "headers": {
                name.lower(): value
                for name, value in request.headers.items()
                if name.lower() != "authorization"
            },
            "body": body.decode("utf-8", "replace"),
        }
        status = int(query.get("status", 200))
        data = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        if query.get("gzip") == "1":
            data = gzip.compress(data)
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=data, status=status, headers=headers)
