"""ID tokens to google-auth 2.63's contract: Firebase, JWK sets, IAP, bind_id_token."""

from __future__ import annotations

import base64
import inspect
import json
import warnings
from typing import Any

import pytest
from aiohttp import ClientSession, web
from google.auth import exceptions

from google_auth_aiohttp import Request, id_token
from google_auth_aiohttp.testing import GoogleEmulator

AUDIENCE = "https://service.example.test"
BACKEND = "/projects/123456/global/backendServices/7890"


async def _verify(google: GoogleEmulator, token: str, **kwargs: Any) -> dict[str, Any]:
    async with Request() as request:
        return await id_token.verify_token(token, request, **kwargs)


# -- Firebase ------------------------------------------------------------------------


@pytest.fixture
def firebase_certs(google: GoogleEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # Firebase's certificates, here the emulator's.
    monkeypatch.setattr(id_token, "GOOGLE_APIS_CERTS_URL", google.certs_url)


@pytest.mark.usefixtures("firebase_certs")
async def test_verify_firebase_token_checks_issuer_audience_and_subject(
    google: GoogleEmulator,
) -> None:
    project = "my-project"
    issuer = id_token.FIREBASE_ISSUER_PREFIX + project
    good = google.id_token(project, issuer=issuer)
    async with Request() as request:
        claims = await id_token.verify_firebase_token(good, request, audience=project)
        assert claims["aud"] == project
        for bad in (
            google.id_token(project, issuer=f"https://evil.example/{project}"),
            google.id_token(project, issuer=id_token.FIREBASE_ISSUER_PREFIX + "other"),
        ):
            with pytest.raises(exceptions.InvalidValue, match="issuer"):
                await id_token.verify_firebase_token(bad, request, audience=project)
        with pytest.raises(exceptions.InvalidValue, match="'sub'"):
            await id_token.verify_firebase_token(
                google.id_token(project, issuer=issuer, subject=""),
                request,
                audience=project,
            )


@pytest.mark.usefixtures("firebase_certs")
async def test_verify_firebase_token_without_an_audience_warns(
    google: GoogleEmulator,
) -> None:
    project = "my-project"
    token = google.id_token(project, issuer=id_token.FIREBASE_ISSUER_PREFIX + project)
    async with Request() as request:
        with pytest.warns(UserWarning, match="audience"):
            claims = await id_token.verify_firebase_token(token, request)
        assert claims["aud"] == project
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            await id_token.verify_firebase_token(token, request, audience=project)


# -- JWK sets and PEM public keys --------------------------------------------------


async def test_a_jwk_set_endpoint_verifies_tokens_and_is_cached(
    google: GoogleEmulator,
) -> None:
    token = google.id_token(AUDIENCE)
    for _ in range(5):
        claims = await _verify(
            google, token, audience=AUDIENCE, certs_url=google.jwk_certs_url
        )
        assert claims["aud"] == AUDIENCE
    assert google.certs_requests == 1  # Cache-Control, as for PEM maps


async def test_a_token_whose_algorithm_is_not_its_keys_is_refused(
    google: GoogleEmulator,
) -> None:
    token = google.id_token(AUDIENCE)
    header, payload, signature = token.split(".")
    claimed = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    claimed["alg"] = "ES256"
    forged_header = base64.urlsafe_b64encode(json.dumps(claimed).encode()).decode()
    forged = f"{forged_header.rstrip('=')}.{payload}.{signature}"
    for certs_url in (google.jwk_certs_url, google.certs_url):
        with pytest.raises(ValueError, match="algorithm"):
            await _verify(google, forged, certs_url=certs_url)


async def test_pem_public_keys_verify_as_certificates_do(
    google: GoogleEmulator, serve: Any
) -> None:
    token = google.id_token(AUDIENCE)

    async def public_keys(request: web.Request) -> web.Response:
        async with ClientSession() as session, session.get(google.certs_url) as r:
            keys = await r.json()
        assert all("PUBLIC KEY" in pem for pem in keys.values())
        return web.json_response(keys, headers={"Cache-Control": "max-age=60"})

    app = web.Application()
    app.router.add_get("/keys", public_keys)
    url = await serve(app) + "/keys"
    claims = await _verify(google, token, audience=AUDIENCE, certs_url=url)
    assert claims["aud"] == AUDIENCE


# -- Identity-Aware Proxy ----------------------------------------------------------


async def test_verify_iap_token_accepts_iaps_es256_jwts_only(
    google: GoogleEmulator,
) -> None:
    async with Request() as request:

        async def verify(token: str, audience: Any = BACKEND) -> dict[str, Any]:
            return await id_token.verify_iap_token(
                token, request, audience, certs_url=google.iap_certs_url
            )

        claims = await verify(google.iap_jwt(BACKEND, email="a@example.test"))
        assert claims["email"] == "a@example.test"
        assert claims["iss"] == id_token.IAP_ISSUER
        with pytest.raises(ValueError, match="audience"):
            await verify(google.iap_jwt("/projects/1/global/backendServices/2"))
        with pytest.raises(exceptions.InvalidValue, match="issuer"):
            await verify(google.iap_jwt(BACKEND, issuer="https://evil.example"))
        with pytest.raises(ValueError, match="expired"):
            await verify(google.iap_jwt(BACKEND, lifetime=-600))
        with pytest.raises(ValueError, match="algorithm"):  # an RS256 ID token
            await verify(google.id_token(BACKEND))
        missing: Any
        for missing in (None, "", []):
            with pytest.raises(ValueError, match="audience must be given"):
                await verify(google.iap_jwt(BACKEND), audience=missing)


async def test_the_iap_middleware_admits_only_iaps_users(
    google: GoogleEmulator, serve: Any
) -> None:
    seen: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request[id_token.IAP_REQUEST_KEY])
        return web.Response(text="ok")

    app = web.Application(
        middlewares=[
            id_token.iap_middleware(
                BACKEND,
                certs_url=google.iap_certs_url,
                allowed_emails=["a@example.test"],
            )
        ]
    )
    app.router.add_get("/", handler)
    url = await serve(app)

    async def status(headers: dict[str, str]) -> int:
        async with ClientSession() as session, session.get(url, headers=headers) as r:
            return r.status

    header = id_token.IAP_HEADER
    assert await status({}) == 401
    assert await status({header: google.id_token(BACKEND)}) == 401
    assert (
        await status({header: google.iap_jwt(BACKEND, email="b@example.test")}) == 403
    )
    assert (
        await status({header: google.iap_jwt(BACKEND, email="a@example.test")}) == 200
    )
    assert [claims["email"] for claims in seen] == ["a@example.test"]
    google.certs_status = 500  # keys cached: verification goes on
    assert (
        await status({header: google.iap_jwt(BACKEND, email="a@example.test")}) == 200
    )
    with pytest.raises(ValueError, match="audience must be given"):
        id_token.iap_middleware("")


# -- bind_id_token -------------------------------------------------------------------


async def test_fetch_id_token_takes_bind_id_token_as_google_auth_does(
    gce: GoogleEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import google.auth
    from google.oauth2 import id_token as google_id_token

    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    supported = (
        "bind_id_token"
        in inspect.signature(google_id_token.fetch_id_token_credentials).parameters
    )
    async with Request() as request:
        if supported:
            token = await id_token.fetch_id_token(
                request, AUDIENCE, bind_id_token=False
            )
            assert token.count(".") == 2
        else:  # the declared floor: a clear error, not google-auth's TypeError
            with pytest.raises(TypeError, match=google.auth.__version__):
                await id_token.fetch_id_token(request, AUDIENCE, bind_id_token=False)
        # Unset, it is left to google-auth, on every version.
        assert (await id_token.fetch_id_token(request, AUDIENCE)).count(".") == 2
