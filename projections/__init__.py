"""Bazaar projections layer."""
