"""Bazaar schemas layer."""
