"""Properties of the audit Merkle log, its proofs and the signed tree heads over it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commands.audit.merkle import (
    EMPTY_ROOT,
    MerkleLog,
    ProofError,
    leaf_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
    verify_subtree_consistency,
    verify_subtree_inclusion,
)
from commands.audit.signing import (
    DocumentError,
    KeyFormatError,
    SignatureError,
    SignedTreeHead,
    b64encode,
    check_proof_document,
    consistency_document,
    generate_private_key,
    inclusion_document,
    key_id,
    load_public_key,
    make_tree_head,
    private_key_from_b64,
    private_key_from_pem,
    private_key_to_b64,
    private_key_to_pem,
    public_key_to_b64,
    public_key_to_pem,
    public_key_to_raw,
    sign_tree_head,
    verify_tree_head,
)

KEY = generate_private_key()
OTHER_KEY = generate_private_key()
PUBLIC_PEM = public_key_to_pem(KEY.public_key())
TIMESTAMP_MS = 1_760_000_000_000

# Distinct leaves: with duplicates a proof for one position can honestly verify at another.
leaf_lists = st.lists(st.binary(max_size=12), min_size=1, max_size=40, unique=True)
fast = settings(max_examples=60, deadline=None)


def _log(data: list[bytes]) -> tuple[list[bytes], MerkleLog]:
    hashes = [leaf_hash(item) for item in data]
    return hashes, MerkleLog(hashes)


def _altered(data: list[bytes], index: int) -> list[bytes]:
    """The same leaves with the one at index changed; longer than any drawn leaf, so still distinct."""
    changed = list(data)
    changed[index] = b"altered:" + data[index] + b"!" * 13
    return changed


def _sign(log: MerkleLog, size: int) -> dict[str, Any]:
    """A signed head document for the log at size, under KEY."""
    head = make_tree_head(KEY.public_key(), size, log.root(size), TIMESTAMP_MS)
    return sign_tree_head(KEY, head).to_dict()


# --- tree and proofs --------------------------------------------------------------------------------


def test_empty_tree_root_is_hash_of_nothing() -> None:
    assert MerkleLog().root() == EMPTY_ROOT == root_hash([])


@fast
@given(leaf_lists)
def test_incremental_root_equals_from_scratch_root(data: list[bytes]) -> None:
    hashes, log = _log(data)
    growing = MerkleLog()
    for k, h in enumerate(hashes):
        assert growing.root() == root_hash(hashes[:k])
        growing.append(h)
    assert [log.root(k) for k in range(len(hashes) + 1)] == [
        root_hash(hashes[:k]) for k in range(len(hashes) + 1)
    ]


@fast
@given(leaf_lists, st.data())
def test_every_inclusion_proof_verifies(data: list[bytes], draw: st.DataObject) -> None:
    hashes, log = _log(data)
    size = draw.draw(st.integers(1, len(hashes)))
    root = log.root(size)
    for index in range(size):
        verify_inclusion(hashes[index], index, size, log.inclusion_proof(index, size), root)


@fast
@given(leaf_lists, st.data())
def test_inclusion_proof_fails_for_altered_leaf_or_position(data: list[bytes], draw: st.DataObject) -> None:
    hashes, log = _log(data)
    size = draw.draw(st.integers(1, len(hashes)))
    index = draw.draw(st.integers(0, size - 1))
    proof, root = log.inclusion_proof(index, size), log.root(size)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(_altered(data, index)[index]), index, size, proof, root)
    other = draw.draw(st.integers(0, size - 1).filter(lambda i: i != index)) if size > 1 else None
    if other is not None:
        with pytest.raises(ProofError):
            verify_inclusion(hashes[index], other, size, proof, root)


@fast
@given(leaf_lists, st.data())
def test_consistency_proofs_verify(data: list[bytes], draw: st.DataObject) -> None:
    _, log = _log(data)
    size2 = draw.draw(st.integers(1, len(data)))
    size1 = draw.draw(st.integers(1, size2))
    proof, root1, root2 = log.consistency_proof(size1, size2), log.root(size1), log.root(size2)
    verify_consistency(size1, size2, proof, root1, root2)
    # A subtree starting at leaf 0 is the whole earlier tree: the same proof holds.
    verify_subtree_consistency(0, size1, size2, proof, root1, root2)


@fast
@given(leaf_lists, st.data())
def test_consistency_fails_when_an_earlier_leaf_changed(data: list[bytes], draw: st.DataObject) -> None:
    _, log = _log(data)
    size2 = draw.draw(st.integers(1, len(data)))
    size1 = draw.draw(st.integers(1, size2))
    changed_at = draw.draw(st.integers(0, size1 - 1))
    _, forged = _log(_altered(data, changed_at))
    with pytest.raises(ProofError):
        verify_consistency(
            size1, size2, log.consistency_proof(size1, size2), forged.root(size1), log.root(size2)
        )
    forged_proof = forged.consistency_proof(size1, size2)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, forged_proof, forged.root(size1), log.root(size2))


@fast
@given(leaf_lists, st.data())
def test_subtree_inclusion_proofs_verify(data: list[bytes], draw: st.DataObject) -> None:
    hashes, _ = _log(data)
    width = 1 << draw.draw(st.integers(0, max(0, (len(hashes) - 1).bit_length())))
    start = draw.draw(st.integers(0, (len(hashes) - 1) // width)) * width
    end = draw.draw(st.integers(start + 1, min(start + width, len(hashes))))
    index = draw.draw(st.integers(start, end - 1))
    subtree = MerkleLog(hashes[start:end])
    proof = subtree.inclusion_proof(index - start, end - start)
    verify_subtree_inclusion(hashes[index], index, start, end, proof, subtree.root())


def test_log_refuses_bad_input() -> None:
    log = MerkleLog([leaf_hash(b"a"), leaf_hash(b"b")])
    with pytest.raises(ValueError):
        log.append(b"short")
    with pytest.raises(ValueError):
        log.root(3)
    with pytest.raises(ValueError):
        log.leaf_hash_at(-1)
    with pytest.raises(ValueError):
        log.inclusion_proof(2, 2)
    with pytest.raises(ValueError):
        log.consistency_proof(0, 2)
    with pytest.raises(ValueError):
        log.consistency_proof(2, 1)


def test_large_log_proofs_verify() -> None:
    log = MerkleLog()
    for i in range(5000):
        log.append_data(i.to_bytes(4, "big"))
    for size, index in [(5000, 0), (5000, 4999), (4097, 4096), (1, 0), (3333, 1234)]:
        verify_inclusion(
            log.leaf_hash_at(index), index, size, log.inclusion_proof(index, size), log.root(size)
        )
    for size1, size2 in [(1, 5000), (4096, 5000), (4097, 5000), (2999, 3001), (5000, 5000)]:
        proof = log.consistency_proof(size1, size2)
        verify_consistency(size1, size2, proof, log.root(size1), log.root(size2))


# --- signed tree heads ------------------------------------------------------------------------------


def test_signed_head_round_trips_through_json() -> None:
    _, log = _log([b"a", b"b", b"c"])
    doc = json.loads(json.dumps(_sign(log, 3)))
    signed = SignedTreeHead.from_dict(doc)
    verify_tree_head(KEY.public_key(), signed)
    assert (signed.size, signed.root_hash) == (3, log.root(3))


def test_head_signed_by_another_key_is_rejected() -> None:
    _, log = _log([b"a", b"b"])
    foreign = make_tree_head(OTHER_KEY.public_key(), 2, log.root(), TIMESTAMP_MS)
    with pytest.raises(SignatureError):
        verify_tree_head(KEY.public_key(), sign_tree_head(OTHER_KEY, foreign))
    # The same head claiming our key id but signed by the other key.
    ours = make_tree_head(KEY.public_key(), 2, log.root(), TIMESTAMP_MS)
    forged = SignedTreeHead(ours, b64encode(OTHER_KEY.sign(ours.signing_bytes())))
    with pytest.raises(SignatureError):
        verify_tree_head(KEY.public_key(), forged)


def test_signing_refuses_a_head_naming_another_key() -> None:
    head = make_tree_head(OTHER_KEY.public_key(), 0, EMPTY_ROOT, TIMESTAMP_MS)
    with pytest.raises(ValueError):
        sign_tree_head(KEY, head)


@fast
@given(leaf_lists, st.sampled_from(["tree_size", "root_hash", "timestamp_ms", "size_and_root"]))
def test_tampered_head_is_rejected(data: list[bytes], change: str) -> None:
    _, log = _log(data)
    doc, smaller = _sign(log, len(data)), _sign(log, len(data) - 1)
    changes: dict[str, dict[str, Any]] = {
        "tree_size": {"tree_size": doc["tree_size"] + 1},
        "root_hash": {"root_hash": smaller["root_hash"]},
        "timestamp_ms": {"timestamp_ms": doc["timestamp_ms"] + 1},
        # A genuine earlier size and root under a signature made for the later head.
        "size_and_root": {"tree_size": smaller["tree_size"], "root_hash": smaller["root_hash"]},
    }
    tampered = SignedTreeHead.from_dict({**doc, **changes[change]})
    with pytest.raises(SignatureError):
        verify_tree_head(KEY.public_key(), tampered)


def test_malformed_heads_are_refused() -> None:
    _, log = _log([b"a"])
    good = _sign(log, 1)
    for bad in (
        {**good, "tree_size": -1},
        {**good, "tree_size": True},
        {**good, "root_hash": good["root_hash"].rstrip("=")},
        {**good, "root_hash": " " + good["root_hash"]},
        {**good, "key_id": "two\nlines"},
        {k: v for k, v in good.items() if k != "signature"},
    ):
        with pytest.raises(DocumentError):
            SignedTreeHead.from_dict(bad)


# --- keys -------------------------------------------------------------------------------------------


def test_key_encodings_round_trip() -> None:
    public = KEY.public_key()
    expected = key_id(public)
    for encoded in (
        PUBLIC_PEM,
        public_key_to_raw(public),
        public_key_to_b64(public).encode(),
        public_key_to_b64(public),
    ):
        assert key_id(load_public_key(encoded)) == expected
    assert key_id(private_key_from_pem(private_key_to_pem(KEY)).public_key()) == expected
    assert key_id(private_key_from_pem(private_key_to_pem(KEY, b"pw"), b"pw").public_key()) == expected
    assert key_id(private_key_from_b64(private_key_to_b64(KEY)).public_key()) == expected


def test_bad_key_material_is_refused() -> None:
    for bad in (b"", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", b"not base64 at all!!"):
        with pytest.raises(KeyFormatError):
            load_public_key(bad)
    with pytest.raises(KeyFormatError):
        private_key_from_pem(b"garbage")
    with pytest.raises(KeyFormatError):
        private_key_from_b64("c2hvcnQ=")


# --- proof documents against signed heads -----------------------------------------------------------


@fast
@given(leaf_lists, st.data())
def test_inclusion_document_checks_against_signed_head(data: list[bytes], draw: st.DataObject) -> None:
    hashes, log = _log(data)
    size = draw.draw(st.integers(1, len(hashes)))
    index = draw.draw(st.integers(0, size - 1))
    doc = json.loads(
        json.dumps(inclusion_document(index, size, hashes[index], log.inclusion_proof(index, size)))
    )
    head = _sign(log, size)
    check_proof_document(doc, head, PUBLIC_PEM)
    forged = {**doc, "leaf_hash": b64encode(leaf_hash(_altered(data, index)[index]))}
    with pytest.raises(ProofError):
        check_proof_document(forged, head, PUBLIC_PEM)
    with pytest.raises(SignatureError):
        check_proof_document(doc, head, public_key_to_pem(OTHER_KEY.public_key()))
    if size < len(hashes):
        with pytest.raises(ProofError):
            check_proof_document(doc, _sign(log, size + 1), PUBLIC_PEM)


@fast
@given(leaf_lists, st.data())
def test_consistency_document_checks_against_signed_heads(data: list[bytes], draw: st.DataObject) -> None:
    _, log = _log(data)
    size2 = draw.draw(st.integers(1, len(data)))
    size1 = draw.draw(st.integers(1, size2))
    doc = json.loads(
        json.dumps(consistency_document(size1, size2, log.root(size1), log.consistency_proof(size1, size2)))
    )
    earlier, later = _sign(log, size1), _sign(log, size2)
    check_proof_document(doc, later, public_key_to_raw(KEY.public_key()), earlier_head=earlier)
    _, forged = _log(_altered(data, draw.draw(st.integers(0, size1 - 1))))
    with pytest.raises(ProofError):
        check_proof_document(doc, _sign(forged, size2), PUBLIC_PEM)
    with pytest.raises(ProofError):
        check_proof_document(doc, later, PUBLIC_PEM, earlier_head=_sign(forged, size1))


def test_malformed_proof_documents_are_refused() -> None:
    hashes, log = _log([b"a", b"b", b"c"])
    head = _sign(log, 3)
    good = inclusion_document(1, 3, hashes[1], log.inclusion_proof(1, 3))
    for bad in (
        {**good, "kind": "audit"},
        {k: v for k, v in good.items() if k != "leaf_hash"},
        {**good, "proof": "not a list"},
        {**good, "proof": [*good["proof"], "AAAA"]},
        {**good, "leaf_index": "1"},
    ):
        with pytest.raises(DocumentError):
            check_proof_document(bad, head, PUBLIC_PEM)
