"""Command line: ``python -m google_auth_aiohttp {demo,request}``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv (Optional[Sequence[str]]): The arguments, without the program name.

    Returns:
        int: The exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m google_auth_aiohttp",
        description="google-auth's aiohttp transport, done right.",
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
    from google_auth_aiohttp._cli import add_request_command, run_request

    add_request_command(commands)
    args = parser.parse_args(argv)
    if args.command == "request":
        return asyncio.run(run_request(args))
    if args.requests < 1:
        parser.error("--requests must be 1 or more")

    from google_auth_aiohttp._demo import run_demo

    return asyncio.run(run_demo(args.requests))


if __name__ == "__main__":
    sys.exit(main())
