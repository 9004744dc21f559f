"""Bazaar infra layer."""
