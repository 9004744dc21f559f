"""Where the platform's Ed25519 signing key lives: generated once under the secrets folder."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from commands.audit.signing import (
    generate_private_key,
    private_key_from_pem,
    private_key_to_pem,
    public_key_to_b64,
)
from infra.secrets import stored_secret
from infra.settings import Settings

PRIVATE_KEY_FILE = "audit_ed25519.pem"
PUBLIC_KEY_FILE = "audit_ed25519.pub"


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The platform's tree-head signing key (created on first use, mode 600), public half beside it.

    `stored_secret` lets the first of several processes starting together (relay, command API) win: every
    one of them reads the same key, never one of its own.
    """
    pem = stored_secret(settings, PRIVATE_KEY_FILE, lambda: private_key_to_pem(generate_private_key()).decode())
    key = private_key_from_pem(pem.encode() + b"\n")
    # Derived from the key, so racing writers write the same text.
    stored_secret(settings, PUBLIC_KEY_FILE, lambda: public_key_to_b64(key.public_key()) + "\n")
    return key


def public_key(settings: Settings) -> Ed25519PublicKey:
    """The public key auditors check tree heads with (`bazaar audit public-key` prints it)."""
    return signing_key(settings).public_key()
