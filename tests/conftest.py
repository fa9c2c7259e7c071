"""Real servers on 127.0.0.1 and real google-auth credentials for the tests."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from google.auth.credentials import TokenState
from google.oauth2 import _service_account_async, service_account
from yarl import URL

from google_auth_aiohttp import AuthorizedSession
from google_auth_aiohttp._auth import single_flight as _single_flight
from google_auth_aiohttp.testing import GoogleEmulator

SCOPE = "https://www.googleapis.com/auth/cloud-platform"


# One plain install per run, wherever its test runs: the directory is made by
# the process that runs the session (under pytest-xdist, the controller), and
# handed to every worker.
_PLAIN_INSTALL_DIR = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        directory = Path(tempfile.mkdtemp(prefix="plain-install-"))
        config.stash[_PLAIN_INSTALL_DIR] = directory


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist's controller tells each worker where the plain install is."""
    node.workerinput["plain_install_dir"] = str(node.config.stash[_PLAIN_INSTALL_DIR])


def _plain_install(config: pytest.Config) -> Any:
    from .test_plain_install import PlainInstall

    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return PlainInstall(Path(workerinput["plain_install_dir"]))
    return PlainInstall(config.stash[_PLAIN_INSTALL_DIR])


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the plain install's venv now, if its test is to run."""
    if any("test_plain_install" in item.nodeid for item in session.items):
        _plain_install(session.config).start()


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and _PLAIN_INSTALL_DIR in config.stash:
        _plain_install(config).remove()


@pytest.fixture
def plain_install(request: pytest.FixtureRequest) -> Any:
    """The fresh venv with the package installed alone (started at collection)."""
    return _plain_install(request.config)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# google-auth reads where the GCE metadata server is when it first imports
# google.auth.compute_engine, so this is set before any test runs. It also
# keeps every metadata probe on 127.0.0.1: nothing may reach 169.254.169.254.
GCE_PORT = _free_port()
os.environ["GCE_METADATA_HOST"] = f"127.0.0.1:{GCE_PORT}"
os.environ["GCE_METADATA_IP"] = f"127.0.0.1:{GCE_PORT}"
os.environ["GCE_METADATA_DETECT_RETRIES"] = "1"
# Application Default Credentials come only from what a test sets up.
os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
os.environ["CLOUDSDK_CONFIG"] = tempfile.mkdtemp(prefix="gcloud-config-")


@pytest.fixture(autouse=True)
def _full_hedge_budget() -> None:
    """Each test starts with the whole hedge budgets: they are the process's."""
    _single_flight.REFRESH_BUDGET.refill()
    _single_flight.CERTS_BUDGET.refill()


@pytest.fixture
def google(google_emulator: GoogleEmulator) -> GoogleEmulator:
    """The emulator from our own pytest plugin, as users get it."""
    return google_emulator


@pytest.fixture
async def gce() -> AsyncIterator[GoogleEmulator]:
    """The emulator on the port google-auth expects the metadata server at."""
    async with GoogleEmulator(port=GCE_PORT) as emulator:
        yield emulator


@pytest.fixture
def service_account_info(google: GoogleEmulator) -> dict[str, str]:
    return google.service_account_info()


@pytest.fixture
def credentials(service_account_info: dict[str, str]) -> Any:
    """Legacy async service-account credentials, the seed's main family."""
    return _service_account_async.Credentials.from_service_account_info(
        service_account_info, scopes=[SCOPE]
    )


@pytest.fixture(params=["async", "sync"])
def any_credentials(request: Any, service_account_info: dict[str, str]) -> Any:
    """Service-account credentials of both families, legacy async and sync."""
    family: Any = {
        "async": _service_account_async.Credentials,
        "sync": service_account.Credentials,
    }[request.param]
    return family.from_service_account_info(service_account_info, scopes=[SCOPE])


def trace_paths() -> tuple[aiohttp.TraceConfig, list[str]]:
    """A trace config for a session, and the paths it sees requested."""
    paths: list[str] = []

    async def on_start(session: Any, context: Any, params: Any) -> None:
        paths.append(params.url.path)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    return trace, paths


async def statuses(session: aiohttp.ClientSession, url: str, count: int) -> set[int]:
    """GET ``url`` + 0, 1, … ``count`` times concurrently; return the statuses."""

    async def one(i: int) -> int:
        async with session.get(f"{url}{i}") as response:
            return response.status

    return set(await asyncio.gather(*(one(i) for i in range(count))))


async def exercise(google: GoogleEmulator, credentials: Any, **kwargs: Any) -> None:
    """The promises every family keeps.

    A request works; a revoked token is refreshed once; 100 concurrent calls
    with an expired token make one token request.
    """
    async with AuthorizedSession(credentials, **kwargs) as session:
        assert await statuses(session, google.api_url("first"), 1) == {200}
        issued = google.token_requests
        google.revoke(str(credentials.token))
        assert await statuses(session, google.api_url("revoked"), 1) == {200}
        assert google.token_requests == issued + 1
        expire(credentials)
        assert await statuses(session, google.api_url("expired"), 100) == {200}
        assert google.token_requests == issued + 2


