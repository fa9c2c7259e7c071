"""Findings of a review of the redaction and closed-session changes."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict

from google_auth_aiohttp import AuthorizedSession
from google_auth_aiohttp._auth.flow import _merge_headers
from google_auth_aiohttp._auth.origin import NOT_SECRET, REDACTED, redact, secret_names

from .conftest import Recorder, mirror_to


class _OwnHeaderCredentials:
    """Credentials of the protocol, with a before_request of their own that adds
    a secret header google-auth's credentials never add."""

    token = "token-of-the-duck"
    expiry = None
    valid = True

    def before_request(
        self, request: Any, method: str, url: str, headers: MutableMapping[str, str]
    ) -> None:
        headers["Authorization"] = f"Bearer {self.token}"
        headers["X-Custom-Secret"] = "secret-of-the-duck"
        headers["X-Goog-User-Project"] = "billing-1"

    def refresh(self, request: Any) -> None:
        pass


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def test_a_middleware_after_the_flow_copies_no_header_of_the_credentials_own(
    serve: Any, other_origin: Recorder
) -> None:
    app = web.Application()
    app.router.add_get("/{tail:.*}", _ok)
    url = await serve(app)
    credentials = _OwnHeaderCredentials()
    async with AuthorizedSession(
        credentials, middlewares=[mirror_to(other_origin)]
    ) as session:
        for _ in range(2):
            async with session.get(f"{url}/x") as response:
                assert response.status == 200
                shown = repr(response.request_info)
                assert "secret-of-the-duck" not in shown
                assert credentials.token not in shown
                assert response.request_info.headers["X-Goog-User-Project"] == (
                    "billing-1"
                )
    assert len(other_origin.requests) == 2
    for copy in other_origin.requests:
        assert "authorization" not in copy["headers"]
        assert "x-custom-secret" not in copy["headers"]


async def test_a_detached_session_says_it_is_closed_and_sends_nothing(
    serve: Any,
) -> None:
    sent: list[str] = []

    async def record(request: web.Request) -> web.Response:
        sent.append(request.path)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    url = await serve(app)
    session = AuthorizedSession(_OwnHeaderCredentials())
    connector = session.connector
    assert connector is not None
    session.detach()
    try:
        for verb in ("get", "post", "delete"):
            with pytest.raises(RuntimeError, match="this AuthorizedSession is closed"):
                await getattr(session, verb)(f"{url}/x")
        await session.close()
    finally:
        await connector.close()
    assert sent == []


_NAMES = st.sampled_from(
    ["authorization", "x-goog-api-key", "x-custom-secret", *sorted(NOT_SECRET)]
)


def _any_case(name: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda upper: "".join(
            c.upper() if u else c for c, u in zip(name, upper, strict=True)
        )
    )


@given(
    added=st.dictionaries(_NAMES.flatmap(_any_case), st.just("secret-value")),
    callers=st.dictionaries(_NAMES.flatmap(_any_case), st.just("callers-value")),
)
def test_no_secret_the_credentials_add_is_left_once_sent_whatever_the_case(
    added: dict[str, str], callers: dict[str, str]
) -> None:
    headers: CIMultiDict[str] = CIMultiDict(callers)
    _merge_headers(headers, tuple(added.items()))
    redact(headers, secret_names(added))
    for name in added:
        if name.lower() in NOT_SECRET:
            assert "secret-value" in headers[name]  # kept, or appended to
        else:
            assert headers.getall(name) == [REDACTED]
