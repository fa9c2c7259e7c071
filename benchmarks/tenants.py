"""Many tenants refreshing at once: ours (async, sync credentials), gcloud-aio-auth.

A multi-tenant service holds one set of credentials per customer; after a
deploy, or when an hour's tokens expire together, all of them need a token at
the same moment. Each run makes N service accounts, then sends one request
per tenant at once through one shared ``aiohttp.ClientSession`` (its default
connector: 100 connections), each authorized with that tenant's credentials
(an ``AuthMiddleware`` per request); gcloud-aio-auth's ``Token.get()`` per
tenant on the same load. The emulator runs in a second process, its token
endpoint answering after 0 or 100 ms, so that this process's event loop
only runs the clients.

Reported: wall time until every tenant has its answer, token requests the
endpoint saw, how late a 10 ms ticker on the loop woke (p99 and max), and
memory per tenant (resident set growth over the run, divided by N).

    python benchmarks/tenants.py --markdown benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import bench
from aiohttp import web

TITLE = "## Many tenants refreshing at once"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"


# -- The server process -----------------------------------------------------------


async def _serve(queue: Any, tenants: int) -> None:
    from google_auth_aiohttp.testing import GoogleEmulator

    async with GoogleEmulator() as google:

        async def control(request: web.Request) -> web.Response:
            if request.method == "POST":
                google.token_delay = float(request.query["delay"])
            return web.json_response({"token_requests": google.token_requests})

        app = web.Application()
        app.router.add_route("*", "/control", control)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        infos = [google.service_account_info() for _ in range(tenants)]
        control_url = f"http://127.0.0.1:{runner.addresses[0][1]}/control"
        queue.put((google.api_url("tenant"), control_url, infos))
        await asyncio.Event().wait()


def _server_main(queue: Any, tenants: int) -> None:
    asyncio.run(_serve(queue, tenants))


# -- Measuring ------------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@dataclass
class Run:
    client: str
    tenants: int
    latency_ms: int
    wall: float
    token_requests: int
    answered: int
    lag_p99: float
    lag_max: float
    bytes_per_tenant: float


async def _control(url: str, delay: float | None = None) -> int:
    async with aiohttp.ClientSession() as session:
        if delay is None:
            response = await session.get(url)
        else:
            response = await session.post(url, params={"delay": str(delay)})
        async with response:
            count: int = (await response.json())["token_requests"]
            return count


async def _ours(
    family: str, infos: list[dict[str, str]], api: str
) -> Callable[[], Awaitable[int]]:
    from google.oauth2 import _service_account_async, service_account

    from google_auth_aiohttp import AuthMiddleware

    make = (
        _service_account_async.Credentials
        if family == "async"
        else service_account.Credentials
    ).from_service_account_info
    middlewares = [AuthMiddleware(make(info, scopes=[SCOPE])) for info in infos]
    session = aiohttp.ClientSession()

    async def one(middleware: AuthMiddleware) -> bool:
        try:
            async with session.get(api, middlewares=(middleware,)) as response:
                return response.status == 200
        except Exception:
            return False

    async def run() -> int:
        try:
            return sum(await asyncio.gather(*(one(m) for m in middlewares)))
        finally:
            await session.close()

    return run


async def _raw(infos: list[dict[str, str]], api: str) -> Callable[[], Awaitable[int]]:
    """The floor: the same requests with a fixed header, and no token at all."""
    session = aiohttp.ClientSession()
    headers = {"Authorization": "Bearer fixed"}

    async def one() -> bool:
        try:
            async with session.get(api, headers=headers) as response:
                return response.status == 401  # the emulator never issued it
        except Exception:
            return False

    async def run() -> int:
        try:
            return sum(await asyncio.gather(*(one() for _ in infos)))
        finally:
            await session.close()

    return run


async def _gcloud(
    infos: list[dict[str, str]], api: str
) -> Callable[[], Awaitable[int]]:
    from gcloud.aio.auth import Token

    session = aiohttp.ClientSession()
    tokens = [
        Token(
            service_file=io.StringIO(json.dumps(info)), session=session, scopes=[SCOPE]
        )
        for info in infos
    ]

    async def one(token: Any) -> bool:
        try:
            bearer = await token.get()
            headers = {"Authorization": f"Bearer {bearer}"}
            async with session.get(api, headers=headers) as response:
                return response.status == 200
        except Exception:  # gcloud-aio-auth's own timeout, among others
            return False

    async def run() -> int:
        try:
            return sum(await asyncio.gather(*(one(t) for t in tokens)))
        finally:
            await session.close()

    return run


async def _measure(
    client: str, infos: list[dict[str, str]], api: str, control: str, latency_ms: int
) -> Run:
    await _control(control, latency_ms / 1000)
    before_tokens = await _control(control)
    gc.collect()
    rss_before = _rss()
    if client == "gcloud-aio-auth":
        run = await _gcloud(infos, api)
    elif client == RAW:
        run = await _raw(infos, api)
    else:
        run = await _ours(client.rsplit(" ", 1)[1], infos, api)
    loop = asyncio.get_running_loop()
    lags: list[float] = []

    async def tick() -> None:
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            lags.append(loop.time() - before - 0.01)

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    answered = await run()
    wall = time.perf_counter() - started
    ticker.cancel()
    rss_after = _rss()
    token_requests = await _control(control) - before_tokens
    lags.sort()
    return Run(
        client=client,
        tenants=len(infos),
        latency_ms=latency_ms,
        wall=wall,
        token_requests=token_requests,
        answered=answered,
        lag_p99=lags[int(len(lags) * 0.99) - 1] if lags else 0.0,
        lag_max=lags[-1] if lags else 0.0,
        bytes_per_tenant=(rss_after - rss_before) / len(infos),
    )


RAW = "raw aiohttp, fixed header (no tokens)"
CLIENTS = (RAW, "ours, async credentials", "ours, sync credentials", "gcloud-aio-auth")


def _one_run(client: str, tenants: int, latency_ms: int) -> Run:
    """A run in a fresh process pair: nothing of one run stays for the next."""
    queue: Any = multiprocessing.get_context("spawn").Queue()
    server = multiprocessing.get_context("spawn").Process(
        target=_server_main, args=(queue, tenants), daemon=True
    )
    server.start()
    try:
        api, control, infos = queue.get(timeout=600)
        return asyncio.run(_measure(client, infos, api, control, latency_ms))
    finally:
        server.terminate()
        server.join(10)


def _client_main(results: Any, client: str, tenants: int, latency_ms: int) -> None:
    results.put(_one_run(client, tenants, latency_ms))


def _in_a_process(client: str, tenants: int, latency_ms: int) -> Run:
    context = multiprocessing.get_context("spawn")
    results: Any = context.Queue()
    process = context.Process(
        target=_client_main, args=(results, client, tenants, latency_ms)
    )
    process.start()
    run: Run = results.get(timeout=1800)
    process.join(60)
    return run


def main(args: argparse.Namespace) -> int:
    runs: list[Run] = []
    for tenants in args.tenants:
        for latency_ms in (0, 100):
            for client in CLIENTS:
                if client == "gcloud-aio-auth" and tenants > args.gcloud_up_to:
                    continue  # minutes a run, and it fails most tenants already
                # gcloud-aio-auth takes minutes a run here: one is enough.
                rounds = 1 if client == "gcloud-aio-auth" else args.rounds
                results = [
                    _in_a_process(client, tenants, latency_ms) for _ in range(rounds)
                ]
                walls = [r.wall for r in results]
                median = results[walls.index(statistics.median_low(walls))]
                runs.append(median)
                print(
                    f"{client:26} N={tenants:5} latency={latency_ms:3} ms: "
                    f"{median.wall:6.2f} s, {median.answered} answered, "
                    f"{median.token_requests} token requests, "
                    f"lag p99 {median.lag_p99 * 1000:.0f} ms max "
                    f"{median.lag_max * 1000:.0f} ms, "
                    f"{median.bytes_per_tenant / 1024:.1f} KiB/tenant",
                    flush=True,
                )
    lines = [
        TITLE,
        "",
        f"Machine: {bench._machine()}. Command: `python benchmarks/tenants.py "
        f"--rounds {args.rounds} --tenants {' '.join(map(str, args.tenants))} "
        f"--gcloud-up-to {args.gcloud_up_to}`.",
        "",
        "N tenants (one service account each) send one request each, all at once, "
        "through one shared `aiohttp.ClientSession` (default connector, 100 "
        "connections): every one needs a token first. The emulator runs in a "
        "second process; its token endpoint answers after the latency shown. "
        "Wall time until every tenant has its answer; token requests the endpoint "
        "saw; how late a 10 ms ticker on the event loop woke while it ran; "
        "resident memory growth per tenant. The run with the median wall time of "
        f"{args.rounds} (one for gcloud-aio-auth, whose runs take minutes), each in "
        "fresh processes.",
        "",
        "| client | tenants | endpoint latency | wall time | tenants answered 200 "
        "| token requests | loop lag p99 / max | memory per tenant |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        lines.append(
            f"| {run.client} | {run.tenants:,} | {run.latency_ms} ms "
            f"| {run.wall:.2f} s | {run.answered:,} | {run.token_requests:,} "
            f"| {run.lag_p99 * 1000:.0f} / {run.lag_max * 1000:.0f} ms "
            f"| {run.bytes_per_tenant / 1024:.1f} KiB |"
        )
    lines.append("")
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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tenants", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument(
        "--gcloud-up-to",
        type=int,
        default=1000,
        help="run gcloud-aio-auth only up to this many tenants",
    )
    parser.add_argument("--markdown", help="replace this section in that report")
    raise SystemExit(main(parser.parse_args()))
