"""Signed tree heads (Ed25519), key encodings and the JSON shapes of heads and proofs.
(Over 400 lines: every signed or proven document shape with its parser, which auditors read as one spec.)

Everything here is pure: keys come in and go out as bytes or text, clocks are read by the caller, and
where keys are stored is decided elsewhere. A holder of the log's public key checks any proof document
against a signed head with `check_proof_document` alone.

Document shapes (hashes and signatures are standard base64 with padding, sizes are JSON integers):

- signed tree head: {"tree_size", "root_hash", "timestamp_ms", "key_id", "signature"}
- inclusion proof: {"kind": "inclusion", "leaf_index", "tree_size", "leaf_hash", "proof": [b64, ...]}
- consistency proof: {"kind": "consistency", "first_size", "first_root", "second_size", "proof": [b64, ...]}

Parsers ignore keys they do not know, so documents may carry extra context (an event id, say); only the
listed fields are checked, and only the head's listed fields are signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from commands.audit.merkle import (
    HASH_SIZE,
    AuditError,
    ProofError,
    verify_consistency,
    verify_inclusion,
)

# Domain separation: a tree-head signature cannot pass for a signature over any other message of the key.
TREE_HEAD_CONTEXT = b"bazaar.audit.tree-head.v1\n"
SIGNATURE_SIZE = 64
PUBLIC_KEY_SIZE = 32
KEY_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class SignatureError(AuditError):
    """A signed tree head did not verify under the given public key."""


class DocumentError(AuditError, ValueError):
    """A head, proof or key document is malformed (missing field, wrong type, bad base64)."""


class KeyFormatError(AuditError, ValueError):
    """Key material could not be read as an Ed25519 key."""


def b64encode(data: bytes) -> str:
    """Standard base64 with padding, as text."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: object, what: str, size: int | None = None) -> bytes:
    """Decode canonical standard base64, optionally of an exact byte length."""
    if not isinstance(text, str):
        raise DocumentError(f"{what} must be a base64 string")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DocumentError(f"{what} is not valid base64") from exc
    # Refuse non-canonical spellings so that one value has one text form (signed bytes stay unique).
    if b64encode(data) != text:
        raise DocumentError(f"{what} is not canonical base64")
    if size is not None and len(data) != size:
        raise DocumentError(f"{what} must decode to {size} bytes")
    return data


def _check_count(value: object, what: str) -> int:
    """A non-negative int (bool excluded, though Python counts it as one)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DocumentError(f"{what} must be a non-negative integer")
    return value


def _field(doc: Mapping[str, Any], name: str) -> Any:
    """A required field of a document."""
    if not isinstance(doc, Mapping):
        raise DocumentError("document must be a JSON object")
    if name not in doc:
        raise DocumentError(f"missing field {name!r}")
    return doc[name]


def _check_hashes(hashes: Sequence[bytes], what: str) -> None:
    """Refuse anything in a proof that is not a raw SHA-256 digest."""
    if any(not isinstance(h, bytes) or len(h) != HASH_SIZE for h in hashes):
        raise DocumentError(f"{what} hashes must be {HASH_SIZE} bytes each")


def _hash_list(value: object, what: str) -> tuple[bytes, ...]:
    """A JSON list of base64 SHA-256 digests."""
    if not isinstance(value, list):
        raise DocumentError(f"{what} must be a list")
    return tuple(b64decode(item, f"{what}[{i}]", HASH_SIZE) for i, item in enumerate(value))


# --- keys -------------------------------------------------------------------------------------------


def generate_private_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 signing key."""
    return Ed25519PrivateKey.generate()


