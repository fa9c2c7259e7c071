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

from typing import Any

from aiohttp import web

from google_auth_aiohttp import _compat

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

# The constants live here, in the public module, and the submodules read them
# from it (``public.MIN_FRESH``) each time they are used, never copying one:
# users and tests set them here (``id_token.MIN_FRESH = 0``), and the docs
# find their ``#:`` comments here.
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
GOOGLE_ISSUERS: tuple[str, str] = ("accounts.google.com", "https://accounts.google.com")

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

#: IAM's ``generateIdToken`` address for impersonated ID tokens, as google-auth
#: calls it: ``{}`` is the service account; ``googleapis.com`` becomes the
#: credentials' universe domain.
IAM_ID_TOKEN_ENDPOINT = _compat.IAM_ID_TOKEN_ENDPOINT

# Last: the submodules read the constants above as they load (their defaults).
from google_auth_aiohttp.id_token._fetch import (  # noqa: E402
    fetch_id_token,
    fetch_id_token_credentials,
)
from google_auth_aiohttp.id_token._verify import (  # noqa: E402
    verify_firebase_token,
    verify_iap_token,
    verify_oauth2_token,
    verify_token,
)
from google_auth_aiohttp.id_token._web import iap_middleware, middleware  # noqa: E402
