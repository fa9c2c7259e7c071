"""The identities the emulator trusts: service-account keys and OAuth clients.

:class:`Accounts` makes them (the key info and authorized-user info tests hand
to google-auth) and verifies what they sign: the JWT assertions sent to the
token endpoint, and the self-signed JWTs (AIP-4111) sent to the API.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any


@dataclass
class _Key:
    email: str
    public_pem: bytes


@dataclass
class Client:
    """An OAuth client of the token endpoint, with the refresh token it holds."""

    secret: str
    refresh_token: str
    subject: str


class Accounts:
    """Service-account keys and OAuth clients the token endpoint trusts."""

    def __init__(self) -> None:
        self._keys: dict[str, _Key] = {}
        self.clients: dict[str, Client] = {}

    def service_account_info(
        self, token_uri: str, *, project_id: str, new_key: bool
    ) -> dict[str, str]:
        """Create a service account and return its key info (see the emulator's)."""
        private_pem, public_pem = rsa_key_pair() if new_key else shared_key_pair()
        key_id = secrets.token_hex(20)
        email = f"sa-{key_id[:8]}@{project_id}.iam.gserviceaccount.com"
        self._keys[key_id] = _Key(email=email, public_pem=public_pem)
        return {
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": key_id,
            "private_key": private_pem,
            "client_email": email,
            "client_id": str(int(key_id[:12], 16)),
            "token_uri": token_uri,
        }

    def authorized_user_info(self, token_uri: str) -> dict[str, str]:
        """Create an OAuth client and refresh token, and return their info."""
        client_id = f"{secrets.token_hex(8)}.apps.emulator.test"
        client = Client(
            secret=secrets.token_urlsafe(16),
            refresh_token=secrets.token_urlsafe(32),
            subject=f"user-{client_id[:8]}@emulator.test",
        )
        self.clients[client_id] = client
        return {
            "type": "authorized_user",
            "client_id": client_id,
            "client_secret": client.secret,
            "refresh_token": client.refresh_token,
            "token_uri": token_uri,
        }

    def verify(
        self, assertion: str, audience: Collection[str] | None
    ) -> dict[str, Any]:
        """Check a JWT's signature, issuer and expiry, and return its claims.

        Args:
            assertion (str): The JWT.
            audience (Optional[Collection[str]]): The accepted audiences; None
                leaves the check to the caller.

        Raises:
            ValueError: The JWT is malformed, signed by a key not made here,
                expired, or for another audience.
        """
        from google.auth import exceptions, jwt

        try:
            header = jwt.decode_header(assertion)
            unverified = jwt.decode(assertion, verify=False)
        except (ValueError, exceptions.GoogleAuthError) as caught:
            raise ValueError(f"Malformed assertion: {caught}") from caught
        # Google finds the key by its ID, or, without one, by the issuer.
        key = self._keys.get(str(header.get("kid")))
        if key is None and "kid" not in header:
            key = next(
                (k for k in self._keys.values() if k.email == unverified.get("iss")),
                None,
            )
        if key is None:
            raise ValueError("The assertion is signed by an unknown key.")
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                certs=key.public_pem,
                audience=None if audience is None else list(audience),
            )
        except (ValueError, exceptions.GoogleAuthError) as caught:
            raise ValueError(f"Invalid assertion: {caught}") from caught
        if claims.get("iss") != key.email:
            raise ValueError("The assertion's issuer does not own its key.")
        return claims


@functools.cache
def shared_key_pair() -> tuple[str, bytes]:
    """The RSA key pair service accounts share unless they ask for their own.

    One per process: making one takes 0.03 to 0.3 s, and tests make hundreds
    of accounts. Each has a key id and email of its own, which only the
    emulator that made it trusts; the key itself is common to them all.
    """
    return rsa_key_pair()


def rsa_key_pair() -> tuple[str, bytes]:
    """A new RSA private key (PEM, PKCS#8, as Google issues them) and its public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    return private_pem, public_pem
