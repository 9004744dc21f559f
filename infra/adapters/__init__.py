"""Typed factories for the clients of external systems (Kafka, ...), built from Settings."""
