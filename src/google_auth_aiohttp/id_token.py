"""Google ID tokens, async: fetch them to call services, verify them in servers.

google-auth's ``google.oauth2.id_token`` has the same names, but is sync, and
fetches Google's certificates again for every verification.

:func:`fetch_id_token` and :func:`fetch_id_token_credentials` find ID-token
credentials where google-auth does (a service-account or impersonation file
named by ``GOOGLE_APPLICATION_CREDENTIALS``, else the metadata server) without
blocking the event loop, all HTTP through aiohttp; the credentials work with
:class:`~google_auth_aiohttp.AuthorizedSession`, which sends
``Authorization: Bearer <ID token>`` and refreshes it when it expires::

    from google_auth_aiohttp import AuthorizedSession, id_token

    credentials = await id_token.fetch_id_token_credentials(service_url)
    async with AuthorizedSession(credentials) as session:
        await session.get(service_url)

The verifying coroutines
keep the certificates for as long as the endpoint's ``Cache-Control: max-age``
says: N verifications within it, concurrent or one after another, make one
fetch, and after it one refetch that concurrent verifications share. A token
signed with a key id the cache does not know makes one refetch at once (Google
rotated its keys), but such refetches happen at most once every
:data:`UNKNOWN_KEY_COOLDOWN` seconds, so a flood of forged key ids cannot flood
the certificates endpoint.

Every fetch goes through the ``request`` passed in (a
:class:`google_auth_aiohttp.Request`), so its session's proxy and SSL settings
apply. Error messages never contain the token.

:func:`middleware` admits only requests that carry a valid Google ID token to
an ``aiohttp.web`` application (Pub/Sub push, Cloud Tasks, Cloud Scheduler,
service-to-service calls)::

    from aiohttp import web
    from google_auth_aiohttp import id_token

    app = web.Application(
        middlewares=[id_token.middleware("https://my-service.example.com")]
    )
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import inspect
import json
import math
import os
import re
import time
import warnings
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

import google.auth
from aiohttp import web
from google.auth import exceptions, impersonated_credentials, jwt

from google_auth_aiohttp import _compat
from google_auth_aiohttp._auth.refresh import Route, refresher_for
from google_auth_aiohttp._auth.single_flight import CERTS_BUDGET, SingleFlight
from google_auth_aiohttp._checks import seconds
from google_auth_aiohttp._compat import impersonation_source
from google_auth_aiohttp._credentials.threads import call_blocking
from google_auth_aiohttp._logging import LOGGER, safe_url
from google_auth_aiohttp._transport import ReadResponse, Request

__all__ = [
    "CLAIMS",
    "DEFAULT_CERTS_TIMEOUT",
    "FIREBASE_ISSUER_PREFIX",
    "GOOGLE_APIS_CERTS_URL",
    "GOOGLE_ISSUERS",
    "GOOGLE_OAUTH2_CERTS_URL",
    "IAP_CERTS_URL",
    "IAP_CLAIMS",
    "IAP_HEADER",
    "IAP_ISSUER",
    "IAP_REQUEST_KEY",
    "MAX_AGE",
    "MIN_FRESH",
    "NO_KEYS_RETRY",
    "REQUEST_KEY",
    "RETRY_AFTER_FAILURE",
    "REVALIDATE_WAIT",
    "STALE_IF_ERROR",
    "UNKNOWN_KEY_COOLDOWN",
    "fetch_id_token",
    "fetch_id_token_credentials",
    "iap_middleware",
    "middleware",
    "verify_firebase_token",
    "verify_iap_token",
    "verify_oauth2_token",
    "verify_token",
]

#: Google's OAuth 2.0 certificates, which sign ID tokens for Google accounts
#: and service accounts.
GOOGLE_OAUTH2_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"

#: The certificates that sign Firebase ID tokens.
GOOGLE_APIS_CERTS_URL = (
    "https://www.googleapis.com/robot/v1/metadata/x509/"
    "securetoken@system.gserviceaccount.com"
)

#: Seconds between two refetches caused by unknown key ids, per certificates URL.
UNKNOWN_KEY_COOLDOWN = 5.0

#: Seconds fetched keys stay fresh at least, whatever the endpoint's
#: ``max-age`` (or its lack) says.
MIN_FRESH = UNKNOWN_KEY_COOLDOWN

#: Seconds a certificate fetch may take, unless ``certs_timeout`` says otherwise.
DEFAULT_CERTS_TIMEOUT = 10.0

#: Seconds past their ``max-age`` that cached keys keep verifying while the
#: certificates endpoint fails or stalls (stale-if-error).
STALE_IF_ERROR = 86400.0

#: The longest ``max-age`` honoured, in seconds; a longer one counts as this.
MAX_AGE = 86400

#: Seconds a verification waits for a scheduled refetch before verifying with
#: the keys it has (a token whose key id they hold).
REVALIDATE_WAIT = 1.0

#: Seconds after a failed refetch before another is tried, while cached keys
#: still verify.
RETRY_AFTER_FAILURE = 5.0

#: Seconds after a failed fetch before another is tried, with no keys to
#: verify with meanwhile: a failing endpoint is asked at most once a second,
#: not once per token, and a recovered one within a second.
NO_KEYS_RETRY = 1.0

#: What the issuer of a Firebase ID token starts with; the project ID follows.
FIREBASE_ISSUER_PREFIX = "https://securetoken.google.com/"

#: The issuers of Google's ID tokens.
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
_MAX_AGE = re.compile(r"max-age=(\d+)")

#: The claims of the verified token, where :func:`middleware` puts them.
REQUEST_KEY = "google_id_token"

#: Identity-Aware Proxy's signing keys, a JWK set of EC P-256 keys.
IAP_CERTS_URL = "https://www.gstatic.com/iap/verify/public_key-jwk"

#: The issuer of the JWTs Identity-Aware Proxy sends.
IAP_ISSUER = "https://cloud.google.com/iap"

#: The header Identity-Aware Proxy puts its JWT in.
IAP_HEADER = "x-goog-iap-jwt-assertion"

#: The claims of the verified IAP JWT, where :func:`iap_middleware` puts them.
IAP_REQUEST_KEY = "google_iap_jwt"

#: The same claims under a typed key, on aiohttp versions that have them
#: (``request[id_token.CLAIMS]``); None on older ones.
CLAIMS: Any = web.RequestKey(REQUEST_KEY, dict) if hasattr(web, "RequestKey") else None

#: The IAP claims under a typed key (``request[id_token.IAP_CLAIMS]``), on
#: aiohttp versions that have them; None on older ones.
IAP_CLAIMS: Any = (
    web.RequestKey(IAP_REQUEST_KEY, dict) if hasattr(web, "RequestKey") else None
)


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


#: IAM's ``generateIdToken`` address for impersonated ID tokens, as google-auth
#: calls it: ``{}`` is the service account; ``googleapis.com`` becomes the
#: credentials' universe domain.
IAM_ID_TOKEN_ENDPOINT = _compat.IAM_ID_TOKEN_ENDPOINT


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
        return IAM_ID_TOKEN_ENDPOINT.replace("googleapis.com", universe).format(
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


async def verify_token(
    id_token: str | bytes,
    request: Callable[..., Awaitable[Any]],
    audience: str | Collection[str] | None = None,
    certs_url: str = GOOGLE_OAUTH2_CERTS_URL,
    clock_skew_in_seconds: int = 0,
    *,
    certs_timeout: float = DEFAULT_CERTS_TIMEOUT,
) -> dict[str, Any]:
    """Verify an ID token issued by Google, and return its claims.

    Args:
        id_token (Union[str, bytes]): The encoded token.
        request (Callable): The transport certificates are fetched with, such
            as :class:`google_auth_aiohttp.Request`.
        audience (Union[str, Collection[str], None]): The audience (or
            audiences) the token must be for. None accepts any, as in
            google-auth (a server should always give one); an empty string or
            collection is refused.
        certs_url (str): Where the public keys are published: a JSON object
            of key id to PEM certificate or public key, or a JWK set (RSA and
            EC P-256 keys), such as ``https://www.googleapis.com/oauth2/v3/certs``.
        clock_skew_in_seconds (int): Leeway for ``iat`` and ``exp``.
        certs_timeout (float): Seconds a certificate fetch may take.

    Returns:
        Mapping[str, Any]: The token's claims.

    Raises:
        ValueError: If the token is not a str or bytes, is malformed, its
            algorithm is not its key's, its signature does not verify, or its
            audience or times are wrong
            (google-auth's ``InvalidValue``/``MalformedError`` are both).
        google.auth.exceptions.TransportError: If no usable certificates could
            be had: the token could not be checked either way.
    """
    return await _verify(
        id_token, request, audience, certs_url, clock_skew_in_seconds, certs_timeout
    )


async def _verify(
    id_token: str | bytes,
    request: Callable[..., Awaitable[Any]],
    audience: str | Collection[str] | None,
    certs_url: str,
    clock_skew_in_seconds: int,
    certs_timeout: float,
    algorithms: Collection[str] | None = None,
) -> dict[str, Any]:
    """:func:`verify_token`, the token's ``alg`` one of ``algorithms`` if given."""
    if not isinstance(id_token, (str, bytes)):
        raise ValueError(
            f"The ID token must be a str or bytes, not {type(id_token).__name__}."
        )
    seconds("certs_timeout", certs_timeout)
    if audience is not None:
        _required("audience", audience)  # an empty one would match nothing, or all
    try:
        token = id_token.decode() if isinstance(id_token, bytes) else id_token
    except UnicodeDecodeError:
        raise ValueError("The ID token is malformed: it is not text.") from None
    header = _header(token)
    if algorithms is not None and header.get("alg") not in algorithms:
        raise ValueError(
            f"The token's algorithm is not one of {sorted(algorithms)}: "
            "it is not valid."
        )
    key_id = header.get("kid") if isinstance(header.get("kid"), str) else None
    cache = _cache_for(certs_url)
    certs = await cache.certs(request, key_id, certs_timeout)
    expected = cache.algorithms.get(key_id) if key_id is not None else None
    if expected is not None and header.get("alg") != expected:
        raise ValueError(
            "The ID token's algorithm does not match its key's, "
            f"{expected}: it is not valid."
        )
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            certs=certs,
            audience=audience,
            clock_skew_in_seconds=clock_skew_in_seconds,
        )
    except (ValueError, exceptions.GoogleAuthError) as caught:
        raise _without(token, caught) from None
    except (TypeError, KeyError, AttributeError, IndexError, RecursionError):
        # google-auth trips over some shapes of token; they are all malformed.
        raise ValueError("The ID token is malformed.") from None
    if not isinstance(claims, dict):
        raise ValueError("The ID token is malformed: its claims are not an object.")
    return claims


