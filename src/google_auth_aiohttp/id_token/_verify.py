"""Verifying Google-signed tokens, with a cache of the keys that sign them.

Every certificates URL has one :class:`_Certificates`, shared by all the
verifications of the process: it fetches the keys (a JSON object of key id to
PEM, or a JWK set), keeps them for their ``max-age``, and decides when a
verification waits for a refetch and when the cached keys answer.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import time
import warnings
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from google.auth import exceptions, jwt

from google_auth_aiohttp import id_token as public
from google_auth_aiohttp._auth.single_flight import CERTS_BUDGET, SingleFlight
from google_auth_aiohttp._checks import seconds
from google_auth_aiohttp._logging import LOGGER, safe_url

_MAX_AGE = re.compile(r"max-age=(\d+)")


async def verify_token(
    id_token: str | bytes,
    request: Callable[..., Awaitable[Any]],
    audience: str | Collection[str] | None = None,
    certs_url: str = public.GOOGLE_OAUTH2_CERTS_URL,
    clock_skew_in_seconds: int = 0,
    *,
    certs_timeout: float = public.DEFAULT_CERTS_TIMEOUT,
) -> dict[str, Any]:
    """Verify an ID token issued by Google, and return its claims.

    Args:
        id_token (Union[str, bytes]): The encoded token.
        request (Callable): The transport certificates are fetched with, such
            as :class:`google_auth_aiohttp.Request`.
        audience (Union[str, Collection[str], None]): The audience (or
            audiences) the token must be for. None accepts any, as in
            google-auth (a server should always give one); an empty string or
            collection is refused.
        certs_url (str): Where the public keys are published: a JSON object
            of key id to PEM certificate or public key, or a JWK set (RSA and
            EC P-256 keys), such as ``https://www.googleapis.com/oauth2/v3/certs``.
        clock_skew_in_seconds (int): Leeway for ``iat`` and ``exp``.
        certs_timeout (float): Seconds a certificate fetch may take.

    Returns:
        Mapping[str, Any]: The token's claims.

    Raises:
        ValueError: If the token is not a str or bytes, is malformed, its
            algorithm is not its key's, its signature does not verify, or its
            audience or times are wrong
            (google-auth's ``InvalidValue``/``MalformedError`` are both).
        google.auth.exceptions.TransportError: If no usable certificates could
            be had: the token could not be checked either way.
    """
    return await _verify(
        id_token, request, audience, certs_url, clock_skew_in_seconds, certs_timeout
    )


async def _verify(
    id_token: str | bytes,
    request: Callable[..., Awaitable[Any]],
    audience: str | Collection[str] | None,
    certs_url: str,
    clock_skew_in_seconds: int,
    certs_timeout: float,
    algorithms: Collection[str] | None = None,
) -> dict[str, Any]:
    """:func:`verify_token`, the token's ``alg`` one of ``algorithms`` if given."""
    if not isinstance(id_token, (str, bytes)):
        raise ValueError(
            f"The ID token must be a str or bytes, not {type(id_token).__name__}."
        )
    seconds("certs_timeout", certs_timeout)
    if audience is not None:
        _required("audience", audience)  # an empty one would match nothing, or all
    try:
        token = id_token.decode() if isinstance(id_token, bytes) else id_token
    except UnicodeDecodeError:
        raise ValueError("The ID token is malformed: it is not text.") from None
    header = _header(token)
    if algorithms is not None and header.get("alg") not in algorithms:
        raise ValueError(
            f"The token's algorithm is not one of {sorted(algorithms)}: "
            "it is not valid."
        )
    key_id = header.get("kid") if isinstance(header.get("kid"), str) else None
    cache = _cache_for(certs_url)
    certs = await cache.certs(request, key_id, certs_timeout)
    expected = cache.algorithms.get(key_id) if key_id is not None else None
    if expected is not None and header.get("alg") != expected:
        raise ValueError(
            "The ID token's algorithm does not match its key's, "
            f"{expected}: it is not valid."
        )
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            certs=certs,
            audience=audience,
            clock_skew_in_seconds=clock_skew_in_seconds,
        )
    except (ValueError, exceptions.GoogleAuthError) as caught:
        raise _without(token, caught) from None
    except (TypeError, KeyError, AttributeError, IndexError, RecursionError):
        # google-auth trips over some shapes of token; they are all malformed.
        raise ValueError("The ID token is malformed.") from None
    if not isinstance(claims, dict):
        raise ValueError("The ID token is malformed: its claims are not an object.")
    return claims


