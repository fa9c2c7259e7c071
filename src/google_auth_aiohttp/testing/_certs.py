"""Google's signing keys: ID tokens and IAP assertions, and where their keys are.

:class:`Certs` signs ID tokens with RSA keys it rotates on demand, and IAP
assertions with one EC P-256 key, and publishes the public keys as Google
does: ``/oauth2/v1/certs`` (key id to PEM), ``/oauth2/v3/certs`` (the same
keys as a JWK set) and ``/iap/verify/public_key-jwk`` (IAP's JWK set).
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from ._accounts import rsa_key_pair
from ._state import CertsKnobs, Tokens

PEM_PATH = "/oauth2/v1/certs"
JWK_PATH = "/oauth2/v3/certs"
IAP_PATH = "/iap/verify/public_key-jwk"


class Certs:
    """The keys that sign ID tokens and IAP assertions, and their endpoints.

    Args:
        default_email (Callable[[], str]): Whom an ID token names when the
            caller names no one: the instance's default service account.
    """

    def __init__(
        self, knobs: CertsKnobs, tokens: Tokens, default_email: Callable[[], str]
    ) -> None:
        self._knobs = knobs
        self._tokens = tokens
        self._default_email = default_email
        # (key id, (signer, private PEM), public PEM), the current one last
        self._id_keys: list[tuple[str, tuple[Any, str], str]] = []
        self._iap_key: tuple[Any, Any] | None = None

    def rotate_id_token_key(self, *, retire_previous: bool) -> None:
        """Sign ID tokens with a new key from now on (see the emulator's)."""
        from google.auth import crypt

        if retire_previous:
            self._id_keys.clear()
        private_pem, public_pem = rsa_key_pair()
        key_id = secrets.token_hex(20)
        # Loaded once: loading an RSA key takes tens of milliseconds of the loop.
        signer = crypt.RSASigner.from_string(private_pem, key_id)
        self._id_keys.append((key_id, (signer, private_pem), public_pem.decode()))

    def id_token(
        self,
        audience: str,
        *,
        email: str | None = None,
        issuer: str = "https://accounts.google.com",
        lifetime: int | None = None,
        key_id: str | None = None,
        email_verified: bool = True,
        subject: str | None = None,
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """Issue an ID token (see the emulator's ``id_token``)."""
        from google.auth import crypt, jwt

        if not self._id_keys:
            self.rotate_id_token_key(retire_previous=False)
        current_id, (signer, private_pem), _ = self._id_keys[-1]
        if key_id is not None and key_id != current_id:  # a key id to test with
            signer = crypt.RSASigner.from_string(private_pem, key_id)
        email = email or self._default_email()
        lifetime = self._tokens.lifetime if lifetime is None else lifetime
        now = int(time.time())
        token: bytes = jwt.encode(
            signer,
            {
                "iss": issuer,
                "sub": email if subject is None else subject,
                "email": email,
                "email_verified": email_verified,
                "aud": audience,
                "iat": min(now, now + lifetime),
                "exp": now + lifetime,
                **(claims or {}),
            },
        )
        id_token = token.decode()
        self._tokens.record(id_token, email, (), lifetime)
        return id_token

    def iap_jwt(
        self,
        audience: str,
        *,
        email: str,
        lifetime: int,
        issuer: str,
        claims: Mapping[str, Any] | None,
    ) -> str:
        """Mint an IAP assertion (see the emulator's ``iap_jwt``)."""
        from google.auth import jwt

        signer = self._iap_signer()
        now = int(time.time())
        token: bytes = jwt.encode(
            signer,
            {
                "iss": issuer,
                "aud": audience,
                "sub": f"accounts.google.com:{abs(hash(email))}",
                "email": email,
                "iat": min(now, now + lifetime),
                "exp": now + lifetime,
                **(claims or {}),
            },
        )
        return token.decode()

    def _iap_signer(self) -> Any:
        if self._iap_key is None:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import ec
            from google.auth.crypt import es256

            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            key_id = secrets.token_hex(8)
            self._iap_key = (es256.ES256Signer.from_string(pem, key_id), key)
        return self._iap_key[0]

    async def pem_certs(self, request: web.Request) -> web.Response:
        """``GET /oauth2/v1/certs``: the ID-token keys, key id to PEM."""
        refused = await self._knobs.refusal()
        if refused is not None:
            return refused
        return web.json_response(
            {key_id: public_pem for key_id, _, public_pem in self._id_keys},
            headers=self._knobs.headers(),
        )

    async def jwk_certs(self, request: web.Request) -> web.Response:
        """``GET /oauth2/v3/certs``: the ID-token keys as a JWK set."""
        from cryptography.hazmat.primitives import serialization

        refused = await self._knobs.refusal()
        if refused is not None:
            return refused
        keys = []
        for key_id, _, public_pem in self._id_keys:
            key: Any = serialization.load_pem_public_key(public_pem.encode())
            numbers = key.public_numbers()
            keys.append(
                {
                    "kty": "RSA",
                    "alg": "RS256",
                    "use": "sig",
                    "kid": key_id,
                    "n": _b64_int(numbers.n),
                    "e": _b64_int(numbers.e),
                }
            )
        return web.json_response({"keys": keys}, headers=self._knobs.headers())

    async def iap_certs(self, request: web.Request) -> web.Response:
        """``GET /iap/verify/public_key-jwk``: IAP's key as a JWK set."""
        refused = await self._knobs.refusal()
        if refused is not None:
            return refused
        signer = self._iap_signer()
        numbers = self._iap_key[1].public_key().public_numbers()  # type: ignore[index]
        key = {
            "kty": "EC",
            "alg": "ES256",
            "use": "sig",
            "crv": "P-256",
            "kid": signer.key_id,
            "x": _b64_int(numbers.x, 32),
            "y": _b64_int(numbers.y, 32),
        }
        return web.json_response({"keys": [key]}, headers=self._knobs.headers())


def _b64_int(value: int, size: int = 0) -> str:
    """An integer as JWK writes it: big-endian bytes, base64url, no padding."""
    length = max(size, (value.bit_length() + 7) // 8)
    return base64.urlsafe_b64encode(value.to_bytes(length, "big")).decode().rstrip("=")
