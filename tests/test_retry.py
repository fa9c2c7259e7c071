"""Opt-in retries of transient failures: backoff, Retry-After, limits."""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from google_auth_aiohttp import (
    AuthMiddleware,
    AuthorizedSession,
    Retry,
    RetryMiddleware,
)

FAST = Retry(attempts=4, initial=0.01, maximum=0.05)
# Waits as long as a Retry-After of a few seconds asks.
PATIENT = Retry(attempts=2, initial=0.01, maximum=5)


@pytest.fixture
async def flaky(serve: Any) -> tuple[str, Counter[str]]:
    """A server whose /KEY fails its first `fail` requests as the query says."""
    seen: Counter[str] = Counter()

    async def handler(request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        seen[key] += 1
        body = await request.read()
        if seen[key] <= int(request.query.get("fail", 0)):
            if request.query.get("drop"):
                assert request.transport is not None
                request.transport.close()  # the client sees a broken connection
                return web.Response()
            headers = {}
            if "retry_after" in request.query:
                headers["Retry-After"] = request.query["retry_after"]
            return web.Response(
                status=int(request.query.get("status", 503)), headers=headers
            )
        return web.json_response(
            {
                "attempt": seen[key],
                "body": body.decode(),
                "authorized": "Authorization" in request.headers,
            }
        )

    app = web.Application()
    app.router.add_route("*", "/{key}", handler)
    url: str = await serve(app)
    return url, seen


@pytest.fixture
async def session(credentials: Any) -> AsyncIterator[AuthorizedSession]:
    async with AuthorizedSession(credentials, retry=FAST) as session:
        yield session


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_transient_statuses_are_retried(
    flaky: tuple[str, Counter[str]], session: AuthorizedSession, status: int
) -> None:
    url, _ = flaky
    async with session.put(f"{url}/s?fail=2&status={status}", data=b"b") as r:
        assert r.status == 200
        echo = await r.json()
    assert echo == {"attempt": 3, "body": "b", "authorized": True}


async def test_attempts_bound_the_retries(
    flaky: tuple[str, Counter[str]], session: AuthorizedSession
) -> None:
    url, seen = flaky
    async with session.get(f"{url}/k?fail=10") as response:
        assert response.status == 503
    assert seen["k"] == 4


async def test_broken_connections_are_retried(
    flaky: tuple[str, Counter[str]], session: AuthorizedSession
) -> None:
    url, seen = flaky
    async with session.get(f"{url}/d?fail=2&drop=1") as response:
        assert response.status == 200
    assert seen["d"] == 3
    with pytest.raises(aiohttp.ClientConnectionError):
        await session.get(f"{url}/e?fail=10&drop=1")
    assert seen["e"] >= 4  # aiohttp itself may also retry a dropped GET


async def test_retry_after_seconds_is_honoured(
    flaky: tuple[str, Counter[str]], session: AuthorizedSession
) -> None:
    url, seen = flaky
    started = time.monotonic()
    async with session.get(f"{url}/r?fail=1&retry_after=1", retry=PATIENT) as response:
        assert response.status == 200
    assert time.monotonic() - started >= 1
    assert seen["r"] == 2


async def test_retry_after_http_date_is_honoured(
    flaky: tuple[str, Counter[str]], session: AuthorizedSession
) -> None:
    url, seen = flaky
    # HTTP dates have 1 s resolution: a whole second, at least 0.3 s away.
    when = math.ceil(time.time() + 0.3)
    params = {"fail": "1", "retry_after": email.utils.formatdate(when, usegmt=True)}
    async with session.get(f"{url}/h", params=params, retry=PATIENT) as r:
        assert r.status == 200
    assert time.time() >= when  # the retry waited for the date
    assert seen["h"] == 2


async def test_no_retry_past_max_allowed_time(
    flaky: tuple[str, Counter[str]], session: AuthorizedSession
) -> None:
    url, seen = flaky
    started = time.monotonic()
    response = await session.get(
        f"{url}/m?fail=1&retry_after=10", max_allowed_time=1, retry=Retry(maximum=60)
    )
    assert response.status == 503  # the last response, at once
    response.release()
    assert time.monotonic() - started < 0.5
    assert seen["m"] == 1


async def test_methods_outside_the_policy_are_not_retried(
    flaky: tuple[str, Counter[str]], session: AuthorizedSession
) -> None:
    url, seen = flaky
    async with session.post(f"{url}/p?fail=1", data=b"x") as response:
        assert response.status == 503
    assert seen["p"] == 1
    retry_post = Retry(attempts=2, initial=0.01, methods=("POST",))
    async with session.post(f"{url}/p?fail=1", data=b"x", retry=retry_post) as r:
        assert r.status == 200
    assert seen["p"] == 2


async def test_a_body_that_cannot_be_replayed_is_not_retried(
    flaky: tuple[str, Counter[str]], session: AuthorizedSession
) -> None:
    url, seen = flaky

    async def once() -> AsyncIterator[bytes]:
        yield b"stream"

    async with session.put(f"{url}/b?fail=1", data=once()) as response:
        assert response.status == 503
    assert seen["b"] == 1


async def test_retries_are_off_by_default(
    flaky: tuple[str, Counter[str]], credentials: Any
) -> None:
    url, seen = flaky
    async with AuthorizedSession(credentials) as plain:
        async with plain.get(f"{url}/o?fail=1") as response:
            assert response.status == 503
    assert seen["o"] == 1


async def test_middleware_takes_a_retry_policy(
    flaky: tuple[str, Counter[str]], credentials: Any
) -> None:
    url, seen = flaky
    middlewares: list[Any] = [RetryMiddleware(FAST), AuthMiddleware(credentials)]
    async with aiohttp.ClientSession(middlewares=middlewares) as session:
        async with session.get(f"{url}/w?fail=2") as response:
            assert response.status == 200
    assert seen["w"] == 3


def test_backoff_is_full_jitter_under_a_growing_ceiling() -> None:
    retry = Retry(initial=1.0, maximum=5.0, multiplier=2.0)
    for number, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 5.0), (8, 5.0)]:
        delays = [retry.backoff(number) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # spread over the range, not fixed
    assert retry.backoff(0, "4") == 4.0
    assert retry.backoff(0, "7") == 5.0  # capped by the maximum


def test_bad_policies_are_rejected(credentials: Any) -> None:
    with pytest.raises(ValueError, match="attempts"):
        Retry(attempts=0)
    with pytest.raises(ValueError, match="0 or more"):
        Retry(initial=-1)
    with pytest.raises(TypeError, match="Retry"):
        RetryMiddleware(3)  # type: ignore[arg-type]


async def test_deadline_is_still_a_timeout_while_waiting_for_a_response(
    session: AuthorizedSession, serve: Any
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.Response()

    app = web.Application()
    app.router.add_get("/", slow)
    url = await serve(app)
    with pytest.raises(TimeoutError, match="max_allowed_time"):
        await session.get(url, max_allowed_time=0.3)


@pytest.mark.parametrize("value", ["inf", "Infinity", "1e999", "nan", "1_0", "-5"])
async def test_retry_after_that_is_not_delay_seconds_is_ignored(
    flaky: tuple[str, Counter[str]], session: AuthorizedSession, value: str
) -> None:
    # float() takes all of these; RFC 9110 takes digits or an HTTP date. Were
    # one honoured, the retried call would sleep forever (or 10 s for 1_0).
    url, seen = flaky
    async with asyncio.timeout(5):
        response = await session.get(
            f"{url}/i", params={"fail": "1", "retry_after": value}
        )
    assert response.status == 200
    response.release()
    assert seen["i"] == 2


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("0", 0.0), ("7", 7.0), (" 12 ", 12.0), ("59", 59.0)],
)
def test_retry_after_delay_seconds_are_digits(header: str, seconds: float) -> None:
    assert Retry(initial=0).backoff(0, header) == seconds


