"""The command line: ``google-auth-aiohttp`` (or ``python -m google_auth_aiohttp``).

Start-up imports neither asyncio nor aiohttp nor google-auth: ``--version``
and ``--help`` answer at once, and each command imports what it needs.

``request`` is an authorized curl, ``print-access-token`` and
``print-identity-token`` print a token as ``gcloud auth print-access-token``
and ``print-identity-token`` do, ``demo`` runs against an embedded emulator.
Every failure is one line on standard error (``--debug`` adds the traceback),
and exit codes tell failures apart:

* 0: success;
* 1: the server answered with a status that is not 2xx (with
  ``--no-location``, a 3xx not followed is an answer too);
* 2: a usage error (arguments, the URL, the method, an output file);
* 3: no credentials found, or they are invalid or were refused;
* 4: a network error or a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from google_auth_aiohttp._version import __version__

if TYPE_CHECKING:
    from aiohttp import ClientHandlerType, ClientRequest, ClientResponse

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"

OK, HTTP_FAILURE, USAGE, CREDENTIALS, NETWORK = 0, 1, 2, 3, 4

# RFC 9110's token: what a method may be made of.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

# What -v masks besides the credentials' own secret headers: other schemes'
# credentials, cookies, and any header whose name says it holds a secret.
_ALSO_SECRET = frozenset(
    ("proxy-authorization", "cookie", "set-cookie", "x-goog-iap-jwt-assertion")
)
_SECRET_NAME = re.compile(
    r"auth|token|key|secret|passw|cookie|session|assertion|credential|signature",
    re.IGNORECASE,
)


class CommandError(Exception):
    """A failure to report on one line, with the exit code it stands for."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv (Optional[Sequence[str]]): The arguments, without the program name.

    Returns:
        int: The exit status.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    import asyncio  # after parsing: --version and --help exit without it

    try:
        if args.command == "demo":
            if args.requests < 1:
                parser.error("--requests must be 1 or more")
            from google_auth_aiohttp._demo import run_demo

            return asyncio.run(run_demo(args.requests))
        if args.command == "print-access-token":
            return asyncio.run(_print_access_token(args))
        if args.command == "print-identity-token":
            return asyncio.run(_print_identity_token(args))
        return asyncio.run(_request(args))
    except CommandError as failure:
        from google_auth_aiohttp._logging import scrub

        if args.debug:
            print(scrub("".join(traceback.format_exc())), end="", file=sys.stderr)
        if not getattr(args, "silent", False):
            # Every URL shown without user info or query: they hold secrets.
            line = scrub(str(failure))
            print(f"google-auth-aiohttp: error: {line}", file=sys.stderr)
        return failure.code
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="google-auth-aiohttp",
        description=(
            "google-auth's aiohttp transport, done right. Exit codes: 0 success, "
            "1 a non-2xx HTTP status, 2 usage error, 3 no or invalid credentials, "
            "4 network error or timeout."
        ),
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "--debug", action="store_true", help="show a traceback with an error"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="run against an embedded emulator of Google's auth endpoints",
        description=(
            "Start an emulated OAuth token endpoint and API on 127.0.0.1, then "
            "drive an AuthorizedSession through a cold start, a token "
            "revocation and an expiry under concurrent load. No network or "
            "Google account needed."
        ),
    )
    demo.add_argument(
        "--requests",
        type=int,
        default=100,
        metavar="N",
        help="concurrent requests per phase (default: 100)",
    )

    token = commands.add_parser(
        "print-access-token",
        help="print an access token from Application Default Credentials",
        description=(
            "Print an OAuth access token of Application Default Credentials "
            "(GOOGLE_APPLICATION_CREDENTIALS, gcloud, or the metadata server), "
            "and nothing else, on standard output."
        ),
    )
    _add_scopes(token)

    identity = commands.add_parser(
        "print-identity-token",
        help="print an ID token for an audience, from the environment",
        description=(
            "Print a Google ID token for AUDIENCE (a Cloud Run URL, an IAP client "
            "ID), from a service-account or impersonation file named by "
            "GOOGLE_APPLICATION_CREDENTIALS or the metadata server, and nothing "
            "else, on standard output."
        ),
    )
    identity.add_argument(
        "--audiences",
        "--audience",
        dest="audience",
        required=True,
        metavar="AUDIENCE",
        help="who the token is for, one audience (gcloud's --audiences)",
    )

    request = commands.add_parser(
        "request",
        help="send one request authorized with Application Default Credentials",
        description=(
            "Send an HTTP request authorized with Application Default "
            "Credentials and write the response body to standard output."
        ),
    )
    request.add_argument("url", metavar="URL")
    request.add_argument(
        "-X",
        "--request",
        dest="method",
        metavar="METHOD",
        help="HTTP method (default: GET, or POST with -d)",
    )
    request.add_argument(
        "-H",
        "--header",
        dest="headers",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="add a header; repeatable",
    )
    request.add_argument(
        "-d",
        "--data",
        metavar="DATA",
        help="request body; @FILE reads it from FILE, @- from standard input",
    )
    request.add_argument(
        "-i",
        "--include",
        action="store_true",
        help="write the status line and response headers before the body",
    )
    request.add_argument(
        "-f",
        "--fail",
        action="store_true",
        help="write no body for a status that is not 2xx",
    )
    request.add_argument(
        "-s", "--silent", action="store_true", help="write no error message"
    )
    request.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help=(
            "write each request sent and each response's status and headers "
            "to standard error, credentials, cookies and keys masked, URLs "
            "without their query"
        ),
    )
    request.add_argument(
        "-o", "--output", metavar="FILE", help="write the body to FILE"
    )
    request.add_argument(
        "-L",
        "--location",
        dest="location",
        action="store_true",
        default=True,
        help=(
            "follow redirects (the default, unlike curl's); the credentials go "
            "only to the URL's own origin"
        ),
    )
    request.add_argument(
        "--no-location",
        dest="location",
        action="store_false",
        help="do not follow redirects: a 3xx is the answer, exit status 0",
    )
    request.add_argument(
        "--max-time",
        type=float,
        metavar="SECONDS",
        help="give up after this long, refreshes included (max_allowed_time)",
    )
    _add_scopes(request)
    return parser


