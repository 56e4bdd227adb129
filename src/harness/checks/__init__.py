"""Checks of a running stack: the smoke check."""
