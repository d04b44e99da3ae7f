"""The error of a model export (its own module: every part of the export raises it)."""

from __future__ import annotations


class ExportError(ValueError):
    """A model folder that cannot be exported, or an output that may not be written."""
