"""Request and Response: google-auth's transport interface over aiohttp."""

from __future__ import annotations

import asyncio
import gzip
import socket
import struct
import time
import zlib
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from google.auth import exceptions

from google_auth_aiohttp import Request, Response
from google_auth_aiohttp._decoding import decode_body
from google_auth_aiohttp._transport import MAX_BODY
from google_auth_aiohttp.testing import GoogleEmulator


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_request_refreshes_async_service_account_credentials(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with Request() as request:
        await credentials.refresh(request)
    assert credentials.valid
    assert credentials.token in google.issued_tokens
    assert google.token_requests == 1


async def test_request_closes_the_session_it_created() -> None:
    async with Request() as request:
        pass
    assert request.session is None  # never used: nothing was created
    request = Request()
    with pytest.raises(exceptions.TransportError):
        await request(f"http://127.0.0.1:{_unused_port()}/")
    assert request.session is not None and not request.session.closed
    await request.close()
    assert request.session.closed


async def test_request_never_closes_a_session_passed_in(google: GoogleEmulator) -> None:
    async with aiohttp.ClientSession() as session:
        async with Request(session) as request:
            response = await request(google.token_uri, method="POST", body=b"x")
            assert response.status == 400
        assert not session.closed


async def test_request_rejects_what_is_not_a_client_session() -> None:
    with pytest.raises(TypeError, match=r"aiohttp\.ClientSession"):
        Request("http://example.test")  # type: ignore[arg-type]


async def test_connection_failure_is_a_transport_error_with_url_and_cause() -> None:
    url = f"http://127.0.0.1:{_unused_port()}/token?secret=abc"
    async with Request() as request:
        with pytest.raises(exceptions.TransportError) as caught:
            await request(url, method="POST")
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)
    message = str(caught.value)
    assert url.split("?")[0] in message
    assert "ClientConnectorError" in message
    assert "secret=abc" not in message


async def test_timeout_is_a_transport_error(google: GoogleEmulator) -> None:
    google.token_delay = 2
    async with Request() as request:
        started = asyncio.get_running_loop().time()
        with pytest.raises(exceptions.TransportError, match="timed out") as caught:
            await request(google.token_uri, method="POST", timeout=0.2)
        assert asyncio.get_running_loop().time() - started < 1.5
    assert isinstance(caught.value.__cause__, asyncio.TimeoutError)


async def test_closed_request_or_session_is_a_clear_transport_error(
    google: GoogleEmulator,
) -> None:
    request = Request()
    await request.close()
    with pytest.raises(exceptions.TransportError, match="Request was closed"):
        await request(google.token_uri)
    session = aiohttp.ClientSession()
    await session.close()
    with pytest.raises(exceptions.TransportError, match="ClientSession is closed"):
        await Request(session)(google.token_uri)


@pytest.fixture
async def encoded(serve: Any) -> str:
    """A server that answers with the body encoded as the path says."""
    body = b'{"answer": 42}'
    encodings = {
        "gzip": ("gzip", gzip.compress(body)),
        "gzip-twice": ("gzip", gzip.compress(body[:5]) + gzip.compress(body[5:])),
        "deflate": ("deflate", zlib.compress(body)),
        "raw-deflate": ("deflate", zlib.compress(body)[2:-4]),
        "stacked": ("deflate, gzip", gzip.compress(zlib.compress(body))),
        "identity": ("identity", body),
        "unknown": ("compress", body),
        "corrupt": ("gzip", b"not gzip"),
    }

    async def handler(request: web.Request) -> web.Response:
        coding, data = encodings[request.match_info["name"]]
        return web.Response(body=data, headers={"Content-Encoding": coding})

    app = web.Application()
    app.router.add_get("/{name}", handler)
    url: str = await serve(app)
    return url


@pytest.mark.parametrize(
    "name", ["gzip", "gzip-twice", "deflate", "raw-deflate", "stacked", "identity"]
)
async def test_content_decodes_and_raw_content_keeps_the_body(
    encoded: str, name: str
) -> None:
    # A session that decompresses by default: Request asks for raw bodies.
    async with aiohttp.ClientSession(auto_decompress=True) as session:
        response = await Request(session)(f"{encoded}/{name}")
        assert isinstance(response, Response)
        assert await response.content() == b'{"answer": 42}'
        raw = await response.raw_content()
        assert (raw == b'{"answer": 42}') == (name == "identity")