async def verify_oauth2_token(
    id_token: str | bytes,
    request: Callable[..., Awaitable[Any]],
    audience: str | Collection[str] | None = None,
    clock_skew_in_seconds: int = 0,
    *,
    certs_timeout: float = DEFAULT_CERTS_TIMEOUT,
) -> dict[str, Any]:
    """Verify an OAuth 2.0 ID token issued by Google's accounts service.

    As :func:`verify_token`, with Google's certificates, and the issuer must
    be ``accounts.google.com``.

    Raises:
        google.auth.exceptions.GoogleAuthError: If the issuer is another.
    """
    claims = await verify_token(
        id_token,
        request,
        audience=audience,
        certs_url=GOOGLE_OAUTH2_CERTS_URL,
        clock_skew_in_seconds=clock_skew_in_seconds,
        certs_timeout=certs_timeout,
    )
    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise exceptions.GoogleAuthError(
            f"Wrong issuer: 'iss' should be one of {list(GOOGLE_ISSUERS)}."
        )
    return claims


async def verify_firebase_token(
    id_token: str | bytes,
    request: Callable[..., Awaitable[Any]],
    audience: str | Collection[str] | None = None,
    clock_skew_in_seconds: int = 0,
    *,
    certs_timeout: float = DEFAULT_CERTS_TIMEOUT,
) -> dict[str, Any]:
    """Verify an ID token issued by Firebase Authentication.

    As google-auth 2.63: with Google's Firebase certificates; the ``aud``
    claim must be a non-empty string (the Firebase project ID), the issuer
    ``https://securetoken.google.com/<aud>``, and ``sub`` a non-empty string.

    Args:
        id_token (Union[str, bytes]): The encoded token.
        request (Callable): The transport certificates are fetched with.
        audience (Union[str, Collection[str], None]): Your Firebase project ID.
            Without one the audience is not checked, and a :class:`UserWarning`
            says so, as google-auth does.
        clock_skew_in_seconds (int): Leeway for ``iat`` and ``exp``.
        certs_timeout (float): Seconds a certificate fetch may take.

    Returns:
        Mapping[str, Any]: The token's claims.

    Raises:
        google.auth.exceptions.InvalidValue: If the audience, issuer or subject
            claim is not valid (a ``ValueError`` too).
        ValueError: If the token does not verify.
    """
    if not audience:
        warnings.warn(
            "verify_firebase_token without an audience leaves the token's "
            "audience unchecked: pass your Firebase project ID as audience.",
            UserWarning,
            stacklevel=2,
        )
        audience = None
    claims = await verify_token(
        id_token,
        request,
        audience=audience,
        certs_url=GOOGLE_APIS_CERTS_URL,
        clock_skew_in_seconds=clock_skew_in_seconds,
        certs_timeout=certs_timeout,
    )
    token_audience = claims.get("aud")
    if not isinstance(token_audience, str) or not token_audience:
        raise exceptions.InvalidValue("The token has no valid 'aud' claim.")
    if claims.get("iss") != FIREBASE_ISSUER_PREFIX + token_audience:
        raise exceptions.InvalidValue(
            f"Wrong issuer: 'iss' should be '{FIREBASE_ISSUER_PREFIX}<aud>'."
        )
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise exceptions.InvalidValue("The token has no valid 'sub' claim.")
    return claims


