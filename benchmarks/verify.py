"""ID-token verifications per second: ours (cached certificates) and google-auth's.

The emulator serves Google-like certificates on 127.0.0.1 in a thread of its
own. Each round verifies the same valid token N times one after another with
``google_auth_aiohttp.id_token.verify_token`` (certificates cached for their
``max-age``) and with google-auth's sync ``google.oauth2.id_token.verify_token``
(over ``requests``, which fetches the certificates every time), and a round of
ours with the cache emptied before each verification, to show what the cache
saves. The section it writes replaces the one of the same title in the report.

    python benchmarks/verify.py --markdown benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import bench

from google_auth_aiohttp import Request, id_token
from google_auth_aiohttp.id_token._verify import _CACHES
from google_auth_aiohttp.testing import GoogleEmulator

TITLE = "## ID token verification"
AUDIENCE = "https://service.example.test"


def _serve() -> tuple[GoogleEmulator, Callable[[], None]]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    emulator = GoogleEmulator()
    asyncio.run_coroutine_threadsafe(emulator.start(), loop).result(30)

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(emulator.close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)

    return emulator, stop


async def _ours(token: str, certs_url: str, count: int, cold: bool) -> float:
    async with Request() as request:
        await id_token.verify_token(
            token, request, audience=AUDIENCE, certs_url=certs_url
        )
        started = time.perf_counter()
        for _ in range(count):
            if cold:
                _CACHES.clear()
            await id_token.verify_token(
                token, request, audience=AUDIENCE, certs_url=certs_url
            )
        return count / (time.perf_counter() - started)


def _google_auth(token: str, certs_url: str, count: int) -> float:
    import google.auth.transport.requests
    from google.oauth2 import id_token as google_id_token

    request = google.auth.transport.requests.Request()
    started = time.perf_counter()
    for _ in range(count):
        google_id_token.verify_token(
            token, request, audience=AUDIENCE, certs_url=certs_url
        )
    return count / (time.perf_counter() - started)


def main(args: argparse.Namespace) -> int:
    emulator, stop = _serve()
    try:
        token = emulator.id_token(AUDIENCE)
        rows: dict[str, list[float]] = {
            "google_auth_aiohttp.id_token.verify_token (cached certificates)": [],
            "the same, cache emptied before each verification": [],
            "google-auth's sync google.oauth2.id_token.verify_token": [],
        }
        names = list(rows)
        for _ in range(args.rounds):
            rows[names[0]].append(
                asyncio.run(_ours(token, emulator.certs_url, args.count, cold=False))
            )
            rows[names[1]].append(
                asyncio.run(_ours(token, emulator.certs_url, args.count // 4, True))
            )
            rows[names[2]].append(
                _google_auth(token, emulator.certs_url, args.count // 4)
            )
        fetches = emulator.certs_requests
    finally:
        stop()
    ours = statistics.median(rows[names[0]])
    lines = [
        TITLE,
        "",
        f"Machine: {bench._machine()}. Command: `python benchmarks/verify.py "
        f"--rounds {args.rounds} --count {args.count}`.",
        "",
        "One valid ID token verified again and again, one verification at a time, "
        "against the emulator's certificates endpoint on 127.0.0.1 (max-age 3600). "
        f"Median of {args.rounds} rounds.",
        "",
        "| verifier | verifications/s median (min-max) | ours is x times faster |",
        "| --- | --- | --- |",
    ]
    for name, values in rows.items():
        median = statistics.median(values)
        lines.append(
            f"| {name} | {median:,.0f} ({min(values):,.0f}-{max(values):,.0f}) "
            f"| {ours / median:.1f} |"
        )
    lines += [
        "",
        f"Certificate fetches in all: {fetches} (one per cold verification and per "
        "google-auth verification, one per round for the cached runs).",
        "",
    ]
    section = "\n".join(lines)
    print(section)
    if args.markdown:
        _replace_section(Path(args.markdown), section)
    return 0


def _replace_section(path: Path, section: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    start = text.find(TITLE)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(TITLE))
        text = text[:start] + section + (text[end + 1 :] if end != -1 else "")
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--markdown", help="replace this section in that report")
    raise SystemExit(main(parser.parse_args()))
