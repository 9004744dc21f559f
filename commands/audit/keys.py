"""Where the platform's Ed25519 signing key lives: generated once under the secrets folder."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from commands.audit.signing import (
    generate_private_key,
    private_key_from_pem,
    private_key_to_pem,
    public_key_to_b64,
)
from infra.settings import Settings


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The platform's tree-head signing key (created on first use, mode 600), public half beside it."""
    path = settings.secrets_dir / "audit_ed25519.pem"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = generate_private_key()
        path.write_bytes(private_key_to_pem(key))
        path.chmod(0o600)
        (settings.secrets_dir / "audit_ed25519.pub").write_text(public_key_to_b64(key.public_key()) + "\n")
    return private_key_from_pem(path.read_bytes())


def public_key(settings: Settings) -> Ed25519PublicKey:
    """The public key auditors check tree heads with (`bazaar audit public-key` prints it)."""
    return signing_key(settings).public_key()