def _add_scopes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scopes",
        default=CLOUD_PLATFORM,
        metavar="S",
        help=f"OAuth scopes, comma-separated (default: {CLOUD_PLATFORM})",
    )


async def _credentials(scopes_text: str) -> Any:
    """Application Default Credentials, or a one-line reason why there are none."""
    from google.auth import exceptions

    from google_auth_aiohttp._credentials.default import default

    _check_credentials_file()
    scopes = [s for s in scopes_text.replace(",", " ").split() if s]
    try:
        credentials, _ = await default(scopes=scopes)
    except exceptions.DefaultCredentialsError as caught:
        found = bool(os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"))
        what = "invalid credentials" if found else "no credentials found"
        raise CommandError(
            CREDENTIALS, _one_line(f"{what}: {_described(caught)}")
        ) from caught
    except (ValueError, TypeError, KeyError, AttributeError) as caught:
        raise CommandError(
            CREDENTIALS, _one_line(f"invalid credentials: {caught}")
        ) from caught
    return credentials


def _check_credentials_file() -> None:
    """Say what is wrong with GOOGLE_APPLICATION_CREDENTIALS, if anything."""
    name = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not name:
        return
    path = Path(name)
    where = f"GOOGLE_APPLICATION_CREDENTIALS={name}"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except IsADirectoryError as caught:
        raise CommandError(CREDENTIALS, f"{where} is a directory") from caught
    except FileNotFoundError as caught:
        raise CommandError(CREDENTIALS, f"{where} does not exist") from caught
    except OSError as caught:
        raise CommandError(
            CREDENTIALS, f"{where} cannot be read: {caught.strerror}"
        ) from caught
    except ValueError as caught:
        raise CommandError(CREDENTIALS, f"{where} is not JSON: {caught}") from caught
    if not isinstance(info, dict) or "type" not in info:
        raise CommandError(
            CREDENTIALS,
            f"{where} is not a credentials file (a JSON object with a 'type')",
        )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _described(error: BaseException) -> str:
    """An exception's message and its cause's, without google-auth's tuples."""
    first = error.args[0] if error.args else ""
    text = first if isinstance(first, str) else str(error)
    cause = error.__cause__
    if cause is not None and str(cause) not in text:
        text = f"{text}: {_described(cause)}"
    return text


async def _print_access_token(args: argparse.Namespace) -> int:
    from google_auth_aiohttp._transport import Request

    credentials = await _credentials(args.scopes)
    async with Request() as request:
        await _refreshed(credentials, request)
    print(credentials.token)
    return OK


async def _print_identity_token(args: argparse.Namespace) -> int:
    from google.auth import exceptions

    from google_auth_aiohttp import id_token
    from google_auth_aiohttp._transport import Request

    _check_credentials_file()
    async with Request() as request:
        try:
            credentials = await id_token.fetch_id_token_credentials(
                args.audience, request=request
            )
        except exceptions.DefaultCredentialsError as caught:
            raise CommandError(
                CREDENTIALS, _one_line(f"no ID token credentials: {_described(caught)}")
            ) from caught
        await _refreshed(credentials, request)
    print(credentials.token)
    return OK


async def _refreshed(credentials: Any, request: Any) -> None:
    """Refresh ``credentials`` as the library does, failures as exit codes."""
    from google.auth import exceptions

    from google_auth_aiohttp._auth.refresh import Route, refresher_for

    try:
        await refresher_for(credentials).refresh(Route(request))
    except exceptions.RefreshError as caught:
        raise CommandError(
            CREDENTIALS, _one_line(f"the credentials were refused: {caught}")
        ) from caught
    except exceptions.TransportError as caught:
        raise CommandError(NETWORK, _one_line(str(caught))) from caught


async def _request(args: argparse.Namespace) -> int:
    import aiohttp
    from google.auth import exceptions
    from yarl import URL

    from google_auth_aiohttp._session import AuthorizedSession

    url = _checked_url(args.url, URL)
    method = args.method or ("POST" if args.data is not None else "GET")
    if not _TOKEN.fullmatch(method):
        raise CommandError(USAGE, f"{method!r} is not an HTTP method")
    headers = _headers(args.headers)
    body = _body(args.data)
    if args.max_time is not None and not 0 < args.max_time < float("inf"):
        raise CommandError(USAGE, f"--max-time {args.max_time} is not a time")
    credentials = await _credentials(args.scopes)
    output = _open_output(args.output)
    try:
        async with (
            AuthorizedSession(credentials) as session,
            session.request(
                method,
                url,
                data=body,
                headers=headers,
                allow_redirects=args.location,
                max_allowed_time=args.max_time,
                middlewares=[_Verbose(credentials)] if args.verbose else [],
            ) as response,
        ):
            failed = not _answered(response.status, args.location)
            if args.include:
                _write_head(output, response)
            if not (failed and args.fail):
                async for chunk in response.content.iter_chunked(65536):
                    output.write(chunk)
            output.flush()
    except exceptions.RefreshError as caught:
        raise CommandError(
            CREDENTIALS, _one_line(f"the credentials were refused: {caught}")
        ) from caught
    except TimeoutError as caught:
        raise CommandError(
            NETWORK, f"{method} {url.with_query(None)}: timed out"
        ) from caught
    except (exceptions.TransportError, aiohttp.ClientError, OSError) as caught:
        reason = _network_reason(caught, aiohttp)
        raise CommandError(
            NETWORK, f"{method} {url.with_query(None)}: {reason}"
        ) from caught
    finally:
        if output is not sys.stdout.buffer:
            output.close()
    if failed:
        raise CommandError(
            HTTP_FAILURE,
            f"{method} {url.with_query(None)}: {response.status} {response.reason}",
        )
    return OK


class _Verbose:
    """``-v``: every request as it is sent, and its response's head.

    A middleware after the auth flow, so it sees each send (redirect hops and
    a re-send after a refresh included) with the headers the flow put on, and
    shows none of their secrets.
    """

    def __init__(self, credentials: Any) -> None:
        from google_auth_aiohttp._auth.origin import (
            NOT_SECRET,
            REDACTED,
            SECRET_HEADERS,
        )

        self._credentials = credentials
        self._secret = SECRET_HEADERS | _ALSO_SECRET
        self._not_secret = NOT_SECRET
        self._redacted = REDACTED

    async def __call__(
        self, request: ClientRequest, handler: ClientHandlerType
    ) -> ClientResponse:
        url = request.url
        target = url.raw_path + ("?<query not shown>" if url.raw_query_string else "")
        self._show(
            ">", f"{request.method} {target} {_http(request.version)}", request.headers
        )
        response = await handler(request)
        version = _http(response.version or request.version)
        self._show(
            "<", f"{version} {response.status} {response.reason}", response.headers
        )
        return response

    def _show(self, mark: str, first: str, headers: Any) -> None:
        lines = [first]
        lines += [
            f"{name}: {self._masked(name, value)}" for name, value in headers.items()
        ]
        print("".join(f"{mark} {line}\n" for line in lines) + mark, file=sys.stderr)

    def _masked(self, name: str, value: str) -> str:
        from google_auth_aiohttp._logging import scrub

        lowered = name.lower()
        secret = lowered not in self._not_secret and (
            lowered in self._secret or _SECRET_NAME.search(lowered) is not None
        )
        # Whatever a header is called, the token is never shown.
        token = getattr(self._credentials, "token", None)
        if secret or (isinstance(token, str) and token and token in value):
            return self._redacted
        return scrub(value)


def _http(version: Any) -> str:
    return f"HTTP/{version.major}.{version.minor}"


def _answered(status: int, followed_redirects: bool) -> bool:
    """Whether ``status`` answers the request, or the command failed."""
    if followed_redirects:
        return 200 <= status < 300
    return 200 <= status < 400


def _network_reason(caught: BaseException, aiohttp: Any) -> str:
    if isinstance(caught, aiohttp.TooManyRedirects):
        return f"too many redirects ({len(caught.history)})"
    if isinstance(caught, aiohttp.ClientPayloadError):
        return f"the response body was cut short ({_one_line(str(caught))})"
    return _one_line(str(caught)) or type(caught).__name__


def _checked_url(text: str, url_type: Any) -> Any:
    try:
        url = url_type(text)
    except ValueError as caught:
        raise CommandError(USAGE, f"{text!r} is not a URL: {caught}") from caught
    if url.scheme not in ("http", "https") or not url.host:
        raise CommandError(USAGE, f"{text!r} is not an http or https URL")
    return url


def _headers(raw: list[str]) -> dict[str, str]:
    headers = {}
    for line in raw:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name.strip()):
            # Not the line itself: what follows a name may be a credential.
            shown = line.split(None, 1)[0][:40] if line.strip() else ""
            raise CommandError(
                USAGE, f"header {shown!r}... is not of the form 'Name: value'"
            )
        headers[name.strip()] = value.strip()
    return headers


def _body(data: str | None) -> bytes | None:
    if data is None:
        return None
    if data == "@-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        try:
            return Path(data[1:]).read_bytes()
        except OSError as caught:
            raise CommandError(
                USAGE, f"cannot read {data[1:]}: {caught.strerror}"
            ) from caught
    return data.encode()


def _open_output(name: str | None) -> IO[bytes]:
    if name is None:
        return sys.stdout.buffer
    try:
        return open(name, "wb")  # closed once the body is written
    except OSError as caught:
        raise CommandError(USAGE, f"cannot write {name}: {caught.strerror}") from caught


def _write_head(output: IO[bytes], response: Any) -> None:
    import aiohttp

    version = response.version or aiohttp.HttpVersion11
    output.write(
        f"HTTP/{version.major}.{version.minor} "
        f"{response.status} {response.reason}\r\n".encode()
    )
    for name, value in response.headers.items():
        output.write(f"{name}: {value}\r\n".encode())
    output.write(b"\r\n")
