"""The flow's decisions, without a network: what goes on a request, and where.

Requests are aiohttp's own ClientRequest objects; the rest of the chain is a
function that records what it was handed and answers with a status.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from aiohttp import ClientRequest
from google.oauth2 import credentials as user_credentials
from multidict import CIMultiDict
from yarl import URL

from google_auth_aiohttp import _middleware
from google_auth_aiohttp._auth import flow as _flow
from google_auth_aiohttp._auth import origin as _origin


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


def request_to(url: str, calls: Any = None) -> ClientRequest:
    request = ClientRequest("GET", URL(url), loop=asyncio.get_running_loop())
    if calls is not None:
        request._traces = calls  # another request of the same call
    return request


async def test_the_asked_origin_gets_the_credentials_headers(
    flow: _flow.AuthFlow,
) -> None:
    chain = Chain()
    await flow.send(request_to("https://api.test/a"), chain)
    await flow.send(request_to("https://api.test/b"), chain)
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
        await flow.send(request_to("https://api.test/a"), chain)
    assert len(chain.sent) == 1


def test_x_goog_api_client_is_appended_to_once_and_decoded() -> None:
    headers: CIMultiDict[Any] = CIMultiDict({"x-goog-api-client": b"gl-python/3 lib/1"})
    added = {"x-goog-api-client": "cred-type/sa", "authorization": "Bearer t"}
    _flow._merge_headers(headers, added)
    _flow._merge_headers(headers, added)  # a re-send after a refresh
    assert headers["x-goog-api-client"] == "gl-python/3 lib/1 cred-type/sa"
    assert headers["authorization"] == "Bearer t"


async def test_a_redirect_note_lives_as_long_as_the_redirect_response() -> None:
    first = request_to("https://asked.test/a")
    hop = request_to("https://other.test/b", calls=first._traces)
    another_call = request_to("https://other.test/b")
    notes = _middleware._RedirectedCalls()
    assert notes.asked_origin(hop) is None  # nothing noted: a call's first request
    redirect = Answer(302)
    notes.add(first, redirect, URL("https://asked.test"))  # type: ignore[arg-type]
    assert notes.asked_origin(hop) == URL("https://asked.test")
    assert notes.asked_origin(another_call) is None
    # The hop is redirected too; a middleware before this one drops the first
    # redirect (it retried it, say): the note stays while the second lives.
    second = Answer(302)
    notes.add(hop, second, URL("https://asked.test"))  # type: ignore[arg-type]
    del redirect
    gc.collect()
    assert notes.asked_origin(hop) == URL("https://asked.test")
    del second
    gc.collect()
    assert notes.asked_origin(hop) is None
