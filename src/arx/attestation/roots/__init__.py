"""Pinned vendor trust anchors, shipped as package data."""
