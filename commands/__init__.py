"""Bazaar commands layer."""
