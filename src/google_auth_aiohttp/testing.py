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
_REFRESH_TOKEN = "refresh_token"
_ANY_AUDIENCE: Any = object()
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
class _Client:
    secret: str
    refresh_token: str
    subject: str


@dataclass
class _State:
    keys: dict[str, _Key] = field(default_factory=dict)
    clients: dict[str, _Client] = field(default_factory=dict)
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
        token_error (Optional[str]): When set, the token endpoint refuses every
            request with this OAuth error code (for example ``"invalid_grant"``).
        token_lifetime (int): See above; may be changed while running.

    """

    def __init__(self, *, token_lifetime: int = 3600, host: str = "127.0.0.1"):
        self.token_lifetime = token_lifetime
        self.token_delay = 0.0
        self.token_error: str | None = None
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

    def authorized_user_info(self) -> dict[str, str]:
        """Create an OAuth client and refresh token the token endpoint trusts.

        Returns:
            Mapping[str, str]: Authorized-user info, as ``gcloud auth
            application-default login`` writes it, for
            ``Credentials.from_authorized_user_info``.

        """
        client_id = f"{secrets.token_hex(8)}.apps.emulator.test"
        client = _Client(
            secret=secrets.token_urlsafe(16),
            refresh_token=secrets.token_urlsafe(32),
            subject=f"user-{client_id[:8]}@emulator.test",
        )
        self._state.clients[client_id] = client
        return {
            "type": "authorized_user",
            "client_id": client_id,
            "client_secret": client.secret,
            "refresh_token": client.refresh_token,
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
        if self.token_error is not None:
            return _oauth_error(self.token_error, "Refused by the emulator.")
        grant_type = form.get("grant_type")
        if grant_type == _JWT_BEARER:
            try:
                claims = self._verify(str(form.get("assertion", "")))
            except ValueError as caught:
                return _oauth_error("invalid_grant", str(caught))
            subject, scope = str(claims["iss"]), str(claims.get("scope", ""))
        elif grant_type == _REFRESH_TOKEN:
            client = self._state.clients.get(str(form.get("client_id")))
            if client is None or client.secret != form.get("client_secret"):
                return _oauth_error("invalid_client", "Unknown OAuth client.")
            if client.refresh_token != form.get("refresh_token"):
                return _oauth_error("invalid_grant", "Bad refresh token.")
            subject, scope = client.subject, str(form.get("scope", ""))
        else:
            return _oauth_error("unsupported_grant_type", f"{grant_type!r}")
        token = secrets.token_urlsafe(32)
        scopes = tuple(scope.split())
        self._state.tokens[token] = IssuedToken(
            subject=subject,
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

    def _verify(self, assertion: str, audience: Any = None) -> dict[str, Any]:
        """Check a JWT's signature, issuer and expiry, and return its claims.

        Args:
            assertion (str): The JWT.
            audience (Any): The accepted audiences: by default the token
                endpoint's; ``_ANY_AUDIENCE`` leaves the check to the caller.

        """
        from google.auth import exceptions, jwt

        if audience is None:
            audience = [self.token_uri, _GOOGLE_TOKEN_AUDIENCE]
        elif audience is _ANY_AUDIENCE:
            audience = None

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
                audience=audience,
            )
        except (ValueError, exceptions.GoogleAuthError) as caught:
            raise ValueError(f"Invalid assertion: {caught}") from caught
        if claims.get("iss") != key.email:
            raise ValueError("The assertion's issuer does not own its key.")
        return claims

    def _authorized(self, request: web.Request) -> str | None:
        """Return who the request's bearer token belongs to, if it is good."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        issued = self._state.tokens.get(token)
        if issued is not None:
            if issued.revoked or time.monotonic() >= issued.expires_at:
                return None
            return issued.subject
        # A self-signed JWT (AIP-4111): signed by a key we issued, addressed
        # to this service.
        try:
            claims = self._verify(token, audience=_ANY_AUDIENCE)
        except ValueError:
            return None
        if not str(claims.get("aud", "")).startswith(self.url):
            return None
        return str(claims["iss"])

    async def _api(self, request: web.Request) -> web.StreamResponse:
        self.api_requests += 1
        body = await request.read()
        subject = self._authorized(request)
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


def _oauth_error(error: str, description: str) -> web.Response:
    return web.json_response(
        {"error": error, "error_description": description}, status=400
    )
