"""The credentials' headers go to the origin the caller asked for, and nowhere else.

Two origins on 127.0.0.1 (two ports) play a redirect script: each request is
answered with the next Location of the script, or 200 at its end, and every
request is recorded with its Authorization header. Whatever the Location looks
like, whatever other middlewares do, a request reaches the asked origin with
the token and any other origin without it.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from google_auth_aiohttp import AuthMiddleware, AuthorizedSession

from .conftest import Recorder, impersonated, mirror_to

REDIRECT_STATUSES = (301, 302, 303, 307, 308)


@dataclass
class Origin:
    """One server; ``host`` is its authority, ``host:port``."""

    name: str
    url: str = ""

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")


@dataclass
class Seen:
    origin: str
    chain: str
    step: int
    # The bearer token received, if any. A Location with userinfo makes
    # aiohttp send Basic credentials of the URL's own, which are not ours.
    bearer: str | None


@dataclass
class Script:
    """Redirect chains, served by both origins; what reached which."""

    a: Origin = field(default_factory=lambda: Origin("a"))
    b: Origin = field(default_factory=lambda: Origin("b"))
    chains: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    _ids: Any = field(default_factory=itertools.count)

    def chain(self, hops: list[tuple[int, str]]) -> str:
        """Register (status, Location) answers for steps 0, 1, …; return its id."""
        chain = f"c{next(self._ids)}"
        self.chains[chain] = hops
        return chain

    def path(self, chain: str, step: int, tail: str = "") -> str:
        return f"/hop/{chain}/{step}{tail}"

    def url(self, origin: Origin, chain: str, step: int = 0) -> str:
        return origin.url + self.path(chain, step)

    def app(self, origin: Origin) -> web.Application:
        async def hop(request: web.Request) -> web.Response:
            chain, step = request.match_info["chain"], int(request.match_info["step"])
            await request.read()
            authorization = request.headers.get("Authorization", "")
            bearer = authorization if authorization.startswith("Bearer ") else None
            self.seen.append(Seen(origin.name, chain, step, bearer))
            hops = self.chains.get(chain, [])
            if step < len(hops):
                status, location = hops[step]
                return web.Response(status=status, headers={"Location": location})
            return web.Response(text="end")

        app = web.Application()
        app.router.add_route("*", "/hop/{chain}/{step:\\d+}{tail:.*}", hop)
        return app


@pytest.fixture
async def script(serve: Callable[[web.Application], Awaitable[str]]) -> Script:
    script = Script()
    script.a.url = await serve(script.app(script.a))
    script.b.url = await serve(script.app(script.b))
    return script


async def spawn_shield(request: Any, handler: Any) -> Any:
    """A middleware that runs the rest of the chain in another task."""
    return await asyncio.shield(handler(request))


async def spawn_task(request: Any, handler: Any) -> Any:
    return await asyncio.create_task(handler(request))


async def spawn_wait_for(request: Any, handler: Any) -> Any:
    return await asyncio.wait_for(handler(request), 30)


SPAWNERS = [spawn_shield, spawn_task, spawn_wait_for]


class RedirectCache:
    """A middleware that remembers redirects and answers them itself, later.

    Like an HTTP cache of 301s, or an HSTS-style upgrader: a call whose first
    URL it knows never reaches the middlewares after it with that request.
    """

    def __init__(self) -> None:
        self.redirects: dict[str, aiohttp.ClientResponse] = {}

    async def __call__(self, request: Any, handler: Any) -> Any:
        known = self.redirects.get(str(request.url))
        if known is not None:
            return known
        response = await handler(request)
        if response.status in REDIRECT_STATUSES:
            self.redirects[str(request.url)] = response
        return response


def make_client(
    kind: str, credentials: Any, spawner: Any = None, *outer: Any, **kwargs: Any
) -> aiohttp.ClientSession:
    """``session``: an AuthorizedSession, the spawner among its middlewares;
    ``session+middleware``: the same with a middleware of the caller's that
    only passes requests on, so that every call has a chain of its own (a
    ``_Call`` and its guard), not the session's; ``middleware``: a plain
    session, ``outer`` middlewares and the spawner before AuthMiddleware,
    with its trace config as the docs say."""
    before = (*outer, *(() if spawner is None else (spawner,)))
    if kind == "session":
        return AuthorizedSession(credentials, middlewares=before, **kwargs)
    if kind == "session+middleware":
        return AuthorizedSession(credentials, middlewares=(*before, _pass), **kwargs)
    auth = AuthMiddleware(credentials)
    if before:
        kwargs["trace_configs"] = [auth.trace_config]
    return aiohttp.ClientSession(middlewares=[*before, auth], **kwargs)


async def _pass(request: Any, handler: Any) -> Any:
    return await handler(request)


KINDS = ["session", "session+middleware", "middleware"]


@pytest.fixture(params=KINDS)
def kind(request: Any) -> str:
    return str(request.param)


async def _get(client: aiohttp.ClientSession, url: str, **kwargs: Any) -> int:
    async with client.get(url, **kwargs) as response:
        await response.read()
        return response.status


def _by_chain(script: Script, chain: str) -> list[tuple[str, bool]]:
    return [(s.origin, s.bearer is not None) for s in script.seen if s.chain == chain]


# -- The cases an attacker tried ---------------------------------------------


@pytest.mark.parametrize(
    "location",
    [
        "http://user@{b}{path}",
        "http://user:secret@{b}{path}",
        "//u@{b}{path}",
        "http://{a}@{b}{path}",
    ],
)
async def test_location_with_userinfo_gets_no_credentials(
    script: Script, credentials: Any, kind: str, location: str
) -> None:
    chain = script.chain([(302, "")])
    target = location.format(
        a=script.a.host, b=script.b.host, path=script.path(chain, 1)
    )
    script.chains[chain] = [(302, target)]
    async with make_client(kind, credentials) as client:
        assert await _get(client, script.url(script.a, chain)) == 200
    assert _by_chain(script, chain) == [("a", True), ("b", False)]


@pytest.mark.parametrize("escape", ["/%7euser", "/a%2fb", "/a%41"])
async def test_unrequoted_location_gets_no_credentials(
    script: Script, credentials: Any, kind: str, escape: str
) -> None:
    chain = script.chain([])
    script.chains[chain] = [(302, script.b.url + script.path(chain, 1, escape))]
    async with make_client(kind, credentials, requote_redirect_url=False) as client:
        assert await _get(client, script.url(script.a, chain)) == 200
    assert _by_chain(script, chain) == [("a", True), ("b", False)]


@pytest.mark.parametrize("spawner", SPAWNERS, ids=lambda s: s.__name__)
async def test_task_spawning_middleware_does_not_leak_a_redirect(
    script: Script, credentials: Any, kind: str, spawner: Any
) -> None:
    chain = script.chain([])
    script.chains[chain] = [
        (302, script.b.url + script.path(chain, 1)),
        (307, script.a.url + script.path(chain, 2)),
    ]
    async with make_client(kind, credentials, spawner) as client:
        assert await _get(client, script.url(script.a, chain)) == 200
        # The same client keeps authorizing the caller's own requests.
        plain = script.chain([])
        assert await _get(client, script.url(script.a, plain)) == 200
    assert _by_chain(script, chain) == [("a", True), ("b", False), ("a", True)]
    assert _by_chain(script, plain) == [("a", True)]


async def test_the_callers_next_request_after_an_unfollowed_redirect_is_authorized(
    script: Script, credentials: Any, kind: str
) -> None:
    chain = script.chain([])
    elsewhere = script.chain([])
    script.chains[chain] = [(302, script.url(script.b, elsewhere))]
    async with make_client(kind, credentials) as client:
        async with client.get(
            script.url(script.a, chain), allow_redirects=False
        ) as response:
            assert response.status == 302
            location = response.headers["Location"]
        assert await _get(client, location) == 200
    assert _by_chain(script, chain) == [("a", True)]
    assert _by_chain(script, elsewhere) == [("b", True)]


async def test_calls_in_flight_together_keep_their_own_origins(
    script: Script, credentials: Any, kind: str
) -> None:
    # Ten calls start at a and are sent to b, ten start at b and stay there.
    leaving = [script.chain([]) for _ in range(10)]
    staying = [script.chain([]) for _ in range(10)]
    for chain in leaving:
        script.chains[chain] = [(302, script.url(script.b, chain, 1))]
    for chain in staying:
        script.chains[chain] = [(302, script.path(chain, 1))]
    async with make_client(kind, credentials, spawn_task) as client:
        statuses = await asyncio.gather(
            *(_get(client, script.url(script.a, c)) for c in leaving),
            *(_get(client, script.url(script.b, c)) for c in staying),
        )
    assert set(statuses) == {200}
    for chain in leaving:
        assert _by_chain(script, chain) == [("a", True), ("b", False)]
    for chain in staying:
        assert _by_chain(script, chain) == [("b", True), ("b", True)]


async def test_a_hop_back_to_the_asked_origin_is_authorized(
    script: Script, credentials: Any, kind: str, other_origin: Recorder
) -> None:
    chain = script.chain([])
    script.chains[chain] = [
        (301, f"//{script.b.host}{script.path(chain, 1)}"),
        (308, f"http://x@{script.a.host}{script.path(chain, 2)}"),
        (303, script.path(chain, 3)),
    ]
    async with make_client(kind, credentials) as client:
        assert await _get(client, script.url(script.a, chain)) == 200
    assert _by_chain(script, chain) == [
        ("a", True),
        ("b", False),
        ("a", True),
        ("a", True),
    ]


async def test_a_middleware_that_drops_a_redirect_and_asks_again_leaks_nothing(
    script: Script, credentials: Any, kind: str
) -> None:
    async def ask_twice(request: Any, handler: Any) -> Any:
        response = await handler(request)
        if response.status in REDIRECT_STATUSES:
            response.release()
            del response
            gc.collect()  # the first redirect is gone before aiohttp follows
            response = await handler(request)
        return response

    chain = script.chain([])
    script.chains[chain] = [(302, script.url(script.b, chain, 1))]
    async with make_client(kind, credentials, ask_twice) as client:
        assert await _get(client, script.url(script.a, chain)) == 200
    assert _by_chain(script, chain) == [("a", True), ("a", True), ("b", False)]


# -- The same rule, for any script -------------------------------------------

_FORMS = ["absolute", "scheme-relative", "userinfo", "host-as-userinfo", "relative"]
_TAILS = ["", "/%7euser", "/a%2fb", "/a%41", "/x?q=1", "/%E2%82%AC"]


@st.composite
def scripts(draw: st.DrawFn) -> tuple[str, list[tuple[int, str, str, str]]]:
    """The asked origin, and hops: (status, target origin, Location form, tail)."""
    start = draw(st.sampled_from("ab"))
    hops = []
    here = start
    for _ in range(draw(st.integers(1, 4))):
        there = draw(st.sampled_from("ab"))
        forms = _FORMS if there == here else _FORMS[:-1]
        hops.append(
            (
                draw(st.sampled_from(REDIRECT_STATUSES)),
                there,
                draw(st.sampled_from(forms)),
                draw(st.sampled_from(_TAILS)),
            )
        )
        here = there
    return start, hops


def _location(script: Script, here: Origin, there: Origin, form: str, path: str) -> str:
    return {
        "absolute": there.url + path,
        "scheme-relative": f"//{there.host}{path}",
        "userinfo": f"http://user:pw@{there.host}{path}",
        "host-as-userinfo": f"http://{here.host}@{there.host}{path}",
        "relative": path,
    }[form]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    drawn=scripts(),
    kind=st.sampled_from(KINDS),
    spawner=st.sampled_from([None, *SPAWNERS]),
    cache=st.booleans(),
    requote=st.booleans(),
    method=st.sampled_from(["GET", "POST"]),
)
async def test_credentials_reach_the_asked_origin_and_no_other(
    script: Script,
    credentials: Any,
    drawn: tuple[str, list[tuple[int, str, str, str]]],
    kind: str,
    spawner: Any,
    cache: bool,
    requote: bool,
    method: str,
) -> None:
    start, hops = drawn
    origins = {"a": script.a, "b": script.b}
    chain = script.chain([])
    here = origins[start]
    answers = []
    for step, (status, there_name, form, tail) in enumerate(hops, start=1):
        there = origins[there_name]
        path = script.path(chain, step, tail)
        answers.append((status, _location(script, here, there, form, path)))
        here = there
    script.chains[chain] = answers
    outer = (RedirectCache(),) if cache else ()
    async with make_client(
        kind, credentials, spawner, *outer, requote_redirect_url=requote
    ) as client:
        # Twice: with a cache before it, the second call's first redirect is
        # answered before the auth middleware sees any of its requests.
        for _ in range(2 if cache else 1):
            async with client.request(
                method, script.url(origins[start], chain), data=b"body"
            ) as response:
                assert response.status == 200
    seen = [s for s in script.seen if s.chain == chain]
    assert [s.origin for s in seen][: len(hops) + 1] == [start, *(h[1] for h in hops)]
    for hop in seen:
        if hop.origin == start:
            assert hop.bearer == f"Bearer {credentials.token}", hop
        else:
            assert hop.bearer is None, hop


@pytest.mark.parametrize("traced", [True, False], ids=["trace config", "none"])
async def test_a_redirect_answered_before_auth_middleware_leaks_nothing(
    script: Script, credentials: Any, traced: bool, caplog: pytest.LogCaptureFixture
) -> None:
    chain = script.chain([])
    script.chains[chain] = [(301, script.url(script.b, chain, 1))]
    auth = AuthMiddleware(credentials)
    client = aiohttp.ClientSession(
        middlewares=[RedirectCache(), auth],
        trace_configs=[auth.trace_config] if traced else None,
    )
    async with client:
        for _ in range(2):  # the second time, the cache answers the 301 itself
            assert await _get(client, script.url(script.a, chain)) == 200
        plain = script.chain([])
        assert await _get(client, script.url(script.a, plain)) == 200
    seen = _by_chain(script, chain)
    # The hop to b never carries the token, whoever answered the redirect.
    assert [s for s in seen if s[0] == "b"] == [("b", False), ("b", False)]
    if traced:
        assert seen == [("a", True), ("b", False), ("b", False)]
    else:
        # A call it could not place went out unauthorized, with a warning;
        # from then on the session has its trace config.
        assert seen == [("a", False), ("b", False), ("b", False)]
        assert "sent unauthorized" in caplog.text
    assert _by_chain(script, plain) == [("a", True)]


async def test_a_middleware_that_calls_auth_middleware_itself_leaks_nothing(
    script: Script, credentials: Any
) -> None:
    # Not in the chain: a plain function of the caller's that answers known
    # redirects itself and returns AuthMiddleware's awaitable for the rest.
    # Seen from AuthMiddleware's coroutine, its frame would be gone.
    chain = script.chain([])
    script.chains[chain] = [(301, script.url(script.b, chain, 1))]
    auth = AuthMiddleware(credentials)
    known: dict[str, aiohttp.ClientResponse] = {}

    async def answered(response: Any) -> Any:
        return response

    def cached_auth(request: Any, handler: Any) -> Any:
        redirect = known.get(str(request.url))
        if redirect is not None:
            return answered(redirect)
        return auth(request, handler)

    url = script.url(script.a, chain)
    async with aiohttp.ClientSession(middlewares=[cached_auth]) as client:
        async with client.get(url) as response:
            assert response.status == 200
            known[url] = response.history[0]
        assert await _get(client, url) == 200  # the 301 answered by the cache
    # Its frame is seen: no call is placed, the hop to b never has the token.
    assert _by_chain(script, chain) == [("a", False), ("b", False), ("b", False)]


def upgrade_to(target: Origin) -> Any:
    """A plain (not async) middleware that sends every request to ``target``,
    as an HSTS-style upgrader or a mirror list would."""

    def upgrade(request: Any, handler: Any) -> Any:
        request.url = request.url.with_host("127.0.0.1").with_port(
            int(target.host.rsplit(":", 1)[1])
        )
        return handler(request)

    return upgrade


@pytest.mark.parametrize("traced", [True, False], ids=["trace config", "none"])
async def test_a_plain_middleware_before_auth_that_rewrites_the_url_leaks_nothing(
    script: Script, credentials: Any, traced: bool
) -> None:
    chain = script.chain([])
    auth = AuthMiddleware(credentials)
    client = aiohttp.ClientSession(
        middlewares=[upgrade_to(script.b), auth],
        trace_configs=[auth.trace_config] if traced else None,
    )
    async with client:
        assert await _get(client, script.url(script.a, chain)) == 200
    # The caller asked for a; b is what the request reached, without the token.
    assert _by_chain(script, chain) == [("b", False)]


async def test_a_plain_middleware_before_auth_is_not_taken_for_the_chain_start(
    script: Script, credentials: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def passing(request: Any, handler: Any) -> Any:
        return handler(request)

    chain = script.chain([])
    auth = AuthMiddleware(credentials)
    async with aiohttp.ClientSession(middlewares=[passing, auth]) as client:
        for _ in range(2):
            assert await _get(client, script.url(script.a, chain)) == 200
    # Unplaceable without its trace config: the first goes out unauthorized,
    # and the trace config it then adds places the second.
    assert _by_chain(script, chain) == [("a", False), ("a", True)]
    assert "sent unauthorized" in caplog.text


async def follow_itself(request: Any, handler: Any) -> Any:
    """A middleware that follows redirects itself, with the request it was given."""
    response = await handler(request)
    for _ in range(5):
        if response.status not in REDIRECT_STATUSES:
            break
        response.release()
        request.url = request.url.join(URL(response.headers["Location"]))
        response = await handler(request)
    return response


@pytest.mark.parametrize("per_request", [False, True], ids=["session's", "call's"])
async def test_a_middleware_after_the_flow_that_follows_redirects_leaks_nothing(
    script: Script, credentials: Any, per_request: bool
) -> None:
    chain = script.chain([])
    script.chains[chain] = [
        (302, script.url(script.b, chain, 1)),
        (302, script.url(script.a, chain, 2)),
    ]
    if per_request:
        session = AuthorizedSession(credentials)
        options: dict[str, Any] = {"middlewares": (follow_itself,)}
    else:
        session = AuthorizedSession(credentials, middlewares=(follow_itself,))
        options = {}
    async with session:
        url = script.url(script.a, chain)
        async with session.get(url, allow_redirects=False, **options) as response:
            assert response.status == 200
    # b never sees the token. The flow did not authorize the hop back (the
    # middleware sent it, not aiohttp's chain), so it goes without, too.
    assert _by_chain(script, chain) == [("a", True), ("b", False), ("a", False)]


@pytest.mark.parametrize("kind", ["session", "middleware", "untraced middleware"])
async def test_a_mirroring_middleware_copies_no_credentials_request(
    google: Any, other_origin: Recorder, kind: str
) -> None:
    # Impersonated credentials: their IAM call carries the source's token.
    credentials = impersonated(google, google.service_account_info())
    if kind == "untraced middleware":  # the first call goes unauthorized
        client = aiohttp.ClientSession(
            middlewares=[mirror_to(other_origin), AuthMiddleware(credentials)]
        )
    else:
        client = make_client(kind, credentials, None, mirror_to(other_origin))
    async with client:
        assert await _get(client, google.api_url("x")) in (200, 401)
        assert await _get(client, google.api_url("x")) == 200
    assert credentials.token  # the IAM call, with the source token, was made
    # The copy of the API request went without the token; no copy of the
    # token or IAM requests went out at all.
    assert [r["path"] for r in other_origin.requests] == ["/api/x", "/api/x"]
    assert all("authorization" not in r["headers"] for r in other_origin.requests)


async def test_a_request_a_middleware_before_auth_sends_elsewhere_has_no_placeholder(
    script: Script, credentials: Any, other_origin: Recorder
) -> None:
    auth = AuthMiddleware(credentials)
    client = aiohttp.ClientSession(
        middlewares=[mirror_to(other_origin), auth],
        trace_configs=[auth.trace_config],
    )
    async with client:
        assert await _get(client, script.url(script.a, script.chain([]))) == 200
    # Neither the token nor the "<redacted>" blank of it: no header at all.
    assert "authorization" not in other_origin.requests[-1]["headers"]


async def test_a_middleware_after_the_flow_that_changes_the_proxy_leaks_nothing(
    google: Any, credentials: Any, other_origin: Recorder
) -> None:
    async def via_other_proxy(request: Any, handler: Any) -> Any:
        request.proxy = URL(other_origin.url)  # it sees the whole request
        return await handler(request)

    async with AuthorizedSession(credentials, middlewares=(via_other_proxy,)) as s:
        async with s.get(google.api_url("x")) as response:
            await response.read()
    assert other_origin.requests, "the request went through the other proxy"
    assert "authorization" not in other_origin.requests[0]["headers"]


async def test_a_retry_layer_before_auth_is_no_middleware_before_it(
    script: Script, credentials: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from google_auth_aiohttp import Retry, RetryMiddleware

    def passing(request: Any, handler: Any) -> Any:
        return handler(request)

    chain = script.chain([])
    script.chains[chain] = [(302, script.url(script.b, chain, 1))]
    retrying = RetryMiddleware(Retry())
    async with aiohttp.ClientSession(
        middlewares=[retrying, AuthMiddleware(credentials)]
    ) as client:
        assert await _get(client, script.url(script.a, chain)) == 200
    # Placed from the first call, no trace config needed; the hop goes bare.
    assert _by_chain(script, chain) == [("a", True), ("b", False)]
    assert "sent unauthorized" not in caplog.text
    # A plain middleware before the retry layer is a middleware before auth.
    other = script.chain([])
    async with aiohttp.ClientSession(
        middlewares=[passing, retrying, AuthMiddleware(credentials)]
    ) as client:
        assert await _get(client, script.url(script.a, other)) == 200
    assert _by_chain(script, other) == [("a", False)]
