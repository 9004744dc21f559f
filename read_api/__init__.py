"""Bazaar read_api layer."""