def middleware(
    audience: str | Collection[str],
    *,
    certs_url: str = GOOGLE_OAUTH2_CERTS_URL,
    allowed_emails: Collection[str] | None = None,
    clock_skew_in_seconds: int = 0,
    certs_timeout: float = DEFAULT_CERTS_TIMEOUT,
    issuers: Collection[str] = GOOGLE_ISSUERS,
) -> Any:
    """An ``aiohttp.web`` middleware that admits only Google-signed requests.

    A request without a valid ``Authorization: Bearer <Google ID token>`` for
    ``audience``, from one of ``issuers``, is answered 401 with
    ``WWW-Authenticate: Bearer``, and the handler never runs; one whose
    ``email`` claim is not a verified address in ``allowed_emails`` (when
    given) is answered 403. Otherwise the handler runs with the verified claims
    at ``request["google_id_token"]``. When the token cannot be checked at all
    (no usable certificates: the endpoint failed before any were cached, or for
    longer than :data:`STALE_IF_ERROR`), the answer is 503 with ``Retry-After``,
    so that Pub/Sub and Cloud Tasks deliver again later.

    Answers and logs say why a request was refused in a word or two: never any
    part of the token presented, nor the audience expected.

    Args:
        audience (Union[str, Collection[str]]): The audience the tokens must
            be for: usually the service's URL. Required: None, an empty string
            or an empty collection is refused, since it would admit a token
            Google signed for anyone.
        certs_url (str): Where the public keys are published.
        allowed_emails (Optional[Collection[str]]): The callers admitted, by
            their token's ``email`` claim, which must be verified
            (``email_verified``); None admits any valid token.
        clock_skew_in_seconds (int): Leeway for ``iat`` and ``exp``.
        certs_timeout (float): Seconds a certificate fetch may take.
        issuers (Collection[str]): The ``iss`` claims admitted: Google's
            (``accounts.google.com`` and ``https://accounts.google.com``) by
            default; for Firebase, ``https://securetoken.google.com/<project>``.

    Returns:
        Callable: The middleware, for ``web.Application(middlewares=[...])``.

    Raises:
        ValueError: If ``audience`` or ``issuers`` is missing or empty, or a
            time is out of range.
    """
    audiences = _required_audiences(audience)
    seconds("certs_timeout", certs_timeout)
    admitted_issuers = _required("issuers", issuers)

    async def verify(token: str) -> dict[str, Any]:
        return await verify_token(
            token,
            _fetch_alone,
            audience=audiences,
            certs_url=certs_url,
            clock_skew_in_seconds=clock_skew_in_seconds,
            certs_timeout=certs_timeout,
        )

    return _guard(
        _bearer_token,
        verify,
        admitted_issuers,
        allowed_emails,
        verified_emails=True,
        keys=(REQUEST_KEY, CLAIMS),
        missing="A Google ID token is required.",
    )