def private_key_to_pem(key: Ed25519PrivateKey, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted when a password is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def private_key_from_pem(data: bytes, password: bytes | None = None) -> Ed25519PrivateKey:
    """Read a PKCS#8 PEM Ed25519 private key."""
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError) as exc:
        raise KeyFormatError("not a readable PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFormatError("the PEM private key is not Ed25519")
    return key


def private_key_to_b64(key: Ed25519PrivateKey) -> str:
    """The raw 32-byte seed, base64."""
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return b64encode(raw)


def private_key_from_b64(text: str) -> Ed25519PrivateKey:
    """Read a raw 32-byte seed given as base64."""
    try:
        return Ed25519PrivateKey.from_private_bytes(b64decode(text, "private key", 32))
    except DocumentError as exc:
        raise KeyFormatError(str(exc)) from exc


def public_key_to_pem(key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_to_raw(key: Ed25519PublicKey) -> bytes:
    """The raw 32-byte public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_to_b64(key: Ed25519PublicKey) -> str:
    """The raw 32-byte public key, base64."""
    return b64encode(public_key_to_raw(key))


def load_public_key(data: bytes | str) -> Ed25519PublicKey:
    """Read an Ed25519 public key given as PEM, raw 32 bytes, or base64 of the raw bytes."""
    raw = data.encode("ascii", "replace") if isinstance(data, str) else bytes(data)
    if raw.lstrip().startswith(b"-----BEGIN"):
        return _public_key_from_pem(raw)
    if len(raw) != PUBLIC_KEY_SIZE:
        try:
            raw = b64decode(raw.strip().decode("ascii", "replace"), "public key", PUBLIC_KEY_SIZE)
        except DocumentError as exc:
            raise KeyFormatError(str(exc)) from exc
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise KeyFormatError("not an Ed25519 public key") from exc


def _public_key_from_pem(data: bytes) -> Ed25519PublicKey:
    """Read a SubjectPublicKeyInfo PEM Ed25519 public key."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyFormatError("not a readable PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFormatError("the PEM public key is not Ed25519")
    return key


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short name for a public key: hex of the first 8 bytes of SHA-256 of its raw bytes."""
    return hashlib.sha256(public_key_to_raw(public_key)).digest()[:8].hex()


# --- tree heads -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TreeHead:
    """What the log commits to at one moment: its size, its root hash, when, and under which key."""

    size: int
    root_hash_b64: str
    timestamp_ms: int
    key_id: str

    def __post_init__(self) -> None:
        _check_count(self.size, "tree size")
        _check_count(self.timestamp_ms, "timestamp_ms")
        b64decode(self.root_hash_b64, "root hash", HASH_SIZE)
        if not isinstance(self.key_id, str) or not KEY_ID_RE.fullmatch(self.key_id):
            raise DocumentError("key id must be 1-64 characters of [A-Za-z0-9._:-]")

    @classmethod
    def from_root(cls, size: int, root: bytes, timestamp_ms: int, key_id: str) -> TreeHead:
        """A head from a raw root hash."""
        return cls(size, b64encode(root), timestamp_ms, key_id)

    @property
    def root_hash(self) -> bytes:
        """The raw 32-byte root hash."""
        return base64.b64decode(self.root_hash_b64)

    def signing_bytes(self) -> bytes:
        """The canonical bytes that are signed: a context line then one field per line.

        Every field is validated to hold no newline, so the encoding is unambiguous.
        """
        lines = (self.key_id, str(self.size), self.root_hash_b64, str(self.timestamp_ms))
        return TREE_HEAD_CONTEXT + "".join(line + "\n" for line in lines).encode("ascii")


@dataclass(frozen=True)
class SignedTreeHead:
    """A tree head with its Ed25519 signature."""

    head: TreeHead
    signature_b64: str

    def __post_init__(self) -> None:
        b64decode(self.signature_b64, "signature", SIGNATURE_SIZE)

    @property
    def size(self) -> int:
        """The signed tree size."""
        return self.head.size

    @property
    def root_hash(self) -> bytes:
        """The signed raw root hash."""
        return self.head.root_hash

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready document."""
        return {
            "tree_size": self.head.size,
            "root_hash": self.head.root_hash_b64,
            "timestamp_ms": self.head.timestamp_ms,
            "key_id": self.head.key_id,
            "signature": self.signature_b64,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> SignedTreeHead:
        """Parse the JSON document; raises DocumentError when malformed."""
        head = TreeHead(
            size=_field(doc, "tree_size"),
            root_hash_b64=_field(doc, "root_hash"),
            timestamp_ms=_field(doc, "timestamp_ms"),
            key_id=_field(doc, "key_id"),
        )
        return cls(head, _field(doc, "signature"))


def make_tree_head(public_key: Ed25519PublicKey, size: int, root: bytes, timestamp_ms: int) -> TreeHead:
    """A head for the given key, size and raw root (the timestamp comes from the caller's clock)."""
    return TreeHead.from_root(size, root, timestamp_ms, key_id(public_key))


def sign_tree_head(private_key: Ed25519PrivateKey, head: TreeHead) -> SignedTreeHead:
    """Sign a head; its key id must name the signing key."""
    if head.key_id != key_id(private_key.public_key()):
        raise ValueError("the head's key id does not name the signing key")
    return SignedTreeHead(head, b64encode(private_key.sign(head.signing_bytes())))


def verify_tree_head(public_key: Ed25519PublicKey, signed: SignedTreeHead) -> None:
    """Check a signed head under the public key; raises SignatureError."""
    if signed.head.key_id != key_id(public_key):
        raise SignatureError("the head names another signing key")
    signature = base64.b64decode(signed.signature_b64)
    try:
        public_key.verify(signature, signed.head.signing_bytes())
    except InvalidSignature as exc:
        raise SignatureError("the signature does not match the tree head") from exc


# --- proof documents --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InclusionProof:
    """Proof that the leaf with this hash sits at leaf_index in the tree of tree_size leaves."""

    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    path: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_count(self.leaf_index, "leaf_index")
        _check_count(self.tree_size, "tree_size")
        _check_hashes((self.leaf_hash, *self.path), "inclusion proof")

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready document."""
        return {
            "kind": "inclusion",
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "leaf_hash": b64encode(self.leaf_hash),
            "proof": [b64encode(h) for h in self.path],
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> InclusionProof:
        """Parse the JSON document; raises DocumentError when malformed."""
        _check_kind(doc, "inclusion")
        return cls(
            leaf_index=_check_count(_field(doc, "leaf_index"), "leaf_index"),
            tree_size=_check_count(_field(doc, "tree_size"), "tree_size"),
            leaf_hash=b64decode(_field(doc, "leaf_hash"), "leaf_hash", HASH_SIZE),
            path=_hash_list(_field(doc, "proof"), "proof"),
        )

    def verify(self, root: bytes) -> None:
        """Check the proof against the root of a tree of tree_size leaves; raises ProofError."""
        verify_inclusion(self.leaf_hash, self.leaf_index, self.tree_size, self.path, root)


@dataclass(frozen=True)
class ConsistencyProof:
    """Proof that the tree of first_size leaves with first_root is a prefix of the tree of second_size."""

    first_size: int
    second_size: int
    first_root: bytes
    path: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_count(self.first_size, "first_size")
        _check_count(self.second_size, "second_size")
        _check_hashes((self.first_root, *self.path), "consistency proof")

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready document."""
        return {
            "kind": "consistency",
            "first_size": self.first_size,
            "first_root": b64encode(self.first_root),
            "second_size": self.second_size,
            "proof": [b64encode(h) for h in self.path],
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ConsistencyProof:
        """Parse the JSON document; raises DocumentError when malformed."""
        _check_kind(doc, "consistency")
        return cls(
            first_size=_check_count(_field(doc, "first_size"), "first_size"),
            second_size=_check_count(_field(doc, "second_size"), "second_size"),
            first_root=b64decode(_field(doc, "first_root"), "first_root", HASH_SIZE),
            path=_hash_list(_field(doc, "proof"), "proof"),
        )

    def verify(self, second_root: bytes) -> None:
        """Check the proof against the root of the tree of second_size leaves; raises ProofError."""
        verify_consistency(self.first_size, self.second_size, self.path, self.first_root, second_root)


def inclusion_document(
    leaf_index: int, tree_size: int, leaf_hash: bytes, path: Sequence[bytes]
) -> dict[str, Any]:
    """The JSON-ready inclusion proof document."""
    return InclusionProof(leaf_index, tree_size, leaf_hash, tuple(path)).to_dict()


def consistency_document(
    first_size: int, second_size: int, first_root: bytes, path: Sequence[bytes]
) -> dict[str, Any]:
    """The JSON-ready consistency proof document."""
    return ConsistencyProof(first_size, second_size, first_root, tuple(path)).to_dict()


def _check_kind(doc: Mapping[str, Any], kind: str) -> None:
    """Refuse a document of another kind."""
    if _field(doc, "kind") != kind:
        raise DocumentError(f"expected a {kind!r} proof document")


def parse_proof_document(doc: Mapping[str, Any]) -> InclusionProof | ConsistencyProof:
    """Parse either kind of proof document by its "kind" field."""
    kind = _field(doc, "kind")
    if kind == "inclusion":
        return InclusionProof.from_dict(doc)
    if kind == "consistency":
        return ConsistencyProof.from_dict(doc)
    raise DocumentError(f"unknown proof kind {kind!r}")


def check_proof_document(
    doc: Mapping[str, Any],
    signed_head: Mapping[str, Any],
    public_key_bytes: bytes | str,
    *,
    earlier_head: Mapping[str, Any] | None = None,
) -> None:
    """Check a proof document against a signed head with the public key alone.

    An inclusion proof must be for the head's size; the caller compares its leaf hash with the hash of
    the event it holds. A consistency proof must end at the head's size; when the caller passes the
    signed head it held before (earlier_head), that head is verified too and must match the proof's
    first size and root. Raises SignatureError, ProofError or DocumentError (all AuditError).
    """
    public_key = load_public_key(public_key_bytes)
    head = SignedTreeHead.from_dict(signed_head)
    verify_tree_head(public_key, head)
    proof = parse_proof_document(doc)
    if isinstance(proof, InclusionProof):
        if proof.tree_size != head.size:
            raise ProofError("the proof is for another tree size than the signed head")
        proof.verify(head.root_hash)
        return
    if proof.second_size != head.size:
        raise ProofError("the proof ends at another tree size than the signed head")
    proof.verify(head.root_hash)
    if earlier_head is not None:
        _check_earlier_head(public_key, earlier_head, proof)


def _check_earlier_head(
    public_key: Ed25519PublicKey, earlier_head: Mapping[str, Any], proof: ConsistencyProof
) -> None:
    """Tie a consistency proof's starting point to a head signed earlier under the same key."""
    earlier = SignedTreeHead.from_dict(earlier_head)
    verify_tree_head(public_key, earlier)
    if earlier.size != proof.first_size or earlier.root_hash != proof.first_root:
        raise ProofError("the proof does not start at the earlier signed head")
