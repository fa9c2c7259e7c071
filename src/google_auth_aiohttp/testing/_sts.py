"""The Security Token Service (``/v1/token``), for workload identity federation.

It exchanges a subject token for an access token (RFC 8693): a token of the
external identity provider it made (:meth:`Sts.external_subject_token`), or an
AWS-signed ``GetCallerIdentity`` request, its signature unchecked.
"""

from __future__ import annotations

import json
import secrets
import urllib.parse

from aiohttp import web

from ._state import TokenKnobs, Tokens, oauth_error

PATH = "/v1/token"
_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"


class Sts:
    """The token exchange, and the external identity provider it trusts."""

    def __init__(self, knobs: TokenKnobs, tokens: Tokens) -> None:
        self._knobs = knobs
        self._tokens = tokens
        self._external_tokens: set[str] = set()

    def external_subject_token(self) -> str:
        """Create a token of an external identity provider that STS accepts."""
        token = f"external-{secrets.token_urlsafe(24)}"
        self._external_tokens.add(token)
        return token

    async def exchange(self, request: web.Request) -> web.Response:
        """``POST /v1/token``: exchange a subject token for an access token."""
        refused = await self._knobs.refusal()
        if refused is not None:
            return refused
        form = await request.post()
        if form.get("grant_type") != _TOKEN_EXCHANGE:
            return oauth_error("unsupported_grant_type", "Use token exchange.")
        subject_token = str(form.get("subject_token", ""))
        if not (
            subject_token in self._external_tokens
            or _is_signed_aws_request(subject_token)
        ):
            return oauth_error("invalid_grant", "Unknown subject token.")
        issued = self._tokens.issue(
            f"principal://{form.get('audience', '')!s}",
            tuple(str(form.get("scope", "")).split()),
        )
        issued["issued_token_type"] = "urn:ietf:params:oauth:token-type:access_token"
        del issued["scope"]
        return web.json_response(issued)


def _is_signed_aws_request(subject_token: str) -> bool:
    """Whether a token is an AWS-signed GetCallerIdentity request.

    That is what AWS external accounts present; its signature is not checked.
    """
    try:
        signed = json.loads(urllib.parse.unquote(subject_token))
        headers = {h["key"].lower(): h["value"] for h in signed["headers"]}
    except (ValueError, KeyError, TypeError):
        return False
    return "GetCallerIdentity" in str(signed.get("url")) and headers.get(
        "authorization", ""
    ).startswith("AWS4-HMAC-SHA256 ")
