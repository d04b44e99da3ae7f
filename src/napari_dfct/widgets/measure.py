"""Measure CNR / FWHM: live image-quality figures for the image layers.

The widget reads the ``DFCT ROIs`` Shapes layer (the project's ROI convention,
:mod:`napari_dfct.roi`: a signal square, a background square and a line, found by the
``role`` feature or else by order and shape type), maps the shapes through world
coordinates into each image layer's data coordinates (so scaled or translated layers
measure the same anatomy), takes each layer's 2-D slice at the viewer's current dims point
and shows one column per measured layer (:mod:`napari_dfct.widgets._measure_table`):

CNR +/- standard error, FWHM +/- error (erf fit), the ROI means and standard deviations,
PSNR and SSIM against a reference layer, the error CNR against it (the CNR with the
reference's own texture removed: :func:`napari_dfct.metrics.error_cnr`), PSNR inside the
body when a Labels layer named ``body`` is open, and a note saying why a value is undefined.

*Layers* chooses the measured layers: every image layer except the maps other widgets draw
(A_S, A_F, loss maps, training previews), which are measured on request. *Reset ROIs*
restores the data's own ROIs (:func:`data_rois`: the sample's, or a ``meta.json`` next to
the opened file, through :class:`napari_dfct.roi.ROISet`); only data without them get
generic squares near the centre. When the signal ROI is darker than the background ROI
(CNR < 0: on a dark-field slice lung scatters more than air, so the ROIs are probably
swapped or misplaced) a notification says so once and a note stays in the table.

The selected column's edge profile, the fitted erf and the line spread function (with the
FWHM marked) are plotted below the table. Updates are live, throttled by a single-shot
coalescing timer: while a shape is dragged, when the slice changes, and when layers are
added, removed, renamed or their data change (``layer.events.data``: a prediction filling
its slices is measured at once). A slice that a prediction has not filled yet is shown as
"not predicted on this slice", never measured. All science is in :mod:`napari_dfct.metrics`.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QSpinBox,
    QToolButton,
    QWidget,
)

from .. import metrics, roi
from . import _help, _layers
from ._layout import scroll_body, settle
from ._measure_plot import ProfilePlot
from ._measure_rois import (
    _geometry_key,
    _roi_layer_kwargs,
    data_rois,
    default_roi_data,
)
from ._measure_table import (
    BELOW_NOTE,
    EXPORT_COLUMNS,
    METRICS,
    WARN,
    MetricsTable,
    Row,
    rows_to_text,
    signal_below_background,
)

if TYPE_CHECKING:
    import napari

__all__ = [
    "EXPORT_COLUMNS",
    "METRICS",
    "ROI_LAYER_NAME",
    "ROLES",
    "MeasureWidget",
    "data_rois",
    "default_roi_data",
]

#: Name of the Shapes layer holding the ROIs (project convention, :mod:`napari_dfct.roi`).
ROI_LAYER_NAME = roi.LAYER_NAME
#: Roles of the three shapes, in order.
ROLES = roi.ROLES
#: Refresh at most once per this many milliseconds while shapes are dragged.
THROTTLE_MS = 40
NO_REFERENCE = "none"
#: Layers drawn by these widgets (``metadata[OWNER_KEY]``) are measured only on request.
UNMEASURED_ROLES = ("weights", "preview")


# --------------------------------------------------------------------------------------
# the widget
# --------------------------------------------------------------------------------------
class MeasureWidget(QWidget):
    """Dock widget: live CNR / FWHM (and PSNR / SSIM) of the image layers.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
    parent : QWidget, optional
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.rows: list[Row] = []
        self.last_update_ms = float("nan")
        self._roi_layer = None
        self._roi_source = ""
        self._created_rois = False
        self._connected: dict[int, Any] = {}
        self._ref_cache: OrderedDict = OrderedDict()
        self._roi_cache: OrderedDict = OrderedDict()  # CNR, FWHM, error CNR by geometry
        # a unique token per layer and pixel-data state: cache keys never collide, even
        # when Python reuses the id of a removed layer
        self._versions = itertools.count(1)
        self._data_version: dict[int, int] = {}
        self._chosen: dict[str, bool] = {}  # the user's choices in the Layers menu
        self._selected_layer: str | None = None
        self._updating_table = False
        self._warned: tuple[str, ...] = ()
        self._user_picked_ref = False  # until then the layer named 'truth' is preferred

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(THROTTLE_MS)
        self._timer.timeout.connect(self.refresh)
        self._build()
        self._connect_viewer()
        self._sync_reference_choices()
        self._ensure_rois()
        self.refresh()

    def _build(self) -> None:
        self.reference_combo = QComboBox()
        self.reference_combo.setToolTip("PSNR and SSIM are computed against this layer")
        self.reference_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.reference_combo.setMinimumContentsLength(8)
        self.reference_combo.currentIndexChanged.connect(self._schedule)
        self.reference_combo.activated.connect(self._on_user_reference)
        self.linewidth_spin = QSpinBox()
        self.linewidth_spin.setRange(1, 99)
        self.linewidth_spin.setValue(1)
        self.linewidth_spin.setSuffix(" px")
        self.linewidth_spin.setToolTip(
            "Width of the edge profile across the line: the samples across it are averaged "
            "(1 px: a single line, as in the paper)"
        )
        self.linewidth_spin.valueChanged.connect(self._schedule)
        self.layers_button = QToolButton()
        self.layers_button.setText("Layers \u25be")
        self.layers_button.setStyleSheet("QToolButton::menu-indicator { image: none; }")
        self.layers_button.setToolTip(
            "The measured layers (the maps drawn by Loss amplification and the training "
            "previews only on request)"
        )
        self.layers_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self._layers_menu = QMenu(self.layers_button)
        self._layers_menu.aboutToShow.connect(self._fill_layers_menu)
        self.layers_button.setMenu(self._layers_menu)
        self.add_rois_button = QPushButton("Reset ROIs")
        self.add_rois_button.setToolTip(
            f"Create the '{ROI_LAYER_NAME}' Shapes layer (or reset it) with the data's own "
            "ROIs (the sample's, or a meta.json next to the opened file); generic squares "
            "near the centre for data without them"
        )
        self.add_rois_button.clicked.connect(lambda: self.reset_rois(notify=True))
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the table to the clipboard, tab-separated")
        self.copy_button.clicked.connect(self.copy_to_clipboard)
        self.export_button = QPushButton("CSV\u2026")
        self.export_button.setToolTip("Export the table as a CSV file")
        self.export_button.clicked.connect(lambda: self.export_csv())

        self.warning_label = QLabel("")
        self.warning_label.setWordWrap(True)
        self.warning_label.setStyleSheet(f"color: {WARN.name()};")
        self.warning_label.hide()
        self.table = MetricsTable()
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.detail = QLabel("")
        self.detail.setWordWrap(True)
        self.detail.setTextFormat(Qt.TextFormat.PlainText)  # notes hold "<" and ">"
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.plot = ProfilePlot(self.viewer.theme)
        self.plot.setMinimumHeight(200)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        top = QHBoxLayout()
        top.addWidget(QLabel("Reference"))
        top.addWidget(self.reference_combo, 1)
        top.addWidget(QLabel("Line"))
        top.addWidget(self.linewidth_spin)
        actions = QHBoxLayout()
        for w in (self.layers_button, self.add_rois_button, self.copy_button, self.export_button):
            actions.addWidget(w)
        actions.addStretch(1)
        self.help_button = _help.help_button("measure")
        actions.addWidget(self.help_button.native)
        _body, layout = scroll_body(self)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addLayout(actions)
        layout.addWidget(self.warning_label)
        layout.addWidget(self.table)
        layout.addWidget(self.detail)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.status)
        settle(self)

    def _connect_viewer(self) -> None:
        v = self.viewer
        ev, dims = v.layers.events, v.dims.events
        self._viewer_connections = [
            *((e, self._on_layers_changed) for e in (ev.inserted, ev.removed, ev.moved)),
            *((e, self._schedule) for e in (dims.current_step, dims.ndisplay, dims.order)),
        ]
        for emitter, cb in self._viewer_connections:
            emitter.connect(cb)
        for layer in list(v.layers):
            self._connect_layer(layer)

    # ------------------------------------------------------------------ events
    def _schedule(self, *_args) -> None:
        """Throttle: refresh at most once per THROTTLE_MS, reading the latest state."""
        try:
            if not self._timer.isActive():
                self._timer.start()
        except RuntimeError:  # the widget's C++ side is gone (viewer closing)
            pass

    def _on_data_changed(self, event=None) -> None:
        layer = getattr(event, "source", None)
        if layer is not None:
            self._data_version[id(layer)] = next(self._versions)
        self._schedule()

    def _on_name_changed(self, event=None) -> None:
        old = getattr(event, "old", None) if event is not None else None
        layer = getattr(event, "source", None)
        if old in self._chosen and layer is not None:  # keep the user's choice
            self._chosen[layer.name] = self._chosen.pop(old)
        self._sync_reference_choices()
        self._schedule()

    def _on_layers_changed(self, event=None) -> None:
        if event is not None and getattr(event, "type", "") == "inserted":
            self._connect_layer(event.value)
        if event is not None and getattr(event, "type", "") == "removed":
            self._disconnect_layer(event.value)
            if event.value is self._roi_layer:
                self._roi_layer = None
            self._data_version.pop(id(event.value), None)
        self._sync_reference_choices()
        self._schedule()

    def _connect_layer(self, layer) -> None:
        if id(layer) in self._connected:
            return
        self._data_version[id(layer)] = next(self._versions)
        from napari.layers import Shapes

        ev = layer.events
        conns: list[tuple[Any, Callable[..., None]]] = [(ev.name, self._on_name_changed)]
        if isinstance(layer, Shapes):
            # set_data fires on every refresh during a drag, data on press/release
            conns += [(ev.data, self._schedule), (ev.set_data, self._schedule)]
        elif hasattr(ev, "data"):
            # new pixel data (set, or filled in place and announced): recompute, and
            # invalidate cached PSNR/SSIM (set_data would fire on every re-slice)
            conns.append((ev.data, self._on_data_changed))
        for name in ("scale", "translate", "rotate", "shear", "affine"):
            if hasattr(ev, name):
                conns.append((getattr(ev, name), self._schedule))
        for emitter, cb in conns:
            emitter.connect(cb)
        self._connected[id(layer)] = (layer, conns)

    def _disconnect_layer(self, layer) -> None:
        entry = self._connected.pop(id(layer), None)
        if entry is None:
            return
        for emitter, cb in entry[1]:
            try:
                emitter.disconnect(cb)
            except (TypeError, ValueError, RuntimeError):  # pragma: no cover
                pass

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt name
        self._teardown()
        super().closeEvent(event)

    def _teardown(self) -> None:
        self._timer.stop()
        for layer, _ in list(self._connected.values()):
            self._disconnect_layer(layer)
        for emitter, cb in self._viewer_connections:
            try:
                emitter.disconnect(cb)
            except (TypeError, ValueError, RuntimeError):  # pragma: no cover
                pass

    # ------------------------------------------------------------------ layers
    def image_layers(self) -> list:
        """Image layers that can be measured (not RGB), top first as in the layer list."""
        from napari.layers import Image

        return [
            ly
            for ly in reversed(self.viewer.layers)
            if isinstance(ly, Image) and not ly.rgb and ly.ndim >= 2
        ]

    def _measured_by_default(self, layer) -> bool:
        return layer.metadata.get(_layers.OWNER_KEY) not in UNMEASURED_ROLES

    def is_measured(self, layer) -> bool:
        """Whether ``layer`` has a column: the user's choice, else the default (every
        image layer except maps drawn by other widgets)."""
        return self._chosen.get(layer.name, self._measured_by_default(layer))

    def measured_layers(self) -> list:
        """The layers with a column, top first."""
        return [ly for ly in self.image_layers() if self.is_measured(ly)]

    def set_measured(self, name: str, measured: bool) -> None:
        """Measure the image layer called ``name`` or not (as the *Layers* menu does)."""
        if not any(ly.name == name for ly in self.image_layers()):
            raise KeyError(name)
        self._chosen[name] = bool(measured)
        self._sync_reference_choices()
        self._schedule()

    def _fill_layers_menu(self) -> None:
        menu = self._layers_menu
        menu.clear()
        for layer in self.image_layers():
            action = menu.addAction(layer.name)
            action.setCheckable(True)
            action.setChecked(self.is_measured(layer))
            action.toggled.connect(lambda on, n=layer.name: self.set_measured(n, on))

    def roi_layer(self):
        """The ``DFCT ROIs`` Shapes layer, or None."""
        from napari.layers import Shapes

        if ROI_LAYER_NAME in self.viewer.layers:
            ly = self.viewer.layers[ROI_LAYER_NAME]
            if isinstance(ly, Shapes):
                return ly
        return None

    def _ensure_rois(self) -> None:
        """Create the ROI layer once, when there is an image and no ROI layer yet."""
        existing = self.roi_layer()
        if existing is not None:
            # ROIs exist (ours or the sample's): never re-create them behind the user's
            # back after a deletion; "Reset ROIs" does that on request
            self._created_rois = True
            if not self._roi_source:
                self._roi_source = f"the {ROI_LAYER_NAME!r} layer"
        if self._created_rois or existing is not None:
            self._roi_layer = existing
            return
        if self.image_layers():
            self._created_rois = True
            self.reset_rois(notify=False)

    def _rois_of_data(self):
        """``(ROISet or None, source text, the layer they belong to)``: the active layer's
        data first, then the measured layers' (top first)."""
        images = self.image_layers()
        active = self.viewer.layers.selection.active
        candidates = ([active] if active in images else []) + self.measured_layers() + images
        for layer in candidates:
            rois, where = data_rois(layer, _layers.current_index(self.viewer, layer))
            if rois is not None:
                return rois, where, layer
        return None, "", (self.measured_layers() or images)[0]

    def reset_rois(self, notify: bool = False) -> None:
        """(Re)create the ROI shapes: the data's own ROIs (:func:`data_rois`), or generic
        squares near the centre of the first measured layer for data without them.
        ``notify``: say where the ROIs came from in a notification (the button does)."""
        if not self.image_layers():
            show_warning("Measure CNR / FWHM: add an image layer first.")
            return
        rois, where, ref = self._rois_of_data()
        shape2d = ref.data.shape[-2:] if not ref.multiscale else ref.data[0].shape[-2:]
        if rois is not None:
            data, types, features = rois.shapes()
            self._roi_source = where
        else:
            data, types, features = default_roi_data(shape2d)
            self._roi_source = (
                "generic squares (the data bring no ROIs): move them onto "
                "lung (signal) and air (background)"
            )
        existing = self.roi_layer()
        index = None
        if existing is not None:
            index = self.viewer.layers.index(existing)
            self.viewer.layers.remove(existing)
        layer = self.viewer.add_shapes(
            data,
            shape_type=types,
            features=features,
            name=ROI_LAYER_NAME,
            ndim=2,
            scale=tuple(ref.scale[-2:]),
            translate=tuple(ref.translate[-2:]),
            edge_width=max(1.0, shape2d[1] / 128),
            **_roi_layer_kwargs(features),
        )
        if index is not None:
            self.viewer.layers.move(self.viewer.layers.index(layer), index)
        self._roi_layer = layer
        layer.mode = "select"
        if notify:
            show_info(f"Measure CNR / FWHM: ROIs reset to {self._roi_source}.")
        self._schedule()

    def _sync_reference_choices(self) -> None:
        names = [
            ly.name
            for ly in self.image_layers()
            if self._measured_by_default(ly) or self._chosen.get(ly.name)
        ]
        combo = self.reference_combo
        current = combo.currentText() if combo.count() else None
        wanted = [NO_REFERENCE, *names]
        if [combo.itemText(i) for i in range(combo.count())] == wanted:
            return
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(wanted)
        if current and current in wanted and (current != NO_REFERENCE or self._user_picked_ref):
            combo.setCurrentText(current)
        elif "truth" in names:
            combo.setCurrentText("truth")
        else:
            combo.setCurrentText(NO_REFERENCE)
        combo.blockSignals(False)

    def _on_user_reference(self, *_args) -> None:
        self._user_picked_ref = True  # from now on 'truth' is no longer preferred

    def set_reference(self, name: str | None) -> None:
        """Choose the reference layer by name (None or 'none': no PSNR/SSIM)."""
        self._user_picked_ref = True
        self.reference_combo.setCurrentText(name or NO_REFERENCE)
        self._schedule()

    def reference_layer(self):
        name = self.reference_combo.currentText()
        if not name or name == NO_REFERENCE:
            return None
        for ly in self.image_layers():
            if ly.name == name:
                return ly
        return None

    # ------------------------------------------------------------------ geometry
    def _roi_geometry(self):
        """World (row, col) geometry of the three ROI shapes, or (None, reason)."""
        layer = self._roi_layer = self.roi_layer()
        if layer is None:
            return None, f"no '{ROI_LAYER_NAME}' Shapes layer (press 'Reset ROIs')"
        data = layer.data
        feats = layer.features
        roles = feats["role"] if "role" in getattr(feats, "columns", ()) else None
        idx = roi.shape_indices(layer.shape_type, roles)
        if "signal" not in idx or "background" not in idx:
            return None, (
                f"'{ROI_LAYER_NAME}' needs a signal and a background rectangle "
                f"(found {len(data)} shape(s))"
            )

        def to_world(vertices):
            v = np.asarray(vertices, dtype=np.float64)
            return np.array([layer.data_to_world(p)[-2:] for p in v])

        geo = {
            "signal": to_world(data[idx["signal"]]),
            "background": to_world(data[idx["background"]]),
        }
        if "line" in idx:
            pts = to_world(data[idx["line"]])
            geo["line"] = np.array([pts[0], pts[-1]])
        else:
            geo["line"] = None
        return geo, None

    def _to_layer(self, layer, world_pts: np.ndarray, point: np.ndarray) -> np.ndarray:
        """World (row, col) points -> the layer's data (row, col), at the dims point."""
        out = np.empty_like(world_pts)
        full = np.array(point, dtype=np.float64)
        for i, p in enumerate(world_pts):
            full[-2:] = p
            out[i] = layer.world_to_data(full)[-2:]
        return out

    def _slice_of(self, layer, point) -> tuple[np.ndarray | None, tuple, str | None]:
        data = layer.data[0] if layer.multiscale else layer.data
        if layer.ndim == 2:
            return np.asarray(data), (), None
        pos = layer.world_to_data(np.asarray(point, dtype=np.float64))
        idx = []
        for ax, p in enumerate(pos[:-2]):
            k = int(round(float(p)))
            if not 0 <= k < data.shape[ax]:
                return None, (), "the current slice is outside this layer"
            idx.append(k)
        if len(idx) == 1 and not _layers.slice_ready(layer, idx[0]):
            return (
                None,
                tuple(idx),
                (f"not predicted on slice {idx[0]} yet (Predict: Current slice or Whole volume)"),
            )
        return np.asarray(data[tuple(idx)]), tuple(idx), None

    # ------------------------------------------------------------------ update
    def refresh(self) -> None:
        """Recompute every column now (normally called by the throttling timer)."""
        t0 = time.perf_counter()
        self._ensure_rois()
        v = self.viewer
        point = np.asarray(v.dims.point, dtype=np.float64)
        geo, geo_reason = self._roi_geometry()
        if v.dims.ndisplay != 2:
            geo, geo_reason = None, "switch the viewer to 2-D to measure"
        ref_layer = self.reference_layer()
        ref_slice, ref_reason, ref_idx = None, None, ()
        if ref_layer is not None:
            ref_slice, ref_idx, why = self._slice_of(ref_layer, point)
            if why:
                ref_reason = f"reference {ref_layer.name!r}: {why}"

        rows = [
            self._measure_layer(
                layer, point, geo, geo_reason, ref_layer, (ref_slice, ref_idx), ref_reason
            )
            for layer in self.measured_layers()
        ]
        self.rows = rows
        self._check_roi_order(rows)
        self._fill_table()
        self.last_update_ms = (time.perf_counter() - t0) * 1e3
        step = v.dims.current_step
        where = f"slice {step[0]}" if len(step) >= 3 else "2-D"
        source = f"; ROIs: {self._roi_source}" if self._roi_source else ""
        self.status.setText(
            f"{len(rows)} layer(s), {where}{source}; updated in {self.last_update_ms:.0f} ms"
        )

    def _check_roi_order(self, rows: list[Row]) -> None:
        """Note (and notify once) the layers whose signal ROI is darker than the
        background ROI."""
        below = tuple(r.layer for r in rows if signal_below_background(r.measurement))
        for r in rows:
            if r.layer in below:
                r.note = BELOW_NOTE
        if not below:
            self._warned = ()
            self.warning_label.hide()
            return
        names = ", ".join(repr(n) for n in below)
        text = (
            f"The signal ROI mean is below the background ROI mean in {names} (CNR < 0). "
            "On a dark-field slice lung (signal) scatters more than air (background): "
            "are the ROIs swapped or misplaced? 'Reset ROIs' restores the data's own."
        )
        self.warning_label.setText("\u26a0 " + text)
        self.warning_label.show()
        if not self._warned:
            show_warning(f"Measure CNR / FWHM: {text}")
        self._warned = below

    def _measure_layer(self, layer, point, geo, geo_reason, ref_layer, ref, ref_reason) -> Row:
        img, idx, why = self._slice_of(layer, point)
        slice_txt = ",".join(str(i) for i in idx) if idx else ""
        ref_name = ref_layer.name if ref_layer is not None else None
        if why or geo is None:
            return Row(layer.name, slice_txt, None, why or geo_reason, ref_name)
        sig = self._to_layer(layer, geo["signal"], point)
        bg = self._to_layer(layer, geo["background"], point)
        s_center, s_size = sig.mean(axis=0), np.ptp(sig, axis=0)
        b_center, b_size = bg.mean(axis=0), np.ptp(bg, axis=0)
        line = self._to_layer(layer, geo["line"], point) if geo["line"] is not None else None
        m = self._roi_metrics(
            layer, img, idx, s_center, tuple(s_size), b_center, tuple(b_size), line
        )
        if ref_layer is not None:
            p, s, pr, sr = self._reference_metrics(layer, img, idx, ref_layer, ref, ref_reason)
            m = replace(m, psnr=p, ssim=s, psnr_reason=pr, ssim_reason=sr, has_reference=True)
            m = self._truth_metrics(
                m,
                layer,
                img,
                idx,
                ref_layer,
                ref,
                ref_reason,
                point,
                (s_center, tuple(s_size), b_center, tuple(b_size)),
            )
        return Row(layer.name, slice_txt, m, m.reason, ref_name, self.linewidth_spin.value())

    def _roi_metrics(self, layer, img, idx, s_center, s_size, b_center, b_size, line):
        """CNR and FWHM of one slice (:func:`~napari_dfct.metrics.measure_all` without a
        reference), each cached by its own geometry: dragging the signal ROI refits no
        edge, moving the line recomputes no CNR."""
        key = self._slice_key(layer, idx)
        lw = self.linewidth_spin.value()
        rois = _geometry_key(s_center, s_size, b_center, b_size)
        edge = _geometry_key(s_center, b_center) if line is None else _geometry_key(line)
        start, end = (s_center, b_center) if line is None else (line[0], line[1])
        c = self._cached(
            ("cnr", *key, rois),
            lambda: metrics.cnr(img, s_center, b_center, s_size, background_size=b_size),
            self._roi_cache,
        )
        f = self._cached(
            ("fwhm", *key, edge, lw),
            lambda: metrics.fwhm(img, start, end, linewidth=lw),
            self._roi_cache,
        )
        return metrics.Measurement(c, f)

    def _truth_metrics(self, m, layer, img, idx, ref_layer, ref, ref_reason, point, rois):
        """The error CNR against the reference in the same ROIs and, when a Labels layer
        named ``body`` exists, PSNR/SSIM/RMSE inside it (cached like PSNR/SSIM)."""
        ref_slice = ref[0]
        if ref_reason or ref_slice is None:
            return m
        s_center, s_size, b_center, b_size = rois
        e = self._cached(
            (
                "error_cnr",
                *self._slice_key(layer, idx),
                *self._slice_key(ref_layer, ref[1]),
                _geometry_key(s_center, s_size, b_center, b_size),
            ),
            lambda: metrics.error_cnr(
                img, ref_slice, s_center, b_center, s_size, background_size=b_size
            ),
            self._roi_cache,
        )
        m = replace(m, error_cnr=e)
        mask_layer = next(
            (ly for ly in self.viewer.layers if ly.name == "body" and isinstance(ly, Labels)), None
        )
        if mask_layer is None:
            return m
        mask, mask_idx, why = self._slice_of(mask_layer, point)
        if why:
            return replace(m, has_mask=True, body_reason=f"body mask: {why}")
        body = self._cached(
            (
                "body",
                *self._slice_key(layer, idx),
                *self._slice_key(ref_layer, ref[1]),
                *self._slice_key(mask_layer, mask_idx),
            ),
            lambda: metrics.body_metrics(img, ref_slice, mask),
        )
        return replace(
            m,
            has_mask=True,
            psnr_body=body["psnr_body"],
            ssim_body=body["ssim_body"],
            rmse_body=body["rmse_body"],
            body_reason=body.get("body_reason"),
            ssim_body_reason=body.get("ssim_body_reason"),
        )

    def _reference_metrics(self, layer, img, idx, ref_layer, ref, ref_reason):
        """PSNR/SSIM, cached per (layer, slice, reference, slice): they read the whole
        slice (SSIM is the most expensive metric) but do not depend on the ROIs."""
        if ref_reason:
            return float("nan"), float("nan"), ref_reason, ref_reason
        if layer is ref_layer:
            return float("inf"), 1.0, None, None  # the identities, without the work
        ref_slice, ref_idx = ref

        def compute():
            r = metrics.reference_metrics(img, ref_slice)
            return r["psnr"], r["ssim"], r["psnr_reason"], r["ssim_reason"]

        return self._cached(
            (*self._slice_key(layer, idx), *self._slice_key(ref_layer, ref_idx)), compute
        )

    def _slice_key(self, layer, idx) -> tuple:
        """A layer's slice as a cache key part: the layer, its data version, the index."""
        return id(layer), self._data_version.get(id(layer), 0), idx

    def _cached(self, key, compute, cache: OrderedDict | None = None):
        """``compute()`` for ``key`` from a cache (least recently used first out, at
        most 128 entries): by default the cache of whole-slice metrics; the ROI metrics
        have their own, so a drag through many positions never evicts those."""
        cache = self._ref_cache if cache is None else cache
        hit = cache.get(key)
        if hit is None:
            hit = compute()
            cache[key] = hit
            while len(cache) > 128:
                cache.popitem(last=False)
        else:
            cache.move_to_end(key)
        return hit

    # ------------------------------------------------------------------ table
    def _fill_table(self) -> None:
        self._updating_table = True
        names = [r.layer for r in self.rows]
        selected = names.index(self._selected_layer) if self._selected_layer in names else 0
        self.table.show_rows(self.rows, selected)
        self._updating_table = False
        self._update_plot()

    def _on_selection(self) -> None:
        if self._updating_table:
            return
        col = self.table.selected_column()
        if col is not None and col < len(self.rows):
            self._selected_layer = self.rows[col].layer
        self._update_plot()

    def select_layer(self, name: str) -> None:
        """Select the column of the layer called ``name`` (its profile is plotted)."""
        for i, r in enumerate(self.rows):
            if r.layer == name:
                self.table.selectColumn(i)
                return
        raise KeyError(name)

    def selected_row(self) -> Row | None:
        """The measurement of the selected column (the first when none is selected)."""
        col = self.table.selected_column()
        if col is not None and col < len(self.rows):
            return self.rows[col]
        return self.rows[0] if self.rows else None

    def _update_plot(self) -> None:
        row = self.selected_row()
        if row is None:
            self.detail.setText("")
            self.detail.hide()
            self.plot.show_result("", None, "no image layer")
            return
        title = row.layer + (f"  (slice {row.slice})" if row.slice else "")
        notes = "; ".join(t for t in (row.note, row.reason) if t)
        self.detail.setText(f"{row.layer}: {notes}" if notes else "")
        self.detail.setVisible(bool(notes))
        m = row.measurement
        self.plot.show_result(title, m.fwhm if m is not None else None, row.reason)

    # ------------------------------------------------------------------ export
    def table_text(self, delimiter: str = "\t") -> str:
        """The current table as delimited text (full precision, one line per layer)."""
        return rows_to_text(self.rows, delimiter)

    def copy_to_clipboard(self) -> None:
        clipboard = QApplication.clipboard()
        assert clipboard is not None  # there is one while the application runs
        clipboard.setText(self.table_text("\t"))
        self.status.setText(f"copied {len(self.rows)} layer(s) to the clipboard")

    def export_csv(self, path: str | None = None) -> str | None:
        """Write the table as CSV; asks for a file name when ``path`` is None."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(
                self, "Export measurements", "dfct-measurements.csv", "CSV files (*.csv)"
            )
            if not path:
                return None
        try:
            with open(path, "w", newline="", encoding="utf-8") as fh:
                fh.write(self.table_text(","))
        except OSError as exc:
            show_error(f"Could not write {path}: {exc}")
            return None
        self.status.setText(f"exported {len(self.rows)} layer(s) to {path}")
        return str(path)
