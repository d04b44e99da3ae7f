"""The viewer during a reader study: two blinded layers ``A`` and ``B`` side by side.

:class:`PairView` takes the viewer over while a study runs and gives it back as it was:

* :meth:`PairView.enter` remembers the grid, the number of displayed dimensions and every
  layer's visibility, hides every layer (and every layer added later), and turns on grid
  mode with one row of two cells; the one camera of grid mode links zoom and pan.
* :meth:`PairView.show` puts a pair into two image layers named exactly ``A`` (left cell)
  and ``B`` (right cell), made from arrays (no file path, no metadata), grey, with the
  study's window of that slice as contrast limits; the limits, the colormap and the gamma
  are locked: a change by the user is undone at once, so the display cannot tell the
  candidates apart. A user's own layer named ``A`` or ``B`` is renamed while the study
  runs, so the study's layers get these exact names.
* :meth:`PairView.show` gives the canvas the keyboard focus (the answer keys are the
  viewer's) and calls ``on_drawn`` at the first draw of the canvas after a new
  pair, the moment the reader sees it (the widget starts the decision clock there).
* :meth:`PairView.bind` binds keys on the viewer; :meth:`PairView.leave` unbinds them,
  removes ``A`` and ``B`` and restores names, visibilities, grid and dimensions.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qtpy.QtCore import QCoreApplication, QEventLoop

__all__ = ["NAMES", "PairView"]

#: The layers' names, left cell first.
NAMES = ("A", "B")
#: The grid of a study: one row, two cells.
GRID_SHAPE = (1, 2)
#: Colormap of both layers.
COLORMAP = "gray"


@dataclass
class _Saved:
    """What :meth:`PairView.enter` changed, to put back."""

    grid: tuple[bool, tuple[int, int], int]
    ndisplay: int
    visible: list[tuple[weakref.ref, bool]] = field(default_factory=list)
    renamed: list[tuple[weakref.ref, str]] = field(default_factory=list)
    keys: dict[str, Any] = field(default_factory=dict)


class PairView:
    """The two blinded layers of a study in ``viewer`` (see the module's docstring).

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    on_lost : callable, optional
        Called (without arguments) when the user deletes ``A`` or ``B`` during a study.
    on_drawn : callable, optional
        Called (without arguments) at the first draw of the canvas after :meth:`show`.
    """

    def __init__(
        self,
        viewer,
        on_lost: Callable[[], None] | None = None,
        on_drawn: Callable[[], None] | None = None,
    ):
        self.viewer = viewer
        self.layers: list = []  # the A and B image layers, while a study runs
        self._on_lost = on_lost
        self._on_drawn = on_drawn
        self._waiting_draw = False
        self._saved: _Saved | None = None
        self._window: tuple[float, float] | None = None
        self._busy = False  # True while this class changes the viewer itself

    @property
    def active(self) -> bool:
        """Whether the view holds the viewer (between :meth:`enter` and :meth:`leave`)."""
        return self._saved is not None

    # ------------------------------------------------------------------ enter, leave
    def enter(self) -> None:
        """Remember the viewer's state, hide its layers and turn on the study's grid."""
        if self.active:
            return
        viewer, grid = self.viewer, self.viewer.canvas.grid
        saved = _Saved(
            grid=(bool(grid.enabled), tuple(grid.shape), int(grid.stride)),
            ndisplay=int(viewer.dims.ndisplay),
        )
        self._saved = saved
        self._busy = True
        try:
            for layer in list(viewer.layers):
                self._hide(layer)
                if layer.name in NAMES:
                    saved.renamed.append((weakref.ref(layer), layer.name))
                    layer.name = f"{layer.name} (yours)"
            viewer.dims.ndisplay = 2
            self._apply_grid()
        finally:
            self._busy = False
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self._on_removed)
        grid.events.connect(self._on_grid)
        draw = self._draw_events()
        if draw is not None:
            draw.connect(self._on_draw)

    def leave(self) -> None:
        """Unbind the keys, remove ``A`` and ``B`` and restore the viewer's state."""
        saved, self._saved = self._saved, None
        if saved is None:
            return
        viewer = self.viewer
        for emitter, callback in (
            (viewer.layers.events.inserted, self._on_inserted),
            (viewer.layers.events.removed, self._on_removed),
            (viewer.canvas.grid.events, self._on_grid),
        ):
            emitter.disconnect(callback)
        draw = self._draw_events()
        if draw is not None:
            draw.disconnect(self._on_draw)
        self._waiting_draw = False
        for key, previous in saved.keys.items():
            viewer.bind_key(key, previous, overwrite=True)
        self._busy = True
        try:
            removed = 0
            for layer in self.layers:
                self._unlock(layer)
                if layer not in viewer.layers:
                    continue
                if removed:
                    # one layer removal per turn of the event loop: napari 0.9's canvas
                    # crashes (a segmentation fault) at a later draw or resize when two
                    # layers are removed before it has drawn
                    QCoreApplication.processEvents(
                        QEventLoop.ProcessEventsFlag.ExcludeUserInputEvents
                    )
                viewer.layers.remove(layer)
                removed += 1
            self.layers = []
            for ref, name in saved.renamed:
                layer = ref()
                if layer is not None and layer in viewer.layers:
                    layer.name = name
            for ref, visible in saved.visible:
                layer = ref()
                if layer is not None and layer in viewer.layers:
                    layer.visible = visible
            enabled, shape, stride = saved.grid
            grid = viewer.canvas.grid
            grid.stride, grid.shape, grid.enabled = stride, shape, enabled
            viewer.dims.ndisplay = saved.ndisplay
        finally:
            self._busy = False

    def bind(self, keys: dict[str, Callable]) -> None:
        """Bind ``keys`` (napari key names) on the viewer until :meth:`leave`; the
        bindings they replace come back then."""
        assert self._saved is not None, "bind() needs enter() first"
        for key, func in keys.items():
            previous = self.viewer.bind_key(key, func, overwrite=True)
            self._saved.keys.setdefault(key, previous)

    # ------------------------------------------------------------------ show
    def show(self, left: np.ndarray, right: np.ndarray, window: tuple[float, float]) -> None:
        """Show ``left`` as ``A`` and ``right`` as ``B`` with contrast limits ``window``."""
        assert self.active, "show() needs enter() first"
        lo, hi = float(window[0]), float(window[1])
        if not hi > lo:  # a flat window: napari needs a range
            hi = lo + 1.0
        self._window = (lo, hi)
        first = not self.layers
        self._busy = True
        try:
            if first:
                self.layers = [
                    self.viewer.add_image(
                        np.asarray(data),
                        name=name,
                        colormap=COLORMAP,
                        contrast_limits=self._window,
                        metadata={},
                    )
                    for name, data in zip(NAMES, (left, right), strict=True)
                ]
                for layer in self.layers:
                    self._lock(layer)
            else:
                for layer, data in zip(self.layers, (left, right), strict=True):
                    layer.data = np.asarray(data)
            for layer in self.layers:
                self._apply_display(layer)
        finally:
            self._busy = False
        self._waiting_draw = True
        if first:
            self.viewer.reset_view()
        canvas = self._canvas()
        if canvas is not None:  # the answer keys act where the canvas has the focus
            canvas.native.setFocus()

    def _canvas(self):
        """napari's canvas (None without a Qt window)."""
        window = getattr(self.viewer, "window", None)
        qt_viewer = getattr(window, "_qt_viewer", None)
        return getattr(qt_viewer, "canvas", None)

    def _draw_events(self):
        """The canvas's draw events (None without a Qt window)."""
        events = getattr(self._canvas(), "events", None)
        return getattr(events, "draw", None)

    def _on_draw(self, event=None) -> None:
        if self._waiting_draw and self.active:
            self._waiting_draw = False
            if self._on_drawn is not None:
                self._on_drawn()

    # ------------------------------------------------------------------ locks
    def _apply_display(self, layer) -> None:
        if self._window is None:
            return
        if tuple(layer.contrast_limits_range) != self._window:
            layer.contrast_limits_range = self._window
        if tuple(layer.contrast_limits) != self._window:
            layer.contrast_limits = self._window
        if layer.colormap.name != COLORMAP:
            layer.colormap = COLORMAP
        if layer.gamma != 1.0:
            layer.gamma = 1.0
        if not layer.visible:
            layer.visible = True

    def _apply_grid(self) -> None:
        grid = self.viewer.canvas.grid
        if grid.stride != 1:
            grid.stride = 1
        if tuple(grid.shape) != GRID_SHAPE:
            grid.shape = GRID_SHAPE
        if not grid.enabled:
            grid.enabled = True

    def _relock(self, event=None) -> None:
        if self._busy or not self.active:
            return
        self._busy = True
        try:
            for layer in self.layers:
                self._apply_display(layer)
        finally:
            self._busy = False

    def _lock_events(self, layer):
        ev = layer.events
        return (ev.contrast_limits, ev.contrast_limits_range, ev.colormap, ev.gamma, ev.visible)

    def _lock(self, layer) -> None:
        for emitter in self._lock_events(layer):
            emitter.connect(self._relock)

    def _unlock(self, layer) -> None:
        for emitter in self._lock_events(layer):
            emitter.disconnect(self._relock)

    # ------------------------------------------------------------------ viewer events
    def _hide(self, layer) -> None:
        assert self._saved is not None
        self._saved.visible.append((weakref.ref(layer), bool(layer.visible)))
        layer.visible = False

    def _on_inserted(self, event) -> None:
        if self._busy or not self.active:
            return
        layer = event.value
        if layer not in self.layers:  # a layer added during the study stays hidden
            self._hide(layer)

    def _on_removed(self, event) -> None:
        if self._busy or not self.active:
            return
        if any(event.value is layer for layer in self.layers):
            self.layers = [layer for layer in self.layers if layer is not event.value]
            if self._on_lost is not None:
                self._on_lost()

    def _on_grid(self, event=None) -> None:
        if self._busy or not self.active:
            return
        self._busy = True
        try:
            self._apply_grid()
        finally:
            self._busy = False