async def verify_oauth2_token(
    id_token: str | bytes,
    request: Callable[..., Awaitable[Any]],
    audience: str | Collection[str] | None = None,
    clock_skew_in_seconds: int = 0,
    *,
    certs_timeout: float = public.DEFAULT_CERTS_TIMEOUT,
) -> dict[str, Any]:
    """Verify an OAuth 2.0 ID token issued by Google's accounts service.

    As :func:`verify_token`, with Google's certificates, and the issuer must
    be ``accounts.google.com``.

    Raises:
        google.auth.exceptions.GoogleAuthError: If the issuer is another.
    """
    claims = await verify_token(
        id_token,
        request,
        audience=audience,
        certs_url=public.GOOGLE_OAUTH2_CERTS_URL,
        clock_skew_in_seconds=clock_skew_in_seconds,
        certs_timeout=certs_timeout,
    )
    if claims.get("iss") not in public.GOOGLE_ISSUERS:
        raise exceptions.GoogleAuthError(
            f"Wrong issuer: 'iss' should be one of {list(public.GOOGLE_ISSUERS)}."
        )
    return claims


async def verify_firebase_token(
    id_token: str | bytes,
    request: Callable[..., Awaitable[Any]],
    audience: str | Collection[str] | None = None,
    clock_skew_in_seconds: int = 0,
    *,
    certs_timeout: float = public.DEFAULT_CERTS_TIMEOUT,
) -> dict[str, Any]:
    """Verify an ID token issued by Firebase Authentication.

    As google-auth 2.63: with Google's Firebase certificates; the ``aud``
    claim must be a non-empty string (the Firebase project ID), the issuer
    ``https://securetoken.google.com/<aud>``, and ``sub`` a non-empty string.

    Args:
        id_token (Union[str, bytes]): The encoded token.
        request (Callable): The transport certificates are fetched with.
        audience (Union[str, Collection[str], None]): Your Firebase project ID.
            Without one the audience is not checked, and a :class:`UserWarning`
            says so, as google-auth does.
        clock_skew_in_seconds (int): Leeway for ``iat`` and ``exp``.
        certs_timeout (float): Seconds a certificate fetch may take.

    Returns:
        Mapping[str, Any]: The token's claims.

    Raises:
        google.auth.exceptions.InvalidValue: If the audience, issuer or subject
            claim is not valid (a ``ValueError`` too).
        ValueError: If the token does not verify.
    """
    if not audience:
        warnings.warn(
            "verify_firebase_token without an audience leaves the token's "
            "audience unchecked: pass your Firebase project ID as audience.",
            UserWarning,
            stacklevel=2,
        )
        audience = None
    claims = await verify_token(
        id_token,
        request,
        audience=audience,
        certs_url=public.GOOGLE_APIS_CERTS_URL,
        clock_skew_in_seconds=clock_skew_in_seconds,
        certs_timeout=certs_timeout,
    )
    token_audience = claims.get("aud")
    if not isinstance(token_audience, str) or not token_audience:
        raise exceptions.InvalidValue("The token has no valid 'aud' claim.")
    if claims.get("iss") != public.FIREBASE_ISSUER_PREFIX + token_audience:
        raise exceptions.InvalidValue(
            f"Wrong issuer: 'iss' should be '{public.FIREBASE_ISSUER_PREFIX}<aud>'."
        )
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise exceptions.InvalidValue("The token has no valid 'sub' claim.")
    return claims


