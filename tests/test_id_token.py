"""Verifying Google ID tokens: google-auth's semantics, with a certificate cache."""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from typing import Any

import pytest
from aiohttp import ClientSession, web
from google.auth import exceptions

from google_auth_aiohttp import Request, id_token
from google_auth_aiohttp.id_token import _fetch, _web
from google_auth_aiohttp.id_token import _verify as verify_module
from google_auth_aiohttp.id_token._verify import _cache_for
from google_auth_aiohttp.testing import GoogleEmulator

from .conftest import until

AUDIENCE = "https://service.example.test"


async def _verify(google: GoogleEmulator, token: str, **kwargs: Any) -> dict[str, Any]:
    async with Request() as request:
        return await id_token.verify_token(
            token, request, certs_url=google.certs_url, **kwargs
        )


async def test_a_google_token_verifies_and_certificates_are_fetched_once(
    google: GoogleEmulator,
) -> None:
    token = google.id_token(AUDIENCE, email="caller@example.test")
    claims = await _verify(google, token, audience=AUDIENCE)
    assert claims["aud"] == AUDIENCE
    assert claims["email"] == "caller@example.test"
    await asyncio.gather(
        *(_verify(google, token, audience=AUDIENCE) for _ in range(20))
    )
    for _ in range(20):
        await _verify(google, token)
    assert google.certs_requests == 1  # Cache-Control: max-age=3600


async def test_after_max_age_one_refetch_serves_concurrent_verifications(
    google: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(id_token, "MIN_FRESH", 0)
    google.certs_max_age = 1
    token = google.id_token(AUDIENCE)
    await _verify(google, token)
    cache = _cache_for(google.certs_url)
    assert 0 < cache.fresh_until - time.monotonic() <= 1  # max-age=1
    cache.fresh_until = time.monotonic()  # the second has passed
    await asyncio.gather(*(_verify(google, token) for _ in range(20)))
    assert google.certs_requests == 2


async def test_a_rotated_key_is_picked_up_at_once(google: GoogleEmulator) -> None:
    await _verify(google, google.id_token(AUDIENCE))  # a scheduled fetch
    google.rotate_id_token_key()
    claims = await _verify(google, google.id_token(AUDIENCE), audience=AUDIENCE)
    assert claims["aud"] == AUDIENCE
    assert google.certs_requests == 2  # the new key id made one refetch


async def test_a_flood_of_unknown_key_ids_makes_one_refetch(
    google: GoogleEmulator,
) -> None:
    await _verify(google, google.id_token(AUDIENCE))
    forged = [google.id_token(AUDIENCE, key_id=secrets.token_hex(8)) for _ in range(50)]
    results = await asyncio.gather(
        *(_verify(google, token) for token in forged), return_exceptions=True
    )
    assert all(isinstance(result, ValueError) for result in results)
    for token in forged[:10]:  # and one after another
        with pytest.raises(ValueError):
            await _verify(google, token)
    assert google.certs_requests == 2  # the first fetch, and one refetch


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda g: g.id_token("https://other.example.test"), "audience"),
        (lambda g: g.id_token(AUDIENCE, lifetime=-600), "expired"),
        (lambda g: _tampered(g.id_token(AUDIENCE)), "signature"),
        (lambda g: "not.a.token", "malformed"),
        (lambda g: "a" * 40, "malformed"),
    ],
    ids=["audience", "expired", "signature", "segments", "garbage"],
)
async def test_each_rejection_is_a_value_error_without_the_token(
    google: GoogleEmulator, make: Any, message: str
) -> None:
    token = make(google)
    with pytest.raises(ValueError) as caught:
        await _verify(google, token, audience=AUDIENCE)
    assert message in str(caught.value).lower()
    assert token not in str(caught.value)
    assert token.split(".")[0] not in str(caught.value) or len(token) < 20


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    flipped = "A" if signature[10] != "A" else "B"
    return f"{header}.{payload}.{signature[:10]}{flipped}{signature[11:]}"


