"""Guarding ``aiohttp.web`` servers: middlewares that admit verified callers.

:func:`middleware` (Google ID tokens in ``Authorization: Bearer``) and
:func:`iap_middleware` (Identity-Aware Proxy's JWT) are one guard, ``_guard``,
given where the token is and how it is verified: 401 without a good token,
403 for a caller not allowed, 503 when the token cannot be checked now.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from aiohttp import web
from google.auth import exceptions

from google_auth_aiohttp import id_token as public
from google_auth_aiohttp._checks import seconds
from google_auth_aiohttp._logging import LOGGER
from google_auth_aiohttp._transport import ReadResponse, Request
from google_auth_aiohttp.id_token._verify import (
    _required,
    _required_audiences,
    verify_iap_token,
    verify_token,
)


def middleware(
    audience: str | Collection[str],
    *,
    certs_url: str = public.GOOGLE_OAUTH2_CERTS_URL,
    allowed_emails: Collection[str] | None = None,
    clock_skew_in_seconds: int = 0,
    certs_timeout: float = public.DEFAULT_CERTS_TIMEOUT,
    issuers: Collection[str] = public.GOOGLE_ISSUERS,
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
        keys=(public.REQUEST_KEY, public.CLAIMS),
        missing="A Google ID token is required.",
    )


def iap_middleware(
    audience: str | Collection[str],
    *,
    certs_url: str | None = None,
    allowed_emails: Collection[str] | None = None,
    clock_skew_in_seconds: int = 0,
    certs_timeout: float = public.DEFAULT_CERTS_TIMEOUT,
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
        lambda request: request.headers.get(public.IAP_HEADER, "").strip(),
        verify,
        (public.IAP_ISSUER,),
        allowed_emails,
        verified_emails=False,
        keys=(public.IAP_REQUEST_KEY, public.IAP_CLAIMS),
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
                headers={"Retry-After": str(int(public.RETRY_AFTER_FAILURE))},
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
