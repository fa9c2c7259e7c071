"""Fetching ID tokens: credentials found where google-auth finds them.

A service-account key or the metadata server is google-auth's own, run in a
thread with its HTTP through aiohttp; an impersonation file becomes
:class:`_ImpersonatedIDTokenCredentials`, which asks IAM through the transport
its refresh is given.
"""

from __future__ import annotations

import datetime
import inspect
import json
import os
from typing import Any

import google.auth
from google.auth import exceptions, impersonated_credentials, jwt

from google_auth_aiohttp import id_token as public
from google_auth_aiohttp._auth.refresh import Route, refresher_for
from google_auth_aiohttp._compat import impersonation_source
from google_auth_aiohttp._credentials.threads import call_blocking
from google_auth_aiohttp._transport import Request


async def fetch_id_token_credentials(
    audience: str, request: Request | None = None, bind_id_token: bool | None = None
) -> Any:
    """Find credentials that make ID tokens for ``audience``, as google-auth does.

    In google-auth's order: ``GOOGLE_APPLICATION_CREDENTIALS`` naming a
    ``service_account`` key (a JWT with a ``target_audience`` claim, posted to
    the key's ``token_uri``) or an ``impersonated_service_account`` file (IAM
    ``generateIdToken``, through aiohttp rather than ``requests``); else the
    metadata server's identity endpoint.

    Args:
        audience (str): The ``aud`` of the tokens: usually the service's URL.
        request (Optional[google_auth_aiohttp.Request]): The transport to probe
            the metadata server with; by default one made for the call.
        bind_id_token (Optional[bool]): As in google-auth (2.63 and newer):
            whether the metadata server is asked for a certificate-bound token;
            None lets google-auth decide. No effect with a credentials file.

    Returns:
        google.auth.credentials.Credentials: Sync ID-token credentials; use
        them with :class:`~google_auth_aiohttp.AuthorizedSession`.

    Raises:
        google.auth.exceptions.DefaultCredentialsError: If none were found, or
            the file is not valid.
        TypeError: If ``bind_id_token`` is given and this google-auth has no
            such argument.
    """
    from google.oauth2 import id_token as google_id_token

    find: Any = google_id_token.fetch_id_token_credentials
    options = {}
    if bind_id_token is not None:
        if "bind_id_token" not in inspect.signature(find).parameters:
            raise TypeError(
                "bind_id_token needs a google-auth that has it (2.63 has it; "
                f"{google.auth.__version__} does not)."
            )
        options["bind_id_token"] = bind_id_token
    info = _credentials_file()
    if info is not None and info.get("type") == "impersonated_service_account":
        return _ImpersonatedIDTokenCredentials.from_info(info, audience)
    transport = request if request is not None else Request()

    def fetch(sync_request: Any) -> Any:
        return find(audience, sync_request, **options)

    try:
        return await call_blocking(fetch, transport)
    finally:
        if request is None:
            await transport.close()


async def fetch_id_token(
    request: Request, audience: str, bind_id_token: bool | None = None
) -> str:
    """Fetch an ID token for ``audience`` from the environment.

    Args:
        request (google_auth_aiohttp.Request): The transport to fetch it with.
        audience (str): The ``aud`` of the token.
        bind_id_token (Optional[bool]): See :func:`fetch_id_token_credentials`.

    Returns:
        str: The ID token.

    Raises:
        google.auth.exceptions.DefaultCredentialsError: If no credentials were
            found.
        google.auth.exceptions.RefreshError: If the token was refused.
    """
    credentials = await fetch_id_token_credentials(
        audience, request=request, bind_id_token=bind_id_token
    )
    await refresher_for(credentials).refresh(Route(request))
    token: str = credentials.token
    return token


def _credentials_file() -> dict[str, Any] | None:
    """The JSON object GOOGLE_APPLICATION_CREDENTIALS names, if it is one."""
    name = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not name or not os.path.isfile(name):
        return None  # google-auth explains a missing file
    try:
        with open(name, encoding="utf-8") as file:
            info = json.load(file)
    except ValueError:
        return None  # google-auth explains a malformed file
    return info if isinstance(info, dict) else None


class _ImpersonatedIDTokenCredentials(impersonated_credentials.IDTokenCredentials):
    """google-auth's impersonated ID-token credentials, through our transport.

    google-auth's call IAM through ``requests``; these send the same
    ``generateIdToken`` call through the transport their refresh is given
    (aiohttp's, on the event loop), to the same address: IAM's, in the
    credentials' universe. Of the file's ``service_account_impersonation_url``
    only the service account is used, as google-auth does: the source
    credentials' token goes nowhere a file names.
    """

    def __init__(self, target: Any, audience: str) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            target, target_audience=audience, include_email=True
        )
        # Ours, not google-auth's private attributes of the same meaning.
        self._id_target = target
        self._id_audience = audience

    @classmethod
    def from_info(
        cls, info: dict[str, Any], audience: str
    ) -> _ImpersonatedIDTokenCredentials:
        try:
            impersonated = impersonated_credentials.Credentials
            target = impersonated.from_impersonated_service_account_info(info)
        except (ValueError, KeyError) as caught:
            raise exceptions.DefaultCredentialsError(
                "GOOGLE_APPLICATION_CREDENTIALS is not a valid impersonated "
                f"service account file: {caught}"
            ) from caught
        return cls(target, audience)

    @property
    def _id_token_endpoint(self) -> str:
        universe = getattr(self._id_target, "universe_domain", "googleapis.com")
        return public.IAM_ID_TOKEN_ENDPOINT.replace("googleapis.com", universe).format(
            self._id_target.signer_email
        )

    def refresh(self, request: Any) -> None:
        """Get a new ID token from IAM, authorized by the source credentials."""
        source, delegates = impersonation_source(self._id_target)
        headers = {"Content-Type": "application/json"}
        source.before_request(request, "POST", self._id_token_endpoint, headers)
        body = {
            "audience": self._id_audience,
            "delegates": delegates,
            "includeEmail": True,
        }
        response = request(
            url=self._id_token_endpoint,
            method="POST",
            headers=headers,
            body=json.dumps(body).encode(),
        )
        data = response.data
        if response.status != 200:
            raise exceptions.RefreshError(
                f"IAM refused to make an ID token: status {response.status}."
            )
        try:
            token = json.loads(data)["token"]
        except (KeyError, ValueError) as caught:
            raise exceptions.RefreshError("IAM's answer holds no ID token.") from caught
        self.token = token
        expires = jwt.decode(token, verify=False)["exp"]
        # Naive UTC, as google-auth keeps expiries.
        self.expiry = datetime.datetime.fromtimestamp(expires, datetime.UTC).replace(
            tzinfo=None
        )
