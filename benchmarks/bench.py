"""Benchmark google-auth-aiohttp against raw aiohttp and its peers.

The servers run in a second process on 127.0.0.1: a plain API for the steady
state, and a GoogleEmulator (token endpoint, token-checking API) with a small
control API for the scenarios. Every client runs in this process, in
interleaved rounds, so that they share whatever the machine is doing.

    python benchmarks/bench.py                      # the table
    python benchmarks/bench.py --markdown benchmarks/RESULTS.md \\
        --chart benchmarks/ratios.png               # what README shows

Throughput is reported as a ratio to raw aiohttp sending a fixed
Authorization header. Raw aiohttp runs before and after every other client,
and each of that client's runs is compared with the mean of the two raw runs
around it; the table gives the median of those ratios. A second raw session
is measured like the others, to show how far apart two identical clients
come out. The processes are not pinned to CPUs: on a VM, waking a process on
another vCPU costs more than the auth layer does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import io
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
RAW = "raw aiohttp (fixed header)"
RAW_AGAIN = "raw aiohttp again (the noise)"
PASSTHROUGH = "raw + a do-nothing middleware"
OURS = (
    "AuthorizedSession, async SA",
    "AuthorizedSession, sync SA",
    "AuthMiddleware, async SA",
)
Fetch = Callable[[str], Awaitable[int]]


# --------------------------------------------------------------------------
# The server process


async def _serve(queue: Any) -> None:
    from google_auth_aiohttp.testing import GoogleEmulator

    async def item(request: web.Request) -> web.Response:
        return web.json_response({"id": 1, "name": "item"})

    api = web.Application()
    api.router.add_get("/item", item)
    runner = web.AppRunner(api, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    api_url = f"http://127.0.0.1:{runner.addresses[0][1]}/item"

    google = GoogleEmulator()
    await google.start()

    async def revoke(request: web.Request) -> web.Response:
        google.revoke_all()
        return web.json_response({})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"token_requests": google.token_requests})

    async def token_delay(request: web.Request) -> web.Response:
        google.token_delay = float(request.query["seconds"])
        return web.json_response({})

    control = web.Application()
    control.router.add_post("/revoke", revoke)
    control.router.add_get("/stats", stats)
    control.router.add_post("/token_delay", token_delay)
    control_runner = web.AppRunner(control, access_log=None)
    await control_runner.setup()
    await web.TCPSite(control_runner, "127.0.0.1", 0).start()
    control_url = f"http://127.0.0.1:{control_runner.addresses[0][1]}"

    queue.put(
        {
            "api_url": api_url,
            "emulator_api": google.api_url("item"),
            "control_url": control_url,
            "service_account_info": google.service_account_info(),
        }
    )
    await asyncio.Event().wait()


def _server_main(queue: Any) -> None:
    asyncio.run(_serve(queue))


# --------------------------------------------------------------------------
# Clients: each is set up once, then fetches a URL and returns the status


@dataclass
class Client:
    name: str
    fetch: Fetch | None = None
    close: Callable[[], Awaitable[None]] | None = None
    error: str | None = None
    throughput: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)  # to the raw runs around


def _session_fetch(session: aiohttp.ClientSession) -> Fetch:
    async def fetch(url: str) -> int:
        async with session.get(url) as response:
            await response.read()
            return response.status

    return fetch


async def _make_clients(setup: dict[str, Any]) -> list[Client]:
    from google.oauth2 import _service_account_async, service_account

    from google_auth_aiohttp import AuthMiddleware, AuthorizedSession

    info = setup["service_account_info"]
    clients: list[Client] = []

    async def add(name: str, build: Callable[[], Awaitable[Client]]) -> None:
        try:
            clients.append(await build())
        except Exception as caught:  # a peer that cannot run is reported
            clients.append(Client(name, error=f"{type(caught).__name__}: {caught}"))

    def async_credentials() -> Any:
        return _service_account_async.Credentials.from_service_account_info(
            info, scopes=[SCOPE]
        )

    # Raw aiohttp gets the token our credentials would send, fixed.
    token_source = async_credentials()
    async with aiohttp.ClientSession() as plain:
        from google_auth_aiohttp import Request

        await token_source.refresh(Request(plain))

    async def raw() -> Client:
        session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token_source.token}"}
        )
        return Client(RAW, _session_fetch(session), session.close)

    async def raw_again() -> Client:
        # The same as raw, in its own session: how far apart two identical
        # clients come out, which is the noise of the measurement.
        session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token_source.token}"}
        )
        return Client(RAW_AGAIN, _session_fetch(session), session.close)

    async def passthrough_middleware() -> Client:
        # What any aiohttp client middleware costs before doing anything: the
        # floor under AuthMiddleware and AuthorizedSession.
        async def passthrough(
            request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
        ) -> aiohttp.ClientResponse:
            return await handler(request)

        session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token_source.token}"},
            middlewares=[passthrough],
        )
        return Client(PASSTHROUGH, _session_fetch(session), session.close)

    async def header_middleware() -> Client:
        # The least an auth middleware can do: set a header it already has and
        # look at the status. No freshness check, no refresh, no redirect check.
        fixed = {"Authorization": f"Bearer {token_source.token}"}

        async def set_header(
            request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
        ) -> aiohttp.ClientResponse:
            request.headers.update(fixed)
            response = await handler(request)
            if response.status == 401:
                raise AssertionError("the fixed token was refused")
            return response

        session = aiohttp.ClientSession(middlewares=[set_header])
        return Client(
            "raw + a middleware setting a fixed header",
            _session_fetch(session),
            session.close,
        )

    async def ours_async() -> Client:
        session = AuthorizedSession(async_credentials())
        return Client(
            "AuthorizedSession, async SA", _session_fetch(session), session.close
        )

    async def ours_sync() -> Client:
        credentials = service_account.Credentials.from_service_account_info(
            info, scopes=[SCOPE]
        )
        session = AuthorizedSession(credentials)
        return Client(
            "AuthorizedSession, sync SA", _session_fetch(session), session.close
        )

    async def ours_middleware() -> Client:
        session = aiohttp.ClientSession(
            middlewares=[AuthMiddleware(async_credentials())]
        )
        return Client(
            "AuthMiddleware, async SA", _session_fetch(session), session.close
        )

    async def google_aiohttp_requests() -> Client:
        with warnings.catch_warnings():  # its class definition warns
            warnings.simplefilter("ignore", DeprecationWarning)
            from google.auth.transport import _aiohttp_requests
        session = _aiohttp_requests.AuthorizedSession(async_credentials())

        async def fetch(url: str) -> int:
            # .get() would send no token (its bug); request() does.
            response = await session.request("GET", url)
            await response.read()
            response.release()
            return response.status

        return Client("google-auth _aiohttp_requests", fetch, session.close)

    async def google_aio() -> Client:
        from google.auth.aio.credentials import StaticCredentials
        from google.auth.aio.transport.sessions import AsyncAuthorizedSession

        session = AsyncAuthorizedSession(StaticCredentials(token=token_source.token))

        async def fetch(url: str) -> int:
            response = await session.get(url)
            await response.read()
            await response.close()
            return response.status_code

        return Client("google-auth aio AsyncAuthorizedSession", fetch, session.close)

    async def gcloud_aio_auth() -> Client:
        from gcloud.aio.auth import Token

        session = aiohttp.ClientSession()
        token = Token(
            service_file=io.StringIO(json.dumps(info)), session=session, scopes=[SCOPE]
        )

        async def fetch(url: str) -> int:
            bearer = await token.get()
            async with session.get(
                url, headers={"Authorization": f"Bearer {bearer}"}
            ) as response:
                await response.read()
                return response.status

        return Client("gcloud-aio-auth Token + session", fetch, session.close)

    for name, build in [
        ("raw", raw),
        ("raw again", raw_again),
        ("pass-through middleware", passthrough_middleware),
        ("header middleware", header_middleware),
        ("ours async", ours_async),
        ("ours sync", ours_sync),
        ("ours middleware", ours_middleware),
        ("google-auth _aiohttp_requests", google_aiohttp_requests),
        ("google-auth aio", google_aio),
        ("gcloud-aio-auth", gcloud_aio_auth),
    ]:
        await add(name, build)
    return clients


# --------------------------------------------------------------------------
# Measuring


async def _round(
    fetch: Fetch, url: str, requests: int, concurrency: int
) -> tuple[float, list[float], float, int]:
    """Send ``requests`` GETs, ``concurrency`` at a time.

    Returns throughput, latencies, CPU µs per request, and failures.
    """
    queue = iter(range(requests))
    latencies: list[float] = []
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for _ in queue:
            started = time.perf_counter()
            status = await fetch(url)
            latencies.append(time.perf_counter() - started)
            failures += status != 200

    cpu = time.process_time()
    wall = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    return requests / wall, latencies, cpu / requests * 1e6, failures


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def steady_state(
    setup: dict[str, Any], rounds: int, requests: int, concurrency: int
) -> list[Client]:
    clients = await _make_clients(setup)
    runnable = [c for c in clients if c.fetch is not None]
    for client in runnable:  # warm up: tokens, connections
        assert client.fetch is not None
        try:
            await _round(client.fetch, setup["api_url"], 200, concurrency)
        except Exception as caught:
            client.error = f"{type(caught).__name__}: {caught}"
    runnable = [c for c in runnable if c.error is None]
    raw = next((c for c in runnable if c.name == RAW), None)
    if raw is None:
        raise SystemExit(f"{RAW} could not run: nothing to compare with.")
    others = [c for c in runnable if c is not raw]

    async def run(client: Client) -> float:
        assert client.fetch is not None
        rate, latencies, cpu_us, failures = await _round(
            client.fetch, setup["api_url"], requests, concurrency
        )
        if failures:
            client.error = f"{failures} non-200 responses"
        client.throughput.append(rate)
        client.latencies.extend(latencies)
        client.cpu_us.append(cpu_us)
        return rate

    for number in range(rounds):
        # Raw aiohttp runs before and after every other client, whose ratio
        # is to the mean of those two runs: the neighbours on a shared
        # machine change its speed from one second to the next. Each round
        # starts with another client, so that none is always first or last.
        shift = number % len(others)
        before = await run(raw)
        for client in others[shift:] + others[:shift]:
            rate = await run(client)
            after = await run(raw)
            client.ratios.append(rate / ((before + after) / 2))
            before = after
    raw.ratios = [1.0] * rounds
    for client in clients:
        if client.close is not None:
            await client.close()
    return clients


async def _control(setup: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, setup["control_url"] + path) as response,
    ):
        result: dict[str, Any] = await response.json()
        return result


async def refresh_storm(
    setup: dict[str, Any], concurrency: int = 1000
) -> dict[str, Any]:
    """``concurrency`` requests at once just after the token was revoked."""
    from google.oauth2 import _service_account_async

    from google_auth_aiohttp import AuthorizedSession

    credentials = _service_account_async.Credentials.from_service_account_info(
        setup["service_account_info"], scopes=[SCOPE]
    )
    url = setup["emulator_api"]
    connector = aiohttp.TCPConnector(limit=0)
    async with AuthorizedSession(credentials, connector=connector) as session:
        fetch = _session_fetch(session)
        assert await fetch(url) == 200
        await _control(setup, "POST", "/revoke")
        before = (await _control(setup, "GET", "/stats"))["token_requests"]
        _, latencies, _, failures = await _round(fetch, url, concurrency, concurrency)
        after = (await _control(setup, "GET", "/stats"))["token_requests"]
    return {
        "requests": concurrency,
        "failures": failures,
        "token_requests": after - before,
        "p50_ms": _percentile(latencies, 0.5) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
    }


async def refresh_window(
    setup: dict[str, Any], concurrency: int = 64
) -> dict[str, Any]:
    """The token turns stale mid-run while the token endpoint takes 1 s.

    Requests go on from before the token turns stale until well after the
    background refresh has replaced it, however fast the machine is.
    """
    from google.oauth2 import service_account

    from google_auth_aiohttp import AuthorizedSession

    credentials = service_account.Credentials.from_service_account_info(
        setup["service_account_info"], scopes=[SCOPE]
    )
    url = setup["emulator_api"]
    async with AuthorizedSession(credentials) as session:
        fetch = _session_fetch(session)
        assert await fetch(url) == 200
        first_token = credentials.token
        await _control(setup, "POST", "/token_delay?seconds=1")
        before = (await _control(setup, "GET", "/stats"))["token_requests"]
        latencies: list[float] = []
        failures = 0
        stop = asyncio.Event()
        replaced = asyncio.Event()

        async def worker() -> None:
            nonlocal failures
            while not stop.is_set():
                started = time.perf_counter()
                status = await fetch(url)
                latencies.append(time.perf_counter() - started)
                failures += status != 200
                if credentials.token != first_token:
                    replaced.set()

        async def turn_stale_then_stop() -> None:
            await asyncio.sleep(0.3)
            now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
            credentials.expiry = now + datetime.timedelta(seconds=60)
            # Until the new token is in use and 0.3 s more, 5 s at most.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(replaced.wait(), 5)
            await asyncio.sleep(0.3)
            stop.set()

        await asyncio.gather(
            turn_stale_then_stop(), *(worker() for _ in range(concurrency))
        )
        after = (await _control(setup, "GET", "/stats"))["token_requests"]
        await _control(setup, "POST", "/token_delay?seconds=0")
    return {
        "requests": len(latencies),
        "failures": failures,
        "waited": sum(latency >= 0.5 for latency in latencies),
        "token_requests": after - before,
        "replaced": replaced.is_set(),
        "max_ms": max(latencies) * 1000,
    }


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def memory(setup: dict[str, Any], requests: int = 100_000) -> dict[str, Any]:
    """RSS growth over ``requests`` authorized requests, after a warm-up."""
    from google.oauth2 import _service_account_async

    from google_auth_aiohttp import AuthorizedSession

    credentials = _service_account_async.Credentials.from_service_account_info(
        setup["service_account_info"], scopes=[SCOPE]
    )
    async with AuthorizedSession(credentials) as session:
        fetch = _session_fetch(session)
        await _round(fetch, setup["api_url"], 10_000, 64)
        before = _rss_bytes()
        await _round(fetch, setup["api_url"], requests, 64)
        after = _rss_bytes()
    return {"requests": requests, "rss_growth_mib": (after - before) / 2**20}


# --------------------------------------------------------------------------
# Reporting


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    low, median, high = statistics.quantiles(values, n=4)
    return low, median, high


def _table(clients: list[Client]) -> list[str]:
    lines = [
        "| client | req/s median (min-max) | ratio to raw, median (quartiles) "
        "| p50 ms | p99 ms | CPU µs/req |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for client in clients:
        if client.error is not None and not client.throughput:
            lines.append(f"| {client.name} | could not run: {client.error} | | | | |")
            continue
        median = statistics.median(client.throughput)
        low, ratio, high = _quartiles(client.ratios)
        note = f" ({client.error})" if client.error else ""
        lines.append(
            f"| {client.name}{note} | {median:,.0f} ({min(client.throughput):,.0f}-"
            f"{max(client.throughput):,.0f}) | **{ratio:.3f}** "
            f"({low:.3f}-{high:.3f}) | "
            f"{_percentile(client.latencies, 0.5) * 1000:.2f} | "
            f"{_percentile(client.latencies, 0.99) * 1000:.2f} | "
            f"{statistics.median(client.cpu_us):.0f} |"
        )
    return lines


def _chart(clients: list[Client], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [c for c in clients if c.ratios]
    ratios = [statistics.median(c.ratios) for c in shown]
    figure, axes = plt.subplots(figsize=(8, 0.5 * len(shown) + 1.2))
    ours = ("AuthorizedSession", "AuthMiddleware")
    colors = [
        "#888888"
        if c.name.startswith("raw")
        else "#1a73e8"
        if c.name.startswith(ours)
        else "#e8710a"
        for c in shown
    ]
    axes.barh([c.name for c in shown], ratios, color=colors)
    axes.invert_yaxis()
    axes.axvline(1.0, color="black", linewidth=0.8)
    for y, ratio in enumerate(ratios):
        # Right of the 1.0 line, which would cross labels of bars ending near it.
        axes.text(max(ratio, 1.0) + 0.01, y, f"{ratio:.3f}", va="center")
    axes.set_xlim(0, max(1.0, *ratios) + 0.17)
    axes.set_xlabel("throughput / raw aiohttp with a fixed Authorization header")
    axes.set_title("Authorized GETs, loopback server in another process")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _machine() -> str:
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}"
    )


async def main(args: argparse.Namespace) -> int:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    server = context.Process(target=_server_main, args=(queue,), daemon=True)
    server.start()
    try:
        setup = queue.get(timeout=60)
        clients = await steady_state(
            setup, args.rounds, args.requests, args.concurrency
        )
        storm = await refresh_storm(setup)
        window = await refresh_window(setup)
        mem = await memory(setup, args.memory_requests)
    finally:
        server.terminate()

    command = "python benchmarks/bench.py " + " ".join(sys.argv[1:])
    report = [
        f"Machine: {_machine()}. Command: `{command.strip()}`.",
        "",
        f"Steady state: {args.requests} GETs x {args.rounds} rounds at concurrency "
        f"{args.concurrency}, token cached; in every round raw aiohttp runs "
        "before and after each other client, whose ratio is to the mean of "
        "those two runs.",
        "",
        *_table(clients),
        "",
        f"Refresh storm: {storm['requests']} concurrent requests after a revocation: "
        f"{storm['token_requests']} token request(s), {storm['failures']} failures, "
        f"p50 {storm['p50_ms']:.0f} ms, p99 {storm['p99_ms']:.0f} ms.",
        "",
        f"Refresh window: the token turned stale mid-run while the token endpoint "
        f"took 1 s; {window['requests']:,} requests were sent until the new token "
        f"was in use ({'it was' if window['replaced'] else 'it was NOT'} within "
        f"5 s): {window['waited']} waited (>= 0.5 s), {window['token_requests']} "
        f"background token request(s), slowest {window['max_ms']:.0f} ms, "
        f"{window['failures']} failures.",
        "",
        f"Memory: RSS grew {mem['rss_growth_mib']:.2f} MiB over {mem['requests']:,} "
        "requests after a 10,000-request warm-up.",
    ]
    print("\n".join(report))
    _write(args, report, clients)
    return 0


def _reading(clients: list[Client]) -> str:
    """How to read this run's table, with its own figures."""
    raw = next(c for c in clients if c.name == RAW)
    noise = next((c for c in clients if c.name == RAW_AGAIN and c.ratios), None)
    text = (
        "## Reading these figures\n\n"
        "The machine is shared with other guests, which speed it up and slow it "
        f"down from one second to the next: raw aiohttp ran between "
        f"{min(raw.throughput):,.0f} and {max(raw.throughput):,.0f} requests a "
        "second in this run. Each run of a client is therefore compared with the "
        "raw runs just before and after it, and the table gives the median of "
        "those ratios, with their quartiles."
    )
    if noise is not None:
        low, median, high = _quartiles(noise.ratios)
        text += (
            f" A second raw session, identical to the first, came out at "
            f"{median:.3f} ({low:.3f}-{high:.3f}): differences of that size are "
            "the noise of the measurement."
        )
    floor = next((c for c in clients if c.name == PASSTHROUGH and c.ratios), None)
    ours = [c for c in clients if c.name in OURS and c.ratios]
    if floor is not None and ours:
        floor_ratio = statistics.median(floor.ratios)
        added = ", ".join(
            f"{floor_ratio - statistics.median(c.ratios):.3f} for {c.name}"
            for c in ours
        )
        text += (
            "\n\nAuthMiddleware, and AuthorizedSession, which is a ClientSession "
            "with AuthMiddleware first among its middlewares, pay what any aiohttp "
            "client middleware pays before it does anything (aiohttp wraps the "
            "chain in a new closure and coroutine for every request): the "
            f"do-nothing middleware's {floor_ratio:.3f} is their ceiling. What the "
            f"auth flow costs is the distance below it: {added}."
        )
    return text + (
        "\n\nInstruction counts do not move with the neighbours: "
        "[INSTRUCTIONS.md](INSTRUCTIONS.md) (`nox -s instructions`, valgrind's "
        "callgrind on the client process) has them for the same clients.\n"
    )


def _write(args: argparse.Namespace, report: list[str], clients: list[Client]) -> None:
    if args.markdown:
        with open(args.markdown, "w") as out:
            out.write("# Benchmark results\n\n" + "\n".join(report) + "\n")
            if args.chart:
                out.write(f"\n![ratios]({os.path.basename(args.chart)})\n")
            out.write("\n" + _reading(clients))
    if args.chart:
        _chart(clients, args.chart)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--memory-requests", type=int, default=100_000)
    parser.add_argument("--markdown", help="write the report here")
    parser.add_argument("--chart", help="write a PNG chart of the ratios here")
    sys.exit(asyncio.run(main(parser.parse_args())))
