"""The two names of aiohttp's own internals this package relies on, and only here.

aiohttp gives client middlewares no public way to tell which call a request
belongs to, nor a public name for what ``ClientSession.request()`` returns.
Both are read here, checked when the package is imported or first used, and
covered by ``tests/test_aiohttp_internals.py`` on every aiohttp version the
package declares.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import ClientRequest

try:
    from aiohttp.client import _RequestContextManager as RequestContextManager
except ImportError as missing:  # pragma: no cover - only on an unsupported aiohttp
    raise ImportError(
        f"google_auth_aiohttp does not support aiohttp {aiohttp.__version__}: "
        "aiohttp.client._RequestContextManager is gone. Install an aiohttp "
        "version that google-auth-aiohttp declares."
    ) from missing

__all__ = ["RequestContextManager", "call_of"]


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
