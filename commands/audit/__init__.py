"""Tamper evidence for the event log: an RFC 6962 Merkle tree, its proofs and Ed25519-signed tree heads."""