async def test_verify_oauth2_token_checks_the_issuer(
    google: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Google's certificates URL, pointed at the emulator's for the test.
    monkeypatch.setattr(id_token, "GOOGLE_OAUTH2_CERTS_URL", google.certs_url)
    good = google.id_token(AUDIENCE)
    bad = google.id_token(AUDIENCE, issuer="https://evil.example.test")
    async with Request() as request:
        claims = await id_token.verify_oauth2_token(good, request, audience=AUDIENCE)
        assert claims["iss"] == "https://accounts.google.com"
        with pytest.raises(exceptions.GoogleAuthError, match="Wrong issuer"):
            await id_token.verify_oauth2_token(bad, request, audience=AUDIENCE)


async def test_a_failed_fetch_reaches_the_caller_and_is_not_cached(
    serve: Any, google: GoogleEmulator
) -> None:
    calls = [0]

    async def flaky(request: web.Request) -> web.Response:
        calls[0] += 1
        if calls[0] == 1:
            return web.Response(status=503)
        async with ClientSession() as session, session.get(google.certs_url) as r:
            return web.json_response(await r.json())

    app = web.Application()
    app.router.add_get("/certs", flaky)
    url = await serve(app) + "/certs"
    token = google.id_token(AUDIENCE)
    async with Request() as request:
        with pytest.raises(exceptions.TransportError, match="503"):
            await id_token.verify_token(token, request, certs_url=url)
        # Not asked again at once (NO_KEYS_RETRY)...
        with pytest.raises(exceptions.TransportError, match="failed moments ago"):
            await id_token.verify_token(token, request, certs_url=url)
        # ...and once that second has passed, the next verification succeeds.
        _cache_for(url).retry_at = time.monotonic()
        claims = await id_token.verify_token(token, request, certs_url=url)
    assert claims["aud"] == AUDIENCE
    assert calls == [2]


@pytest.fixture
async def guarded(serve: Any, google: GoogleEmulator) -> tuple[str, list[Any]]:
    seen: list[Any] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request[id_token.REQUEST_KEY])
        if id_token.CLAIMS is not None:
            assert request[id_token.CLAIMS] is seen[-1]
        return web.Response(text="ok")

    app = web.Application(
        middlewares=[
            id_token.middleware(
                AUDIENCE,
                certs_url=google.certs_url,
                allowed_emails=["allowed@example.test"],
            )
        ]
    )
    app.router.add_post("/push", handler)
    url: str = await serve(app)
    return url + "/push", seen


