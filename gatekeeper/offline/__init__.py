"""Offline tooling: never imported per request."""
