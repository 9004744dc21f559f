"""`bazaar audit witness`: keep the platform's signed heads on the auditor's machine, each proven to extend the last.

Certificate Transparency's witness role. Each run (by hand or from cron) fetches the signed heads from
`/v1/audit/heads`, checks every new one's signature with the pinned public key and that it is
consistent with the newest head kept (a consistency proof from `/v1/audit/proofs/consistency`, checked
locally), and keeps it as `DIR/heads/<size>.json`. It refuses, keeping nothing more, when a head is
unsigned or badly signed, when a proof fails, when the platform serves another head for a size already
kept, when a kept head has vanished from the platform's list, or when the platform's key changed.
Once heads are kept here, deleting or rewriting them in the database hides nothing:
`bazaar audit verify --trusted-heads DIR/heads` checks the log against them.

The folder: `public_key` (pinned on the first run: trust on first use, or given with --public-key) and
`heads/`. Exit codes of the command: 0 all consistent, 1 refused, 2 the platform could not be read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from commands.audit.merkle import AuditError
from commands.audit.signing import (
    SignedTreeHead,
    check_proof_document,
    load_public_key,
    public_key_to_b64,
    verify_tree_head,
)

HEADS_FOLDER = "heads"
KEY_FILE = "public_key"
FETCH_LIMIT = 10_000


class WitnessRefusal(AuditError):
    """The platform served something a witness must not accept; nothing more was kept."""


class PlatformUnavailable(Exception):
    """The platform's audit routes could not be read (network, auth, an error answer)."""


@dataclass
class WitnessRun:
    """What one run kept."""

    kept: list[int] = field(default_factory=list)
    """Sizes of the heads newly kept, in order."""
    latest: int = 0
    """The size of the newest head kept after the run."""
    key_pinned: bool = False


def api_base(url: str) -> str:
    """The command API's /v1 base from what the auditor typed (with or without /v1)."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


def run_witness(client: httpx.Client, folder: Path, public_key: Ed25519PublicKey | None = None) -> WitnessRun:
    """Fetch, check and keep new signed heads (client's base URL is the API's /v1); WitnessRefusal when not."""
    run = WitnessRun()
    key, run.key_pinned = _pinned_key(client, folder, public_key)
    kept = kept_heads(folder)
    served = _served_heads(client)
    _check_served_against_kept(served, kept, key)
    newest = max(kept.values(), key=lambda head: head.size, default=None)
    for head in sorted(served.values(), key=lambda h: h.size):
        if newest is not None and head.size <= newest.size:
            continue
        _check_signature(head, key)
        if newest is not None:
            _check_consistent(client, newest, head, key)
        _keep(folder, head)
        run.kept.append(head.size)
        newest = head
    run.latest = newest.size if newest is not None else 0
    return run


def kept_heads(folder: Path) -> dict[int, SignedTreeHead]:
    """The heads kept so far, by size."""
    heads = {}
    for file in sorted((folder / HEADS_FOLDER).glob("*.json")):
        head = SignedTreeHead.from_dict(json.loads(file.read_text()))
        heads[head.size] = head
    return heads


def _pinned_key(
    client: httpx.Client, folder: Path, given: Ed25519PublicKey | None
) -> tuple[Ed25519PublicKey, bool]:
    """The key heads must be signed with: pinned in the folder, else the one given, else the platform's."""
    pinned_file = folder / KEY_FILE
    served = load_public_key(_get(client, "/audit/public-key")["public_key"])
    if pinned_file.is_file():
        pinned = load_public_key(pinned_file.read_text().strip())
        if public_key_to_b64(served) != public_key_to_b64(pinned):
            raise WitnessRefusal("the platform now serves another public key than the one pinned here")
        return pinned, False
    key = given or served
    if given is not None and public_key_to_b64(given) != public_key_to_b64(served):
        raise WitnessRefusal("the platform serves another public key than the one given")
    folder.mkdir(parents=True, exist_ok=True)
    _write(pinned_file, public_key_to_b64(key) + "\n")
    return key, True


def _served_heads(client: httpx.Client) -> dict[int, SignedTreeHead]:
    """The heads the platform lists, by size; WitnessRefusal on an unreadable one or two for one size."""
    heads: dict[int, SignedTreeHead] = {}
    for doc in _get(client, "/audit/heads", params={"limit": FETCH_LIMIT}):
        try:
            head = SignedTreeHead.from_dict(doc)
        except (AuditError, TypeError, ValueError) as exc:
            raise WitnessRefusal(f"the platform served an unreadable or unsigned head: {exc}") from exc
        if head.size in heads and heads[head.size] != head:
            raise WitnessRefusal(f"the platform served two different heads of size {head.size}")
        heads[head.size] = head
    return heads


def _check_served_against_kept(
    served: dict[int, SignedTreeHead], kept: dict[int, SignedTreeHead], key: Ed25519PublicKey
) -> None:
    """Every kept head the platform's list should still hold is there, unchanged; nothing rolled back."""
    if not kept:
        return
    oldest_listed = min(served, default=None)
    newest_kept = max(kept)
    if oldest_listed is None or max(served) < newest_kept:
        raise WitnessRefusal(f"the platform's newest head is older than the head of size {newest_kept} kept here: "
                             "its heads were deleted or its log rolled back")
    for size, head in sorted(kept.items()):
        if size < oldest_listed:
            continue  # older than the platform's list goes back
        other = served.get(size)
        if other is None:
            raise WitnessRefusal(f"the head of size {size} kept here is gone from the platform's heads")
        if other != head:
            _check_signature(other, key)
            raise WitnessRefusal(f"the platform now serves another head of size {size} than the one kept here")


def _check_signature(head: SignedTreeHead, key: Ed25519PublicKey) -> None:
    try:
        verify_tree_head(key, head)
    except AuditError as exc:
        raise WitnessRefusal(f"the head of size {head.size} is not signed by the pinned key: {exc}") from exc


def _check_consistent(
    client: httpx.Client, old: SignedTreeHead, new: SignedTreeHead, key: Ed25519PublicKey
) -> None:
    """The platform's consistency proof from the newest kept head to a new one, checked here."""
    proof = _get(client, "/audit/proofs/consistency", params={"old": old.size, "new": new.size},
                 refuse_on_404=True)
    try:
        check_proof_document(proof, new.to_dict(), public_key_to_b64(key), earlier_head=old.to_dict())
    except AuditError as exc:
        raise WitnessRefusal(f"the head of size {new.size} is not consistent with the head of size {old.size} "
                             f"kept here: {exc}") from exc


def _keep(folder: Path, head: SignedTreeHead) -> None:
    _write(folder / HEADS_FOLDER / f"{head.size:012d}.json", json.dumps(head.to_dict(), indent=2) + "\n")


def _write(path: Path, text: str) -> None:
    """Write a file whole or not at all (a cron run killed midway leaves no half head)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    draft.write_text(text)
    draft.replace(path)


def _get(client: httpx.Client, path: str, params: dict[str, Any] | None = None, *,
         refuse_on_404: bool = False) -> Any:
    try:
        response = client.get(path, params=params)
    except httpx.HTTPError as exc:
        raise PlatformUnavailable(f"GET {path}: {exc}") from exc
    if response.status_code == 404 and refuse_on_404:
        raise WitnessRefusal(f"the platform cannot prove {path} {params}: {response.text}")
    if response.status_code != 200:
        raise PlatformUnavailable(f"GET {path}: {response.status_code} {response.text[:200]}")
    return response.json()
