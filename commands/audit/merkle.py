"""RFC 6962 / RFC 9162 Merkle tree over the event log: hashing, an incremental log, proofs and verifiers.
(Over 400 lines: the one tree module — the RFC 9162 tree, its proofs and their verifiers are one spec.)

Roots and proofs are computed over perfect-subtree hashes wherever they are kept: in memory (`MerkleLog`,
the relay's), from a table (`NodeMap`, `commands.audit.tree`), or as only the right edge (`RootBuilder`,
verify's). `first_difference` finds the first differing leaf of two trees by subtree comparison.
The relay appends one leaf per event (leaf hash = SHA-256(0x00 || event bytes)) and publishes signed heads
of the tree; anyone holding a head checks an inclusion proof for one event, or a consistency proof between
two heads, with the verifiers here alone. Verifiers follow RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by
step; the subtree variants follow the subtree proofs of the Merkle Tree Certificates draft, which reduce
to the RFC 9162 ones for subtrees that start at leaf 0.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


class AuditError(Exception):
    """Base of every error the audit package raises for untrusted input."""


class ProofError(AuditError):
    """A Merkle proof did not verify; the message says why."""


def leaf_hash(data: bytes) -> bytes:
    """The RFC 6962 hash of one leaf: SHA-256(0x00 || data)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 6962 hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split_point(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2), where RFC 9162 splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_power_of_two(n: int) -> bool:
    """Whether n is a positive power of two."""
    return n > 0 and n & (n - 1) == 0


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of a whole list of leaf hashes, computed from scratch (RFC 9162 2.1.1)."""
    if not leaf_hashes:
        return EMPTY_ROOT
    return _subtree_root(leaf_hashes, 0, len(leaf_hashes))


def _subtree_root(leaf_hashes: Sequence[bytes], lo: int, hi: int) -> bytes:
    """The Merkle tree hash of leaf_hashes[lo:hi], which is not empty."""
    if hi - lo == 1:
        return leaf_hashes[lo]
    mid = lo + _split_point(hi - lo)
    return node_hash(_subtree_root(leaf_hashes, lo, mid), _subtree_root(leaf_hashes, mid, hi))


def _check_hash(value: bytes, what: str) -> None:
    """Refuse anything that is not a SHA-256 digest."""
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} must be {HASH_SIZE} bytes")


def _check_size(value: int, what: str) -> None:
    """Refuse sizes and indexes that are not non-negative integers (bool is an int, so refuse it too)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProofError(f"{what} must be a non-negative integer")


def _require_equal(computed: bytes, expected: bytes, what: str) -> None:
    """Compare hashes in constant time and raise when they differ."""
    if not hmac.compare_digest(computed, expected):
        raise ProofError(f"{what} does not match")


def _require_between(value: int, low: int, high: int, what: str) -> None:
    """Refuse (ValueError) an argument that is not an int in [low, high]; bool does not count as an int."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what} must be an integer between {low} and {high}")


class _Nodes:
    """Roots and RFC 9162 proofs over perfect-subtree hashes, wherever those are kept (memory, a table).

    A subclass gives `_size` and `_node(level, position)`, the hash of the perfect subtree of 2**level
    leaves starting at leaf position * 2**level; every root or proof needs O(log n) of them.
    """

    _size: int

    def _node(self, level: int, position: int) -> bytes:
        raise NotImplementedError

    @property
    def size(self) -> int:
        """The number of leaves."""
        return self._size

    def __len__(self) -> int:
        return self._size

    def leaf_hash_at(self, index: int) -> bytes:
        """The leaf hash stored at index."""
        _require_between(index, 0, self._size - 1, "index")
        return self._node(0, index)

    def root(self, size: int | None = None) -> bytes:
        """The tree head hash at size (default: the current size)."""
        size = self._size if size is None else size
        _require_between(size, 0, self._size, "size")
        return EMPTY_ROOT if size == 0 else self.range_hash(0, size)

    def range_hash(self, lo: int, hi: int) -> bytes:
        """The Merkle tree hash of leaves [lo, hi) (non-empty), from perfect subtrees where aligned."""
        count = hi - lo
        if _is_power_of_two(count) and lo % count == 0:
            return self._node(count.bit_length() - 1, lo // count)
        mid = lo + _split_point(count)
        return node_hash(self.range_hash(lo, mid), self.range_hash(mid, hi))

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The audit path for the leaf at index in the tree of the given size (RFC 9162 2.1.3.1)."""
        _require_between(size, 0, self._size, "size")
        _require_between(index, 0, size - 1, "index")
        # PATH(m, D[lo:hi]) recurses into the half holding m and appends the other half's hash, so
        # walking top-down collects the path root-first; reverse it to get the leaf-first order.
        path: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            mid = lo + _split_point(hi - lo)
            if index < mid:
                path.append(self.range_hash(mid, hi))
                hi = mid
            else:
                path.append(self.range_hash(lo, mid))
                lo = mid
        path.reverse()
        return path

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """The proof that the tree at size1 is a prefix of the tree at size2 (RFC 9162 2.1.4.1)."""
        _require_between(size2, 0, self._size, "size2")
        # RFC 9162 defines no proof from the empty tree: every tree extends it.
        _require_between(size1, 1, size2, "size1")
        # SUBPROOF(m, D[lo:hi], b) walked top-down like the inclusion path; `complete` is b.
        path: list[bytes] = []
        lo, hi, complete = 0, size2, True
        while size1 != hi:
            mid = lo + _split_point(hi - lo)
            if size1 <= mid:
                path.append(self.range_hash(mid, hi))
                hi = mid
            else:
                path.append(self.range_hash(lo, mid))
                lo, complete = mid, False
        if not complete:
            path.append(self.range_hash(lo, hi))
        path.reverse()
        return path