async def verify_iap_token(
    iap_jwt: str | bytes,
    request: Callable[..., Awaitable[Any]],
    audience: str | Collection[str],
    clock_skew_in_seconds: int = 0,
    *,
    certs_url: str | None = None,
    certs_timeout: float = DEFAULT_CERTS_TIMEOUT,
) -> dict[str, Any]:
    """Verify the JWT Identity-Aware Proxy put in ``x-goog-iap-jwt-assertion``.

    It must be signed with ES256 by one of IAP's keys (a JWK set, cached as
    the other certificates are), issued by ``https://cloud.google.com/iap``,
    for ``audience``::

        claims = await id_token.verify_iap_token(
            request.headers["x-goog-iap-jwt-assertion"],
            transport,
            "/projects/123456/global/backendServices/7890",
        )

    Args:
        iap_jwt (Union[str, bytes]): The header's value.
        request (Callable): The transport IAP's keys are fetched with.
        audience (Union[str, Collection[str]]): The expected ``aud``:
            ``/projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID``, or
            ``/projects/PROJECT_NUMBER/apps/PROJECT_ID`` for App Engine.
            Required.
        clock_skew_in_seconds (int): Leeway for ``iat`` and ``exp``.
        certs_url (Optional[str]): Where IAP's keys are published; by default
            :data:`IAP_CERTS_URL`.
        certs_timeout (float): Seconds a key fetch may take.

    Returns:
        Mapping[str, Any]: The JWT's claims (``email``, ``sub``, ``hd``...).

    Raises:
        ValueError: If ``audience`` is missing or empty, or the JWT does not
            verify, is not ES256 or not IAP's.
        google.auth.exceptions.TransportError: If IAP's keys could not be had.
    """
    audiences = _required_audiences(audience)
    claims = await _verify(
        iap_jwt,
        request,
        audiences,
        IAP_CERTS_URL if certs_url is None else certs_url,
        clock_skew_in_seconds,
        certs_timeout,
        algorithms=("ES256",),
    )
    if claims.get("iss") != IAP_ISSUER:
        raise exceptions.InvalidValue(f"Wrong issuer: 'iss' should be {IAP_ISSUER!r}.")
    return claims


