"""The Train widget's preview layer: the prediction on one slice, shown on that slice.

The layer ``<input> [training preview]`` holds the prediction of the run's preview slice
``k``. For a 3-D input layer it is a one-slice stack, shape ``(1, Y, X)``, on the input's
grid and translated to slice ``k`` along the first axis: napari draws it on slice ``k``
only and nothing on the others (a layer is empty outside its extent), so slice 2's
preview never covers slice 7, and it costs one slice of memory, not a volume. A run on a
2-D input, on files or on a data set of scans (no input layer in the viewer) gets a 2-D
layer; ``metadata["preview_slice"]`` names the slice in every case.

A preview the user deletes stays deleted for the rest of that run
(:attr:`TrainingPreview.dismissed`); the next run shows it again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _layers

if TYPE_CHECKING:
    import napari

__all__ = ["PREVIEW_SLICE_KEY", "PREVIEW_SUFFIX", "ROLE", "TrainingPreview", "preview_name"]

#: Name suffix of the preview layer: ``<input name> [training preview]``.
PREVIEW_SUFFIX = " [training preview]"
#: ``layer.metadata[OWNER_KEY]`` of the preview layer.
ROLE = "preview"
#: ``layer.metadata`` key naming the slice the preview shows.
PREVIEW_SLICE_KEY = "preview_slice"


def preview_name(input_name: str) -> str:
    """Name of the preview layer of a run on ``input_name``."""
    return f"{input_name}{PREVIEW_SUFFIX}"


class TrainingPreview:
    """The preview layer of one viewer's training runs.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    on_dismissed : callable, optional
        Called (no arguments) when the user deletes the layer during a run.
    """

    def __init__(
        self, viewer: napari.viewer.Viewer, on_dismissed: Callable[[], Any] | None = None
    ):
        self._viewer = viewer
        self._on_dismissed = on_dismissed
        self._run: Any = None
        self._layer = None
        self._ours = False  # True while this object adds or replaces layers itself
        self._running = False
        #: True once the user deleted the layer during the current run: not shown again.
        self.dismissed = False
        self.shown = False
        viewer.layers.events.removed.connect(self._on_removed)

    @property
    def layer(self):
        """The preview layer of the current run, or None (not made yet, or deleted)."""
        layer = self._layer
        return layer if layer is not None and layer in self._viewer.layers else None

    def start(self, run) -> None:
        """A new run (``run.name``, ``run.layer``, ``run.shape``, ``run.placement``,
        ``run.preview_index``): show the preview again, and make its layer now (hidden)
        when the input is a layer, so the first epoch only updates its data (adding a
        layer builds its controls and canvas node, the most expensive GUI step)."""
        self._run, self._layer = run, None
        self.dismissed = self.shown = False
        self._running = True
        if run.layer is None:
            return
        name = preview_name(run.name)
        if name in self._viewer.layers:
            self._layer = self._viewer.layers[name]
            return
        shape = tuple(int(s) for s in run.shape[-2:])
        index = run.preview_index if run.preview_index is not None else 0
        data, placement = self._placed(np.zeros(shape, np.float32), index)
        layer = self._upsert(data, tuple(run.layer.contrast_limits), placement)
        layer.visible = False
        layers = self._viewer.layers
        if run.layer in layers:  # right above its input, under the ROI shapes
            self._ours = True
            try:
                layers.move(layers.index(layer), layers.index(run.layer) + 1)
            finally:
                self._ours = False

    def attach(self, run, shown: bool) -> None:
        """Take over the preview of a running ``run`` from a widget closed earlier:
        its layer if it is in the viewer; a preview shown before whose layer is gone was
        deleted by the user, so it stays deleted."""
        self._run, self._running, self.shown = run, True, shown
        name = preview_name(run.name)
        self._layer = self._viewer.layers[name] if name in self._viewer.layers else None  # noqa: SIM401
        self.dismissed = shown and self._layer is None

    def show(self, preview: np.ndarray, index: int | None) -> None:
        """Put the prediction ``preview`` of slice ``index`` in the layer (made visible
        the first time), unless the user deleted it during this run."""
        run = self._run
        if run is None or self.dismissed:
            return
        first = not self.shown
        limits = None
        if first and run.layer is not None:
            limits = tuple(run.layer.contrast_limits)
        data, placement = self._placed(np.asarray(preview, np.float32), index)
        layer = self._upsert(data, limits, placement)
        layer.metadata[PREVIEW_SLICE_KEY] = index
        if first:
            # the viewer's slice is the user's (Predict's "Current slice" works on it):
            # it is never moved to the preview's
            self.shown = True
            layer.visible = True

    def end(self) -> None:
        """The run ended: deleting the layer from now on is the user's tidying up."""
        self._running = False

    # ------------------------------------------------------------------ helpers
    def _placed(self, image: np.ndarray, index: int | None) -> tuple[np.ndarray, dict]:
        """The layer data and placement of a preview of slice ``index``: a one-slice
        stack at ``index`` on a 3-D input layer's grid, else the 2-D image."""
        run = self._run
        source = run.layer
        if (
            source is None
            or source.ndim != 3
            or index is None
            or not 0 <= int(index) < int(source.data.shape[0])
        ):
            return image, dict(run.placement or {})
        scale = np.asarray(source.scale, dtype=float)
        translate = np.asarray(source.translate, dtype=float).copy()
        translate[0] += int(index) * scale[0]
        return image[None], {"scale": tuple(scale), "translate": tuple(translate)}

    def _upsert(self, data: np.ndarray, limits, placement: dict):
        self._ours = True
        try:
            layer = _layers.upsert_image(
                self._viewer,
                preview_name(self._run.name),
                data,
                role=ROLE,
                contrast_limits=limits,
                colormap="gray",
                **placement,
            )
        finally:
            self._ours = False
        self._layer = layer
        return layer

    def _on_removed(self, event) -> None:
        if self._ours or self._layer is None or event.value is not self._layer:
            return
        self._layer = None
        if self._running and not self.dismissed:
            self.dismissed = True
            if self._on_dismissed is not None:
                self._on_dismissed()
