"""The parts of aiohttp's internals this package relies on, and only here.

aiohttp gives client middlewares no public way to tell which call a request
belongs to, nor to change a built request's SSL context, and no public name
for what ``ClientSession.request()`` returns. Each is reached here, checked
with a clear error (or a documented fallback), and covered by
``tests/test_aiohttp_internals.py`` on every aiohttp version the package
declares. (``AuthorizedSession``, a subclass, also calls
``ClientSession._request``, which ``request()`` wraps.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, get_origin

import aiohttp
from aiohttp import ClientRequest

try:
    from aiohttp.client import _RequestContextManager
except ImportError as missing:  # pragma: no cover - only on an unsupported aiohttp
    raise ImportError(
        f"google_auth_aiohttp does not support aiohttp {aiohttp.__version__}: "
        "aiohttp.client._RequestContextManager is gone. Install an aiohttp "
        "version that google-auth-aiohttp declares."
    ) from missing

#: What ``ClientSession.request()`` returns: awaitable, and an async context
#: manager. aiohttp names it as a generic alias, whose every call costs as
#: much again as the class's own; the class is called instead.
if TYPE_CHECKING:
    RequestContextManager = _RequestContextManager
else:
    RequestContextManager = get_origin(_RequestContextManager) or _RequestContextManager

__all__ = ["RequestContextManager", "call_of", "replace_ssl_context"]


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