async def verify_iap_token(
    iap_jwt: str | bytes,
    request: Callable[..., Awaitable[Any]],
    audience: str | Collection[str],
    clock_skew_in_seconds: int = 0,
    *,
    certs_url: str | None = None,
    certs_timeout: float = public.DEFAULT_CERTS_TIMEOUT,
) -> dict[str, Any]:
    """Verify the JWT Identity-Aware Proxy put in ``x-goog-iap-jwt-assertion``.

    It must be signed with ES256 by one of IAP's keys (a JWK set, cached as
    the other certificates are), issued by ``https://cloud.google.com/iap``,
    for ``audience``::

        claims = await id_token.verify_iap_token(
            request.headers["x-goog-iap-jwt-assertion"],
            transport,
            "/projects/123456/global/backendServices/7890",
        )

    Args:
        iap_jwt (Union[str, bytes]): The header's value.
        request (Callable): The transport IAP's keys are fetched with.
        audience (Union[str, Collection[str]]): The expected ``aud``:
            ``/projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID``, or
            ``/projects/PROJECT_NUMBER/apps/PROJECT_ID`` for App Engine.
            Required.
        clock_skew_in_seconds (int): Leeway for ``iat`` and ``exp``.
        certs_url (Optional[str]): Where IAP's keys are published; by default
            :data:`IAP_CERTS_URL`.
        certs_timeout (float): Seconds a key fetch may take.

    Returns:
        Mapping[str, Any]: The JWT's claims (``email``, ``sub``, ``hd``...).

    Raises:
        ValueError: If ``audience`` is missing or empty, or the JWT does not
            verify, is not ES256 or not IAP's.
        google.auth.exceptions.TransportError: If IAP's keys could not be had.
    """
    audiences = _required_audiences(audience)
    claims = await _verify(
        iap_jwt,
        request,
        audiences,
        public.IAP_CERTS_URL if certs_url is None else certs_url,
        clock_skew_in_seconds,
        certs_timeout,
        algorithms=("ES256",),
    )
    if claims.get("iss") != public.IAP_ISSUER:
        raise exceptions.InvalidValue(
            f"Wrong issuer: 'iss' should be {public.IAP_ISSUER!r}."
        )
    return claims


def _required(name: str, values: str | Collection[str] | None) -> frozenset[str]:
    """``values`` as a set, refused if missing, empty or holding an empty string."""
    found = [values] if isinstance(values, str) else list(values or ())
    if not found or not all(isinstance(v, str) and v for v in found):
        raise ValueError(
            f"{name} must be given: a non-empty string, or a collection of them."
        )
    return frozenset(found)


def _required_audiences(audience: str | Collection[str] | None) -> list[str]:
    """The audiences a guard admits; refused if none, which would admit any."""
    if audience is None:
        raise ValueError(
            "audience must be given (usually the service's URL): without one, "
            "any token Google signed, for any service, would be admitted."
        )
    return sorted(_required("audience", audience))


def _header(token: str) -> dict[str, Any]:
    """A token's header; the token itself is never echoed."""
    header = token.partition(".")[0]
    try:
        decoded = json.loads(
            base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        )
    except (ValueError, TypeError, RecursionError):
        raise ValueError("The ID token is malformed: its header is not JSON.") from None
    if not isinstance(decoded, dict):
        raise ValueError("The ID token is malformed: its header is not an object.")
    return decoded


def _without(token: str, caught: BaseException) -> BaseException:
    """``caught``, or one of its type whose message does not hold the token."""
    message = str(caught)
    if token not in message:
        return caught
    cleaned = message.replace(token, "<the ID token>")
    try:
        return type(caught)(cleaned)
    except TypeError:  # pragma: no cover - an exception type with other args
        return ValueError(cleaned)


