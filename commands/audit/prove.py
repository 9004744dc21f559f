"""Proofs for auditors: an event is in the log (inclusion), a later head extends an earlier one (consistency).

The platform side (`inclusion_proof`, `consistency_proof`) reads the O(log n) tree nodes a proof needs
from the relay's stored tree (`commands.audit.tree`) and writes RFC 9162 proof documents
(`commands.audit.signing`), with the signed head and, for inclusion, the event as published so that an
auditor can recompute its leaf. The auditor side (`check_proof`) trusts nothing but the proof, the head
it kept and the platform's public key, plus, for inclusion, the event it holds itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg import sql

from commands.audit.codec import StoredHasher, UnreadableEvent
from commands.audit.headcheck import StoredHead, read_heads
from commands.audit.heads import leaf_of
from commands.audit.kafka_source import published_hash
from commands.audit.merkle import AuditError, ProofError
from commands.audit.signing import (
    DocumentError,
    InclusionProof,
    SignedTreeHead,
    check_proof_document,
    consistency_document,
    inclusion_document,
    load_public_key,
    parse_proof_document,
)
from commands.audit.source import LogSource
from commands.audit.tree import consistency_nodes, inclusion_nodes, leaf_index, stored_leaf_count
from schemas.registry import REGISTRY, SchemaRegistry

_EVENT_REF = re.compile(r"(?P<agg>[0-9a-fA-F-]{32,36}):(?P<version>\d+)|(?P<nid>\d+)")


class ProveError(AuditError):
    """The platform cannot produce the proof asked for (unknown event, no such head...)."""


@dataclass(frozen=True)
class LoggedEvent:
    """One stored event located in the log."""

    notification_id: int
    aggregate_id: UUID
    version: int
    topic: str
    state: bytes


def find_event(source: LogSource, ref: str) -> LoggedEvent:
    """The stored event named by a notification id or `AGGREGATE_ID:VERSION`."""
    match = _EVENT_REF.fullmatch(ref.strip())
    if match is None:
        raise ProveError(f"name an event by notification id or AGGREGATE_ID:VERSION, not {ref!r}")
    columns = sql.SQL("SELECT notification_id, originator_id, originator_version, topic, state FROM {}").format(
        source.events
    )
    if match["nid"]:
        query, params = columns + sql.SQL(" WHERE notification_id = %s"), (int(match["nid"]),)
    else:
        try:
            agg = UUID(match["agg"])
        except ValueError:
            raise ProveError(f"not an aggregate id: {match['agg']!r}") from None
        query = columns + sql.SQL(" WHERE originator_id = %s AND originator_version = %s")
        params = (agg, int(match["version"]))  # type: ignore[assignment]
    with source.connect() as conn:
        row = conn.execute(query, params).fetchone()
    if row is None:
        raise ProveError(f"no stored event {ref}")
    return LoggedEvent(int(row[0]), row[1], int(row[2]), row[3], bytes(row[4]))


def pick_head(source: LogSource, size: int | None = None) -> StoredHead:
    """The stored signed head of that size, or the latest one."""
    heads = [head for head in read_heads(source) if head.signed is not None]
    if not heads:
        raise ProveError("no signed tree head is stored yet (the relay signs them)")
    if size is None:
        return heads[-1]
    for head in heads:
        if head.tree_size == size:
            return head
    sizes = ", ".join(str(head.tree_size) for head in heads[-10:])
    raise ProveError(f"no signed head of size {size}; the latest sizes are {sizes}")


def head_document(head: StoredHead) -> dict[str, Any]:
    """A signed head as auditors keep it (the checkpoint message's JSON)."""
    assert head.signed is not None
    return {**head.signed.to_dict(), "last_notification_id": head.last_notification_id}


def event_document(event: LoggedEvent, hasher: StoredHasher | None = None) -> dict[str, Any]:
    """The event as published, with what its leaf is made of."""
    from commands.messages import to_schema

    hasher = hasher or StoredHasher()
    where = {"notification_id": event.notification_id, "aggregate_id": str(event.aggregate_id),
             "version": event.version}
    try:
        digest, _ = hasher(str(event.aggregate_id), event.version, event.topic, event.state)
        schema = to_schema(hasher.mapper.to_domain_event(_stored(event)))
    except Exception as exc:  # an unreadable stored event: the proof still shows where its leaf is
        return {**where, "error": f"the stored event cannot be decoded: {exc}"}
    return {
        **where,
        "event_type": schema.event_type,
        "schema_name": schema.schema_name,
        "schema_version": schema.schema_version,
        "event_hash": digest,
        "redacted": sorted(schema.redacted_fields),
        "payload": schema.model_dump(mode="json"),
    }


def _stored(event: LoggedEvent) -> Any:
    from eventsourcing.persistence import StoredEvent

    return StoredEvent(event.aggregate_id, event.version, event.topic, event.state)


def inclusion_proof(source: LogSource, ref: str, *, head_size: int | None = None) -> dict[str, Any]:
    """The inclusion proof of one event under the latest (or the given) signed head.

    The path comes from the relay's stored tree nodes (O(log n) of them, one query); the leaf is
    recomputed from the event as the store holds it now, so a rewritten event's proof fails to check.
    """
    event = find_event(source, ref)
    head = pick_head(source, head_size)
    hasher = StoredHasher()
    with source.connect() as conn:
        index = leaf_index(conn, event.notification_id)
        if index is None or index >= head.tree_size:
            raise ProveError(
                f"notification {event.notification_id} is not under the head of size {head.tree_size}: "
                "wait for the next signed head"
            )
        nodes = inclusion_nodes(conn, index, head.tree_size)
    try:
        path = nodes.inclusion_proof(index, head.tree_size)
    except ProofError as exc:
        raise ProveError(str(exc)) from exc
    leaf = _current_leaf(event, hasher)
    doc = inclusion_document(index, head.tree_size, leaf, path)
    return {**doc, "tree_head": head_document(head), "event": event_document(event, hasher)}


def _current_leaf(event: LoggedEvent, hasher: StoredHasher) -> bytes:
    """The leaf of the event as stored now (a leaf no head signed when it no longer decodes)."""
    try:
        digest, _ = hasher(str(event.aggregate_id), event.version, event.topic, event.state)
    except UnreadableEvent:
        digest = "unreadable"
    return leaf_of(event.notification_id, event.aggregate_id, event.version, digest)


def consistency_proof(source: LogSource, old_size: int, new_size: int) -> dict[str, Any]:
    """The proof that the log at `old_size` is a prefix of the log at `new_size`, from the stored tree."""
    if not 1 <= old_size <= new_size:
        raise ProveError("a consistency proof needs 1 <= OLD <= NEW")
    with source.connect() as conn:
        if stored_leaf_count(conn) < new_size:
            raise ProveError(f"the stored tree holds fewer than {new_size} leaves")
        nodes = consistency_nodes(conn, old_size, new_size)
    try:
        path = nodes.consistency_proof(old_size, new_size)
        doc = consistency_document(old_size, new_size, nodes.root(old_size), path)
    except ProofError as exc:
        raise ProveError(str(exc)) from exc
    heads = {head.tree_size: head for head in read_heads(source) if head.signed is not None}
    for name, size in (("first_head", old_size), ("tree_head", new_size)):
        if size in heads:
            doc[name] = head_document(heads[size])
    return doc


# --- the auditor's side -----------------------------------------------------------------------------


def event_leaf(event: Mapping[str, Any], registry: SchemaRegistry = REGISTRY) -> bytes:
    """The Merkle leaf hash of an event an auditor holds, recomputed from its published JSON.

    `event` is the "event" part of a proof document (or the same fields taken from a Kafka message:
    notification_id and the event_type/schema_name/schema_version headers, the value as payload).
    Events whose schema redacts a field cannot be rehashed from their JSON: their event_hash is used.
    """
    try:
        nid = int(event["notification_id"])
        payload = event["payload"]
        value = payload if isinstance(payload, bytes | str) else _json_bytes(payload)
        parsed, digest = published_hash(
            str(event["event_type"]), str(event["schema_name"]), int(event["schema_version"]), value, registry
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DocumentError(f"the event document is not readable: {exc}") from exc
    if digest is None:
        digest = str(event.get("event_hash", ""))
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise DocumentError("this event's schema redacts a field: its event_hash is needed")
    return leaf_of(nid, parsed.aggregate_id, parsed.version, digest)


def _json_bytes(payload: Any) -> bytes:
    import json

    return json.dumps(payload).encode()


def check_proof(
    proof: Mapping[str, Any],
    head: Mapping[str, Any],
    public_key: bytes | str,
    *,
    event: Mapping[str, Any] | None = None,
    earlier_head: Mapping[str, Any] | None = None,
) -> str:
    """Check a proof document against a kept head with the public key alone; a summary, or AuditError."""
    check_proof_document(proof, head, public_key, earlier_head=earlier_head)
    parsed = parse_proof_document(proof)
    signed = SignedTreeHead.from_dict(head)
    key = signed.head.key_id
    if isinstance(parsed, InclusionProof):
        if event is not None and event_leaf(event) != parsed.leaf_hash:
            raise ProofError("the proof is for another event than the one held (its leaf differs)")
        held = " (leaf recomputed from the event held)" if event is not None else ""
        return f"inclusion proof OK: leaf {parsed.leaf_index} of {parsed.tree_size} under key {key}{held}"
    first = " from the earlier head held" if earlier_head is not None else ""
    return (f"consistency proof OK: the log at {parsed.first_size} is a prefix of the log at "
            f"{parsed.second_size}{first}, under key {key}")


def public_key_text(value: str) -> str:
    """A public key given on the command line: a file's contents, or the key itself (PEM or base64)."""
    from pathlib import Path

    path = Path(value)
    if len(value) < 4096 and path.is_file():
        return path.read_text()
    load_public_key(value.strip())  # refuse garbage early, with the key parser's message
    return value