def iap_middleware(
    audience: str | Collection[str],
    *,
    certs_url: str | None = None,
    allowed_emails: Collection[str] | None = None,
    clock_skew_in_seconds: int = 0,
    certs_timeout: float = DEFAULT_CERTS_TIMEOUT,
) -> Any:
    """An ``aiohttp.web`` middleware for a backend behind Identity-Aware Proxy.

    It admits only requests whose ``x-goog-iap-jwt-assertion`` header holds a
    JWT IAP signed for ``audience`` (see :func:`verify_iap_token`), with the
    claims at ``request["google_iap_jwt"]`` (and :data:`IAP_CLAIMS`); else
    401, or 403 for an ``email`` not in ``allowed_emails``, or 503 when IAP's
    keys cannot be had, as :func:`middleware` does::

        app = web.Application(
            middlewares=[
                id_token.iap_middleware("/projects/123/global/backendServices/456")
            ]
        )

    Args:
        audience (Union[str, Collection[str]]): The expected ``aud``. Required.
        certs_url (Optional[str]): Where IAP's keys are published; by default
            :data:`IAP_CERTS_URL`.
        allowed_emails (Optional[Collection[str]]): The users admitted, by the
            JWT's ``email`` (which IAP has verified); None admits any.
        clock_skew_in_seconds (int): Leeway for ``iat`` and ``exp``.
        certs_timeout (float): Seconds a key fetch may take.

    Returns:
        Callable: The middleware, for ``web.Application(middlewares=[...])``.

    Raises:
        ValueError: If ``audience`` is missing or empty, or a time is out of
            range.
    """
    audiences = _required_audiences(audience)
    seconds("certs_timeout", certs_timeout)

    async def verify(token: str) -> dict[str, Any]:
        return await verify_iap_token(
            token,
            _fetch_alone,
            audiences,
            clock_skew_in_seconds,
            certs_url=certs_url,
            certs_timeout=certs_timeout,
        )

    return _guard(
        lambda request: request.headers.get(IAP_HEADER, "").strip(),
        verify,
        (IAP_ISSUER,),
        allowed_emails,
        verified_emails=False,
        keys=(IAP_REQUEST_KEY, IAP_CLAIMS),
        missing="An Identity-Aware Proxy JWT is required.",
    )


def _bearer_token(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _guard(
    token_of: Callable[[web.Request], str],
    verify: Callable[[str], Awaitable[dict[str, Any]]],
    issuers: Collection[str],
    allowed_emails: Collection[str] | None,
    *,
    verified_emails: bool,
    keys: tuple[str, Any],
    missing: str,
) -> Any:
    """The ``aiohttp.web`` middleware of :func:`middleware` and :func:`iap_middleware`.

    401 without a good token (generic words, a word of why in the DEBUG log),
    403 for a caller not allowed, 503 when the token cannot be checked now.
    """
    allowed = None if allowed_emails is None else frozenset(allowed_emails)
    string_key, typed_key = keys

    @web.middleware
    async def google_token_middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]
    ) -> Any:
        token = token_of(request)
        if not token:
            return _challenge("invalid_request", missing)
        try:
            claims = await verify(token)
        except exceptions.TransportError as caught:
            LOGGER.warning(
                "Could not check the token of %s %s: %s",
                request.method,
                request.path,
                caught,
            )
            return web.json_response(
                {
                    "error": "temporarily_unavailable",
                    "error_description": "The token could not be checked now.",
                },
                status=503,
                headers={"Retry-After": str(int(RETRY_AFTER_FAILURE))},
            )
        except Exception as caught:  # any other: the token is not good, never a 500
            return _refused(request, _reason(caught))
        # Claims are any JSON: a list where a string belongs is refused too
        # (it is no member of a set; ``in`` would raise TypeError).
        issuer, email = claims.get("iss"), claims.get("email")
        if not isinstance(issuer, str) or issuer not in issuers:
            return _refused(request, "wrong issuer")
        if allowed is not None and not (
            isinstance(email, str)
            and email in allowed
            and (not verified_emails or claims.get("email_verified") in (True, "true"))
        ):
            LOGGER.debug(
                "Refused %s %s: a caller not allowed.", request.method, request.path
            )
            return web.json_response(
                {
                    "error": "insufficient_scope",
                    "error_description": "This caller is not allowed.",
                },
                status=403,
            )
        if typed_key is not None:
            request[typed_key] = claims
        with warnings.catch_warnings():
            # The documented string key: aiohttp recommends typed keys (above)
            # and warns about string ones.
            warnings.simplefilter("ignore", web.NotAppKeyWarning)
            request[string_key] = claims
        return await handler(request)

    return google_token_middleware


