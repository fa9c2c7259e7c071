"""Mutual TLS: the client certificate an :class:`AuthorizedSession` presents.

The rules are google-auth's sync session's: ``GOOGLE_API_USE_CLIENT_CERTIFICATE``
(or a workload certificate config) turns mTLS on; the certificate comes from
the caller's callback or, without one, from the application default client
certificate; and when an mTLS endpoint answers 401 while that default
certificate has been rotated, the channel takes the new one.

The certificate lives in an :class:`ssl.SSLContext` passed as ``ssl=`` to
every request of the session. aiohttp pools connections by that context, so a
rotation makes a new one: connections that presented the old certificate are
not reused, and the rejected request is pointed at the new context before it
is re-sent.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import tempfile
import weakref
from collections.abc import Callable

from aiohttp import ClientRequest
from google.auth import exceptions

from google_auth_aiohttp._compat import (
    client_certificate,
    google_is_mtls_endpoint,
    replace_ssl_context,
    rotated_client_certificate,
    use_client_certificate,
)
from google_auth_aiohttp._logging import LOGGER

ClientCertCallback = Callable[[], tuple[bytes, bytes]]

# What getting or loading a certificate may raise, as google-auth's sync
# session lists it, plus the ssl module's own failures.
_CERT_ERRORS = (exceptions.ClientCertError, ImportError, OSError, ValueError)


class MtlsChannel:
    """The client certificate of one session, if mTLS is on."""

    __slots__ = ("_lock", "_retired", "cert", "context")

    def __init__(self) -> None:
        self.context: ssl.SSLContext | None = None
        self.cert: bytes | None = None
        self._lock: asyncio.Lock | None = None
        # Contexts replaced by a rotation, which requests built before it hold.
        self._retired: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()

    def configure(self, client_cert_callback: ClientCertCallback | None) -> None:
        """Turn mTLS on with a client certificate, if the environment wants it.

        Args:
            client_cert_callback (Optional[Callable[[], Tuple[bytes, bytes]]]):
                Returns the client certificate and private key, PEM-encoded.
                Without it, the application default client certificate is used.

        Raises:
            google.auth.exceptions.MutualTLSChannelError: If the certificate
                could not be had or loaded; the channel is left as it was.
        """
        if not use_client_certificate():
            return
        try:
            is_mtls, cert, key = client_certificate(client_cert_callback)
            context = _client_context(cert, key) if is_mtls else None
        except _CERT_ERRORS as caught:
            raise exceptions.MutualTLSChannelError(caught) from caught
        self.context = context
        self.cert = cert if is_mtls else None

    async def rotate_if_changed(
        self, request: ClientRequest, cert_at_request: bytes | None
    ) -> None:
        """Take the default client certificate if it changed since a request.

        Called after a 401 from an mTLS endpoint. Concurrent callers check once.

        Args:
            request (aiohttp.ClientRequest): The rejected request, to re-send
                with the new certificate.
            cert_at_request (Optional[bytes]): The certificate it was sent with.

        Raises:
            google.auth.exceptions.MutualTLSChannelError: If the certificate
                changed but could not be loaded.
        """
        context = self.context
        if context is None:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.cert != cert_at_request:  # another caller rotated it meanwhile
                self._retarget(request)
                return
            try:
                cert, key, cached, current = await asyncio.to_thread(
                    rotated_client_certificate, cert_at_request
                )
            except Exception as caught:  # a broken provider must not stop the refresh
                LOGGER.warning("Could not check the client certificate: %s", caught)
                return
            if cert is None or cached == current:
                return
            LOGGER.debug("The client certificate changed; presenting the new one.")
            try:
                self.context = _client_context(cert, key)
            except _CERT_ERRORS as caught:
                raise exceptions.MutualTLSChannelError(
                    "The client certificate changed, but the new one could not be "
                    f"loaded: {caught}"
                ) from caught
            self.cert = cert
            self._retired.add(context)
            self._retarget(request)

    def _retarget(self, request: ClientRequest) -> None:
        if self.context is not None:
            replace_ssl_context(request, self._retired, self.context)


def is_mtls_endpoint(url: str) -> bool:
    """Whether ``url`` is a Google mTLS endpoint, where a 401 may mean rotation."""
    if google_is_mtls_endpoint is not None:
        return bool(google_is_mtls_endpoint(url))
    host = url.partition("://")[2].partition("/")[0].partition(":")[0]
    return host.endswith(".mtls.googleapis.com") or host == "mtls.googleapis.com"


def _client_context(cert: bytes, key: bytes) -> ssl.SSLContext:
    # The default context verifies servers as aiohttp's default does: against
    # the system trust store, SSL_CERT_FILE and SSL_CERT_DIR included.
    context = ssl.create_default_context()
    # ssl loads certificates only from files: write them where only this
    # process can read them, for as long as loading takes.
    with tempfile.TemporaryDirectory(prefix="google-auth-aiohttp-") as folder:
        cert_path = os.path.join(folder, "cert.pem")
        key_path = os.path.join(folder, "key.pem")
        for path, data in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(data)
        try:
            context.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as caught:
            raise ValueError(f"invalid client certificate or key: {caught}") from caught
    return context
