"""Keys and times for provenance statements in tests."""

from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def pem(key: Ed25519PrivateKey) -> str:
    """The private key as the signing key file holds it (PKCS#8 PEM, unencrypted)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
