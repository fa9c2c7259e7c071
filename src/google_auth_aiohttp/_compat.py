"""Every private name of aiohttp and google-auth this package uses, and only here.

aiohttp gives client middlewares no public way to tell which call a request
belongs to or whether a middleware runs before them, nor to change a built
request's SSL context, and no public name
for what ``ClientSession.request()`` returns, which wraps
``ClientSession._request``. google-auth keeps private its mTLS helpers, its
refresh threshold and clock, its legacy async credentials, self-signed JWTs
and usage metrics. Each name is looked up when this module is imported
(an :class:`ImportError` names the versions that have it) or has a
documented fallback; ``tests/test_compat.py`` covers each, and CI runs it on
the declared floors and on the latest versions.
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, get_origin

import aiohttp
import google.auth
from aiohttp import ClientRequest

__all__ = [
    "IAM_ID_TOKEN_ENDPOINT",
    "LEGACY_ASYNC_CREDENTIALS",
    "REFRESH_THRESHOLD",
    "RequestContextManager",
    "call_of",
    "client_certificate",
    "first_in_chain",
    "google_is_mtls_endpoint",
    "impersonation_source",
    "is_regional_access_boundary_lookup_enabled",
    "replace_ssl_context",
    "rotated_client_certificate",
    "sign_own_jwts",
    "trace_context",
    "usage_metric_header",
    "use_client_certificate",
    "utcnow",
]

_AIOHTTP = f"aiohttp {aiohttp.__version__}"
_GOOGLE_AUTH = f"google-auth {google.auth.__version__}"


def _missing(what: str, installed: str, supported: str) -> ImportError:
    return ImportError(
        f"google_auth_aiohttp needs {what}, which {installed} lacks; it supports "
        f"{supported}. Install a version that google-auth-aiohttp declares."
    )


# -- aiohttp 3.12.2 to 3.14 ------------------------------------------------------

try:
    from aiohttp.client import _RequestContextManager
except ImportError as gone:  # pragma: no cover - only on an unsupported aiohttp
    raise _missing(
        "aiohttp.client._RequestContextManager", _AIOHTTP, "aiohttp 3.12.2 to 3.x"
    ) from gone

#: What ``ClientSession.request()`` returns: awaitable, and an async context
#: manager. aiohttp names it as a generic alias, whose every call costs as
#: much again as the class's own; the class is called instead.
if TYPE_CHECKING:
    RequestContextManager = _RequestContextManager
else:
    RequestContextManager = get_origin(_RequestContextManager) or _RequestContextManager

if not hasattr(aiohttp.ClientSession, "_request"):  # pragma: no cover
    raise _missing("ClientSession._request", _AIOHTTP, "aiohttp 3.12.2 to 3.x")


def call_of(request: ClientRequest) -> Any:
    """Return an object that identifies the ``ClientSession`` call ``request`` is in.

    aiohttp makes one list of trace contexts per call and hands that same list
    to the request of every redirect hop (and of every re-send after a broken
    connection); another call gets another list. Only its identity is used.

    Args:
        request (aiohttp.ClientRequest): A request a middleware was given.

    Returns:
        Any: The same object for every request of one call.

    Raises:
        RuntimeError: If this aiohttp keeps no such list: the request is not
            sent, since its redirect hops could not be told apart.
    """
    try:
        return request._traces
    except AttributeError:
        raise RuntimeError(
            f"AuthMiddleware cannot tell redirect hops apart on aiohttp "
            f"{aiohttp.__version__} (ClientRequest._traces is gone), so it sends "
            "nothing rather than risk authorizing another host. Use "
            "google_auth_aiohttp.AuthorizedSession, or an aiohttp version that "
            "google-auth-aiohttp declares."
        ) from None


_CALL_CODE = aiohttp.ClientSession._request.__code__


def first_in_chain(passable: frozenset[int]) -> bool:
    """Whether the middleware that calls this is the first of its call's chain.

    Call it from the middleware's own ``__call__``, a plain function: aiohttp
    calls the first middleware from the wrapper that ``ClientSession._request``
    awaits, so the frame two above the middleware's is ``_request``'s only if
    no other middleware runs before it. Any other one is called from the
    middleware before it, or from a wrapper awaited by that one's wrapper (a
    plain function that returned ``handler(request)``). Frames of middlewares
    known to send the request they were given unchanged (``passable``, by the
    identity of their code) are passed over, with their own wrapper. Where
    that cannot be seen (another aiohttp, a stack not that deep), the answer
    is False. Frames are looked up by depth: only those compared are made
    into frame objects.

    Args:
        passable (FrozenSet[int]): ``id()`` of the code of frames to pass over.

    Returns:
        bool: True only if no other middleware runs before it in this call.
    """
    depth = 3  # this function, the middleware, its wrapper, who awaits that
    try:
        code = sys._getframe(depth).f_code
        while code is not _CALL_CODE:
            if id(code) not in passable:
                return False
            depth += 2  # the passable middleware, then its wrapper
            code = sys._getframe(depth).f_code
    except ValueError:  # the stack ends first: not aiohttp's chain
        return False
    return True


def trace_context(request: ClientRequest, trace_config: Any) -> Any:
    """The context ``trace_config`` has in ``request``'s call, if it traces it.

    Returns:
        Optional[types.SimpleNamespace]: What that trace config's hooks were
        given at the call's start; None if it does not trace this call.
    """
    for trace in getattr(request, "_traces", ()):
        if getattr(trace, "_trace_config", None) is trace_config:
            return getattr(trace, "_trace_config_ctx", None)
    return None


def replace_ssl_context(request: ClientRequest, old: Any, new: Any) -> None:
    """Make ``request`` use the SSL context ``new`` if it uses one of ``old``.

    aiohttp fixes a request's SSL context when it builds it; a client
    certificate that rotated meanwhile is presented by re-sending the request
    with the new context. Where ``ClientRequest._ssl`` is missing, nothing
    changes and the new certificate is presented from the next request on.

    Args:
        request (aiohttp.ClientRequest): A request about to be re-sent.
        old (Container[ssl.SSLContext]): Contexts that are no longer current.
        new (ssl.SSLContext): The current one.
    """
    if getattr(request, "_ssl", None) in old:
        request._ssl = new


# -- google-auth 2.45 to 2.x ------------------------------------------------------

try:
    from google.auth import _credentials_async, _helpers
    from google.auth.transport import _mtls_helper
    from google.oauth2 import _credentials_async as _oauth2_async
except ImportError as gone:  # pragma: no cover - only on an unsupported google-auth
    raise _missing(
        "google-auth's legacy async credentials, _helpers and _mtls_helper",
        _GOOGLE_AUTH,
        "google-auth 2.45 to 2.x",
    ) from gone

for _name in (
    "check_use_client_cert",
    "get_client_cert_and_key",
    "check_parameters_for_unauthorized_response",
):
    if not hasattr(_mtls_helper, _name):  # pragma: no cover
        raise _missing(f"_mtls_helper.{_name}", _GOOGLE_AUTH, "google-auth 2.45 to 2.x")

#: google-auth's own legacy async credentials classes (``google.auth`` and
#: ``google.oauth2``), whose ``before_request`` adds headers of the token alone.
LEGACY_ASYNC_CREDENTIALS: tuple[type[Any], ...] = (
    _credentials_async.Credentials,
    _oauth2_async.Credentials,
)

#: How long before its expiry google-auth counts a token as stale.
REFRESH_THRESHOLD: datetime.timedelta = _helpers.REFRESH_THRESHOLD

#: google-auth's clock: naive UTC, as credentials' ``expiry`` is.
utcnow: Callable[[], datetime.datetime] = _helpers.utcnow

#: Whether the environment asks for a client certificate (mutual TLS).
use_client_certificate: Callable[[], bool] = _mtls_helper.check_use_client_cert

#: ``(is_mtls, cert, key)`` from a callback or the application default.
client_certificate: Callable[..., tuple[bool, Any, Any]] = (
    _mtls_helper.get_client_cert_and_key
)

#: Whether the default certificate changed since one a server refused.
rotated_client_certificate: Callable[..., Any] = (
    _mtls_helper.check_parameters_for_unauthorized_response
)

#: google-auth's test for an mTLS endpoint's URL; None where it has none.
google_is_mtls_endpoint: Callable[[str], bool] | None = getattr(
    _mtls_helper, "is_mtls_endpoint", None
)

try:
    from google.auth import iam as _iam

    #: IAM's ``generateIdToken`` address, ``{}`` for the service account, in
    #: the default universe (``googleapis.com``).
    IAM_ID_TOKEN_ENDPOINT: str = _iam._IAM_IDTOKEN_ENDPOINT
except (ImportError, AttributeError) as gone:  # pragma: no cover
    raise _missing(
        "google.auth.iam._IAM_IDTOKEN_ENDPOINT", _GOOGLE_AUTH, "2.45 to 2.x"
    ) from gone

try:
    from google.auth._regional_access_boundary_utils import (
        is_regional_access_boundary_lookup_enabled,
    )
except ImportError:  # google-auth from before regional access boundaries

    def is_regional_access_boundary_lookup_enabled() -> bool:
        """Regional access boundaries do not exist in this google-auth."""
        return False


def usage_metric_header(credentials: Any) -> str | None:
    """The usage metric google-auth's ``before_request`` would add, if any."""
    usage = getattr(credentials, "_metric_header_for_usage", None)
    return None if usage is None else usage()


