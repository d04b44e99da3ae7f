"""Where a widget's derived layers go: under the ROIs, without taking the selection.

napari adds a layer on top of the list and selects it. For maps a widget draws (the
Loss amplification maps) that hides the ROI shapes and points the user works with and
moves the layer controls away from the layer the user chose. :func:`keep_selection`
restores the user's selection after the widget has added or removed its layers, and
:func:`place_below_rois` moves a new layer right under the lowest Shapes or Points
layer (left on top when there is none).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import napari

__all__ = ["keep_selection", "place_below_rois", "roi_index"]


def roi_index(viewer: napari.viewer.Viewer) -> int | None:
    """Index of the lowest Shapes or Points layer of ``viewer`` (None without one)."""
    from napari.layers import Points, Shapes

    for index, layer in enumerate(viewer.layers):
        if isinstance(layer, (Shapes, Points)):
            return index
    return None


def place_below_rois(viewer: napari.viewer.Viewer, layer) -> None:
    """Move ``layer`` right under the lowest Shapes or Points layer when it is above it."""
    layers = viewer.layers
    at = roi_index(viewer)
    if at is not None and layers.index(layer) > at:
        layers.move(layers.index(layer), at)


@contextmanager
def keep_selection(viewer: napari.viewer.Viewer) -> Iterator[None]:
    """Restore the selected layers (those still there) when the block ends."""
    layers = viewer.layers
    before = list(layers.selection)
    try:
        yield
    finally:
        keep = [layer for layer in before if layer in layers]
        if set(layers.selection) != set(keep):
            layers.selection = keep
