"""``default()``: google-auth's Application Default Credentials, for asyncio.

``google.auth.default()`` blocks: it reads files and, to find out whether it
runs on Google Compute Engine, probes the metadata server over HTTP. This
version runs it in a worker thread, with its HTTP sent through aiohttp on the
event loop, so the loop keeps running.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiohttp
import google.auth

from google_auth_aiohttp._credentials.threads import call_blocking
from google_auth_aiohttp._transport import AioTransport, Request


async def default(
    scopes: Sequence[str] | None = None,
    request: Any = None,
    quota_project_id: str | None = None,
    default_scopes: Sequence[str] | None = None,
) -> tuple[Any, str | None]:
    """Find the Application Default Credentials, without blocking the loop.

    The async counterpart of :func:`google.auth.default`, searching the same
    places in the same order: ``GOOGLE_APPLICATION_CREDENTIALS``, the gcloud
    CLI's credentials, then the metadata server of Compute Engine, GKE, Cloud
    Run and App Engine. The credentials it returns work with
    :class:`AuthorizedSession` and :class:`AuthMiddleware`::

        credentials, project_id = await google_auth_aiohttp.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        async with AuthorizedSession(credentials) as session:
            ...

    The arguments are google-auth's, in its order. google-auth's Compute
    Engine module imports ``requests`` when it loads, which this package
    installs for it; nothing is sent through it.

    Args:
        scopes (Optional[Sequence[str]]): The scopes to request.
        request (Optional[Callable]): The transport google-auth probes the
            metadata server and asks for the project ID with: a
            :class:`google_auth_aiohttp.Request` (its session's proxy and SSL
            settings apply), a ``google.auth.aio`` transport, or a sync
            google-auth transport (run in the thread). By default, a
            :class:`~google_auth_aiohttp.Request` of its own.
        quota_project_id (Optional[str]): The project to bill for quota.
        default_scopes (Optional[Sequence[str]]): Scopes a client library asks
            for when the user gives none.

    Returns:
        Tuple[google.auth.credentials.Credentials, Optional[str]]: The
        credentials and the project ID, if one could be found.

    Raises:
        google.auth.exceptions.DefaultCredentialsError: If no credentials were
            found, or they are malformed; its message says where to look.
    """

    def find(request: Any) -> tuple[Any, str | None]:
        found: tuple[Any, str | None] = google.auth.default(
            scopes=scopes,
            request=request,
            quota_project_id=quota_project_id,
            default_scopes=default_scopes,
        )
        return found

    if request is not None:
        if not isinstance(request, Request) and _is_aio_transport(request):
            request = AioTransport(request)
        return await call_blocking(find, request)
    async with aiohttp.ClientSession() as session:
        return await call_blocking(find, Request(session))


def _is_aio_transport(request: Any) -> bool:
    from google.auth.aio import transport as aio_transport

    return isinstance(request, aio_transport.Request)