def sign_own_jwts(credentials: Any, audience: str | None) -> None:
    """Make service-account credentials sign their own JWTs for ``audience``.

    As google-auth's sync session does (AIP-4111), where they are allowed to;
    with ``audience`` None, the scopes' default.

    Raises:
        RuntimeError: If this google-auth's credentials cannot.
    """
    create = getattr(credentials, "_create_self_signed_jwt", None)
    if create is None:  # pragma: no cover - only on an unsupported google-auth
        raise RuntimeError(
            f"{type(credentials).__name__} of {_GOOGLE_AUTH} cannot sign their own "
            "JWTs (no _create_self_signed_jwt); google-auth-aiohttp supports "
            "google-auth 2.45 to 2.x."
        )
    create(audience)


def impersonation_source(credentials: Any) -> tuple[Any, list[str] | None]:
    """The source credentials and delegates of impersonated credentials.

    Raises:
        RuntimeError: If this google-auth keeps them elsewhere.
    """
    try:
        return credentials._source_credentials, credentials._delegates
    except AttributeError:  # pragma: no cover - only on an unsupported google-auth
        raise RuntimeError(
            f"impersonated_credentials.Credentials of {_GOOGLE_AUTH} keep their "
            "source elsewhere; google-auth-aiohttp supports google-auth 2.45 to 2.x."
        ) from None
