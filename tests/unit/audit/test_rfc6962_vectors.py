"""Every public RFC 6962 proof vector in tests/testdata/rfc6962 is accepted or rejected as it says.

One test case per JSON file. The vectors are vendored into the repository (see their README for where they
came from), so a fresh clone needs nothing beside it; when the folder is missing the suite fails rather than
skipping, since an audit verifier checked against nothing proves nothing.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from commands.audit.merkle import (
    MerkleLog,
    ProofError,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
    verify_subtree_consistency,
    verify_subtree_inclusion,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
VECTORS = REPO_ROOT / "tests" / "testdata" / "rfc6962"
KINDS = ("inclusion", "consistency", "subtreeinclusion", "subtreeconsistency")

# The leaves of the RFC 6962 reference tree; every happy-path vector is a proof over a prefix of it.
REFERENCE_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]


def _vector_files() -> list[Path]:
    """All vector files of the four kinds, in a stable order."""
    return sorted(path for kind in KINDS for path in (VECTORS / kind).rglob("*.json"))


CASES = _vector_files()


def _b64(text: str) -> bytes:
    """Decode a base64 field of a vector (empty strings stand for empty hashes)."""
    return base64.b64decode(text, validate=True)


def _proof(case: dict[str, Any]) -> list[bytes]:
    """The proof of a vector; some write an empty proof as null."""
    return [_b64(item) for item in case.get("proof") or []]


def _check_inclusion(case: dict[str, Any]) -> None:
    verify_inclusion(
        _b64(case["leafHash"]), case["leafIdx"], case["treeSize"], _proof(case), _b64(case["root"])
    )


def _check_consistency(case: dict[str, Any]) -> None:
    root1, root2 = _b64(case["root1"]), _b64(case["root2"])
    verify_consistency(case["size1"], case["size2"], _proof(case), root1, root2)


def _check_subtree_inclusion(case: dict[str, Any]) -> None:
    leaf, root = _b64(case["leafHash"]), _b64(case["root"])
    verify_subtree_inclusion(leaf, case["leafIdx"], case["start"], case["end"], _proof(case), root)


def _check_subtree_consistency(case: dict[str, Any]) -> None:
    root1, root2 = _b64(case["root1"]), _b64(case["root2"])
    verify_subtree_consistency(case["start"], case["end"], case["size"], _proof(case), root1, root2)


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "inclusion": _check_inclusion,
    "consistency": _check_consistency,
    "subtreeinclusion": _check_subtree_inclusion,
    "subtreeconsistency": _check_subtree_consistency,
}


def _kind(path: Path) -> str:
    """The vector kind: the first folder under the vectors root."""
    return path.relative_to(VECTORS).parts[0]


def _case_id(path: Path) -> str:
    return str(path.relative_to(VECTORS))


@pytest.mark.parametrize("path", CASES or [None], ids=[_case_id(p) for p in CASES] or ["no-vectors"])
def test_vector(path: Path | None) -> None:
    if path is None:
        pytest.fail(f"no RFC 6962 vectors under {VECTORS}", pytrace=False)
    case = json.loads(path.read_text())
    check = CHECKS[_kind(path)]
    if case["wantErr"]:
        with pytest.raises(ProofError):
            check(case)
    else:
        check(case)


def test_every_vector_file_is_a_case() -> None:
    assert VECTORS.is_dir(), f"vector folder missing: {VECTORS}"
    files = sorted(VECTORS.rglob("*.json"))
    assert len(files) > 0
    assert len(CASES) == len(files), "a vector file lies outside the four known kinds"
    assert files == CASES


def test_each_kind_has_accepting_and_rejecting_cases() -> None:
    outcomes = Counter((_kind(p), json.loads(p.read_text())["wantErr"]) for p in CASES)
    for kind in KINDS:
        assert outcomes[(kind, False)] > 0, kind
        assert outcomes[(kind, True)] > 0, kind


def _reference_log() -> MerkleLog:
    return MerkleLog(leaf_hash(data) for data in REFERENCE_LEAVES)


def _happy_paths(kind: str) -> list[dict[str, Any]]:
    """The accepted vectors of a kind, in the numbered folders (built over the reference tree)."""
    cases = [json.loads(p.read_text()) for p in sorted((VECTORS / kind).glob("[0-9]*/*.json"))]
    return [case for case in cases if not case["wantErr"]]


def test_generated_inclusion_proofs_equal_the_vectors() -> None:
    log, cases = _reference_log(), _happy_paths("inclusion")
    assert cases
    for case in cases:
        size, index = case["treeSize"], case["leafIdx"]
        assert log.root(size) == _b64(case["root"])
        assert log.leaf_hash_at(index) == _b64(case["leafHash"])
        assert log.inclusion_proof(index, size) == _proof(case)


def test_generated_consistency_proofs_equal_the_vectors() -> None:
    log, cases = _reference_log(), _happy_paths("consistency")
    assert cases
    for case in cases:
        size1, size2 = case["size1"], case["size2"]
        assert (log.root(size1), log.root(size2)) == (_b64(case["root1"]), _b64(case["root2"]))
        assert log.consistency_proof(size1, size2) == _proof(case)