@pytest.mark.parametrize("header", ["86400", "120"])
def test_retry_after_is_capped_by_the_maximum(header: str) -> None:
    assert Retry(initial=0).backoff(0, header) == 60.0  # the default maximum
    assert Retry(initial=0, maximum=5).backoff(3, header) == 5.0
    in_a_day = email.utils.formatdate(time.time() + 86400, usegmt=True)
    assert Retry(maximum=5).backoff(0, in_a_day) == 5.0


async def test_a_retry_after_of_a_day_does_not_park_the_caller(
    flaky: tuple[str, Counter[str]], session: AuthorizedSession
) -> None:
    url, seen = flaky
    started = time.monotonic()
    async with session.get(f"{url}/day?fail=1&retry_after=86400") as response:
        assert response.status == 200  # retried after maximum=0.05 s
    assert time.monotonic() - started < 1
    assert seen["day"] == 2


def test_backoff_never_overflows_whatever_the_attempt_count() -> None:
    retry = Retry(attempts=100_000, initial=0.5, maximum=30.0, multiplier=10.0)
    for number in (0, 1, 2, 1_000, 1_100, 99_998):
        assert 0 <= retry.backoff(number) <= 30.0
    shrinking = Retry(attempts=100_000, initial=1.0, maximum=30.0, multiplier=0.5)
    assert shrinking.backoff(99_998) == 0.0  # 0.5 ** n underflows to 0, no error
    huge = Retry(initial=1.0, maximum=1e308, multiplier=1e300)
    assert 0 <= huge.backoff(5) <= 1e308


@pytest.mark.parametrize("field", ["initial", "maximum", "multiplier"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), -1.0])
def test_retry_refuses_times_and_factors_that_are_not_finite(
    field: str, value: float
) -> None:
    with pytest.raises(ValueError, match=f"Retry\\({field}=...\\) must be a finite"):
        Retry(**{field: value})  # type: ignore[arg-type]


def test_retry_attempts_must_be_an_int() -> None:
    with pytest.raises(TypeError, match="attempts"):
        Retry(attempts=float("inf"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="attempts"):
        Retry(attempts=True)
