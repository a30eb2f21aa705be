"""The ``gatekeeper`` command."""

from gatekeeper.cli.main import cli, main

__all__ = ["cli", "main"]
