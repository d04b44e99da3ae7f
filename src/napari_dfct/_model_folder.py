"""What a model folder's files are called and what a model is called, without torch:
:mod:`napari_dfct.checkpoint` (which loads with torch) and
:mod:`napari_dfct._fast_predict` (which does not) share these."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "display_name"]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def display_name(config: dict, folder: Path) -> str:
    """A model's display name: the ``name`` of its ``config.json``, else its loss's name,
    else the folder's name."""
    return str(config.get("name") or (config.get("loss") or {}).get("name") or folder.name)
