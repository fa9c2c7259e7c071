"""The origin rule: which requests may carry the credentials' headers.

A call asks for one origin (scheme, host and port, as aiohttp normalises
them): that of the URL the caller passed. aiohttp runs the middlewares again
for every redirect hop of the call, with a request built from the server's
``Location``; a hop to any other origin goes without the credentials'
headers, whatever the ``Location`` looks like. Each host of the auth flow
knows its calls' asked origins in its own way (see ``_session`` and
``_middleware``) and asks :func:`may_authorize` about every request.

Once a request is sent, the credentials' secrets in its headers are blanked
(:func:`redact`): aiohttp's ``request_info`` is a live view of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any

from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from google.auth import exceptions
from multidict import CIMultiDict
from yarl import URL

from google_auth_aiohttp._credentials.own_requests import current_trail
from google_auth_aiohttp._logging import LOGGER, safe_url

#: What the credentials' secret headers read once a request is sent.
REDACTED = "<redacted>"

#: Headers credentials add that are no secret; any other is redacted.
NOT_SECRET = frozenset(("x-goog-api-client", "x-goog-user-project"))

#: Headers that are secrets whatever the credentials.
SECRET_HEADERS = frozenset(("authorization", "x-goog-api-key"))


def may_authorize(request: ClientRequest, asked_origin: URL) -> bool:
    """Whether ``request``, of a call that asked for ``asked_origin``, is authorized.

    Args:
        request (aiohttp.ClientRequest): A request of the call, its first or
            a redirect hop, as aiohttp is about to send it.
        asked_origin (yarl.URL): The origin the call asked for.

    Returns:
        bool: True only if the request goes to that origin.
    """
    return request.url.origin() == asked_origin


def send_unauthorized(
    request: ClientRequest, handler: ClientHandlerType, asked_origin: URL | None
) -> Awaitable[ClientResponse]:
    """Send ``request`` as it is, without the credentials' headers.

    A middleware may send a request again itself after it was authorized:
    the blanks :func:`redact` left go too.

    Raises:
        google.auth.exceptions.TransportError: See
            :func:`check_credentials_request`.
    """
    if current_trail() is not None:
        check_credentials_request(request)
    LOGGER.debug(
        "Not authorizing %s: the call asked for %s.",
        safe_url(request.url),
        asked_origin or "another origin",
    )
    drop_blanks(request.headers)
    return handler(request)


def drop_blanks(headers: CIMultiDict[Any]) -> None:
    """Remove the blanks :func:`redact` left, before the request is sent again.

    A re-send must not carry ``<redacted>`` to a server: not when it goes
    unauthorized, nor when it is authorized with credentials (assigned
    meanwhile) that add other headers than those it was first sent with. The
    retry layer and the flow's re-send after a refresh call it; off the
    steady state's path, where the same credentials set the same names again.
    """
    if REDACTED in headers.values():  # rare: a re-send of an authorized request
        for name in [name for name, value in headers.items() if value == REDACTED]:
            headers.popall(name, None)


def check_credentials_request(request: ClientRequest) -> None:
    """Refuse to send a credentials' own request that a middleware sent elsewhere.

    A token, STS, IAM or metadata request carries the credentials' secrets in
    its body and headers (a refresh token, an assertion, a source token): it
    goes only to the origin the credentials asked for.

    Raises:
        google.auth.exceptions.TransportError: If a middleware changed its URL
            to another origin.
    """
    if request.url.origin() != request.original_url.origin():
        raise exceptions.TransportError(
            "A middleware sent the credentials' request for "
            f"{safe_url(request.original_url)} to {safe_url(request.url)}: it is "
            "not sent."
        )


def secret_names(added: Mapping[str, str]) -> tuple[str, ...]:
    """The names of the secrets among the headers credentials add."""
    return tuple(name for name in added if name.lower() not in NOT_SECRET)


def redact(headers: CIMultiDict[Any], secrets: tuple[str, ...]) -> None:
    """Blank the credentials' secrets, named by ``secrets``, in a sent request.

    aiohttp's ``request_info`` (on the response, and in the
    ``ClientResponseError``, ``TooManyRedirects`` and ``WSServerHandshakeError``
    made from it) is a live view of these headers: once the request is on the
    wire, what reprs, tracebacks and error trackers print of it holds no token.
    The next send of the request (a re-send after a refresh, a retry) sets
    them again. One that a middleware after the flow took off reads blank
    too: what the view shows is never a secret.
    """
    for name in secrets:
        headers[name] = REDACTED


def strip_secrets(headers: CIMultiDict[Any], names: frozenset[str]) -> None:
    """Remove the secret headers ``names`` (and the always-secret ones)."""
    for name in names | SECRET_HEADERS:
        if name not in NOT_SECRET:
            headers.popall(name, None)