@contextlib.asynccontextmanager
async def loop_lag(interval: float = 0.005) -> AsyncIterator[list[float]]:
    """Measure how late a ticker task wakes while the block runs, in seconds."""
    loop = asyncio.get_running_loop()
    lags: list[float] = []

    async def tick() -> None:
        while True:
            before = loop.time()
            await asyncio.sleep(interval)
            lags.append(loop.time() - before - interval)

    ticker = asyncio.create_task(tick())
    try:
        yield lags
    finally:
        ticker.cancel()


async def refresh_waiters(credentials: Any, count: int) -> None:
    """Return once ``count`` callers wait for the credentials' refresh in flight.

    What a test waits on instead of a sleep: the shared refresh's own list of
    waiters, looked at after each turn of the loop (at most 10,000 turns).
    """
    from google_auth_aiohttp._auth.refresh import refresher_for

    flights = refresher_for(credentials)._memory.flight
    for _ in range(10_000):
        flight = flights.current()
        if flight is not None and len(flight._waiters) >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{count} callers never waited for the refresh")


async def until(condition: Any, what: str, within: float = 5.0) -> None:
    """Return once ``condition()`` holds, looked at after each turn of the loop.

    For states a test cannot get an event for; fails after ``within`` seconds.
    """
    loop = asyncio.get_running_loop()
    ends = loop.time() + within
    while not condition():
        if loop.time() > ends:
            raise AssertionError(f"never: {what}")
        await asyncio.sleep(0)


class LoopClock:
    """The running loop's clock, made to jump: what is due in seconds fires now.

    asyncio's timers (``call_at``, ``asyncio.timeout``, aiohttp's timeouts,
    the single flight's hedges) all read ``loop.time()``; token expiries and
    the hedge budgets read other clocks and do not move.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._real = loop.time
        self._ahead = 0.0
        loop.time = self.time  # type: ignore[method-assign]

    def time(self) -> float:
        """The loop's time: its own, plus every :meth:`advance` so far."""
        return self._real() + self._ahead

    async def advance(self, seconds: float) -> None:
        """Move the clock on, and return once every timer due by then has fired."""
        self._ahead += seconds
        fired = self._loop.create_future()
        # Timers fire in the order they are due: this one after all the others.
        self._loop.call_at(self.time(), fired.set_result, None)
        await fired

    def restore(self) -> None:
        del self._loop.time


@pytest.fixture
async def loop_clock() -> AsyncIterator[LoopClock]:
    """The test's event loop's clock, which the test moves on (see LoopClock)."""
    clock = LoopClock(asyncio.get_running_loop())
    yield clock
    clock.restore()


def impersonated(google: GoogleEmulator, source_info: dict[str, str]) -> Any:
    """Sync credentials impersonating a service account through the emulator's IAM."""
    from google.auth import impersonated_credentials

    source = service_account.Credentials.from_service_account_info(
        source_info, scopes=[SCOPE]
    )
    target = "target@emulator-project.iam.gserviceaccount.com"
    return impersonated_credentials.Credentials(
        source_credentials=source,
        target_principal=target,
        target_scopes=[SCOPE],
        iam_endpoint_override=google.iam_url(target),
    )


def make_stale(credentials: Any) -> None:
    """Make credentials' token stale: valid, but in google-auth's refresh window.

    google-auth counts a token as stale in the 3 min 45 s before its expiry.
    """
    credentials.expiry = datetime.datetime.now(datetime.UTC).replace(
        tzinfo=None
    ) + datetime.timedelta(seconds=60)
    assert credentials.token_state is TokenState.STALE


def expire(credentials: Any) -> None:
    """Make credentials hold an expired token, as after a long idle period."""
    credentials.expiry = datetime.datetime.now(datetime.UTC).replace(
        tzinfo=None
    ) - datetime.timedelta(seconds=1)


@dataclass
class Recorder:
    """A server on another origin that records what reaches it."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)


def mirror_to(other: Recorder) -> Any:
    """A middleware that also sends every request to ``other`` (shadow traffic),
    ignoring how the copy fares."""

    async def mirror(request: Any, handler: Any) -> Any:
        response = await handler(request)
        asked = request.url
        request.url = URL(other.url).with_path(asked.path)
        try:
            (await handler(request)).release()
        except Exception:
            pass
        finally:
            request.url = asked
        return response

    return mirror


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    # Handlers still running at teardown are cut off, not awaited.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.01)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def other_origin() -> AsyncIterator[Recorder]:
    """Another host: it must never see the credentials' headers."""
    recorder = Recorder()

    async def record(request: web.Request) -> web.Response:
        recorder.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": {k.lower(): v for k, v in request.headers.items()},
            }
        )
        return web.json_response({"seen": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner, recorder.url = await _serve(app)
    yield recorder
    await runner.cleanup()


@pytest.fixture
async def serve() -> AsyncIterator[Any]:
    """Start any aiohttp application on 127.0.0.1 and return its base URL."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner, url = await _serve(app)
        runners.append(runner)
        return url

    yield start
    for runner in runners:
        await runner.cleanup()
