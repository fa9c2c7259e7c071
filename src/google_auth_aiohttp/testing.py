"""Google's auth endpoints, emulated on 127.0.0.1, for tests and demos.

:class:`GoogleEmulator` serves an OAuth 2.0 token endpoint that verifies the
signed JWT assertions of the service-account keys it issued, and an API that
accepts only the access tokens it issued, unexpired and not revoked. Real
google-auth credentials work against it unchanged::

    from google.oauth2 import service_account
    from google_auth_aiohttp import AuthorizedSession
    from google_auth_aiohttp.testing import GoogleEmulator

    async with GoogleEmulator() as google:
        credentials = service_account.Credentials.from_service_account_info(
            google.service_account_info(), scopes=["https://example.test/scope"]
        )
        async with AuthorizedSession(credentials) as session:
            async with session.get(google.api_url("hello")) as response:
                assert response.status == 200
        assert google.token_requests == 1

No network access and no Google account are needed.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import secrets
import time
import types
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["GoogleEmulator", "IssuedToken"]

_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth addresses service-account assertions to Google's token endpoint
# whatever the key's token_uri; Google accepts that audience, and so do we.
_GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


@dataclass
class IssuedToken:
    """An access token the emulator issued."""

    subject: str
    scopes: tuple[str, ...]
    expires_at: float  # time.monotonic() deadline
    revoked: bool = False


@dataclass
class _Key:
    email: str
    public_pem: bytes


@dataclass
class _State:
    keys: dict[str, _Key] = field(default_factory=dict)
    tokens: dict[str, IssuedToken] = field(default_factory=dict)


class GoogleEmulator:
    """An async context manager serving Google-like auth endpoints locally.

    Args:
        token_lifetime (int): The ``expires_in`` of issued tokens, in seconds.
            google-auth treats a token as expired 3 min 45 s before that.
        host (str): The address to listen on.

    Attributes:
        token_requests (int): Token requests received, granted or not.
        api_requests (int): API requests received, authorized or not.
        token_delay (float): Seconds the token endpoint waits before answering.
        token_lifetime (int): See above; may be changed while running.
    """

    def __init__(self, *, token_lifetime: int = 3600, host: str = "127.0.0.1"):
        self.token_lifetime = token_lifetime
        self.token_delay = 0.0
        self.token_requests = 0
        self.api_requests = 0
        self._host = host
        self._state = _State()
        self._runner: web.AppRunner | None = None
        self._url = ""

    @property
    def url(self) -> str:
        """str: The base URL, such as ``http://127.0.0.1:41234``."""
        if not self._url:
            raise RuntimeError("The emulator is not running: use `async with`.")
        return self._url

    @property
    def token_uri(self) -> str:
        """str: The OAuth 2.0 token endpoint."""
        return f"{self.url}/token"

    def api_url(self, path: str = "") -> str:
        """Return the URL of ``path`` on the protected API.

        The API answers any method on any path under ``/api/`` with a JSON
        echo of the request (method, path, query, headers but Authorization,
        body), after checking its bearer token. Query parameters shape the
        answer: ``delay`` (seconds to wait), ``status`` (the status to send),
        ``gzip=1`` (gzip the body), ``redirect`` (a URL to redirect to, with
        ``redirect_status``, 302 by default).

        Args:
            path (str): The path under ``/api/``.

        Returns:
            str: The absolute URL.
        """
        return f"{self.url}/api/{path.lstrip('/')}"

    def service_account_info(
        self, *, project_id: str = "emulator-project"
    ) -> dict[str, str]:
        """Create a service-account key the token endpoint trusts.

        Args:
            project_id (str): The ``project_id`` to put in the key.

        Returns:
            Mapping[str, str]: Service-account key info, as in a JSON key file,
            for ``Credentials.from_service_account_info``.
        """
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        email = f"sa-{key_id[:8]}@{project_id}.iam.gserviceaccount.com"
        self._state.keys[key_id] = _Key(
            email=email,
            public_pem=key.public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            ),
        )
        private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": key_id,
            "private_key": private_pem,
            "client_email": email,
            "client_id": str(int(key_id[:12], 16)),
            "token_uri": self.token_uri,
        }

    @property
    def issued_tokens(self) -> dict[str, IssuedToken]:
        """Mapping[str, IssuedToken]: Every token issued so far."""
        return self._state.tokens

    def revoke_all(self) -> None:
        """Revoke every token issued so far: the API answers 401 to them."""
        for token in self._state.tokens.values():
            token.revoked = True

    async def start(self) -> None:
        """Start serving on a free port."""
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_route("*", "/api/{tail:.*}", self._api)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self._url = f"http://{self._host}:{port}"

    async def close(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> GoogleEmulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        await self.close()

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        form = await request.post()
        if form.get("grant_type") != _JWT_BEARER:
            return _oauth_error("unsupported_grant_type", "Use the JWT bearer grant.")
        assertion = str(form.get("assertion", ""))
        try:
            claims = self._verify(assertion)
        except ValueError as caught:
            return _oauth_error("invalid_grant", str(caught))
        token = secrets.token_urlsafe(32)
        scopes = tuple(str(claims.get("scope", "")).split())
        self._state.tokens[token] = IssuedToken(
            subject=str(claims["iss"]),
            scopes=scopes,
            expires_at=time.monotonic() + self.token_lifetime,
        )
        return web.json_response(
            {
                "access_token": token,
                "expires_in": self.token_lifetime,
                "token_type": "Bearer",
                "scope": " ".join(scopes),
            }
        )

    def _verify(self, assertion: str) -> dict[str, Any]:
        from google.auth import exceptions, jwt

        try:
            header = jwt.decode_header(assertion)
        except (ValueError, exceptions.GoogleAuthError) as caught:
            raise ValueError(f"Malformed assertion: {caught}") from caught
        key = self._state.keys.get(str(header.get("kid")))
        if key is None:
            raise ValueError("The assertion is signed by an unknown key.")
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                certs={str(header["kid"]): key.public_pem},
                audience=[self.token_uri, _GOOGLE_TOKEN_AUDIENCE],
            )
        except (ValueError, exceptions.GoogleAuthError) as caught:
            raise ValueError(f"Invalid assertion: {caught}") from caught
        if claims.get("iss") != key.email:
            raise ValueError("The assertion's issuer does not own its key.")
        return claims

    def _authorized(self, request: web.Request) -> IssuedToken | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        issued = self._state.tokens.get(token)
        if (
            scheme.lower() != "bearer"
            or issued is None
            or issued.revoked
            or time.monotonic() >= issued.expires_at
        ):
            return None
        return issued

    async def _api(self, request: web.Request) -> web.StreamResponse:
        self.api_requests += 1
        body = await request.read()
        issued = self._authorized(request)
        if issued is None:
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
            "subject": issued.subject,
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


def _oauth_error(error: str, description: str) -> web.Response:
    return web.json_response(
        {"error": error, "error_description": description}, status=400
    )
