"""Synthetic archive."""