class MerkleLog(_Nodes):
    """An append-only Merkle tree in memory that answers roots and proofs for any size up to its own.

    Every complete (perfect) subtree hash is kept, one packed bytearray per level, so appends cost
    amortised O(1) hashes and any root or proof needs O(log n) lookups plus O(log n) hashes along the
    tree's right edge; a million leaves take about 64 MB.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        # _levels[h] packs the hashes of the perfect subtrees of 2**h leaves, left to right.
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0
        self.extend(leaf_hashes)

    def append(self, leaf: bytes) -> int:
        """Append one leaf hash and return its index."""
        if not isinstance(leaf, bytes | bytearray) or len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash must be {HASH_SIZE} bytes")
        index = self._size
        self._levels[0] += leaf
        self._size += 1
        self._complete_parents(index)
        return index

    def append_data(self, data: bytes) -> int:
        """Hash one leaf's data and append it; returns its index."""
        return self.append(leaf_hash(data))

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append several leaf hashes in order."""
        for leaf in leaf_hashes:
            self.append(leaf)

    def _complete_parents(self, index: int) -> None:
        """Hash every perfect subtree that the leaf at index just completed."""
        level = 0
        # A right child (odd position) closes its parent; climb while that keeps happening.
        while index & 1:
            if len(self._levels) == level + 1:
                self._levels.append(bytearray())
            self._levels[level + 1] += node_hash(self._node(level, index - 1), self._node(level, index))
            index >>= 1
            level += 1

    def _node(self, level: int, position: int) -> bytes:
        """The cached hash of the perfect subtree at (level, position)."""
        start = position * HASH_SIZE
        return bytes(self._levels[level][start : start + HASH_SIZE])

    def truncate(self, size: int) -> None:
        """Forget every leaf from size on (an append that was not recorded after all)."""
        _require_between(size, 0, self._size, "size")
        for level, packed in enumerate(self._levels):
            del packed[(size >> level) * HASH_SIZE :]
        self._size = size

    def nodes_completed(self, old_size: int) -> list[tuple[int, int, bytes]]:
        """(level, position, hash) of every perfect subtree completed since the tree had old_size leaves.

        What a store of the tree's nodes appends after the leaves [old_size, size) were added.
        """
        _require_between(old_size, 0, self._size, "old_size")
        found = []
        for level, packed in enumerate(self._levels):
            for position in range(old_size >> level, self._size >> level):
                start = position * HASH_SIZE
                found.append((level, position, bytes(packed[start : start + HASH_SIZE])))
        return found


class NodeMap(_Nodes):
    """A tree of `size` leaves given by the perfect-subtree hashes a proof or root needs (a dict)."""

    def __init__(self, size: int, nodes: dict[tuple[int, int], bytes]) -> None:
        self._size = size
        self._nodes = nodes

    def _node(self, level: int, position: int) -> bytes:
        try:
            return self._nodes[(level, position)]
        except KeyError:
            raise ProofError(f"the tree node at level {level}, position {position} is not stored") from None


class _Recorder(_Nodes):
    """Notes which nodes a computation reads (the walks depend on sizes only, not on hash values)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self.wanted: set[tuple[int, int]] = set()

    def _node(self, level: int, position: int) -> bytes:
        self.wanted.add((level, position))
        return EMPTY_ROOT