def _refused(request: web.Request, reason: str) -> web.Response:
    LOGGER.debug("Refused %s %s: %s.", request.method, request.path, reason)
    return _challenge("invalid_token", "The ID token is not valid.")


def _reason(caught: BaseException) -> str:
    """Why a token was refused, in words that hold nothing of it or of the audience."""
    message = str(caught).lower()
    for words, reason in (
        ("audience", "wrong audience"),
        ("expired", "expired"),
        ("too early", "not yet valid"),
        ("signature", "bad signature"),
        ("certificate for key id", "unknown key"),
        ("issuer", "wrong issuer"),
    ):
        if words in message:
            return reason
    return "malformed"


def _required(name: str, values: str | Collection[str] | None) -> frozenset[str]:
    """``values`` as a set, refused if missing, empty or holding an empty string."""
    found = [values] if isinstance(values, str) else list(values or ())
    if not found or not all(isinstance(v, str) and v for v in found):
        raise ValueError(
            f"{name} must be given: a non-empty string, or a collection of them."
        )
    return frozenset(found)


def _required_audiences(audience: str | Collection[str] | None) -> list[str]:
    """The audiences a guard admits; refused if none, which would admit any."""
    if audience is None:
        raise ValueError(
            "audience must be given (usually the service's URL): without one, "
            "any token Google signed, for any service, would be admitted."
        )
    return sorted(_required("audience", audience))


async def _fetch_alone(url: str, method: str = "GET", **kwargs: Any) -> ReadResponse:
    """The middleware's transport: a session of its own for each fetch.

    A certificate fetch is shared by every request that needs it; tied to the
    first one's session, it would fail the others when that client goes away.
    """
    async with Request() as request:
        response = await request(url, method=method, **kwargs)
        return ReadResponse(response.status, response.headers, await response.content())


def _challenge(error: str, description: str) -> web.Response:
    return web.json_response(
        {"error": error, "error_description": description},
        status=401,
        headers={"WWW-Authenticate": f'Bearer error="{error}"'},
    )


def _header(token: str) -> dict[str, Any]:
    """A token's header; the token itself is never echoed."""
    header = token.partition(".")[0]
    try:
        decoded = json.loads(
            base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        )
    except (ValueError, TypeError, RecursionError):
        raise ValueError("The ID token is malformed: its header is not JSON.") from None
    if not isinstance(decoded, dict):
        raise ValueError("The ID token is malformed: its header is not an object.")
    return decoded


def _without(token: str, caught: BaseException) -> BaseException:
    """``caught``, or one of its type whose message does not hold the token."""
    message = str(caught)
    if token not in message:
        return caught
    cleaned = message.replace(token, "<the ID token>")
    try:
        return type(caught)(cleaned)
    except TypeError:  # pragma: no cover - an exception type with other args
        return ValueError(cleaned)


