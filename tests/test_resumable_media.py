"""google-resumable-media's async API, a real client, on an AuthorizedSession."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import re
import warnings
from typing import Any

import pytest
from aiohttp import web

from google_auth_aiohttp import AuthorizedSession
from google_auth_aiohttp.testing import GoogleEmulator

CHUNK = 256 * 1024  # resumable uploads move in multiples of 256 KiB
DATA = bytes(range(256)) * 4096  # 1 MiB


class Storage:
    """A Cloud-Storage-like media endpoint that accepts only issued tokens."""

    def __init__(self, google: GoogleEmulator) -> None:
        self.google = google
        self.objects: dict[str, bytes] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.rejected = 0
        self._ids = itertools.count()
        self.url = ""

    def app(self) -> web.Application:
        # Media is bigger than aiohttp's default 1 MiB request body limit.
        app = web.Application(middlewares=[self._auth], client_max_size=8 * 1024**2)
        app.router.add_post("/upload/b/bucket/o", self._upload)
        app.router.add_put("/session/{id}", self._chunk)
        app.router.add_get("/download/b/bucket/o/{name}", self._download)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        issued = self.google.issued_tokens.get(token)
        if issued is None or issued.revoked:
            self.rejected += 1
            await request.read()
            return web.json_response({"error": {"code": 401}}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    @staticmethod
    def _metadata(name: str, data: bytes) -> dict[str, str]:
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        return {
            "bucket": "bucket",
            "name": name,
            "size": str(len(data)),
            "md5Hash": md5,
        }

    async def _upload(self, request: web.Request) -> web.Response:
        kind = request.query["uploadType"]
        if kind == "media":
            name = request.query["name"]
            self.objects[name] = await request.read()
            return web.json_response(self._metadata(name, self.objects[name]))
        metadata = await request.json()
        session = str(next(self._ids))
        self.sessions[session] = {"name": metadata["name"], "data": bytearray()}
        return web.Response(headers={"Location": f"{self.url}/session/{session}"})

    async def _chunk(self, request: web.Request) -> web.Response:
        session = self.sessions[request.match_info["id"]]
        body = await request.read()
        match = re.fullmatch(
            r"bytes (\d+)-(\d+)/(\d+|\*)", request.headers["Content-Range"]
        )
        assert match, request.headers["Content-Range"]
        start, total = int(match[1]), match[3]
        assert start == len(session["data"]), "chunks arrive in order, once"
        session["data"] += body
        if total != "*" and len(session["data"]) == int(total):
            data = bytes(session["data"])
            self.objects[session["name"]] = data
            return web.json_response(self._metadata(session["name"], data))
        return web.Response(
            status=308, headers={"Range": f"bytes=0-{len(session['data']) - 1}"}
        )

    async def _download(self, request: web.Request) -> web.Response:
        data = self.objects[request.match_info["name"]]
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        headers = {"x-goog-hash": f"md5={md5}"}
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("Range", ""))
        if not ranged:
            return web.Response(body=data, headers=headers)
        start = int(ranged[1])
        end = min(int(ranged[2] or len(data) - 1), len(data) - 1)
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return web.Response(status=206, body=data[start : end + 1], headers=headers)


@pytest.fixture
def media() -> Any:
    """google-resumable-media's async API.

    It imports google-auth's own aiohttp transport, whose class definition
    warns (the bug this project exists for); that one warning is let through.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message="Inheritance class AuthorizedSession from ClientSession",
            category=DeprecationWarning,
        )
        import google._async_resumable_media.requests as media

    return media


@pytest.fixture
async def storage(google: GoogleEmulator, serve: Any) -> Storage:
    store = Storage(google)
    store.url = await serve(store.app())
    return store


async def test_simple_upload_and_download(
    media: Any, storage: Storage, credentials: Any
) -> None:
    async with AuthorizedSession(credentials) as session:
        upload = media.SimpleUpload(
            f"{storage.url}/upload/b/bucket/o?uploadType=media&name=a"
        )
        response = await upload.transmit(session, DATA, "application/octet-stream")
        assert json.loads(await response.read())["size"] == str(len(DATA))
        sink = io.BytesIO()
        download = media.Download(f"{storage.url}/download/b/bucket/o/a", stream=sink)
        await download.consume(session)
    assert sink.getvalue() == DATA
    assert storage.objects["a"] == DATA


async def test_resumable_upload_survives_a_401_between_chunks(
    media: Any, storage: Storage, google: GoogleEmulator, credentials: Any
) -> None:
    async with AuthorizedSession(credentials) as session:
        upload = media.ResumableUpload(
            f"{storage.url}/upload/b/bucket/o?uploadType=resumable", CHUNK
        )
        await upload.initiate(
            session, io.BytesIO(DATA), {"name": "big"}, "application/octet-stream"
        )
        await upload.transmit_next_chunk(session)
        google.revoke_all()  # the token dies mid-upload
        while not upload.finished:
            await upload.transmit_next_chunk(session)
    assert storage.objects["big"] == DATA
    assert storage.rejected == 1
    assert google.token_requests == 2


async def test_chunked_download_survives_a_401(
    media: Any, storage: Storage, google: GoogleEmulator, credentials: Any
) -> None:
    storage.objects["c"] = DATA
    sink = io.BytesIO()
    async with AuthorizedSession(credentials) as session:
        download = media.ChunkedDownload(
            f"{storage.url}/download/b/bucket/o/c", CHUNK, sink
        )
        await download.consume_next_chunk(session)
        google.revoke_all()
        while not download.finished:
            await download.consume_next_chunk(session)
    assert sink.getvalue() == DATA
    assert storage.rejected == 1
    assert google.token_requests == 2


async def test_stream_keyword_is_accepted_and_ignored(
    google: GoogleEmulator, credentials: Any
) -> None:
    async with AuthorizedSession(credentials) as session:
        async with session.get(google.api_url("s"), stream=True) as response:
            assert response.status == 200
        with pytest.raises(TypeError, match="verify"):
            await session.get(google.api_url("s"), verify=False)
