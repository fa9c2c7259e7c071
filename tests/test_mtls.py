"""Mutual TLS: a client certificate on every https request, rotated on a 401."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from aiohttp import web
from google.auth import exceptions

from google_auth_aiohttp import AuthorizedSession
from google_auth_aiohttp.testing import GoogleEmulator

HOST = "storage.mtls.googleapis.com"  # an mTLS endpoint, served on 127.0.0.1


class LoopbackResolver(aiohttp.abc.AbstractResolver):
    """Resolves every name to 127.0.0.1: the test's server, nothing else."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


@dataclass
class MtlsServer:
    url: str
    accepted: str  # the client identity the server takes, as the API would


@pytest.fixture
def ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> trustme.CA:
    authority = trustme.CA()
    # The session trusts what aiohttp trusts by default: here, this CA.
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    monkeypatch.setenv("GOOGLE_API_USE_CLIENT_CERTIFICATE", "true")
    return authority


def _pems(ca: trustme.CA, identity: str) -> tuple[bytes, bytes]:
    cert = ca.issue_cert(identity)
    return cert.cert_chain_pems[0].bytes(), cert.private_key_pem.bytes()


@pytest.fixture
async def server(
    ca: trustme.CA, google: GoogleEmulator, serve: Any
) -> AsyncIterator[MtlsServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no TLS
    state = MtlsServer(url="", accepted="client-a@example.test")

    async def whoami(request: web.Request) -> web.Response:
        assert request.transport is not None
        peer = request.transport.get_extra_info("peercert")
        identity = dict(peer["subjectAltName"]).get("email")
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if identity != state.accepted or token not in google.issued_tokens:
            return web.json_response({"identity": identity}, status=401)
        return web.json_response({"identity": identity})

    app = web.Application()
    app.router.add_get("/whoami", whoami)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    state.url = f"https://{HOST}:{runner.addresses[0][1]}/whoami"
    yield state
    await runner.cleanup()


def _session(credentials: Any) -> AuthorizedSession:
    return AuthorizedSession(
        credentials, connector=aiohttp.TCPConnector(resolver=LoopbackResolver())
    )


async def test_client_certificate_from_a_callback(
    ca: trustme.CA, server: MtlsServer, credentials: Any
) -> None:
    pems = _pems(ca, "client-a@example.test")
    async with _session(credentials) as session:
        assert not session.is_mtls
        with pytest.raises(aiohttp.ClientError):  # the server requires one
            await session.get(server.url)
        session.configure_mtls_channel(lambda: pems)
        assert session.is_mtls
        for _ in range(3):
            async with session.get(server.url) as response:
                assert response.status == 200
                assert (await response.json())["identity"] == "client-a@example.test"


async def test_disabled_by_the_environment(
    ca: trustme.CA, credentials: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_API_USE_CLIENT_CERTIFICATE", "false")
    async with _session(credentials) as session:
        session.configure_mtls_channel(lambda: _pems(ca, "client-a@example.test"))
        assert not session.is_mtls


def _write_default_certificate(folder: Path, ca: trustme.CA, identity: str) -> None:
    cert, key = _pems(ca, identity)
    (folder / "cert.pem").write_bytes(cert)
    (folder / "key.pem").write_bytes(key)


@pytest.fixture
def default_certificate(
    ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """An application default client certificate, as a workload config."""
    config = tmp_path / "certificate_config.json"
    config.write_text(
        json.dumps(
            {
                "cert_configs": {
                    "workload": {
                        "cert_path": str(tmp_path / "cert.pem"),
                        "key_path": str(tmp_path / "key.pem"),
                    }
                }
            }
        )
    )
    monkeypatch.setenv("GOOGLE_API_CERTIFICATE_CONFIG", str(config))
    _write_default_certificate(tmp_path, ca, "client-a@example.test")
    return tmp_path


async def test_default_client_certificate_and_its_rotation_after_a_401(
    ca: trustme.CA,
    server: MtlsServer,
    default_certificate: Path,
    google: GoogleEmulator,
    credentials: Any,
) -> None:
    async with _session(credentials) as session:
        session.configure_mtls_channel()  # no callback: the default certificate
        assert session.is_mtls
        async with session.get(server.url) as response:
            assert (await response.json())["identity"] == "client-a@example.test"
        # The workload's certificate is rotated; the API takes only the new one.
        _write_default_certificate(default_certificate, ca, "client-b@example.test")
        server.accepted = "client-b@example.test"
        async with session.get(server.url) as response:
            assert response.status == 200
            assert (await response.json())["identity"] == "client-b@example.test"
    assert google.token_requests == 2  # the 401 also refreshed the token


@pytest.mark.parametrize(
    "callback",
    [
        lambda: (b"not a certificate", b"not a key"),
        lambda: (_ for _ in ()).throw(OSError("the certificate provider is down")),
    ],
    ids=["garbage", "provider-fails"],
)
async def test_certificate_failures_are_mutual_tls_channel_errors(
    ca: trustme.CA, credentials: Any, callback: Any
) -> None:
    async with _session(credentials) as session:
        with pytest.raises(exceptions.MutualTLSChannelError):
            session.configure_mtls_channel(callback)
        assert not session.is_mtls