async def test_the_middleware_admits_only_google_signed_allowed_callers(
    google: GoogleEmulator,
    guarded: tuple[str, list[Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="google_auth_aiohttp")
    url, seen = guarded
    cases = [
        ({}, 401),
        ({"Authorization": "Basic dXNlcjpwdw=="}, 401),
        ({"Authorization": "Bearer forged.token.here"}, 401),
        ({"Authorization": f"Bearer {google.id_token('https://other.test')}"}, 401),
        ({"Authorization": f"Bearer {google.id_token(AUDIENCE, email='x@y.z')}"}, 403),
    ]
    async with ClientSession() as session:
        for headers, status in cases:
            async with session.post(url, headers=headers) as response:
                assert response.status == status, await response.text()
                body = await response.text()
                if status == 401:
                    assert response.headers["WWW-Authenticate"].startswith("Bearer")
                token = headers.get("Authorization", "").partition(" ")[2]
                assert not token or token not in body
        assert seen == []  # the handler never ran
        good = google.id_token(AUDIENCE, email="allowed@example.test")
        async with session.post(url, headers={"Authorization": f"Bearer {good}"}) as r:
            assert r.status == 200
    [claims] = seen
    assert claims["email"] == "allowed@example.test"
    assert claims["aud"] == AUDIENCE
    assert "Refused POST /push" in caplog.text  # refusals are logged...
    for headers, _ in cases:  # ...without the tokens
        token = headers.get("Authorization", "").partition(" ")[2]
        assert not token or token not in caplog.text
    assert good not in caplog.text


async def _start(app: web.Application, runners: list[web.AppRunner]) -> str:
    # handler_cancellation: a handler whose client went away is cancelled.
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    runners.append(runner)
    return f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_a_caller_who_leaves_does_not_fail_the_others_certificate_fetch(
    google: GoogleEmulator,
) -> None:
    asked, answer = asyncio.Event(), asyncio.Event()

    async def slow_certs(request: web.Request) -> web.Response:
        asked.set()
        await answer.wait()  # held until the test says
        async with ClientSession() as session, session.get(google.certs_url) as r:
            keys = await r.json()
        return web.json_response(keys, headers={"Cache-Control": "max-age=60"})

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    runners: list[web.AppRunner] = []
    try:
        certs = web.Application()
        certs.router.add_get("/certs", slow_certs)
        certs_url = await _start(certs, runners) + "/certs"
        guarded = web.Application(
            middlewares=[id_token.middleware(AUDIENCE, certs_url=certs_url)]
        )
        guarded.router.add_get("/", handler)
        url = await _start(guarded, runners)
        headers = {"Authorization": f"Bearer {google.id_token(AUDIENCE)}"}
        async with ClientSession() as session:

            async def call() -> int:
                async with session.get(url, headers=headers) as response:
                    return response.status

            leaver = asyncio.create_task(call())
            await asyncio.wait_for(asked.wait(), 5)  # its fetch is on its way
            others = [asyncio.create_task(call()) for _ in range(3)]
            fetch = _cache_for(certs_url).fetches

            def waiting(count: int) -> bool:
                flight = fetch.current()
                return flight is not None and len(flight._waiters) == count

            await until(lambda: waiting(4), "four verifications wait for one fetch")
            leaver.cancel()  # it goes away; its handler is cancelled...
            await until(lambda: waiting(3), "the leaver's verification is gone")
            answer.set()  # ...before the fetch lands
            assert await asyncio.gather(*others) == [200, 200, 200]
    finally:
        for runner in runners:
            await runner.cleanup()


# -- Degradation: rotations, failing and stalled certificate endpoints ----------


async def test_tokens_of_a_rotated_key_that_arrive_during_the_refetch_all_verify(
    google: GoogleEmulator,
) -> None:
    await _verify(google, google.id_token(AUDIENCE))  # keys cached for an hour
    google.rotate_id_token_key()
    tokens = [google.id_token(AUDIENCE) for _ in range(50)]
    google.certs_gate.close()  # the refetch is held while all 50 arrive
    async with Request() as request:
        verifying = [
            asyncio.create_task(
                id_token.verify_token(t, request, certs_url=google.certs_url)
            )
            for t in tokens
        ]
        await google.certs_gate.arrived(2)
        fetches = _cache_for(google.certs_url).fetches

        def all_wait() -> bool:
            flight = fetches.current()
            return flight is not None and len(flight._waiters) == len(tokens)

        await until(all_wait, "every verification waits for the one refetch")
        google.certs_gate.open()
        results = await asyncio.gather(*verifying, return_exceptions=True)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert google.certs_requests == 2  # the first fetch, and one refetch


async def test_a_failing_certificate_endpoint_leaves_the_cached_keys_verifying(
    google: GoogleEmulator,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(id_token, "MIN_FRESH", 0)
    google.certs_max_age = 0  # every verification after the first refetches
    token = google.id_token(AUDIENCE)
    await _verify(google, token)
    google.certs_status = 500
    for _ in range(20):
        claims = await _verify(google, token, audience=AUDIENCE)
        assert claims["aud"] == AUDIENCE
    # One failed refetch, then none for RETRY_AFTER_FAILURE seconds.
    assert google.certs_requests == 2
    assert "cached keys keep verifying" in caplog.text
    assert token not in caplog.text


async def test_a_stalled_refetch_holds_a_verification_at_most_a_second(
    google: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(id_token, "MIN_FRESH", 0)
    google.certs_max_age = 0
    token = google.id_token(AUDIENCE)
    loop = asyncio.get_running_loop()
    async with Request() as request:
        await id_token.verify_token(token, request, certs_url=google.certs_url)
        google.certs_gate.close()
        started = loop.time()
        results = await asyncio.gather(
            *(
                id_token.verify_token(token, request, certs_url=google.certs_url)
                for _ in range(20)
            )
        )
        assert loop.time() - started < id_token.REVALIDATE_WAIT + 0.5
        assert all(claims["aud"] == AUDIENCE for claims in results)
        assert google.certs_requests == 2  # the refetch that stalled
        google.certs_gate.open()


async def test_a_certificate_fetch_is_bounded_by_certs_timeout(
    google: GoogleEmulator,
) -> None:
    google.certs_gate.close()  # nothing cached, and the endpoint stalls
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(exceptions.TransportError, match=r"certs_timeout=0\.3s"):
        await _verify(google, google.id_token(AUDIENCE), certs_timeout=0.3)
    assert loop.time() - started < 1.0
    google.certs_gate.open()


async def test_after_a_stalled_certificate_endpoint_recovers_the_next_caller_is_served(
    google: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google_auth_aiohttp._auth import single_flight as _single_flight

    monkeypatch.setattr(_single_flight, "HEDGE_AFTER", 0.3)
    token = google.id_token(AUDIENCE)
    google.certs_gate.close()
    loop = asyncio.get_running_loop()
    async with Request() as request:
        first = asyncio.create_task(
            id_token.verify_token(token, request, certs_url=google.certs_url)
        )
        await google.certs_gate.arrived(1)
        google.certs_gate.open(release_held=False)  # the first fetch is lost
        started = loop.time()
        claims = await id_token.verify_token(token, request, certs_url=google.certs_url)
        assert claims["aud"] == AUDIENCE
        assert loop.time() - started < 1.0  # a hedge, not the lost fetch's timeout
        assert (await first)["aud"] == AUDIENCE


@pytest.mark.parametrize(
    ("constant", "retry_after"),
    [(None, "5"), (42.0, "42")],
    ids=["default", "set-on-id_token"],
)
async def test_the_middleware_answers_503_when_no_keys_can_be_had(
    google: GoogleEmulator,
    serve: Any,
    monkeypatch: pytest.MonkeyPatch,
    constant: float | None,
    retry_after: str,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    if constant is not None:  # a constant set on id_token is the one it uses
        monkeypatch.setattr(id_token, "RETRY_AFTER_FAILURE", constant)
    app = web.Application(
        middlewares=[id_token.middleware(AUDIENCE, certs_url=google.certs_url)]
    )
    app.router.add_get("/", handler)
    url = await serve(app)
    google.certs_status = 500
    token = google.id_token(AUDIENCE)
    async with (
        ClientSession() as session,
        session.get(url, headers={"Authorization": f"Bearer {token}"}) as response,
    ):
        assert response.status == 503
        assert response.headers["Retry-After"] == retry_after
        body = await response.json()
    assert body == {
        "error": "temporarily_unavailable",
        "error_description": "The token could not be checked now.",
    }


async def test_a_failing_certificate_endpoint_with_no_keys_is_not_asked_by_every_token(
    google: GoogleEmulator,
) -> None:
    google.certs_status = 500
    token = google.id_token(AUDIENCE)
    for _ in range(20):
        with pytest.raises(exceptions.TransportError, match="certificates"):
            await _verify(google, token, audience=AUDIENCE)
    # One fetch failed; for NO_KEYS_RETRY seconds, none is tried again.
    assert google.certs_requests == 1
    # Once that time has passed, the next verification fetches, and succeeds.
    google.certs_status = 200
    _cache_for(google.certs_url).retry_at = time.monotonic()
    assert (await _verify(google, token, audience=AUDIENCE))["aud"] == AUDIENCE
    assert google.certs_requests == 2


@pytest.mark.parametrize("digits", [10, 400, 4000])
async def test_a_garbled_max_age_counts_as_a_day(
    google: GoogleEmulator, digits: int
) -> None:
    google.certs_max_age = 10**digits
    token = google.id_token(AUDIENCE)
    for _ in range(10):
        assert (await _verify(google, token, audience=AUDIENCE))["aud"] == AUDIENCE
    assert google.certs_requests == 1  # cached, for MAX_AGE
    cache = _cache_for(google.certs_url)
    assert cache.fresh_until - time.monotonic() <= id_token.MAX_AGE


@pytest.mark.parametrize("value", [None, 42, ["a.b.c"]])
async def test_verify_token_of_anything_but_text_is_a_value_error(
    google: GoogleEmulator, value: Any
) -> None:
    with pytest.raises(ValueError, match="must be a str or bytes"):
        await _verify(google, value)


# -- The guard's rules -------------------------------------------------------------


@pytest.mark.parametrize("audience", [None, "", [], [""], ("a", "")])
def test_the_middleware_refuses_a_missing_or_empty_audience(audience: Any) -> None:
    with pytest.raises(ValueError, match="audience must be given"):
        id_token.middleware(audience)


@pytest.mark.parametrize("audience", ["", [], [""]])
async def test_a_verifier_refuses_an_empty_audience_before_any_fetch(
    google: GoogleEmulator, audience: Any
) -> None:
    with pytest.raises(ValueError, match="audience must be given"):
        await _verify(google, google.id_token(AUDIENCE), audience=audience)
    assert google.certs_requests == 0


async def _guarded_app(serve: Any, google: GoogleEmulator, **kwargs: Any) -> str:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(
        middlewares=[
            id_token.middleware(AUDIENCE, certs_url=google.certs_url, **kwargs)
        ]
    )
    app.router.add_get("/", handler)
    url: str = await serve(app)
    return url


async def _status_and_body(url: str, token: str) -> tuple[int, str]:
    async with (
        ClientSession() as session,
        session.get(url, headers={"Authorization": f"Bearer {token}"}) as response,
    ):
        return response.status, await response.text()


async def test_allowed_emails_admits_only_verified_addresses(
    google: GoogleEmulator, serve: Any
) -> None:
    url = await _guarded_app(serve, google, allowed_emails=["a@example.test"])
    verified = google.id_token(AUDIENCE, email="a@example.test")
    unverified = google.id_token(AUDIENCE, email="a@example.test", email_verified=False)
    assert (await _status_and_body(url, verified))[0] == 200
    assert (await _status_and_body(url, unverified))[0] == 403


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": ["https://accounts.google.com"]},
        {"iss": {"a": 1}},
        {"email": ["a@example.test"]},
        {"email": None},
        {"email_verified": ["true"]},
    ],
    ids=["iss list", "iss object", "email list", "email null", "verified list"],
)
async def test_claims_of_the_wrong_json_type_are_refused_not_a_500(
    google: GoogleEmulator, serve: Any, claims: dict[str, Any]
) -> None:
    url = await _guarded_app(serve, google, allowed_emails=["a@example.test"])
    token = google.id_token(AUDIENCE, email="a@example.test", claims=claims)
    status, _ = await _status_and_body(url, token)
    assert status == (401 if "iss" in claims else 403)


async def test_the_middleware_checks_the_issuer(
    google: GoogleEmulator, serve: Any
) -> None:
    url = await _guarded_app(serve, google)
    evil = google.id_token(AUDIENCE, issuer="https://evil.example.test")
    short = google.id_token(AUDIENCE, issuer="accounts.google.com")
    assert (await _status_and_body(url, evil))[0] == 401
    assert (await _status_and_body(url, short))[0] == 200
    firebase = "https://securetoken.google.com/my-project"
    other = await _guarded_app(serve, google, issuers=[firebase])
    assert (await _status_and_body(other, google.id_token(AUDIENCE, issuer=firebase)))[
        0
    ] == 200
    assert (await _status_and_body(other, short))[0] == 401


def _nested_header_token() -> str:
    # Deeper than Python's recursion limit, and within aiohttp's header size.
    header = base64.urlsafe_b64encode(b"[" * 2500 + b"]" * 2500)
    return header.decode().rstrip("=") + ".e30.c2ln"


@pytest.mark.parametrize(
    "make",
    [
        lambda g: g.id_token("https://other.example.test"),  # another audience
        lambda g: g.id_token(AUDIENCE, lifetime=-600),
        lambda g: g.id_token(AUDIENCE) + "x\\y",  # an escaped character
        lambda g: g.id_token(AUDIENCE).replace(".", ".x\\y.", 1),
        lambda g: _nested_header_token(),  # 5 KB of nested JSON
        lambda g: "..",
        lambda g: "\u00e9" * 50,
    ],
    ids=["audience", "expired", "escape", "escape-inside", "nested", "dots", "text"],
)
async def test_a_refusal_holds_nothing_of_the_token_nor_the_audience(
    google: GoogleEmulator, serve: Any, caplog: pytest.LogCaptureFixture, make: Any
) -> None:
    caplog.set_level(logging.DEBUG, logger="google_auth_aiohttp")
    url = await _guarded_app(serve, google)
    token = make(google)
    status, body = await _status_and_body(url, token)
    assert status == 401  # never a 500
    printed = body + caplog.text
    assert AUDIENCE not in printed
    for part in token.replace("\\", ".").split("."):
        assert len(part) < 8 or part not in printed
    assert "Refused GET /:" in caplog.text


async def test_without_a_max_age_forged_key_ids_make_few_fetches(
    google: GoogleEmulator,
) -> None:
    google.certs_max_age = None  # no Cache-Control at all
    await _verify(google, google.id_token(AUDIENCE))
    forged = [google.id_token(AUDIENCE, key_id=secrets.token_hex(8)) for _ in range(50)]
    for token in forged:
        with pytest.raises(ValueError):
            await _verify(google, token)
    assert google.certs_requests <= 2


async def test_a_constant_set_on_id_token_is_the_one_verification_uses(
    google: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(id_token, "UNKNOWN_KEY_COOLDOWN", 0)
    await _verify(google, google.id_token(AUDIENCE))
    for _ in range(3):
        forged = google.id_token(AUDIENCE, key_id=secrets.token_hex(8))
        with pytest.raises(ValueError):
            await _verify(google, forged)
    assert google.certs_requests == 4  # no cooldown: each unknown key id refetched


def test_the_submodules_keep_no_copy_of_id_tokens_constants() -> None:
    # A copy would not see a value set on id_token, and only the constants
    # that tests set would show it.
    constants = {name for name in vars(id_token) if name.isupper()}
    assert {
        "MIN_FRESH",
        "GOOGLE_OAUTH2_CERTS_URL",
        "IAM_ID_TOKEN_ENDPOINT",
    } <= constants
    for module in (_fetch, verify_module, _web):
        assert constants.isdisjoint(vars(module)), module.__name__
