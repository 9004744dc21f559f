"""Bazaar gpu_workers layer."""