class _Certificates:
    """The public keys published at one URL, and when to fetch them again.

    Keys are fresh for the endpoint's ``max-age``. After it, the next
    verification refetches them, and every verification that arrives
    meanwhile joins that one fetch. If the fetch fails, or has not landed
    within :data:`REVALIDATE_WAIT` seconds, a token whose key id the cached
    keys hold is verified with them (stale-if-error, for up to
    :data:`STALE_IF_ERROR` seconds past ``max-age``; logged), and no new
    fetch is tried for :data:`RETRY_AFTER_FAILURE` seconds. A token whose key
    id the cache does not know waits for a refetch (a rotation); such
    refetches start at most once every :data:`UNKNOWN_KEY_COOLDOWN` seconds,
    but one already in the air is always waited for.
    """

    __slots__ = (
        "algorithms",
        "fetches",
        "fresh_until",
        "keys",
        "retry_at",
        "unknown_fetch_at",
        "url",
    )

    def __init__(self, url: str) -> None:
        self.url = url
        self.keys: dict[str, str] = {}
        #: The algorithm each key signs with, where known.
        self.algorithms: dict[str, str] = {}
        # All in time.monotonic().
        self.fresh_until = -math.inf
        self.retry_at = -math.inf
        self.unknown_fetch_at = -math.inf
        self.fetches: SingleFlight[None] = SingleFlight(CERTS_BUDGET)

    async def certs(
        self, request: Callable[..., Awaitable[Any]], key_id: str | None, timeout: float
    ) -> Mapping[str, str]:
        """The keys to verify a token signed with ``key_id`` with.

        Raises:
            google.auth.exceptions.TransportError: If no usable keys could be had.
        """
        now = time.monotonic()
        known = bool(self.keys) and (key_id is None or key_id in self.keys)
        if now < self.fresh_until:
            if known:
                return self.keys
            # An unknown key id: Google may have rotated its keys. A refetch
            # in the air is waited for; else one starts, unless one did lately.
            if self.fetches.current() is None:
                if now < self.retry_at:
                    raise self._failed_lately()
                if now - self.unknown_fetch_at < public.UNKNOWN_KEY_COOLDOWN:
                    return self.keys  # the signature check will say it is unknown
                self.unknown_fetch_at = now
            await self._fetch(request, timeout)
            return self.keys
        flight = self.fetches.current()
        if not known and flight is None and self.keys:
            # An unknown key id past max-age: the same limits as within it.
            if now < self.retry_at:
                raise self._failed_lately()
            if now - self.unknown_fetch_at < public.UNKNOWN_KEY_COOLDOWN:
                return self.keys
            self.unknown_fetch_at = now
        if not known or now >= self.fresh_until + public.STALE_IF_ERROR:
            # Nothing else to verify with. A failing endpoint is not asked
            # again by every verification (no keys yet, or only too old ones).
            if flight is None and now < self.retry_at:
                raise self._failed_lately()
            await self._fetch(request, timeout)
            return self.keys
        if now < self.retry_at:
            return self.keys  # the last refetch failed moments ago
        if flight is not None and _age(flight) >= public.REVALIDATE_WAIT:
            return self.keys  # a refetch already kept somebody waiting
        try:
            async with asyncio.timeout(min(timeout, public.REVALIDATE_WAIT)):
                await self._fetch(request, timeout)
        except TimeoutError:
            LOGGER.warning(
                "The certificates at %s are slow to answer; verifying with the "
                "keys cached %.0fs past their max-age meanwhile.",
                safe_url(self.url),
                now - self.fresh_until,
            )
        except exceptions.TransportError:
            pass  # logged where it failed; the cached keys keep verifying
        return self.keys

    def _failed_lately(self) -> exceptions.TransportError:
        return exceptions.TransportError(
            f"The certificates at {safe_url(self.url)} failed moments ago; the "
            "token's key cannot be checked now."
        )

    async def _fetch(
        self, request: Callable[..., Awaitable[Any]], timeout: float
    ) -> None:
        """One fetch at a time per event loop; concurrent callers share it.

        The caller waits ``timeout`` at most, hedges included.
        """
        bound = asyncio.timeout(timeout)
        try:
            async with bound:
                await self.fetches.run(lambda: self._download(request, timeout))
        except TimeoutError as caught:
            if not bound.expired():
                raise
            raise exceptions.TransportError(
                f"Fetching the certificates at {safe_url(self.url)} took longer "
                f"than certs_timeout={timeout:g}s."
            ) from caught

    async def _download(
        self, request: Callable[..., Awaitable[Any]], timeout: float
    ) -> None:
        where = safe_url(self.url)
        LOGGER.debug("Fetching ID token certificates from %s.", where)
        try:
            async with asyncio.timeout(timeout):
                response = await request(self.url, method="GET")
                body = await response.content()
            keys, algorithms, max_age = _parse_certificates(
                response.status, response.headers, body, where
            )
        except TimeoutError as caught:
            self._failed(f"took longer than certs_timeout={timeout:g}s")
            raise exceptions.TransportError(
                f"Fetching the certificates at {where} took longer than "
                f"certs_timeout={timeout:g}s."
            ) from caught
        except exceptions.GoogleAuthError as caught:
            self._failed(str(caught))
            raise
        self.keys = keys
        self.algorithms = algorithms
        # An endpoint without a usable max-age is not asked again at every
        # verification: at most as often as unknown key ids may make it.
        self.fresh_until = time.monotonic() + max(max_age, public.MIN_FRESH)
        self.retry_at = -math.inf

    def _failed(self, why: str) -> None:
        wait = public.RETRY_AFTER_FAILURE if self.keys else public.NO_KEYS_RETRY
        self.retry_at = time.monotonic() + wait
        if self.keys:
            LOGGER.warning(
                "Could not refetch the certificates at %s (%s); the cached keys "
                "keep verifying for up to %ss past their max-age.",
                safe_url(self.url),
                why,
                public.STALE_IF_ERROR,
            )


