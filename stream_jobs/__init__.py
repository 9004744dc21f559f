"""Bazaar stream_jobs layer."""
