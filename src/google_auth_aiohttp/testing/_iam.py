"""IAM credentials: access and ID tokens of an impersonated service account.

``POST /v1/projects/-/serviceAccounts/EMAIL:generateAccessToken`` and
``...:generateIdToken``, for a caller whose bearer token the API would accept.
Its requests count as the token endpoint's and obey its knobs.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from aiohttp import web

from ._certs import Certs
from ._state import TokenKnobs, Tokens

PATH = "/v1/projects/-/serviceAccounts/{name}"


class Iam:
    """The IAM credentials API.

    Args:
        caller (Callable[[web.Request], Optional[str]]): Who a request's bearer
            token belongs to, if it is good.
    """

    def __init__(
        self,
        caller: Callable[[web.Request], str | None],
        knobs: TokenKnobs,
        tokens: Tokens,
        certs: Certs,
    ) -> None:
        self._caller = caller
        self._knobs = knobs
        self._tokens = tokens
        self._certs = certs

    async def generate(self, request: web.Request) -> web.Response:
        """``POST .../serviceAccounts/EMAIL:generateAccessToken`` (or ``IdToken``)."""
        refused = await self._knobs.refusal()
        if refused is not None:
            return refused
        target, _, verb = request.match_info["name"].partition(":")
        if verb not in ("generateAccessToken", "generateIdToken"):
            return web.json_response({"error": {"code": 404}}, status=404)
        if self._caller(request) is None:
            return web.json_response(
                {"error": {"code": 401, "status": "UNAUTHENTICATED"}}, status=401
            )
        body = await request.json()
        if verb == "generateIdToken":
            return web.json_response(
                {"token": self._certs.id_token(body["audience"], email=target)}
            )
        issued = self._tokens.issue(target, tuple(body.get("scope", ())))
        expire_time = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
            seconds=self._tokens.lifetime
        )
        return web.json_response(
            {
                "accessToken": issued["access_token"],
                "expireTime": expire_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