@pytest.mark.parametrize(
    ("name", "message"),
    [("unknown", "Content-Encoding 'compress'"), ("corrupt", "not valid 'gzip'")],
)
async def test_content_that_cannot_be_decoded_is_a_clear_error(
    encoded: str, name: str, message: str
) -> None:
    async with Request() as request:
        response = await request(f"{encoded}/{name}")
        with pytest.raises(exceptions.TransportError, match=message):
            await response.content()


def test_brotli_without_a_decoder_says_what_to_install() -> None:
    try:
        import brotli  # type: ignore[import-not-found]
    except ImportError:
        with pytest.raises(exceptions.TransportError, match="Install 'brotli'"):
            decode_body(b"\x0b\x02\x80abc\x03", "br", 100)
    else:
        assert decode_body(brotli.compress(b"abc"), "br", 100) == b"abc"


async def test_response_exposes_status_reason_headers_and_stream(
    google: GoogleEmulator,
) -> None:
    async with Request() as request:
        response = await request(google.token_uri, method="POST", body=b"")
        assert response.status == 400
        assert response.reason == "Bad Request"
        assert response.headers["content-type"].startswith("application/json")
        assert response.headers["CONTENT-TYPE"] == response.headers["content-type"]
        assert b"unsupported_grant_type" in await response.data.read()
        assert repr(response) == "<Response [400 Bad Request]>"


async def test_kwargs_pass_through_to_the_session(google: GoogleEmulator) -> None:
    seen: list[str] = []

    async def on_start(session: Any, context: Any, params: Any) -> None:
        seen.append(params.headers.get("X-Trace", ""))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        response = await Request(session)(
            google.token_uri,
            method="POST",
            headers={"X-Trace": "1"},
            params={"a": "b"},
        )
        assert response.status == 400
    assert seen == ["1"]


def _zeros_bomb(coding: str, mebibytes: int) -> bytes:
    """A valid gzip or zlib stream of ``mebibytes`` MiB of zeros, made in a blink.

    Compressing a gibibyte takes seconds; after a full flush the compressor
    starts afresh, so the block one mebibyte of zeros compresses to can be
    repeated. The trailer's checksum is of the whole, as a decoder checks it.
    """
    chunk = bytes(1 << 20)
    raw = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = raw.compress(chunk) + raw.flush(zlib.Z_FULL_FLUSH)
    stream = block * mebibytes + raw.flush()
    size = mebibytes << 20
    if coding == "gzip":
        crc = 0
        for _ in range(mebibytes):
            crc = zlib.crc32(chunk, crc)
        header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # RFC 1952
        return header + stream + struct.pack("<II", crc, size & 0xFFFFFFFF)
    adler = (size % 65521) << 16 | 1  # Adler-32 of zeros: b = n, a = 1
    return b"\x78\xda" + stream + struct.pack(">I", adler)  # RFC 1950


def test_the_bomb_is_what_it_says() -> None:
    for coding, decompress in (("gzip", gzip.decompress), ("deflate", zlib.decompress)):
        assert decompress(_zeros_bomb(coding, 3)) == bytes(3 << 20)


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_a_compression_bomb_is_refused_without_decoding_it_all(
    serve: Any, coding: str
) -> None:
    # 1000 MiB of zeros, sent as about 1 MiB: decoded, nearly a gibibyte.
    bomb = _zeros_bomb(coding, 1000)
    assert len(bomb) < MAX_BODY

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=bomb, headers={"Content-Encoding": coding})

    app = web.Application()
    app.router.add_get("/bomb", handler)
    url = await serve(app) + "/bomb"
    async with Request() as request:
        response = await request(url)
        started = time.perf_counter()
        with pytest.raises(exceptions.TransportError, match=r"decodes .* to more than"):
            await response.content()
        assert time.perf_counter() - started < 0.5  # it stopped at the cap


@pytest.mark.parametrize(
    "url",
    [
        "http://user:PASSWORD@127.0.0.1:9/token?access_token=SECRET",
        # aiohttp's own message quotes this one whole.
        "http://user:PASSWORD@/token?access_token=SECRET",
    ],
)
async def test_a_transport_error_holds_no_query_and_no_user_info(url: str) -> None:
    async with Request() as request:
        with pytest.raises(exceptions.TransportError) as caught:
            await request(url)
    printed = str(caught.value) + repr(caught.value)
    assert "SECRET" not in printed
    assert "PASSWORD" not in printed
    assert "/token" in printed