class _Certificates:
    """The public keys published at one URL, and when to fetch them again.

    Keys are fresh for the endpoint's ``max-age``. After it, the next
    verification refetches them, and every verification that arrives
    meanwhile joins that one fetch. If the fetch fails, or has not landed
    within :data:`REVALIDATE_WAIT` seconds, a token whose key id the cached
    keys hold is verified with them (stale-if-error, for up to
    :data:`STALE_IF_ERROR` seconds past ``max-age``; logged), and no new
    fetch is tried for :data:`RETRY_AFTER_FAILURE` seconds. A token whose key
    id the cache does not know waits for a refetch (a rotation); such
    refetches start at most once every :data:`UNKNOWN_KEY_COOLDOWN` seconds,
    but one already in the air is always waited for.
    """

    __slots__ = (
        "algorithms",
        "fetches",
        "fresh_until",
        "keys",
        "retry_at",
        "unknown_fetch_at",
        "url",
    )

    def __init__(self, url: str) -> None:
        self.url = url
        self.keys: dict[str, str] = {}
        #: The algorithm each key signs with, where known.
        self.algorithms: dict[str, str] = {}
        # All in time.monotonic().
        self.fresh_until = -math.inf
        self.retry_at = -math.inf
        self.unknown_fetch_at = -math.inf
        self.fetches: SingleFlight[None] = SingleFlight(CERTS_BUDGET)

    async def certs(
        self, request: Callable[..., Awaitable[Any]], key_id: str | None, timeout: float
    ) -> Mapping[str, str]:
        """The keys to verify a token signed with ``key_id`` with.

        Raises:
            google.auth.exceptions.TransportError: If no usable keys could be had.
        """
        now = time.monotonic()
        known = bool(self.keys) and (key_id is None or key_id in self.keys)
        if now < self.fresh_until:
            if known:
                return self.keys
            # An unknown key id: Google may have rotated its keys. A refetch
            # in the air is waited for; else one starts, unless one did lately.
            if self.fetches.current() is None:
                if now < self.retry_at:
                    raise self._failed_lately()
                if now - self.unknown_fetch_at < UNKNOWN_KEY_COOLDOWN:
                    return self.keys  # the signature check will say it is unknown
                self.unknown_fetch_at = now
            await self._fetch(request, timeout)
            return self.keys
        flight = self.fetches.current()
        if not known and flight is None and self.keys:
            # An unknown key id past max-age: the same limits as within it.
            if now < self.retry_at:
                raise self._failed_lately()
            if now - self.unknown_fetch_at < UNKNOWN_KEY_COOLDOWN:
                return self.keys
            self.unknown_fetch_at = now
        if not known or now >= self.fresh_until + STALE_IF_ERROR:
            # Nothing else to verify with. A failing endpoint is not asked
            # again by every verification (no keys yet, or only too old ones).
            if flight is None and now < self.retry_at:
                raise self._failed_lately()
            await self._fetch(request, timeout)
            return self.keys
        if now < self.retry_at:
            return self.keys  # the last refetch failed moments ago
        if flight is not None and _age(flight) >= REVALIDATE_WAIT:
            return self.keys  # a refetch already kept somebody waiting
        try:
            async with asyncio.timeout(min(timeout, REVALIDATE_WAIT)):
                await self._fetch(request, timeout)
        except TimeoutError:
            LOGGER.warning(
                "The certificates at %s are slow to answer; verifying with the "
                "keys cached %.0fs past their max-age meanwhile.",
                safe_url(self.url),
                now - self.fresh_until,
            )
        except exceptions.TransportError:
            pass  # logged where it failed; the cached keys keep verifying
        return self.keys

    def _failed_lately(self) -> exceptions.TransportError:
        return exceptions.TransportError(
            f"The certificates at {safe_url(self.url)} failed moments ago; the "
            "token's key cannot be checked now."
        )

    async def _fetch(
        self, request: Callable[..., Awaitable[Any]], timeout: float
    ) -> None:
        """One fetch at a time per event loop; concurrent callers share it.

        The caller waits ``timeout`` at most, hedges included.
        """
        bound = asyncio.timeout(timeout)
        try:
            async with bound:
                await self.fetches.run(lambda: self._download(request, timeout))
        except TimeoutError as caught:
            if not bound.expired():
                raise
            raise exceptions.TransportError(
                f"Fetching the certificates at {safe_url(self.url)} took longer "
                f"than certs_timeout={timeout:g}s."
            ) from caught

    async def _download(
        self, request: Callable[..., Awaitable[Any]], timeout: float
    ) -> None:
        where = safe_url(self.url)
        LOGGER.debug("Fetching ID token certificates from %s.", where)
        try:
            async with asyncio.timeout(timeout):
                response = await request(self.url, method="GET")
                body = await response.content()
            keys, algorithms, max_age = _parse_certificates(
                response.status, response.headers, body, where
            )
        except TimeoutError as caught:
            self._failed(f"took longer than certs_timeout={timeout:g}s")
            raise exceptions.TransportError(
                f"Fetching the certificates at {where} took longer than "
                f"certs_timeout={timeout:g}s."
            ) from caught
        except exceptions.GoogleAuthError as caught:
            self._failed(str(caught))
            raise
        self.keys = keys
        self.algorithms = algorithms
        # An endpoint without a usable max-age is not asked again at every
        # verification: at most as often as unknown key ids may make it.
        self.fresh_until = time.monotonic() + max(max_age, MIN_FRESH)
        self.retry_at = -math.inf

    def _failed(self, why: str) -> None:
        wait = RETRY_AFTER_FAILURE if self.keys else NO_KEYS_RETRY
        self.retry_at = time.monotonic() + wait
        if self.keys:
            LOGGER.warning(
                "Could not refetch the certificates at %s (%s); the cached keys "
                "keep verifying for up to %ss past their max-age.",
                safe_url(self.url),
                why,
                STALE_IF_ERROR,
            )


