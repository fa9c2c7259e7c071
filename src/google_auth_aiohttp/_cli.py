"""``python -m google_auth_aiohttp request``: an authorized curl.

It finds Application Default Credentials with :func:`google_auth_aiohttp.default`
and sends one request through an :class:`AuthorizedSession`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import aiohttp
from google.auth import exceptions

from google_auth_aiohttp._default import default
from google_auth_aiohttp._session import AuthorizedSession

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


def add_request_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``request`` command to the command line's subcommands."""
    parser = commands.add_parser(
        "request",
        help="send one request authorized with Application Default Credentials",
        description=(
            "Send an HTTP request authorized with Application Default "
            "Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud, or the "
            "metadata server), print the response body, and exit 0 for a 2xx "
            "status, 1 for any other or a failure, 2 if no credentials are found."
        ),
    )
    parser.add_argument("url", metavar="URL")
    parser.add_argument(
        "-X",
        "--request",
        dest="method",
        metavar="METHOD",
        help="HTTP method (default: GET, or POST with -d)",
    )
    parser.add_argument(
        "-H",
        "--header",
        dest="headers",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="add a header; repeatable",
    )
    parser.add_argument(
        "-d",
        "--data",
        metavar="DATA",
        help="request body; @FILE reads it from FILE, @- from standard input",
    )
    parser.add_argument(
        "--scopes",
        default=CLOUD_PLATFORM,
        metavar="S",
        help=f"OAuth scopes, comma-separated (default: {CLOUD_PLATFORM})",
    )
    parser.add_argument(
        "-i",
        "--include",
        action="store_true",
        help="print the status line and response headers before the body",
    )


def _body(data: str | None) -> bytes | None:
    if data is None:
        return None
    if data == "@-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        return Path(data[1:]).read_bytes()
    return data.encode()


def _headers(raw: list[str]) -> dict[str, str]:
    headers = {}
    for line in raw:
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"header {line!r} is not of the form 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


async def run_request(args: argparse.Namespace) -> int:
    """Send the request the arguments describe.

    Args:
        args (argparse.Namespace): The parsed ``request`` arguments.

    Returns:
        int: 0 for a 2xx response, 1 otherwise, 2 if no credentials were found.
    """
    try:
        headers = _headers(args.headers)
        body = _body(args.data)
    except (ValueError, OSError) as caught:
        print(f"error: {caught}", file=sys.stderr)
        return 1
    scopes = [s for s in args.scopes.replace(",", " ").split() if s]
    try:
        credentials, _ = await default(scopes=scopes)
    except exceptions.DefaultCredentialsError as caught:
        print(f"error: no credentials found. {caught}", file=sys.stderr)
        return 2
    method = args.method or ("POST" if body is not None else "GET")
    out = sys.stdout.buffer
    try:
        async with (
            AuthorizedSession(credentials) as session,
            session.request(method, args.url, data=body, headers=headers) as response,
        ):
            if args.include:
                version = response.version or aiohttp.HttpVersion11
                out.write(
                    f"HTTP/{version.major}.{version.minor} "
                    f"{response.status} {response.reason}\r\n".encode()
                )
                for name, value in response.headers.items():
                    out.write(f"{name}: {value}\r\n".encode())
                out.write(b"\r\n")
            async for chunk in response.content.iter_chunked(65536):
                out.write(chunk)
            out.flush()
            return 0 if 200 <= response.status < 300 else 1
    except (exceptions.GoogleAuthError, OSError, TimeoutError) as caught:
        print(f"error: {method} {args.url} failed: {caught}", file=sys.stderr)
        return 1
