"""Subcommands of ``dfct``: one module each, discovered by :mod:`napari_dfct.cli`."""
