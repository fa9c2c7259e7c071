"""The flow's decisions, without a network: what goes on a request, and where.

Requests are aiohttp's own ClientRequest objects; the rest of the chain is a
function that records what it was handed and answers with a status, as
httpx's tests drive an auth flow with ``send(flow, response)``. Credentials
that refresh mint tokens on the loop (:class:`Minted`), so that each refresh
decision (when, how often, for whom, what a failure does) is counted exactly.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
from aiohttp import ClientRequest
from aiohttp.payload import Payload
from google.auth import _credentials_async
from google.auth.credentials import TokenState
from google.oauth2 import credentials as user_credentials
from multidict import CIMultiDict
from yarl import URL

from google_auth_aiohttp import _middleware
from google_auth_aiohttp._auth import flow as _flow
from google_auth_aiohttp._auth import origin as _origin
from google_auth_aiohttp._auth import refresh as _refresh
from google_auth_aiohttp._auth.single_flight import HedgeBudget, SingleFlight
from google_auth_aiohttp._credentials.own_requests import credentials_request
from google_auth_aiohttp._session import _SessionAuth

from .conftest import LoopClock, refresh_waiters, until


class Answer:
    """What the chain returns: a status (weak-referenceable, as responses are)."""

    def __init__(self, status: int) -> None:
        self.status = status

    def release(self) -> None:
        pass


class Chain:
    """The rest of aiohttp's chain: records each request's headers."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.sent: list[CIMultiDict[str]] = []

    async def __call__(self, request: ClientRequest) -> Any:
        self.sent.append(CIMultiDict(request.headers))
        return Answer(self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
def flow() -> _flow.AuthFlow:
    # User credentials with a token and no expiry: never refreshed here.
    creds = user_credentials.Credentials(token="t0k3n")
    return _flow.AuthFlow(creds.with_quota_project("billing"))


def send(
    flow: _flow.AuthFlow, request: ClientRequest, chain: Any, limits: Any = None
) -> Coroutine[Any, Any, Any]:
    """Send ``request`` through the auth layer running ``flow``, as aiohttp does.

    With ``limits``, as a call of an ``AuthorizedSession`` with options does.
    """
    return _SessionAuth(flow)._authorize(request, chain, True, limits)


def request_to(url: str, calls: Any = None) -> ClientRequest:
    request = ClientRequest("GET", URL(url), loop=asyncio.get_running_loop())
    if calls is not None:
        request._traces = calls  # another request of the same call
    return request


async def test_the_asked_origin_gets_the_credentials_headers(
    flow: _flow.AuthFlow,
) -> None:
    chain = Chain()
    await send(flow, request_to("https://api.test/a"), chain)
    await send(flow, request_to("https://api.test/b"), chain)
    assert len(chain.sent) == 2
    for headers in chain.sent:
        assert headers["Authorization"] == "Bearer t0k3n"
        assert headers["x-goog-user-project"] == "billing"


@pytest.mark.parametrize(
    "hop",
    [
        "https://other.test/a",
        "http://api.test/a",  # another scheme
        "https://api.test:8443/a",  # another port
        "https://api.test.other.test/a",
    ],
)
async def test_any_other_origin_may_not_be_authorized(hop: str) -> None:
    asked = URL("https://api.test")
    assert not _origin.may_authorize(request_to(hop), asked)
    assert _origin.may_authorize(request_to("https://api.test/other?q"), asked)


async def test_a_request_sent_unauthorized_carries_no_blank_of_a_secret() -> None:
    chain = Chain()
    request = request_to("https://other.test/a")
    request.headers["Authorization"] = _origin.REDACTED  # an earlier send's
    await _origin.send_unauthorized(request, chain, URL("https://api.test"))
    [headers] = chain.sent
    assert "Authorization" not in headers


async def test_a_rejected_token_is_not_resent_when_it_cannot_change(
    flow: _flow.AuthFlow,
) -> None:
    # Credentials without a refresh token cannot refresh: google-auth raises,
    # and the caller learns why.
    from google.auth import exceptions

    chain = Chain(401)
    with pytest.raises(exceptions.RefreshError):
        await send(flow, request_to("https://api.test/a"), chain)
    assert len(chain.sent) == 1


def test_x_goog_api_client_is_appended_to_once_and_decoded() -> None:
    headers: CIMultiDict[Any] = CIMultiDict({"x-goog-api-client": b"gl-python/3 lib/1"})
    added = (("x-goog-api-client", "cred-type/sa"), ("authorization", "Bearer t"))
    _flow._merge_headers(headers, added)
    _flow._merge_headers(headers, added)  # a re-send after a refresh
    assert headers["x-goog-api-client"] == "gl-python/3 lib/1 cred-type/sa"
    assert headers["authorization"] == "Bearer t"


def _noted_origin(notes: Any, request: ClientRequest) -> URL | None:
    note = notes.note_of(request)
    return None if note is None else note.origin


async def test_a_redirect_note_lives_as_long_as_the_redirect_response() -> None:
    first = request_to("https://asked.test/a")
    hop = request_to("https://other.test/b", calls=first._traces)
    another_call = request_to("https://other.test/b")
    notes = _middleware._RedirectedCalls()
    assert _noted_origin(notes, hop) is None  # nothing noted: a call's first request
    redirect = Answer(302)
    notes.add(first, redirect, URL("https://asked.test"))  # type: ignore[arg-type]
    assert _noted_origin(notes, hop) == URL("https://asked.test")
    assert _noted_origin(notes, another_call) is None
    # The hop is redirected too; a middleware before this one drops the first
    # redirect (it retried it, say): the note stays while the second lives.
    second = Answer(302)
    notes.add(hop, second, URL("https://asked.test"))  # type: ignore[arg-type]
    del redirect
    gc.collect()
    assert _noted_origin(notes, hop) == URL("https://asked.test")
    del second
    gc.collect()
    assert _noted_origin(notes, hop) is None


# -- Refresh decisions, driven with fake answers --------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


class Minted(_credentials_async.Credentials):
    """Async credentials minting ``token-N`` at their N-th refresh, on the loop.

    ``hold`` (an unset event) keeps a refresh in the air; ``error`` makes it fail.
    """

    def __init__(self, lifetime: float = 3600) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.lifetime = datetime.timedelta(seconds=lifetime)
        self.refreshes = 0
        self.hold: asyncio.Event | None = None
        self.error: Exception | None = None

    async def refresh(self, request: Any) -> None:
        self.refreshes += 1
        if self.hold is not None:
            await self.hold.wait()
        if self.error is not None:
            raise self.error
        self.token = f"token-{self.refreshes}"
        self.expiry = _now() + self.lifetime


class Sink:
    """Where a body is written to when the fake chain 'sends' it."""

    async def write(self, data: bytes) -> None:
        pass


class Sending(Chain):
    """A chain that also reads each request's body, as sending it does."""

    async def __call__(self, request: ClientRequest) -> Any:
        body = request.body
        assert isinstance(body, Payload)
        await body.write(Sink())  # type: ignore[arg-type]
        return await super().__call__(request)


def tokens(chain: Chain) -> list[str | None]:
    return [headers.get("Authorization") for headers in chain.sent]


class Until:
    """CallLimits: the call stops waiting for a refresh at ``at`` (loop time)."""

    def __init__(self, at: float) -> None:
        self.at = at

    def wait_until(self) -> float | None:
        return self.at


async def test_a_missing_token_is_refreshed_before_the_request_goes() -> None:
    credentials = Minted()
    chain = Chain()
    response = await send(
        _flow.AuthFlow(credentials), request_to("https://a.test"), chain
    )
    assert response.status == 200
    assert tokens(chain) == ["Bearer token-1"]
    assert credentials.refreshes == 1


async def test_a_rejected_token_is_refreshed_and_the_request_sent_again() -> None:
    credentials = Minted()
    chain = Chain(401, 200)
    response = await send(
        _flow.AuthFlow(credentials), request_to("https://a.test"), chain
    )
    assert response.status == 200
    assert tokens(chain) == ["Bearer token-1", "Bearer token-2"]


@pytest.mark.parametrize("attempts", [0, 1, 2])
async def test_refreshes_stop_at_max_refresh_attempts(attempts: int) -> None:
    credentials = Minted()
    chain = Chain(*[401] * 5)
    flow = _flow.AuthFlow(credentials, max_refresh_attempts=attempts)
    response = await send(flow, request_to("https://a.test"), chain)
    assert response.status == 401  # the last answer, as it is
    assert len(chain.sent) == 1 + attempts
    assert credentials.refreshes == 1 + attempts


async def test_only_the_refresh_status_codes_make_a_refresh() -> None:
    credentials = Minted()
    chain = Chain(403)
    response = await send(
        _flow.AuthFlow(credentials), request_to("https://a.test"), chain
    )
    assert response.status == 403
    assert len(chain.sent) == 1
    chain = Chain(403, 200)
    flow = _flow.AuthFlow(credentials, refresh_status_codes=(401, 403))
    response = await send(flow, request_to("https://a.test"), chain)
    assert response.status == 200
    assert tokens(chain) == ["Bearer token-1", "Bearer token-2"]


async def test_a_body_that_cannot_be_read_twice_is_not_sent_again() -> None:
    async def once() -> AsyncIterator[bytes]:
        yield b"stream"

    credentials = Minted()
    request = ClientRequest(
        "PUT", URL("https://a.test/b"), data=once(), loop=asyncio.get_running_loop()
    )
    chain = Sending(401, 200)
    response = await send(_flow.AuthFlow(credentials), request, chain)
    assert response.status == 401  # returned as it is
    assert len(chain.sent) == 1
    assert credentials.refreshes == 1  # no refresh for a request that cannot go again


async def test_a_rejection_of_a_token_replaced_since_is_resent_without_a_refresh() -> (
    None
):
    credentials = Minted()
    flow = _flow.AuthFlow(credentials)
    await send(flow, request_to("https://a.test"), Chain())

    class RefreshedElsewhere(Chain):
        async def __call__(self, request: ClientRequest) -> Any:
            answer = await super().__call__(request)
            if len(self.sent) == 1:  # while it was on its way, a new token came
                credentials.token = "token-from-elsewhere"
                credentials.expiry = _now() + datetime.timedelta(hours=1)
            return answer

    chain = RefreshedElsewhere(401, 200)
    response = await send(flow, request_to("https://a.test"), chain)
    assert response.status == 200
    assert tokens(chain) == ["Bearer token-1", "Bearer token-from-elsewhere"]
    assert credentials.refreshes == 1


async def test_credentials_own_requests_pass_as_they_are() -> None:
    credentials = Minted()
    chain = Chain()
    with credentials_request():
        await send(_flow.AuthFlow(credentials), request_to("https://token.test"), chain)
    assert tokens(chain) == [None]
    assert credentials.refreshes == 0


async def test_a_credentials_request_sent_to_another_origin_is_refused() -> None:
    from google.auth import exceptions

    request = request_to("https://token.test/token")
    request.url = URL("https://elsewhere.test/token")  # what a middleware did
    chain = Chain()
    with credentials_request(), pytest.raises(exceptions.TransportError) as caught:
        await send(_flow.AuthFlow(Minted()), request, chain)
    assert chain.sent == []
    assert "https://elsewhere.test/token" in str(caught.value)


async def test_once_sent_the_secret_headers_are_blanked(flow: _flow.AuthFlow) -> None:
    request = request_to("https://api.test/a")
    await send(flow, request, Chain())
    assert request.headers["Authorization"] == _origin.REDACTED
    assert request.headers["x-goog-user-project"] == "billing"  # no secret


async def test_a_stale_token_is_sent_while_a_refresh_runs_in_the_background() -> None:
    credentials = Minted()
    credentials.token = "old"
    credentials.expiry = _now() + datetime.timedelta(seconds=60)  # stale
    credentials.hold = asyncio.Event()
    flow = _flow.AuthFlow(credentials)
    chain = Chain()
    await send(flow, request_to("https://a.test"), chain)
    await until(lambda: credentials.refreshes == 1, "a refresh started")
    await send(flow, request_to("https://a.test"), chain)  # nobody waits for it
    assert tokens(chain) == ["Bearer old", "Bearer old"]
    assert credentials.refreshes == 1  # nor starts another
    credentials.hold.set()
    await until(lambda: credentials.token == "token-1", "the background refresh")
    await send(flow, request_to("https://a.test"), chain)
    assert tokens(chain)[-1] == "Bearer token-1"
    assert credentials.refreshes == 1


async def held_sends(
    credentials: Minted, flow: _flow.AuthFlow, chain: Chain, count: int
) -> tuple[asyncio.Event, list[asyncio.Task[Any]]]:
    """``count`` requests sent at once, each seen waiting on the held refresh.

    Returns the event that lets the refresh go, and the requests' tasks.
    """
    hold = credentials.hold = asyncio.Event()
    sending = [
        asyncio.create_task(send(flow, request_to(f"https://a.test/{i}"), chain))
        for i in range(count)
    ]
    await refresh_waiters(credentials, count)
    return hold, sending


async def test_concurrent_requests_without_a_token_share_one_refresh() -> None:
    credentials = Minted()
    flow = _flow.AuthFlow(credentials)
    chain = Chain()
    hold, sending = await held_sends(credentials, flow, chain, 20)
    hold.set()
    await asyncio.gather(*sending)
    assert tokens(chain) == ["Bearer token-1"] * 20
    assert credentials.refreshes == 1


async def test_a_failed_refresh_reaches_every_waiter_and_is_not_kept() -> None:
    from google.auth import exceptions

    credentials = Minted()
    credentials.error = exceptions.RefreshError("refused")
    flow = _flow.AuthFlow(credentials)
    chain = Chain()
    hold, sending = await held_sends(credentials, flow, chain, 5)
    hold.set()
    results = await asyncio.gather(*sending, return_exceptions=True)
    assert [type(r) for r in results] == [exceptions.RefreshError] * 5
    assert chain.sent == []
    credentials.error = None  # the next caller tries again
    await send(flow, request_to("https://a.test"), chain)
    assert tokens(chain) == ["Bearer token-2"]
    assert credentials.refreshes == 2


async def test_a_caller_out_of_time_leaves_and_the_refresh_goes_on() -> None:
    credentials = Minted()
    credentials.hold = asyncio.Event()
    flow = _flow.AuthFlow(credentials)
    chain = Chain()
    loop = asyncio.get_running_loop()
    with pytest.raises(_refresh.RefreshWaitTimeout, match="to get a token") as caught:
        await send(flow, request_to("https://a.test"), chain, Until(loop.time()))
    assert isinstance(caught.value, TimeoutError)
    assert chain.sent == []
    staying = asyncio.create_task(send(flow, request_to("https://a.test"), chain))
    await refresh_waiters(credentials, 1)  # it joins the refresh still in the air
    credentials.hold.set()
    await staying
    assert tokens(chain) == ["Bearer token-1"]
    assert credentials.refreshes == 1


async def test_a_short_lived_token_of_ours_is_fresh_until_half_its_life() -> None:
    # 2 min: less than google-auth's 3 min 45 s threshold, stale at birth there.
    credentials = Minted(lifetime=120)
    await send(_flow.AuthFlow(credentials), request_to("https://a.test"), Chain())
    assert credentials.token_state is TokenState.STALE  # google-auth's view
    assert _refresh.refresher_for(credentials).state() is TokenState.FRESH
    # A token we did not see born is judged by google-auth's threshold.
    credentials.token = "from-elsewhere"
    assert _refresh.refresher_for(credentials).state() is TokenState.STALE
    credentials.expiry = _now() - datetime.timedelta(seconds=1)
    assert _refresh.refresher_for(credentials).state() is TokenState.INVALID


async def test_a_failed_background_refresh_is_not_retried_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from google.auth import exceptions

    credentials = Minted()
    credentials.token = "old"
    credentials.expiry = _now() + datetime.timedelta(seconds=60)  # stale
    credentials.error = exceptions.RefreshError("refused")
    flow = _flow.AuthFlow(credentials)
    chain = Chain()
    await send(flow, request_to("https://a.test"), chain)
    await until(lambda: "Background refresh failed" in caplog.text, "the failure")
    for _ in range(3):
        await send(flow, request_to("https://a.test"), chain)
    assert tokens(chain) == ["Bearer old"] * 4  # the token still works
    # For BACKGROUND_RETRY_DELAY, no other refresh starts.
    assert _refresh.refresher_for(credentials)._memory.flight.current() is None
    assert credentials.refreshes == 1


async def test_credentials_that_cannot_refresh_get_the_rejection_as_it_is() -> None:
    class HeaderOnly:
        """Speaks before_request, and has no refresh()."""

        def before_request(
            self, request: Any, method: str, url: str, headers: Any
        ) -> None:
            headers["Authorization"] = "Bearer fixed"

    chain = Chain(401, 200)
    response = await send(
        _flow.AuthFlow(HeaderOnly()), request_to("https://a.test"), chain
    )
    assert response.status == 401
    assert tokens(chain) == ["Bearer fixed"]


# -- The single flight, and its hedges --------------------------------------------


def _flight(budget: float = 100, hedge_after: float = 3) -> SingleFlight[str]:
    return SingleFlight(HedgeBudget(most=budget, per_second=0), hedge_after=hedge_after)


async def test_a_waiter_that_leaves_does_not_cancel_the_flight() -> None:
    answer = asyncio.Event()
    runs = [0]

    async def job() -> str:
        runs[0] += 1
        await answer.wait()
        return "done"

    flights = _flight()
    leaving = asyncio.create_task(flights.run(job))
    staying = asyncio.create_task(flights.run(job))
    await until(lambda: runs == [1], "the job started")
    leaving.cancel()
    answer.set()
    assert await staying == "done"
    assert leaving.cancelled()
    assert runs == [1]


async def test_a_failure_reaches_every_waiter_and_the_next_caller_starts_afresh() -> (
    None
):
    runs = [0]

    async def job() -> str:
        runs[0] += 1
        await asyncio.sleep(0)
        if runs[0] == 1:
            raise RuntimeError("lost")
        return "done"

    flights = _flight()
    results = await asyncio.gather(
        *(flights.run(job) for _ in range(3)), return_exceptions=True
    )
    assert [str(r) for r in results] == ["lost"] * 3
    assert flights.current() is None
    assert await flights.run(job) == "done"
    assert runs == [2]


def answered_by_hand() -> tuple[
    list[asyncio.Future[str]], Callable[[], Coroutine[Any, Any, str]]
]:
    """A job whose every attempt waits for the answer a test gives it.

    Returns the futures of the attempts started so far, and the job.
    """
    started: list[asyncio.Future[str]] = []

    async def job() -> str:
        answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        started.append(answer)
        return await answer

    return started, job


async def test_a_stalled_attempt_is_hedged_for_a_waiter_and_the_first_answer_wins(
    loop_clock: LoopClock,
) -> None:
    started, job = answered_by_hand()
    flights = _flight()
    waiting = asyncio.create_task(flights.run(job))
    await until(lambda: len(started) == 1, "the first attempt")
    await loop_clock.advance(2.9)
    assert len(started) == 1
    await loop_clock.advance(0.2)
    await until(lambda: len(started) == 2, "the hedge")
    started[1].set_result("hedge")
    assert await waiting == "hedge"
    await until(lambda: started[0].cancelled(), "the stalled attempt cancelled")


@pytest.mark.parametrize("why", ["nobody waits", "no budget"])
async def test_no_hedge_without_a_waiter_or_a_budget(
    loop_clock: LoopClock, why: str
) -> None:
    started, job = answered_by_hand()
    flights = _flight(budget=0 if why == "no budget" else 100)
    if why == "nobody waits":  # a background refresh
        flight = flights.start(job)
    else:
        waiting = asyncio.create_task(flights.run(job))
        await until(lambda: flights.current() is not None, "the flight")
        flight = flights.current()  # type: ignore[assignment]
    await loop_clock.advance(10)
    assert len(flight.notes) == 1
    await until(lambda: len(started) == 1, "the one attempt")
    started[0].set_result("done")
    assert await flight.result == "done"
    if why == "no budget":
        assert await waiting == "done"


def test_the_hedge_budget_is_spent_regained_and_capped() -> None:
    budget = HedgeBudget(most=2, per_second=0, earned=0.5)
    assert budget.has_one()
    budget.spend()
    budget.spend()
    assert not budget.has_one()
    budget.earn()
    budget.earn()
    assert budget.has_one()
    for _ in range(10):
        budget.earn()
    assert budget.left == 2  # never above its ceiling


# -- What a sent request keeps of the credentials ----------------------------------


def test_redact_blanks_the_secrets_and_keeps_the_rest() -> None:
    headers: CIMultiDict[str] = CIMultiDict(
        {"Authorization": "Bearer t", "x-goog-api-key": "k", "x-goog-user-project": "p"}
    )
    added = {"Authorization": "Bearer t", "X-Goog-User-Project": "p"}
    secrets = _origin.secret_names(added)
    assert secrets == ("Authorization",)  # whatever the case of the names
    _origin.redact(headers, secrets)
    assert headers["Authorization"] == _origin.REDACTED
    assert headers["x-goog-user-project"] == "p"
    assert headers["x-goog-api-key"] == "k"  # not added by the credentials: untouched


def test_strip_secrets_removes_every_secret_header() -> None:
    headers: CIMultiDict[str] = CIMultiDict(
        {
            "Authorization": "Bearer t",
            "x-goog-api-key": "k",
            "x-custom-token": "c",
            "x-goog-user-project": "p",
        }
    )
    _origin.strip_secrets(headers, frozenset({"x-custom-token", "x-goog-user-project"}))
    assert dict(headers) == {"x-goog-user-project": "p"}  # no secret, kept


def test_a_secret_a_later_middleware_took_off_reads_blank_once_sent() -> None:
    # request_info is a live view of the request's headers: whatever a
    # middleware after the flow did to them, it shows no secret.
    headers: CIMultiDict[str] = CIMultiDict({"Accept": "*/*"})
    _origin.redact(headers, ("authorization",))
    assert headers["authorization"] == _origin.REDACTED
    assert headers["Accept"] == "*/*"
