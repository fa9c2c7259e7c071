"""The OAuth 2.0 token endpoint (``/token``), as ``oauth2.googleapis.com`` is.

It grants a JWT assertion signed by a service-account key of :class:`Accounts`
(an access token, or an ID token when the assertion asks for a
``target_audience``), and a refresh token of one of its OAuth clients, whose
client authenticates in the form or by HTTP Basic.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from aiohttp import web

from ._accounts import Accounts
from ._certs import Certs
from ._state import TokenKnobs, Tokens, oauth_error

PATH = "/token"
_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_REFRESH_TOKEN = "refresh_token"
# google-auth addresses service-account assertions to Google's token endpoint
# whatever the key's token_uri; Google accepts that audience, and so do we.
_GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


class OAuth2:
    """The token endpoint.

    Args:
        token_uri (Callable[[], str]): This endpoint's URL, once it serves:
            the audience its assertions must name (or Google's).
    """

    def __init__(
        self,
        token_uri: Callable[[], str],
        knobs: TokenKnobs,
        tokens: Tokens,
        accounts: Accounts,
        certs: Certs,
    ) -> None:
        self._token_uri = token_uri
        self._knobs = knobs
        self._tokens = tokens
        self._accounts = accounts
        self._certs = certs

    async def token(self, request: web.Request) -> web.Response:
        """``POST /token``: grant an assertion or a refresh token."""
        refused = await self._knobs.refusal()
        if refused is not None:
            return refused
        form = await request.post()
        grant_type = form.get("grant_type")
        if grant_type == _JWT_BEARER:
            try:
                claims = self._accounts.verify(
                    str(form.get("assertion", "")),
                    audience=[self._token_uri(), _GOOGLE_TOKEN_AUDIENCE],
                )
            except ValueError as caught:
                return oauth_error("invalid_grant", str(caught))
            subject, scope = str(claims["iss"]), str(claims.get("scope", ""))
            if "target_audience" in claims:  # an ID token is asked for
                return web.json_response(
                    {
                        "id_token": self._certs.id_token(
                            claims["target_audience"], email=subject
                        )
                    }
                )
        elif grant_type == _REFRESH_TOKEN:
            client_id, secret = form.get("client_id"), form.get("client_secret")
            if client_id is None:  # client authentication by HTTP Basic
                basic = request.headers.get("Authorization", "").removeprefix("Basic ")
                client_id, _, secret = base64.b64decode(basic).decode().partition(":")
            client = self._accounts.clients.get(str(client_id))
            if client is None or client.secret != secret:
                return oauth_error("invalid_client", "Unknown OAuth client.")
            if client.refresh_token != form.get("refresh_token"):
                return oauth_error("invalid_grant", "Bad refresh token.")
            subject, scope = client.subject, str(form.get("scope", ""))
        else:
            return oauth_error("unsupported_grant_type", f"{grant_type!r}")
        return web.json_response(self._tokens.issue(subject, tuple(scope.split())))