def _age(flight: Any) -> float:
    """Seconds ``flight`` has been in the air."""
    return asyncio.get_running_loop().time() - float(flight.started)


def _parse_certificates(
    status: int, headers: Mapping[str, str], body: bytes, where: str
) -> tuple[dict[str, str], dict[str, str], int]:
    """The keys of a certificates answer, their algorithms, and their ``max-age``.

    Google's endpoints answer a JSON object of key id to PEM (a certificate or
    a public key), or a JWK set (``{"keys": [...]}``, RSA and EC P-256 keys).
    """
    if status != 200:
        raise exceptions.TransportError(
            f"Could not fetch the certificates at {where}: status {status}."
        )
    try:
        answer = json.loads(body)
    except ValueError as caught:
        raise exceptions.TransportError(
            f"The certificates at {where} are not JSON."
        ) from caught
    if isinstance(answer, dict) and isinstance(answer.get("keys"), list):
        keys, algorithms = _jwk_set(answer["keys"], where)
    elif isinstance(answer, dict) and all(
        isinstance(value, str) for value in answer.values()
    ):
        keys, algorithms = answer, _pem_algorithms(answer)
    else:
        raise exceptions.TransportError(
            f"The certificates at {where} are neither a JSON object of key id to "
            "PEM nor a JWK set."
        )
    match = _MAX_AGE.search(headers.get("Cache-Control", ""))
    # Digits beyond a day's worth are a day: a garbled max-age neither
    # overflows the clock nor keeps retired keys for ever.
    digits = match.group(1).lstrip("0") if match else ""
    max_age = MAX_AGE if len(digits) > 9 else min(int(digits or 0), MAX_AGE)
    return keys, algorithms, max_age


def _jwk_set(jwks: list[Any], where: str) -> tuple[dict[str, str], dict[str, str]]:
    """PEM public keys and algorithms, by key id, of a JWK set's signing keys.

    Keys of another type, curve, use or algorithm are left out: a token they
    signed is refused as signed by an unknown key.
    """
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
    except ImportError as missing:  # pragma: no cover - google-auth brings it
        raise exceptions.TransportError(
            f"The certificates at {where} are a JWK set, which needs the "
            "cryptography package: pip install cryptography."
        ) from missing
    keys: dict[str, str] = {}
    algorithms: dict[str, str] = {}
    for jwk in jwks:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            continue
        if jwk.get("use", "sig") != "sig":
            continue
        public: Any
        try:
            if jwk.get("kty") == "RSA":
                algorithm = "RS256"
                public = rsa.RSAPublicNumbers(
                    _jwk_int(jwk["e"]), _jwk_int(jwk["n"])
                ).public_key()
            elif jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
                algorithm = "ES256"
                public = ec.EllipticCurvePublicNumbers(
                    _jwk_int(jwk["x"]), _jwk_int(jwk["y"]), ec.SECP256R1()
                ).public_key()
            else:
                continue
        except (KeyError, TypeError, ValueError):
            continue  # a key that is not one: none of its tokens verify
        if jwk.get("alg", algorithm) != algorithm:
            continue
        keys[jwk["kid"]] = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        algorithms[jwk["kid"]] = algorithm
    return keys, algorithms


def _jwk_int(value: Any) -> int:
    """A JWK's base64url big-endian integer."""
    if not isinstance(value, str):
        raise TypeError("not a string")
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


def _pem_algorithms(keys: Mapping[str, str]) -> dict[str, str]:
    """The algorithm each PEM certificate or public key signs with, if known."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
    except ImportError:  # google-auth's own rsa module verifies RS256 only
        return {}
    algorithms = {}
    for key_id, pem in keys.items():
        try:
            data = pem.encode()
            public: Any = (
                x509.load_pem_x509_certificate(data).public_key()
                if b"CERTIFICATE" in data
                else serialization.load_pem_public_key(data)
            )
        except ValueError:
            continue
        if isinstance(public, rsa.RSAPublicKey):
            algorithms[key_id] = "RS256"
        elif isinstance(public, ec.EllipticCurvePublicKey):
            algorithms[key_id] = "ES256"
    return algorithms


_CACHES: dict[str, _Certificates] = {}


def _cache_for(certs_url: str) -> _Certificates:
    cache = _CACHES.get(certs_url)
    if cache is None:
        cache = _CACHES[certs_url] = _Certificates(certs_url)
    return cache
