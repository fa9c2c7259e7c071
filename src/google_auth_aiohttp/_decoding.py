"""Decoding of HTTP bodies by their ``Content-Encoding``.

:class:`~google_auth_aiohttp.Response` keeps the body as the server sent it
(aiohttp's own decompression is switched off for requests made through
:class:`~google_auth_aiohttp.Request`), so that callers can have both the raw
and the decoded bytes, as with google-auth's ``requests`` transport.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from google.auth import exceptions

_Decoder = Callable[[bytes], bytes]


def _gunzip(data: bytes) -> bytes:
    # A gzip body may hold several members back to back (RFC 1952, 2.2).
    out = []
    while data:
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        out.append(decompressor.decompress(data))
        out.append(decompressor.flush())
        data = decompressor.unused_data
    return b"".join(out)


def _inflate(data: bytes) -> bytes:
    # "deflate" is meant to be zlib-wrapped (RFC 9110, 8.4.1.2), but some
    # servers send a raw deflate stream; accept both, as browsers do.
    try:
        return zlib.decompress(data)
    except zlib.error:
        return zlib.decompress(data, -zlib.MAX_WBITS)


def _optional_decoders() -> dict[str, _Decoder]:
    # The same optional modules aiohttp uses, so that whatever aiohttp can
    # decode, Response.content() can too.
    decoders: dict[str, _Decoder] = {}
    try:
        import brotlicffi as brotli  # type: ignore[import-not-found]
    except ImportError:
        try:
            import brotli  # type: ignore[import-not-found]
        except ImportError:
            brotli = None
    if brotli is not None:
        decoders["br"] = brotli.decompress
    try:
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:
        try:
            from backports import zstd  # type: ignore[import-not-found]
        except ImportError:
            zstd = None
    if zstd is not None:
        decoders["zstd"] = zstd.decompress
    return decoders


_DECODERS: dict[str, _Decoder] = {
    "gzip": _gunzip,
    "x-gzip": _gunzip,
    "deflate": _inflate,
    **_optional_decoders(),
}


def decode_body(data: bytes, content_encoding: str | None) -> bytes:
    """Undo the codings listed in a ``Content-Encoding`` header.

    Args:
        data (bytes): The body as received.
        content_encoding (Optional[str]): The header's value, for example
            ``"gzip"`` or ``"deflate, br"``.

    Returns:
        bytes: The decoded body.

    Raises:
        google.auth.exceptions.TransportError: If a coding is unknown, cannot
            be decoded on this installation, or the body is corrupt.

    """
    if not content_encoding:
        return data
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    # Codings are listed in the order they were applied; undo them backwards.
    for coding in reversed(codings):
        if coding in ("", "identity"):
            continue
        decoder = _DECODERS.get(coding)
        if decoder is None:
            hint = {
                "br": " Install 'brotli' to decode it.",
                "zstd": " Install 'backports.zstd' (or use Python 3.14+).",
            }.get(coding, "")
            raise exceptions.TransportError(
                f"Cannot decode a response body with Content-Encoding {coding!r}."
                + hint
            )
        try:
            data = decoder(data)
        except Exception as caught:
            raise exceptions.TransportError(
                f"The response body is not valid {coding!r} data: {caught}"
            ) from caught
    return data
