"""GoogleEmulator: the emulated services, composed and served on one port.

Each service is a handler class of its own module (``_oauth2``, ``_metadata``,
``_iam``, ``_sts``, ``_certs``, ``_api``); what they share (the tokens
issued, the knobs tests turn) is made here once and handed to each in its
constructor (``_state``, ``_accounts``). The emulator's attributes that tests
read and set (``token_delay``, ``certs_gate``...) are the knobs themselves,
reached through ``_Forwarded``.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Mapping
from typing import Any, Generic, TypeVar, cast, overload

from aiohttp import web

from . import _api, _certs, _iam, _metadata, _oauth2, _sts
from ._accounts import Accounts, shared_key_pair
from ._state import CertsKnobs, Gate, IssuedToken, TokenKnobs, Tokens

_T = TypeVar("_T")


class _Forwarded(Generic[_T]):
    # An emulator attribute that lives on one of its parts, read and written
    # there, so that the handler obeying a knob sees every change to it. No
    # docstring: the class docstring's Attributes section documents each one.

    def __init__(self, part: str, name: str) -> None:
        self._part = part
        self._name = name

    @overload
    def __get__(self, emulator: None, owner: type) -> _Forwarded[_T]: ...
    @overload
    def __get__(self, emulator: object, owner: type) -> _T: ...
    def __get__(self, emulator: object, owner: type) -> _Forwarded[_T] | _T:
        if emulator is None:
            return self
        return cast(_T, getattr(getattr(emulator, self._part), self._name))

    def __set__(self, emulator: object, value: _T) -> None:
        setattr(getattr(emulator, self._part), self._name, value)


class GoogleEmulator:
    """An async context manager serving Google-like auth endpoints locally.

    For impersonated credentials it serves IAM's ``generateAccessToken``
    (:meth:`iam_url`), and for workload identity federation an STS token
    exchange (:attr:`sts_url`) that accepts the subject tokens of
    :meth:`external_subject_token` and AWS-signed ``GetCallerIdentity``
    requests (their signature unchecked).

    It also serves a GCE metadata server (the instance's default service
    account, its tokens, the project ID). google-auth finds it through
    ``GCE_METADATA_HOST``, read once when ``google.auth.compute_engine`` is
    first imported, and ``GCE_METADATA_IP``, read at each ping: set both to
    ``127.0.0.1:PORT`` before that import, and pass the same ``port`` here.

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

    token_requests = _Forwarded[int]("_token_knobs", "requests")
    token_delay = _Forwarded[float]("_token_knobs", "delay")
    token_error = _Forwarded["str | None"]("_token_knobs", "error")
    token_body = _Forwarded["tuple[str, bytes] | None"]("_token_knobs", "body")
    token_gate = _Forwarded[Gate]("_token_knobs", "gate")
    token_lifetime = _Forwarded[int]("_tokens", "lifetime")
    certs_max_age = _Forwarded["int | None"]("_certs_knobs", "max_age")
    certs_requests = _Forwarded[int]("_certs_knobs", "requests")
    certs_status = _Forwarded[int]("_certs_knobs", "status")
    certs_gate = _Forwarded[Gate]("_certs_knobs", "gate")
    api_requests = _Forwarded[int]("_api", "requests")
    project_id = _Forwarded[str]("_metadata", "project_id")
    gce_service_account = _Forwarded[str]("_metadata", "service_account")

    def __init__(
        self,
        *,
        token_lifetime: int = 3600,
        host: str = "127.0.0.1",
        port: int = 0,
        project_id: str = "emulator-project",
    ):
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._url = ""
        self._tokens = Tokens(token_lifetime)
        self._token_knobs = TokenKnobs()
        self._certs_knobs = CertsKnobs()
        self._accounts = Accounts()
        self._certs = _certs.Certs(
            self._certs_knobs,
            self._tokens,
            default_email=lambda: self._metadata.service_account,
        )
        self._metadata = _metadata.Metadata(
            project_id, self._token_knobs, self._tokens, self._certs
        )
        self._oauth2 = _oauth2.OAuth2(
            lambda: self.token_uri,
            self._token_knobs,
            self._tokens,
            self._accounts,
            self._certs,
        )
        self._sts = _sts.Sts(self._token_knobs, self._tokens)
        self._api = _api.Api(lambda: self.url, self._tokens, self._accounts)
        self._iam = _iam.Iam(
            self._api.caller, self._token_knobs, self._tokens, self._certs
        )

    @property
    def url(self) -> str:
        """str: The base URL, such as ``http://127.0.0.1:41234``."""
        if not self._url:
            raise RuntimeError("The emulator is not running: use `async with`.")
        return self._url

    @property
    def token_uri(self) -> str:
        """str: The OAuth 2.0 token endpoint."""
        return f"{self.url}{_oauth2.PATH}"

    @property
    def sts_url(self) -> str:
        """str: The STS token exchange, an external account's ``token_url``."""
        return f"{self.url}{_sts.PATH}"

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
        return self._sts.external_subject_token()

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
            new_key (bool): Make an RSA key of its own for this account,
                which takes up to a few tenths of a second of the calling
                thread (on an event loop, call this with
                :func:`asyncio.to_thread`). By default every account signs
                with one key, under a key id of its own, made in a worker
                thread when the first emulator starts: one account's private
                key then signs assertions every emulator accepts for another,
                so a test that a wrong key is refused needs ``new_key=True``.

        Returns:
            Mapping[str, str]: Service-account key info, as in a JSON key file,
            for ``Credentials.from_service_account_info``.

        """
        return self._accounts.service_account_info(
            self.token_uri, project_id=project_id, new_key=new_key
        )

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
        return self._accounts.authorized_user_info(self.token_uri)

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
        return self._tokens.issued

    def revoke(self, token: str) -> None:
        """Revoke one token: the API answers 401 to it.

        Args:
            token (str): An access or ID token the emulator issued.
        """
        self._tokens.revoke(token)

    def revoke_all(self) -> None:
        """Revoke every token issued so far: the API answers 401 to them."""
        self._tokens.revoke_all()

    async def start(self) -> None:
        """Start serving on a free port."""
        # Made in the first service_account_info() call, the shared key would
        # hold the loop for up to 0.3 s; in a worker thread it does not
        # (cryptography releases the GIL while it makes one). Made once.
        await asyncio.to_thread(shared_key_pair)
        app = web.Application()
        app.router.add_post(_oauth2.PATH, self._oauth2.token)
        app.router.add_post(_sts.PATH, self._sts.exchange)
        app.router.add_post(_iam.PATH, self._iam.generate)
        app.router.add_route("*", _api.PATH, self._api.echo)
        app.router.add_get(_certs.PEM_PATH, self._certs.pem_certs)
        app.router.add_get(_certs.JWK_PATH, self._certs.jwk_certs)
        app.router.add_get(_certs.IAP_PATH, self._certs.iap_certs)
        app.router.add_get("/", self._metadata.ping)
        app.router.add_get(_metadata.PATH, self._metadata.metadata)
        # A test's emulator closes at once: requests still waiting out a delay
        # or a gate are cut off, not awaited (each would cost a test its
        # teardown time).
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

    @property
    def certs_url(self) -> str:
        """str: Where the public keys of the emulator's ID tokens are published.

        Like Google's ``https://www.googleapis.com/oauth2/v1/certs``: a JSON
        object of key id to PEM public key, with ``Cache-Control: max-age``
        set to :attr:`certs_max_age`; :attr:`certs_requests` counts the fetches.
        """
        return f"{self.url}{_certs.PEM_PATH}"

    def rotate_id_token_key(self, *, retire_previous: bool = False) -> None:
        """Sign ID tokens with a new key from now on, as Google rotates its own.

        Args:
            retire_previous (bool): Also stop publishing the keys used so far:
                tokens they signed no longer verify.
        """
        self._certs.rotate_id_token_key(retire_previous=retire_previous)

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
        return self._certs.id_token(
            audience,
            email=email,
            issuer=issuer,
            lifetime=lifetime,
            key_id=key_id,
            email_verified=email_verified,
            subject=subject,
            claims=claims,
        )

    @property
    def jwk_certs_url(self) -> str:
        """str: The ID-token keys again, as a JWK set (Google's ``oauth2/v3/certs``)."""
        return f"{self.url}{_certs.JWK_PATH}"

    @property
    def iap_certs_url(self) -> str:
        """str: Where the keys of :meth:`iap_jwt` are published, as IAP does.

        A JWK set of EC P-256 keys (ES256), like
        ``https://www.gstatic.com/iap/verify/public_key-jwk``.
        """
        return f"{self.url}{_certs.IAP_PATH}"

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
        return self._certs.iap_jwt(
            audience, email=email, lifetime=lifetime, issuer=issuer, claims=claims
        )
