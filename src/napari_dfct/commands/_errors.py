"""The ``dfct`` command's user-facing error, shared by every subcommand module."""

from __future__ import annotations

__all__ = ["CLIError"]


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""
