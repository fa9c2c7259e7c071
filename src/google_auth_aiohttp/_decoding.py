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

#: Decodes a body, refusing to produce more than the given number of bytes.
_Decoder = Callable[[bytes, int], bytes]


class _TooLarge(Exception):
    """A decoder produced more than its limit."""


def _gunzip(data: bytes, limit: int) -> bytes:
    # A gzip body may hold several members back to back (RFC 1952, 2.2).
    out = bytearray()
    while data:
        decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        out += decompressor.decompress(data, limit + 1 - len(out))
        if len(out) > limit or decompressor.unconsumed_tail:
            raise _TooLarge
        out += decompressor.flush()
        if len(out) > limit:
            raise _TooLarge
        data = decompressor.unused_data
    return bytes(out)


def _inflate(data: bytes, limit: int) -> bytes:
    # "deflate" is meant to be zlib-wrapped (RFC 9110, 8.4.1.2), but some
    # servers send a raw deflate stream; accept both, as browsers do.
    try:
        return _zlib(data, limit, zlib.MAX_WBITS)
    except zlib.error:
        return _zlib(data, limit, -zlib.MAX_WBITS)


def _zlib(data: bytes, limit: int, wbits: int) -> bytes:
    decompressor = zlib.decompressobj(wbits=wbits)
    out = decompressor.decompress(data, limit + 1)
    if len(out) > limit or decompressor.unconsumed_tail:
        raise _TooLarge
    out += decompressor.flush()
    if len(out) > limit:
        raise _TooLarge
    if not decompressor.eof:
        raise zlib.error("the stream is truncated")
    return out


def _optional_decoders() -> dict[str, _Decoder]:
    # The same optional modules aiohttp uses, so that whatever aiohttp can
    # decode, Response.content() can too, each stopped at the limit.
    decoders: dict[str, _Decoder] = {}
    try:
        import brotlicffi as brotli  # type: ignore[import-not-found]
    except ImportError:
        try:
            import brotli  # type: ignore[import-not-found]
        except ImportError:
            brotli = None
    if brotli is not None:

        def unbrotli(data: bytes, limit: int) -> bytes:
            decompressor = brotli.Decompressor()
            try:  # brotli 1.2 and newer stop at a limit
                out = decompressor.process(data, output_buffer_limit=limit + 1)
            except TypeError:  # older ones, and brotlicffi: after the fact
                out = decompressor.process(data)
            if len(out) > limit:
                raise _TooLarge
            return bytes(out)

        decoders["br"] = unbrotli
    try:
        from compression import zstd  # type: ignore[import-not-found]
    except ImportError:
        try:
            from backports import zstd  # type: ignore[import-not-found]
        except ImportError:
            zstd = None
    if zstd is not None:

        def unzstd(data: bytes, limit: int) -> bytes:
            out = zstd.ZstdDecompressor().decompress(data, max_length=limit + 1)
            if len(out) > limit:
                raise _TooLarge
            return bytes(out)

        decoders["zstd"] = unzstd
    return decoders


_DECODERS: dict[str, _Decoder] = {
    "gzip": _gunzip,
    "x-gzip": _gunzip,
    "deflate": _inflate,
    **_optional_decoders(),
}


def decode_body(data: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Undo the codings listed in a ``Content-Encoding`` header.

    Decoding stops as soon as it would produce more than ``limit`` bytes: a
    compression bomb costs no more memory or time than the limit allows.

    Args:
        data (bytes): The body as received.
        content_encoding (Optional[str]): The header's value, for example
            ``"gzip"`` or ``"deflate, br"``.
        limit (int): The most bytes the decoded body may have.

    Returns:
        bytes: The decoded body.

    Raises:
        google.auth.exceptions.TransportError: If a coding is unknown, cannot
            be decoded on this installation, the body is corrupt, or it decodes
            to more than ``limit`` bytes.

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
            data = decoder(data, limit)
        except _TooLarge:
            raise exceptions.TransportError(
                f"The response body decodes ({coding!r}) to more than {limit} "
                "bytes, which is no credentials response; refused."
            ) from None
        except Exception as caught:
            raise exceptions.TransportError(
                f"The response body is not valid {coding!r} data: {caught}"
            ) from caught
    return data
