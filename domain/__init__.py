"""Bazaar domain layer."""