def _age(flight: Any) -> float:
    """Seconds ``flight`` has been in the air."""
    return asyncio.get_running_loop().time() - float(flight.started)


def _parse_certificates(
    status: int, headers: Mapping[str, str], body: bytes, where: str
) -> tuple[dict[str, str], dict[str, str], int]:
    """The keys of a certificates answer, their algorithms, and their ``max-age``.

    Google's endpoints answer a JSON object of key id to PEM (a certificate or
    a public key), or a JWK set (``{"keys": [...]}``, RSA and EC P-256 keys).
    """
    if status != 200:
        raise exceptions.TransportError(
            f"Could not fetch the certificates at {where}: status {status}."
        )
    try:
        answer = json.loads(body)
    except ValueError as caught:
        raise exceptions.TransportError(
            f"The certificates at {where} are not JSON."
        ) from caught
    if isinstance(answer, dict) and isinstance(answer.get("keys"), list):
        keys, algorithms = _jwk_set(answer["keys"], where)
    elif isinstance(answer, dict) and all(
        isinstance(value, str) for value in answer.values()
    ):
        keys, algorithms = answer, _pem_algorithms(answer)
    else:
        raise exceptions.TransportError(
            f"The certificates at {where} are neither a JSON object of key id to "
            "PEM nor a JWK set."
        )
    match = _MAX_AGE.search(headers.get("Cache-Control", ""))
    # Digits beyond a day's worth are a day: a garbled max-age neither
    # overflows the clock nor keeps retired keys for ever.
    digits = match.group(1).lstrip("0") if match else ""
    max_age = (
        public.MAX_AGE if len(digits) > 9 else min(int(digits or 0), public.MAX_AGE)
    )
    return keys, algorithms, max_age


def _jwk_set(jwks: list[Any], where: str) -> tuple[dict[str, str], dict[str, str]]:
    """PEM public keys and algorithms, by key id, of a JWK set's signing keys.

    Keys of another type, curve, use or algorithm are left out: a token they
    signed is refused as signed by an unknown key.
    """
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
    except ImportError as missing:  # pragma: no cover - google-auth brings it
        raise exceptions.TransportError(
            f"The certificates at {where} are a JWK set, which needs the "
            "cryptography package: pip install cryptography."
        ) from missing
    keys: dict[str, str] = {}
    algorithms: dict[str, str] = {}
    for jwk in jwks:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            continue
        if jwk.get("use", "sig") != "sig":
            continue
        key: Any
        try:
            if jwk.get("kty") == "RSA":
                algorithm = "RS256"
                key = rsa.RSAPublicNumbers(
                    _jwk_int(jwk["e"]), _jwk_int(jwk["n"])
                ).public_key()
            elif jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
                algorithm = "ES256"
                key = ec.EllipticCurvePublicNumbers(
                    _jwk_int(jwk["x"]), _jwk_int(jwk["y"]), ec.SECP256R1()
                ).public_key()
            else:
                continue
        except (KeyError, TypeError, ValueError):
            continue  # a key that is not one: none of its tokens verify
        if jwk.get("alg", algorithm) != algorithm:
            continue
        keys[jwk["kid"]] = key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
        algorithms[jwk["kid"]] = algorithm
    return keys, algorithms


def _jwk_int(value: Any) -> int:
    """A JWK's base64url big-endian integer."""
    if not isinstance(value, str):
        raise TypeError("not a string")
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


def _pem_algorithms(keys: Mapping[str, str]) -> dict[str, str]:
    """The algorithm each PEM certificate or public key signs with, if known."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
    except ImportError:  # google-auth's own rsa module verifies RS256 only
        return {}
    algorithms = {}
    for key_id, pem in keys.items():
        try:
            data = pem.encode()
            key: Any = (
                x509.load_pem_x509_certificate(data).public_key()
                if b"CERTIFICATE" in data
                else serialization.load_pem_public_key(data)
            )
        except ValueError:
            continue
        if isinstance(key, rsa.RSAPublicKey):
            algorithms[key_id] = "RS256"
        elif isinstance(key, ec.EllipticCurvePublicKey):
            algorithms[key_id] = "ES256"
    return algorithms


_CACHES: dict[str, _Certificates] = {}


def _cache_for(certs_url: str) -> _Certificates:
    cache = _CACHES.get(certs_url)
    if cache is None:
        cache = _CACHES[certs_url] = _Certificates(certs_url)
    return cache