def nodes_for_inclusion(index: int, size: int) -> set[tuple[int, int]]:
    """The (level, position) of every stored node that the inclusion proof of index at size reads."""
    recorder = _Recorder(size)
    recorder.leaf_hash_at(index)
    recorder.inclusion_proof(index, size)
    return recorder.wanted


def nodes_for_consistency(size1: int, size2: int) -> set[tuple[int, int]]:
    """The (level, position) of every stored node that a consistency proof (and both roots) reads."""
    recorder = _Recorder(size2)
    recorder.consistency_proof(size1, size2)
    recorder.root(size1)
    recorder.root(size2)
    return recorder.wanted


def first_difference(ours: _Nodes, theirs: _Nodes, size: int) -> int | None:
    """The first leaf position below size where two trees differ, by descending into differing subtrees.

    O(log n) subtree comparisons: at each split the left half is entered when its hashes differ,
    otherwise the right half (which must then differ).
    """
    if size == 0 or ours.root(size) == theirs.root(size):
        return None
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _split_point(hi - lo)
        if ours.range_hash(lo, mid) != theirs.range_hash(lo, mid):
            hi = mid
        else:
            lo = mid
    return lo


class RootBuilder:
    """RFC 6962 roots of a growing leaf sequence at chosen sizes, keeping only the tree's right edge.

    The verifier's tree: a stack of O(log n) perfect subtrees instead of MerkleLog's every node.
    """

    def __init__(self, sizes: Iterable[int] = ()) -> None:
        self.size = 0
        self.roots: dict[int, bytes] = {}
        self._stack: list[bytes] = []
        self._wanted = sorted({size for size in sizes if size > 0}, reverse=True)
        self._next = self._wanted.pop() if self._wanted else -1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Append leaf hashes in order, recording the root at every wanted size."""
        stack, size, wanted = self._stack, self.size, self._next
        sha = hashlib.sha256
        for leaf in leaves:
            node, n = leaf, size
            # Each trailing 1 bit of the old size is a perfect subtree that this leaf completes.
            while n & 1:
                node = sha(NODE_PREFIX + stack.pop() + node).digest()
                n >>= 1
            stack.append(node)
            size += 1
            if size == wanted:
                self.size = size
                self.roots[size] = self.root()
                wanted = self._next = self._wanted.pop() if self._wanted else -1
        self.size = size

    def root(self) -> bytes:
        """The root at the current size: the perfect subtrees folded from the right."""
        if not self._stack:
            return EMPTY_ROOT
        node = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check an inclusion proof as RFC 9162 2.1.3.2 prescribes; raises ProofError on failure."""
    _check_hash(leaf, "leaf hash")
    _check_size(index, "leaf index")
    _check_size(size, "tree size")
    if index >= size:
        raise ProofError("leaf index is not below the tree size")
    _check_proof_entries(proof)
    computed = _chain_inclusion(index, size, bytes(leaf), proof)
    _require_equal(computed, root, "root computed from the inclusion proof")


def _check_proof_entries(proof: Sequence[bytes]) -> None:
    """Refuse a proof with anything but SHA-256 digests in it."""
    for entry in proof:
        _check_hash(entry, "proof entry")


