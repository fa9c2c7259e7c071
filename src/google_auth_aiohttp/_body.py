"""Whether a request can be sent again: the auth flow and retries both ask."""

from __future__ import annotations

from aiohttp import ClientRequest

from google_auth_aiohttp._logging import LOGGER, safe_url


def can_resend(request: ClientRequest, after: object) -> bool:
    """Whether ``request``'s body can be sent again (logged when it cannot).

    Args:
        request (aiohttp.ClientRequest): The request that was sent.
        after (object): What prompted the question, for the log.

    Returns:
        bool: False for a body that was consumed (an async iterator, a pipe).
    """
    if getattr(request.body, "consumed", False):
        LOGGER.debug(
            "Not re-sending %s %s after %s: its body cannot be read twice.",
            request.method,
            safe_url(request.url),
            after,
        )
        return False
    return True
