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

No network access and no Google account are needed. It needs ``cryptography``
(to make keys): ``pip install 'google-auth-aiohttp[testing]'``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import gzip
import json
import secrets
import time
import types
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

try:
    import cryptography  # noqa: F401  (the keys the emulator hands out)
except ImportError as missing:
    raise ImportError(
        "google_auth_aiohttp.testing needs the cryptography package: "
        "pip install 'google-auth-aiohttp[testing]'"
    ) from missing

__all__ = ["Gate", "GoogleEmulator", "IssuedToken"]

_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_REFRESH_TOKEN = "refresh_token"
_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
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
    external_tokens: set[str] = field(default_factory=set)


class GoogleEmulator:
    """An async context manager serving Google-like auth endpoints locally.

    For impersonated credentials it serves IAM's ``generateAccessToken``
    (:meth:`iam_url`), and for workload identity federation an STS token
    exchange (:attr:`sts_url`) that accepts the subject tokens of
    :meth:`external_subject_token` and AWS-signed ``GetCallerIdentity``
    requests (their signature unchecked).

    It also serves a GCE metadata server (the instance's default service
    account, its tokens, the project ID). google-auth finds it through
    ``GCE_METADATA_HOST`` and ``GCE_METADATA_IP``, which it reads when
    ``google.auth.compute_engine`` is first imported: set them to
    ``127.0.0.1:PORT`` first, and pass the same ``port`` here.

    Args:
        token_lifetime (int): The ``expires_in`` of issued tokens, in seconds.
            google-auth treats a token as expired 3 min 45 s before that.
        host (str): The address to listen on.
        port (int): The port to listen on; 0 picks a free one.
        project_id (str): The project the metadata server reports.

    Attributes:
        token_requests (int): Token requests received, granted or not.
        api_requests (int): API requests received, authorized or not.
        token_delay (float): Seconds the token endpoint waits before answering.
        token_error (Optional[str]): When set, the token endpoint refuses every
            request with this OAuth error code (for example ``"invalid_grant"``).
        token_lifetime (int): See above; may be changed while running.
        token_gate (Gate): Holds token requests (OAuth, STS, IAM and the
            metadata server's) while closed; counts their arrivals.
        token_body (Optional[Tuple[str, bytes]]): When set, every token
            request is answered 200 with this content type and body (HTML from
            a captive portal, a JSON list...).
        certs_max_age (Optional[int]): The ``max-age`` the certificates endpoint
            (:attr:`certs_url`) sends; None sends no ``Cache-Control``.
        certs_requests (int): Requests the certificates endpoint received.
        certs_status (int): The status the certificates endpoint answers;
            anything but 200 comes with an error body and no keys.
        certs_gate (Gate): Holds certificate requests while closed.

    """

    def __init__(
        self,
        *,
        token_lifetime: int = 3600,
        host: str = "127.0.0.1",
        port: int = 0,
        project_id: str = "emulator-project",
    ):
        self.token_lifetime = token_lifetime
        self.project_id = project_id
        self.gce_service_account = f"vm-default@{project_id}.iam.gserviceaccount.com"
        self._port = port
        # (key id, private PEM, public PEM), the current one last
        self._id_keys: list[tuple[str, Any, str]] = []
        self._iap_key: tuple[Any, Any] | None = None
        self.certs_max_age: int | None = 3600
        self.certs_requests = 0
        self.certs_status = 200
        self.certs_gate = Gate()
        self.token_delay = 0.0
        self.token_error: str | None = None
        self.token_body: tuple[str, bytes] | None = None
        self.token_gate = Gate()
        # One RSA key for every service account made here: making one takes
        # ~0.1 s, and tests make hundreds. Key ids and emails stay distinct.
        self._account_key: tuple[str, bytes] | None = None
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

    @property
    def sts_url(self) -> str:
        """str: The STS token exchange, an external account's ``token_url``."""
        return f"{self.url}/v1/token"

    def iam_url(self, service_account_email: str) -> str:
        """Return the ``generateAccessToken`` URL for impersonating an account.

        Args:
            service_account_email (str): The account to impersonate.

        Returns:
            str: A URL for ``iam_endpoint_override``.
        """
        return (
            f"{self.url}/v1/projects/-/serviceAccounts/"
            f"{service_account_email}:generateAccessToken"
        )

    def external_subject_token(self) -> str:
        """Create a token of an external identity provider that STS accepts.

        Returns:
            str: A subject token, for a workload identity federation
            credential source (a file, an executable's output…).
        """
        token = f"external-{secrets.token_urlsafe(24)}"
        self._state.external_tokens.add(token)
        return token

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
        self, *, project_id: str = "emulator-project", new_key: bool = False
    ) -> dict[str, str]:
        """Create a service account whose key the token endpoint trusts.

        Args:
            project_id (str): The ``project_id`` to put in the key.
            new_key (bool): Make an RSA key of its own for this account; by
                default every account of this emulator signs with one key
                (under its own key id), which is made once.

        Returns:
            Mapping[str, str]: Service-account key info, as in a JSON key file,
            for ``Credentials.from_service_account_info``.

        """
        if new_key:
            private_pem, public_pem = _key_pair()
        else:
            if self._account_key is None:
                self._account_key = _key_pair()
            private_pem, public_pem = self._account_key
        key_id = secrets.token_hex(20)
        email = f"sa-{key_id[:8]}@{project_id}.iam.gserviceaccount.com"
        self._state.keys[key_id] = _Key(email=email, public_pem=public_pem)
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

        The info is what ``gcloud auth application-default login`` writes,
        its ``token_uri`` this emulator's. Do not hand it to google-auth's
        ``Credentials.from_authorized_user_info`` nor write it to a file for
        ``GOOGLE_APPLICATION_CREDENTIALS``: both send the refresh token to
        Google's real token endpoint, whatever ``token_uri`` says. Use
        :meth:`user_credentials`, which keeps it on this emulator.

        Returns:
            Mapping[str, str]: Authorized-user info.

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

    def user_credentials(self, scopes: list[str] | None = None) -> Any:
        """Create user credentials that refresh with this emulator only.

        Args:
            scopes (Optional[List[str]]): The scopes to ask for.

        Returns:
            Any: google-auth's ``google.oauth2.credentials.Credentials`` of a
            new OAuth client and refresh token (:meth:`authorized_user_info`),
            whose ``token_uri`` is this emulator's.
        """
        from google.oauth2 import credentials as user_credentials

        info = self.authorized_user_info()
        return user_credentials.Credentials(
            token=None,
            refresh_token=info["refresh_token"],
            client_id=info["client_id"],
            client_secret=info["client_secret"],
            token_uri=info["token_uri"],
            scopes=scopes,
        )

    @property
    def issued_tokens(self) -> dict[str, IssuedToken]:
        """Mapping[str, IssuedToken]: Every token issued so far."""
        return self._state.tokens

    def revoke(self, token: str) -> None:
        """Revoke one token: the API answers 401 to it.

        Args:
            token (str): An access or ID token the emulator issued.
        """
        self._state.tokens[token].revoked = True

    def revoke_all(self) -> None:
        """Revoke every token issued so far: the API answers 401 to them."""
        for token in self._state.tokens.values():
            token.revoked = True

    async def start(self) -> None:
        """Start serving on a free port."""
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/v1/token", self._sts)
        app.router.add_post(
            "/v1/projects/-/serviceAccounts/{name}", self._generate_access_token
        )
        app.router.add_route("*", "/api/{tail:.*}", self._api)
        app.router.add_get("/oauth2/v1/certs", self._certs)
        app.router.add_get("/oauth2/v3/certs", self._jwk_certs)
        app.router.add_get("/iap/verify/public_key-jwk", self._iap_certs)
        app.router.add_get("/", self._metadata_ping)
        app.router.add_get("/computeMetadata/v1/{path:.*}", self._metadata)
        # A test's emulator closes at once: requests still waiting out a
        # delay or a gate are cut off, not awaited (each would cost a test
        # its teardown time).
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.01)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self._url = f"http://{self._host}:{port}"

    async def close(self) -> None:
        """Stop serving; requests still in flight are cut off at once."""
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

    def _issue(self, subject: str, scopes: tuple[str, ...]) -> dict[str, Any]:
        token = secrets.token_urlsafe(32)
        self._state.tokens[token] = IssuedToken(
            subject=subject,
            scopes=scopes,
            expires_at=time.monotonic() + self.token_lifetime,
        )
        return {
            "access_token": token,
            "expires_in": self.token_lifetime,
            "token_type": "Bearer",
            "scope": " ".join(scopes),
        }

    @property
    def certs_url(self) -> str:
        """str: Where the public keys of the emulator's ID tokens are published.

        Like Google's ``https://www.googleapis.com/oauth2/v1/certs``: a JSON
        object of key id to PEM public key, with ``Cache-Control: max-age``
        set to :attr:`certs_max_age`; :attr:`certs_requests` counts the fetches.
        """
        return f"{self.url}/oauth2/v1/certs"

    def rotate_id_token_key(self, *, retire_previous: bool = False) -> None:
        """Sign ID tokens with a new key from now on, as Google rotates its own.

        Args:
            retire_previous (bool): Also stop publishing the keys used so far:
                tokens they signed no longer verify.
        """
        from cryptography.hazmat.primitives import serialization
        from google.auth import crypt

        if retire_previous:
            self._id_keys.clear()
        private_pem = _private_pem()
        key = serialization.load_pem_private_key(private_pem.encode(), None)
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        key_id = secrets.token_hex(20)
        # Loaded once: loading an RSA key takes tens of milliseconds of the loop.
        signer = crypt.RSASigner.from_string(private_pem, key_id)
        self._id_keys.append((key_id, (signer, private_pem), public_pem.decode()))

    def id_token(
        self,
        audience: str,
        *,
        email: str | None = None,
        issuer: str = "https://accounts.google.com",
        lifetime: int | None = None,
        key_id: str | None = None,
        email_verified: bool = True,
        subject: str | None = None,
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """Issue an ID token, as Google would for a caller of ``audience``.

        Args:
            audience (str): The ``aud`` claim.
            email (Optional[str]): The ``email`` (and ``sub``) claim; by default
                the emulator's GCE service account.
            issuer (str): The ``iss`` claim.
            lifetime (Optional[int]): Seconds until ``exp``; negative for an
                expired token. By default :attr:`token_lifetime`.
            key_id (Optional[str]): The ``kid`` header to claim, signed with the
                current key whatever it says (to test unknown key ids).
            email_verified (bool): The ``email_verified`` claim.
            subject (Optional[str]): The ``sub`` claim, if not the email.
            claims (Optional[Mapping[str, Any]]): Claims to add or replace, of
                any JSON value (to test what a verifier does with odd ones).

        Returns:
            str: The signed token; the emulator's API accepts it too.
        """
        from google.auth import crypt, jwt

        if not self._id_keys:
            self.rotate_id_token_key()
        current_id, (signer, private_pem), _ = self._id_keys[-1]
        if key_id is not None and key_id != current_id:  # a key id to test with
            signer = crypt.RSASigner.from_string(private_pem, key_id)
        claimed_subject = subject
        subject = email or self.gce_service_account
        lifetime = self.token_lifetime if lifetime is None else lifetime
        now = int(time.time())
        token: bytes = jwt.encode(
            signer,
            {
                "iss": issuer,
                "sub": subject if claimed_subject is None else claimed_subject,
                "email": subject,
                "email_verified": email_verified,
                "aud": audience,
                "iat": min(now, now + lifetime),
                "exp": now + lifetime,
                **(claims or {}),
            },
        )
        id_token = token.decode()
        self._state.tokens[id_token] = IssuedToken(
            subject=subject,
            scopes=(),
            expires_at=time.monotonic() + lifetime,
        )
        return id_token

    def _id_token(self, subject: str, audience: str) -> str:
        """Issue a signed OpenID Connect ID token, which the API accepts too."""
        return self.id_token(audience, email=subject)

    @property
    def jwk_certs_url(self) -> str:
        """str: The ID-token keys again, as a JWK set (Google's ``oauth2/v3/certs``)."""
        return f"{self.url}/oauth2/v3/certs"

    @property
    def iap_certs_url(self) -> str:
        """str: Where the keys of :meth:`iap_jwt` are published, as IAP does.

        A JWK set of EC P-256 keys (ES256), like
        ``https://www.gstatic.com/iap/verify/public_key-jwk``.
        """
        return f"{self.url}/iap/verify/public_key-jwk"

    def iap_jwt(
        self,
        audience: str,
        *,
        email: str = "user@example.test",
        lifetime: int = 600,
        issuer: str = "https://cloud.google.com/iap",
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """Mint the ``x-goog-iap-jwt-assertion`` IAP would send a backend.

        Args:
            audience (str): The ``aud`` claim, such as
                ``/projects/NUMBER/global/backendServices/ID``.
            email (str): The signed-in user's ``email``.
            lifetime (int): Seconds until ``exp``; negative for an expired one.
            issuer (str): The ``iss`` claim.
            claims (Optional[Mapping[str, Any]]): Claims to add or replace.

        Returns:
            str: An ES256 JWT, its key at :attr:`iap_certs_url`.
        """
        from google.auth import jwt

        signer = self._iap_signer()
        now = int(time.time())
        token: bytes = jwt.encode(
            signer,
            {
                "iss": issuer,
                "aud": audience,
                "sub": f"accounts.google.com:{abs(hash(email))}",
                "email": email,
                "iat": min(now, now + lifetime),
                "exp": now + lifetime,
                **(claims or {}),
            },
        )
        return token.decode()

    def _iap_signer(self) -> Any:
        if self._iap_key is None:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            from google.auth.crypt import es256

            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            key_id = secrets.token_hex(8)
            self._iap_key = (es256.ES256Signer.from_string(pem, key_id), key)
        return self._iap_key[0]

    def _certs_refusal(self) -> web.Response | None:
        if self.certs_status != 200:
            return web.json_response(
                {"error": {"code": self.certs_status}}, status=self.certs_status
            )
        return None

    def _certs_headers(self) -> dict[str, str]:
        if self.certs_max_age is None:
            return {}
        return {"Cache-Control": f"public, max-age={self.certs_max_age}"}

    async def _certs(self, request: web.Request) -> web.Response:
        self.certs_requests += 1
        await self.certs_gate.pass_through()
        refused = self._certs_refusal()
        if refused is not None:
            return refused
        return web.json_response(
            {key_id: public_pem for key_id, _, public_pem in self._id_keys},
            headers=self._certs_headers(),
        )

    async def _jwk_certs(self, request: web.Request) -> web.Response:
        from cryptography.hazmat.primitives import serialization

        self.certs_requests += 1
        await self.certs_gate.pass_through()
        refused = self._certs_refusal()
        if refused is not None:
            return refused
        keys = []
        for key_id, _, public_pem in self._id_keys:
            key: Any = serialization.load_pem_public_key(public_pem.encode())
            numbers = key.public_numbers()
            keys.append(
                {
                    "kty": "RSA",
                    "alg": "RS256",
                    "use": "sig",
                    "kid": key_id,
                    "n": _b64_int(numbers.n),
                    "e": _b64_int(numbers.e),
                }
            )
        return web.json_response({"keys": keys}, headers=self._certs_headers())

    async def _iap_certs(self, request: web.Request) -> web.Response:
        self.certs_requests += 1
        await self.certs_gate.pass_through()
        refused = self._certs_refusal()
        if refused is not None:
            return refused
        signer = self._iap_signer()
        numbers = self._iap_key[1].public_key().public_numbers()  # type: ignore[index]
        key = {
            "kty": "EC",
            "alg": "ES256",
            "use": "sig",
            "crv": "P-256",
            "kid": signer.key_id,
            "x": _b64_int(numbers.x, 32),
            "y": _b64_int(numbers.y, 32),
        }
        return web.json_response({"keys": [key]}, headers=self._certs_headers())

    async def _metadata_ping(self, request: web.Request) -> web.Response:
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(status=403)
        return web.Response(text="ok", headers={"Metadata-Flavor": "Google"})

    async def _metadata(self, request: web.Request) -> web.Response:
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(status=403, text="Missing Metadata-Flavor header.")
        flavor = {"Metadata-Flavor": "Google"}
        path = request.match_info["path"].rstrip("/")
        accounts = "instance/service-accounts/"
        if path == "project/project-id":
            return web.Response(text=self.project_id, headers=flavor)
        if path == "universe/universe-domain":
            return web.Response(text="googleapis.com", headers=flavor)
        if path.startswith(accounts):
            account, _, leaf = path[len(accounts) :].partition("/")
            if account not in ("default", self.gce_service_account):
                return web.Response(status=404, headers=flavor)
            if leaf == "":
                return web.json_response(
                    {
                        "email": self.gce_service_account,
                        "aliases": ["default"],
                        "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
                    },
                    headers=flavor,
                )
            if leaf == "identity":
                refused = await self._refuse(metadata=True)
                if refused is not None:
                    return refused
                audience = request.query.get("audience")
                if not audience:
                    return web.Response(status=400, text="audience required")
                return web.Response(
                    text=self.id_token(audience, email=self.gce_service_account),
                    headers=flavor,
                )
            if leaf == "token":
                refused = await self._refuse(metadata=True)
                if refused is not None:
                    return refused
                scopes = tuple(request.query.get("scopes", "").split(","))
                issued = self._issue(self.gce_service_account, scopes)
                del issued["scope"]
                return web.json_response(issued, headers=flavor)
        return web.Response(status=404, headers=flavor)

    async def _refuse(self, *, metadata: bool = False) -> web.Response | None:
        """Count a token request, pass the gate, apply the delay and the knobs.

        Returns:
            Optional[web.Response]: What to answer instead of a token, if any.
        """
        self.token_requests += 1
        await self.token_gate.pass_through()
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        if self.token_body is not None:
            content_type, body = self.token_body
            return web.Response(body=body, headers={"Content-Type": content_type})
        if self.token_error is not None:
            if metadata:  # the metadata server has no OAuth errors
                return web.Response(status=500, text=self.token_error)
            return _oauth_error(self.token_error, "Refused by the emulator.")
        return None

    async def _sts(self, request: web.Request) -> web.Response:
        refused = await self._refuse()
        if refused is not None:
            return refused
        form = await request.post()
        if form.get("grant_type") != _TOKEN_EXCHANGE:
            return _oauth_error("unsupported_grant_type", "Use token exchange.")
        subject_token = str(form.get("subject_token", ""))
        if not (
            subject_token in self._state.external_tokens
            or _is_signed_aws_request(subject_token)
        ):
            return _oauth_error("invalid_grant", "Unknown subject token.")
        issued = self._issue(
            f"principal://{form.get('audience', '')!s}",
            tuple(str(form.get("scope", "")).split()),
        )
        issued["issued_token_type"] = "urn:ietf:params:oauth:token-type:access_token"
        del issued["scope"]
        return web.json_response(issued)

    async def _generate_access_token(self, request: web.Request) -> web.Response:
        refused = await self._refuse()
        if refused is not None:
            return refused
        target, _, verb = request.match_info["name"].partition(":")
        if verb not in ("generateAccessToken", "generateIdToken"):
            return web.json_response({"error": {"code": 404}}, status=404)
        if self._authorized(request) is None:
            return web.json_response(
                {"error": {"code": 401, "status": "UNAUTHENTICATED"}}, status=401
            )
        body = await request.json()
        if verb == "generateIdToken":
            return web.json_response(
                {"token": self.id_token(body["audience"], email=target)}
            )
        issued = self._issue(target, tuple(body.get("scope", ())))
        expire_time = datetime.datetime.now(datetime.UTC) + datetime.timedelta(
            seconds=self.token_lifetime
        )
        return web.json_response(
            {
                "accessToken": issued["access_token"],
                "expireTime": expire_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )

    async def _token(self, request: web.Request) -> web.Response:
        refused = await self._refuse()
        if refused is not None:
            return refused
        form = await request.post()
        grant_type = form.get("grant_type")
        if grant_type == _JWT_BEARER:
            try:
                claims = self._verify(str(form.get("assertion", "")))
            except ValueError as caught:
                return _oauth_error("invalid_grant", str(caught))
            subject, scope = str(claims["iss"]), str(claims.get("scope", ""))
            if "target_audience" in claims:  # an ID token is asked for
                return web.json_response(
                    {"id_token": self._id_token(subject, claims["target_audience"])}
                )
        elif grant_type == _REFRESH_TOKEN:
            client_id, secret = form.get("client_id"), form.get("client_secret")
            if client_id is None:  # client authentication by HTTP Basic
                basic = request.headers.get("Authorization", "").removeprefix("Basic ")
                client_id, _, secret = base64.b64decode(basic).decode().partition(":")
            client = self._state.clients.get(str(client_id))
            if client is None or client.secret != secret:
                return _oauth_error("invalid_client", "Unknown OAuth client.")
            if client.refresh_token != form.get("refresh_token"):
                return _oauth_error("invalid_grant", "Bad refresh token.")
            subject, scope = client.subject, str(form.get("scope", ""))
        else:
            return _oauth_error("unsupported_grant_type", f"{grant_type!r}")
        return web.json_response(self._issue(subject, tuple(scope.split())))

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
            unverified = jwt.decode(assertion, verify=False)
        except (ValueError, exceptions.GoogleAuthError) as caught:
            raise ValueError(f"Malformed assertion: {caught}") from caught
        # Google finds the key by its ID, or, without one, by the issuer.
        key = self._state.keys.get(str(header.get("kid")))
        if key is None and "kid" not in header:
            key = next(
                (
                    k
                    for k in self._state.keys.values()
                    if k.email == unverified.get("iss")
                ),
                None,
            )
        if key is None:
            raise ValueError("The assertion is signed by an unknown key.")
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion, certs=key.public_pem, audience=audience
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
        # Addressed to this host (as https://host/, when a session's default_host
        # is this emulator), or, for scoped self-signed JWTs, to no one.
        audience = str(claims.get("aud", ""))
        https_url = self.url.replace("http://", "https://", 1)
        if not (
            audience.startswith((self.url, https_url))
            or ("aud" not in claims and "scope" in claims)
        ):
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


def _b64_int(value: int, size: int = 0) -> str:
    """An integer as JWK writes it: big-endian bytes, base64url, no padding."""
    length = max(size, (value.bit_length() + 7) // 8)
    return base64.urlsafe_b64encode(value.to_bytes(length, "big")).decode().rstrip("=")


def _key_pair() -> tuple[str, bytes]:
    """A new RSA private key (PEM, PKCS#8) and its public key (PEM)."""
    from cryptography.hazmat.primitives import serialization

    private_pem = _private_pem()
    key = serialization.load_pem_private_key(private_pem.encode(), None)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    return private_pem, public_pem


def _private_pem() -> str:
    """Generate an RSA private key, PEM-encoded (PKCS#8), as Google issues them."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _oauth_error(error: str, description: str) -> web.Response:
    return web.json_response(
        {"error": error, "error_description": description}, status=400
    )