def _chain_inclusion(fn: int, size: int, r: bytes, proof: Sequence[bytes]) -> bytes:
    """Steps 2-5 of RFC 9162 2.1.3.2: hash the leaf up the audit path and return the root it gives."""
    sn = size - 1
    for p in proof:
        if sn == 0:
            raise ProofError("proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # A left child on the right edge has no sibling at these levels: climb past them.
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("proof is shorter than the path to the root")
    return r


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Check a consistency proof as RFC 9162 2.1.4.2 prescribes; raises ProofError on failure."""
    _check_size(size1, "first size")
    _check_size(size2, "second size")
    if size1 > size2:
        raise ProofError("first size is larger than the second")
    if size1 == 0:
        # Every tree extends the empty one: a proof from size 0 proves nothing, so refuse to rely on it.
        raise ProofError("a consistency proof from the empty tree is meaningless")
    if size1 == size2:
        # RFC 9162 2.1.4.1: equal sizes have an empty proof and the heads must simply agree.
        if proof:
            raise ProofError("equal sizes need an empty proof")
        _require_equal(root1, root2, "root of equal-sized trees")
        return
    if not proof:
        raise ProofError("empty proof for different sizes")
    _check_proof_entries(proof)
    # A perfect first tree is itself a node of the second one, so the proof leaves its root out.
    path = [bytes(root1), *proof] if _is_power_of_two(size1) else list(proof)
    fr, sr = _chain_consistency(size1, size2, path)
    _require_equal(fr, root1, "first root computed from the consistency proof")
    _require_equal(sr, root2, "second root computed from the consistency proof")


def _chain_consistency(size1: int, size2: int, path: Sequence[bytes]) -> tuple[bytes, bytes]:
    """Steps 3-7 of RFC 9162 2.1.4.2: the first and second roots that the path gives."""
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("proof is shorter than the path to the root")
    return fr, sr


def is_valid_subtree(start: int, end: int) -> bool:
    """Whether [start, end) is a subtree: non-empty, start a multiple of the next power of two >= its size."""
    if start < 0 or end <= start:
        return False
    width = 1 << (end - start - 1).bit_length()
    return start % width == 0


def verify_subtree_inclusion(
    leaf: bytes, index: int, start: int, end: int, proof: Sequence[bytes], subtree_root: bytes
) -> None:
    """Check that leaf index (absolute) is in subtree [start, end) whose hash is subtree_root."""
    _check_size(index, "leaf index")
    _check_size(start, "subtree start")
    _check_size(end, "subtree end")
    if not is_valid_subtree(start, end):
        raise ProofError("not a valid subtree")
    if not start <= index < end:
        raise ProofError("leaf index is outside the subtree")
    # A subtree is a Merkle tree of its own leaves, so the RFC 9162 check applies with shifted indexes.
    verify_inclusion(leaf, index - start, end - start, proof, subtree_root)


def verify_subtree_consistency(
    start: int, end: int, size: int, proof: Sequence[bytes], subtree_root: bytes, root: bytes
) -> None:
    """Check that subtree [start, end) with hash subtree_root sits in the tree of the given size and root."""
    _check_size(start, "subtree start")
    _check_size(end, "subtree end")
    _check_size(size, "tree size")
    if end > size:
        raise ProofError("subtree ends beyond the tree")
    if start == end:
        _check_empty_subtree(proof, subtree_root)
        return
    if not is_valid_subtree(start, end):
        raise ProofError("not a valid subtree")
    _check_proof_entries(proof)
    fr, sr = _chain_subtree_consistency(start, end, size, proof, bytes(subtree_root))
    _require_equal(fr, subtree_root, "subtree root computed from the consistency proof")
    _require_equal(sr, root, "root computed from the consistency proof")


def _chain_subtree_consistency(
    start: int, end: int, size: int, proof: Sequence[bytes], subtree_root: bytes
) -> tuple[bytes, bytes]:
    """The subtree root and tree root that a subtree consistency proof gives.

    fn, sn, tn are the subtree's first and last leaf and the tree's last leaf; a right shift climbs one
    level. With start = 0 this is exactly the RFC 9162 2.1.4.2 walk.
    """
    fn, sn, tn = start, end - 1, size - 1
    # At the tree's right edge the subtree's own root is on the path; inside, stop at its first left child.
    while fn != sn and (sn == tn or sn & 1):
        fn, sn, tn = fn >> 1, sn >> 1, tn >> 1
    if fn == sn:
        fr = sr = subtree_root
        rest = proof
    elif proof:
        # The subtree is not perfect: the proof starts with its rightmost perfect part.
        fr = sr = bytes(proof[0])
        rest = proof[1:]
    else:
        raise ProofError("empty proof for a subtree that is not perfect")
    for c in rest:
        if tn == 0:
            raise ProofError("proof is longer than the path to the root")
        if sn & 1 or sn == tn:
            fr = node_hash(c, fr) if fn < sn else fr
            sr = node_hash(c, sr)
            while not sn & 1:
                fn, sn, tn = fn >> 1, sn >> 1, tn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn, tn = fn >> 1, sn >> 1, tn >> 1
    if tn != 0:
        raise ProofError("proof is shorter than the path to the root")
    return fr, sr


def _check_empty_subtree(proof: Sequence[bytes], subtree_root: bytes) -> None:
    """Accept an empty subtree only with an empty proof and the empty-tree hash.

    An empty range lies in every tree, so nothing about the tree root is checked: such a proof asserts
    nothing. (RFC 9162 refuses a consistency proof from size 0 instead; the log never asks for either.)
    """
    if proof:
        raise ProofError("an empty subtree needs an empty proof")
    _require_equal(subtree_root, EMPTY_ROOT, "hash of the empty subtree")
