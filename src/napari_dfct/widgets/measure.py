"""Measure CNR / FWHM: live image-quality figures for every image layer.

The widget reads the ``DFCT ROIs`` Shapes layer (the project's ROI convention: a signal
square, a background square and a line, found by the ``role`` feature or else by order and
shape type), maps the shapes through world coordinates into each image layer's data
coordinates (so scaled or translated layers measure the same anatomy), takes each layer's
2-D slice at the viewer's current dims point and shows, one row per image layer:

CNR +/- standard error, FWHM +/- error (erf fit), the ROI means and standard deviations,
PSNR and SSIM against a reference layer, and the reason when a value is undefined.

The selected row's edge profile, the fitted erf and the line spread function (with the
FWHM marked) are plotted below the table. Updates are live: while a shape is dragged
(throttled by a single-shot coalescing timer), when the slice changes, and when layers are
added, removed, renamed or changed. All science is in :mod:`napari_dfct.metrics`.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .. import metrics, roi
from ._plot import PlotCanvas, theme_colors

if TYPE_CHECKING:
    import napari

__all__ = ["MeasureWidget", "ROI_LAYER_NAME", "ROLES", "EXPORT_COLUMNS", "default_roi_data"]

#: Name of the Shapes layer holding the ROIs (project convention, :mod:`napari_dfct.roi`).
ROI_LAYER_NAME = roi.LAYER_NAME
#: Roles of the three shapes, in order.
ROLES = roi.ROLES
#: Refresh at most once per this many milliseconds while shapes are dragged.
THROTTLE_MS = 40
NO_REFERENCE = "none"

#: Columns of the copied / exported table (numbers unformatted; NaN as empty).
EXPORT_COLUMNS = (
    "layer", "slice", "cnr", "cnr_stderr", "fwhm", "fwhm_stderr", "fwhm_halfmax",
    "signal_mean", "signal_std", "signal_n", "background_mean", "background_std",
    "background_n", "psnr", "ssim", "reference", "line_width", "reason",
)

_HEADERS = ("Layer", "CNR", "FWHM (px)", "Signal \u03bc / \u03c3", "Bkg \u03bc / \u03c3",
            "PSNR (dB)", "SSIM", "Reason")
_HEADER_TIPS = {
    "CNR": "(mean_signal - mean_bkg) / sqrt(std_signal^2 + std_bkg^2) \u00b1 standard "
           "error (delta method, uncorrelated pixels)",
    "FWHM (px)": "FWHM of the line spread function from an erf fit to the edge "
                 "profile \u00b1 fit error, in pixels of the layer",
    _HEADERS[3]: "signal ROI mean / sample standard deviation (ddof = 1)",
    _HEADERS[4]: "background ROI mean / sample standard deviation (ddof = 1)",
    "PSNR (dB)": "against the reference layer; data range = reference max - min",
    "SSIM": "against the reference layer (7x7 window)",
    "Reason": "why a value is n/a",
}
_NA = "n/a"
_WARN = QColor("#ffb454")
_COLORS = {"profile": "#9aa5b1", "fit": "#ff9f40", "lsf": "#4fa3ff", "gauss": "#ff9f40",
           "fwhm": "#5fd38d", "edge": "#c792ea"}


# --------------------------------------------------------------------------------------
# pure helpers (no Qt)
# --------------------------------------------------------------------------------------
def default_roi_data(shape2d, scale=(1.0, 1.0), translate=(0.0, 0.0),
                     size: int = roi.DEFAULT_ROI_SIZE):
    """Default ROI shapes near the centre of a slice, in that slice's data coordinates.

    Two ``size`` x ``size`` squares left and right of the centre, a sixth of the width
    apart from it, and the line between their centres. Returns ``(data, shape_types,
    features)`` for :meth:`napari.viewer.Viewer.add_shapes`.
    """
    rows, cols = int(shape2d[0]), int(shape2d[1])
    size = int(max(2, min(size, rows // 3, cols // 4)))
    cr, cc = (rows - 1) / 2.0, (cols - 1) / 2.0
    off = max(cols / 6.0, size * 0.75)
    return roi.ROISet((cr, cc - off), (cr, cc + off), roi_size=size).shapes()


def _fmt(v: float, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return _NA
    if math.isinf(v):
        return "\u221e" if v > 0 else "-\u221e"
    return f"{v:.{digits}g}"


def _decimals(v: float, sig: int = 3) -> int:
    """Decimals that show ``v`` with ``sig`` significant digits (at least 0)."""
    if v == 0 or not math.isfinite(v):
        return sig - 1
    return max(0, sig - 1 - int(math.floor(math.log10(abs(v)))))


def _pm(v: float, e: float, sig: int = 3) -> str:
    """``v +/- e`` with the error rounded to the value's decimals."""
    if v is None or math.isnan(v):
        return _NA
    d = _decimals(v, sig)
    if e is None or math.isnan(e):
        return f"{v:.{d}f}"
    return f"{v:.{d}f} \u00b1 {e:.{d}f}"


def _ms(mean: float, std: float) -> str:
    """``mean / std`` with 4 significant digits each."""
    if mean is None or math.isnan(mean):
        return _NA
    return f"{_fmt(mean)} / {_fmt(std)}"


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return repr(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf")
    return "" if v is None else v


@dataclass
class Row:
    """One table row: a layer's measurement on the current slice."""

    layer: str
    slice: str
    measurement: metrics.Measurement | None
    reason: str | None
    reference: str | None = None
    line_width: int = 1

    def record(self) -> dict[str, Any]:
        """The export columns: :meth:`napari_dfct.metrics.Measurement.record` (NaN where
        undefined) and the row's layer, slice, reference, line width and reason."""
        m = self.measurement
        vals = m.record() if m is not None else {}
        vals.update(layer=self.layer, slice=self.slice, reference=self.reference or "",
                    line_width=self.line_width, reason=self.reason or "")
        return {k: vals.get(k, float("nan")) for k in EXPORT_COLUMNS}


def rows_to_text(rows: list[Row], delimiter: str) -> str:
    """The rows as CSV (``","``) or TSV (``"\\t"``) text with a header line."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    w.writerow(EXPORT_COLUMNS)
    for r in rows:
        rec = r.record()
        w.writerow([_csv_value(rec[k]) for k in EXPORT_COLUMNS])
    return buf.getvalue()


# --------------------------------------------------------------------------------------
# the plot
# --------------------------------------------------------------------------------------
class _ProfilePlot(QWidget):
    """Edge profile with the erf fit (top) and the LSF with the FWHM marked (bottom): two
    stacked :class:`~napari_dfct.widgets._plot.PlotCanvas` panels over the same distance."""

    def __init__(self, theme: str = "dark", parent: QWidget | None = None):
        super().__init__(parent)
        self._c = colors = theme_colors(theme)
        self.esf = PlotCanvas(ylabel="profile", height=1.6, theme=theme)
        self.lsf = PlotCanvas(xlabel="distance along the line (px)", ylabel="LSF",
                              height=1.6, theme=theme)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.esf, 1)
        lay.addWidget(self.lsf, 1)
        c, esf, lsf = _COLORS, self.esf, self.lsf
        self.l_profile = esf.set_line("profile", [], [], linestyle="none", marker=".",
                                      markersize=3, color=c["profile"], label="profile")
        self.l_fit = esf.set_line("fit", [], [], linewidth=1.6, color=c["fit"],
                                  label="erf fit")
        self.l_lsf = lsf.set_line("lsf", [], [], linewidth=1.2, color=c["lsf"],
                                  label="d/dx smoothed")
        self.l_gauss = lsf.set_line("gauss", [], [], linewidth=1.4, color=c["gauss"],
                                    label="fit (Gaussian)")
        self.l_fwhm = lsf.set_line("fwhm", [], [], linewidth=2.2, color=c["fwhm"],
                                   solid_capstyle="butt", label="FWHM")
        self.v_edge = esf.ax.axvline(0, color=c["edge"], lw=0.9, ls="--", visible=False)
        esf.legend()
        lsf.legend()
        self.title = esf.ax.set_title("", color=colors["text"], fontsize=8, loc="left")
        self.note = lsf.ax.set_title("", color=colors["text"], fontsize=8, loc="left")

    def _redraw(self) -> None:
        self.esf.redraw()
        self.lsf.redraw()

    def show_result(self, title: str, res: metrics.FWHMResult | None, reason: str | None):
        self.title.set_text(title)
        empty = np.zeros(0)
        if res is None or res.distance.size == 0:
            for ln in (self.l_profile, self.l_fit, self.l_lsf, self.l_gauss, self.l_fwhm):
                ln.set_data(empty, empty)
            self.v_edge.set_visible(False)
            self.note.set_text(_short(f"FWHM n/a: {reason}") if reason else "")
            self.note.set_color(_WARN.name())
            self._redraw()
            return
        x = res.distance
        self.l_profile.set_data(x, res.profile)
        ok = res.reason is None
        # the fitted curves on a fine grid (sharp edges would look jagged at the samples)
        xf = np.linspace(x[0], x[-1], max(8 * x.size, 200)) if ok else empty
        sp = res.sigma_profile
        fit = metrics.erf_edge(xf, res.offset, res.amplitude, res.edge_position, sp)
        gauss = (abs(res.amplitude) * math.sqrt(2 / math.pi) / sp
                 * np.exp(-0.5 * ((xf - res.edge_position) / sp) ** 2)) if ok else empty
        self.l_fit.set_data(xf, fit if ok else empty)
        self.l_lsf.set_data(x, res.derivative if res.derivative.size else np.zeros_like(x))
        self.l_gauss.set_data(xf, gauss)
        if ok:
            peak = float(np.max(gauss)) if gauss.size else 0.0
            half = res.sigma_profile * metrics.FWHM_PER_SIGMA / 2.0
            self.l_fwhm.set_data([res.edge_position - half, res.edge_position + half],
                                 [peak / 2.0, peak / 2.0])
            self.v_edge.set_xdata([res.edge_position, res.edge_position])
            self.v_edge.set_visible(True)
            text = f"FWHM {res.fwhm:.2f} \u00b1 {res.fwhm_stderr:.2f} px"
            if not math.isnan(res.halfmax_fwhm):
                text += f"   (half-max check {res.halfmax_fwhm:.2f})"
            self.note.set_text(text)
            self.note.set_color(self._c["text"])
        else:
            self.l_fwhm.set_data(empty, empty)
            self.v_edge.set_visible(False)
            self.note.set_text(_short(f"FWHM n/a: {res.reason}"))
            self.note.set_color(_WARN.name())
        self._redraw()


def _short(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"


# --------------------------------------------------------------------------------------
# the widget
# --------------------------------------------------------------------------------------
class MeasureWidget(QWidget):
    """Dock widget: live CNR / FWHM (and PSNR / SSIM) of every image layer.

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
        self._created_rois = False
        self._connected: dict[int, Any] = {}
        self._ref_cache: OrderedDict = OrderedDict()
        # a unique token per layer and pixel-data state: cache keys never collide, even
        # when Python reuses the id of a removed layer
        self._versions = itertools.count(1)
        self._data_version: dict[int, int] = {}
        self._selected_layer: str | None = None
        self._updating_table = False
        self._user_picked_ref = False  # until then the layer named 'truth' is preferred

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(THROTTLE_MS)
        self._timer.timeout.connect(self.refresh)

        # --- controls
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.add_rois_button = QPushButton("Reset ROIs")
        self.add_rois_button.setToolTip(
            f"Create the '{ROI_LAYER_NAME}' Shapes layer (or reset it) with two "
            f"{roi.DEFAULT_ROI_SIZE}x{roi.DEFAULT_ROI_SIZE} "
            "squares near the image centre and the line between them")
        self.add_rois_button.clicked.connect(self.reset_rois)
        self.reference_combo = QComboBox()
        self.reference_combo.setToolTip("PSNR and SSIM are computed against this layer")
        self.reference_combo.currentIndexChanged.connect(self._schedule)
        self.reference_combo.activated.connect(self._on_user_reference)
        self.linewidth_spin = QSpinBox()
        self.linewidth_spin.setRange(1, 99)
        self.linewidth_spin.setValue(1)
        self.linewidth_spin.setSuffix(" px")
        self.linewidth_spin.setToolTip(
            "Width of the edge profile across the line: the samples across it are averaged "
            "(1 px: a single line, as in the paper)")
        self.linewidth_spin.valueChanged.connect(self._schedule)
        top = QHBoxLayout()
        top.addWidget(QLabel("Reference:"))
        top.addWidget(self.reference_combo, 1)
        top.addWidget(QLabel("Line width:"))
        top.addWidget(self.linewidth_spin)
        top.addWidget(self.add_rois_button)

        self.table = QTableWidget(0, len(_HEADERS))
        self.table.setHorizontalHeaderLabels(list(_HEADERS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        self.table.setWordWrap(False)
        self.table.itemSelectionChanged.connect(self._on_selection)
        for col, name in enumerate(_HEADERS):
            self.table.horizontalHeaderItem(col).setToolTip(_HEADER_TIPS.get(name, ""))

        self.copy_button = QPushButton("Copy (TSV)")
        self.copy_button.setToolTip("Copy the table to the clipboard, tab-separated")
        self.copy_button.clicked.connect(self.copy_to_clipboard)
        self.export_button = QPushButton("Export CSV\u2026")
        self.export_button.clicked.connect(lambda: self.export_csv())
        buttons = QHBoxLayout()
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.export_button)
        buttons.addStretch(1)

        self.plot = _ProfilePlot(napari_viewer.theme)

        upper = self._upper = QWidget()
        ul = QVBoxLayout(upper)
        ul.setContentsMargins(0, 0, 0, 0)
        ul.addLayout(top)
        ul.addWidget(self.table, 1)
        ul.addLayout(buttons)
        splitter = self._splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(upper)
        splitter.addWidget(self.plot)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        splitter.setChildrenCollapsible(False)
        splitter.setSizes([190, 420])
        self.table.setMinimumHeight(110)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.status)

        # --- events
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
        self._sync_reference_choices()
        self._ensure_rois()
        self.refresh()

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

    def _on_name_changed(self, *_args) -> None:
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
        conns = [(ev.name, self._on_name_changed)]
        if isinstance(layer, Shapes):
            # set_data fires on every refresh during a drag, data on press/release
            conns += [(ev.data, self._schedule), (ev.set_data, self._schedule)]
        elif hasattr(ev, "data"):
            # new pixel data: invalidate cached PSNR/SSIM (set_data would fire on every
            # re-slice of an image, so it is not used here)
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

        return [ly for ly in reversed(self.viewer.layers)
                if isinstance(ly, Image) and not ly.rgb and ly.ndim >= 2]

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
        if self._created_rois or existing is not None:
            self._roi_layer = existing
            return
        if self.image_layers():
            self._created_rois = True
            self.reset_rois()

    def reset_rois(self) -> None:
        """(Re)create the ROI shapes near the centre of the first image layer."""
        images = self.image_layers()
        if not images:
            from napari.utils.notifications import show_warning

            show_warning("Measure CNR / FWHM: add an image layer first.")
            return
        ref = images[0]
        shape2d = ref.data.shape[-2:] if not ref.multiscale else ref.data[0].shape[-2:]
        data, types, features = default_roi_data(shape2d)
        existing = self.roi_layer()
        if existing is not None:
            self.viewer.layers.remove(existing)
        layer = self.viewer.add_shapes(
            data, shape_type=types, features=features, name=ROI_LAYER_NAME, ndim=2,
            scale=tuple(ref.scale[-2:]), translate=tuple(ref.translate[-2:]),
            edge_width=max(1.0, shape2d[1] / 300),
            edge_color=["#ff9f40", "#4fa3ff", "#5fd38d"], face_color="transparent",
        )
        self._roi_layer = layer
        layer.mode = "select"
        self._schedule()

    def _sync_reference_choices(self) -> None:
        names = [ly.name for ly in self.image_layers()]
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
            return None, (f"'{ROI_LAYER_NAME}' needs a signal and a background rectangle "
                          f"(found {len(data)} shape(s))")

        def to_world(vertices):
            v = np.asarray(vertices, dtype=np.float64)
            return np.array([layer.data_to_world(p)[-2:] for p in v])

        geo = {"signal": to_world(data[idx["signal"]]),
               "background": to_world(data[idx["background"]])}
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
        return np.asarray(data[tuple(idx)]), tuple(idx), None

    # ------------------------------------------------------------------ update
    def refresh(self) -> None:
        """Recompute every row now (normally called by the throttling timer)."""
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

        rows: list[Row] = []
        for layer in self.image_layers():
            rows.append(self._measure_layer(layer, point, geo, geo_reason, ref_layer,
                                            (ref_slice, ref_idx), ref_reason))
        self.rows = rows
        self._fill_table()
        self.last_update_ms = (time.perf_counter() - t0) * 1e3
        step = v.dims.current_step
        where = f"slice {step[0]}" if len(step) >= 3 else "2-D"
        self.status.setText(f"{len(rows)} layer(s), {where}; updated in "
                            f"{self.last_update_ms:.0f} ms")

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
        m = metrics.measure_all(img, s_center, b_center, line, size=tuple(s_size),
                                background_size=tuple(b_size),
                                linewidth=self.linewidth_spin.value())
        if ref_layer is not None:
            p, s, pr, sr = self._reference_metrics(layer, img, idx, ref_layer, ref,
                                                   ref_reason)
            m = replace(m, psnr=p, ssim=s, psnr_reason=pr, ssim_reason=sr, has_reference=True)
        return Row(layer.name, slice_txt, m, m.reason, ref_name, self.linewidth_spin.value())

    def _reference_metrics(self, layer, img, idx, ref_layer, ref, ref_reason):
        """PSNR/SSIM, cached per (layer, slice, reference, slice): they read the whole
        slice (SSIM is the most expensive metric) but do not depend on the ROIs."""
        if ref_reason:
            return float("nan"), float("nan"), ref_reason, ref_reason
        if layer is ref_layer:
            return float("inf"), 1.0, None, None  # the identities, without the work
        ref_slice, ref_idx = ref
        version = self._data_version.get
        key = (id(layer), version(id(layer), 0), idx, id(ref_layer),
               version(id(ref_layer), 0), ref_idx)
        hit = self._ref_cache.get(key)
        if hit is None:
            r = metrics.reference_metrics(img, ref_slice)
            hit = (r["psnr"], r["ssim"], r["psnr_reason"], r["ssim_reason"])
            self._ref_cache[key] = hit
            while len(self._ref_cache) > 128:
                self._ref_cache.popitem(last=False)
        else:
            self._ref_cache.move_to_end(key)
        return hit

    # ------------------------------------------------------------------ table
    def _fill_table(self) -> None:
        self._updating_table = True
        t = self.table
        t.setRowCount(len(self.rows))
        selected_row = 0
        for i, row in enumerate(self.rows):
            if row.layer == self._selected_layer:
                selected_row = i
            m = row.measurement
            reasons = m.reasons if m is not None else {}
            generic = row.reason
            if m is not None:
                c, f = m.cnr, m.fwhm
                cells = [
                    (row.layer, None),
                    (_pm(c.cnr, c.stderr), reasons.get("cnr")),
                    (_pm(f.fwhm, f.fwhm_stderr), reasons.get("fwhm")),
                    (_ms(c.signal.mean, c.signal.std), c.signal.reason),
                    (_ms(c.background.mean, c.background.std), c.background.reason),
                    (_fmt(m.psnr, 4) if m.has_reference else "", reasons.get("psnr")),
                    (_fmt(m.ssim, 3) if m.has_reference else "",
                     reasons.get("ssim", reasons.get("psnr"))),
                    (generic or "", None),
                ]
            else:
                cells = [(row.layer, None)] + [(_NA, generic)] * 4
                cells += [(_NA if row.reference else "", generic), (_NA if row.reference
                                                                    else "", generic)]
                cells += [(generic or "", None)]
            for j, (text, tip) in enumerate(cells):
                item = t.item(i, j)
                if item is None:
                    item = QTableWidgetItem()
                    t.setItem(i, j, item)
                item.setText(text)
                align = (Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                         if 0 < j < len(cells) - 1 else
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
                item.setTextAlignment(align)
                if text == _NA or (j == len(cells) - 1 and text):
                    item.setForeground(_WARN)
                    item.setToolTip(tip or generic or "")
                else:
                    item.setData(Qt.ItemDataRole.ForegroundRole, None)
                    item.setToolTip(tip or "")
        # fit the table to its rows (up to a limit) so the plot gets the rest
        rows_h = sum(t.rowHeight(i) for i in range(t.rowCount()))
        needed = (t.horizontalHeader().height() + rows_h + 2 * t.frameWidth()
                  + t.horizontalScrollBar().sizeHint().height() + 4)
        table_h = int(min(max(needed, 110), 360))
        t.setMaximumHeight(table_h)
        if t.rowCount() != getattr(self, "_fitted_rows", -1):
            # give the plot the space the table does not need (only when the number of
            # rows changes, so a splitter position chosen by the user is kept otherwise)
            self._fitted_rows = t.rowCount()
            sizes = self._splitter.sizes()
            total = sum(sizes)
            upper = self._upper.sizeHint().height() - t.sizeHint().height() + table_h
            if total > upper + 150:
                self._splitter.setSizes([upper, total - upper])
        if self.rows:
            t.selectRow(selected_row)
        self._updating_table = False
        self._update_plot()

    def _on_selection(self) -> None:
        if self._updating_table:
            return
        rows = self.table.selectionModel().selectedRows()
        if rows and rows[0].row() < len(self.rows):
            self._selected_layer = self.rows[rows[0].row()].layer
        self._update_plot()

    def select_layer(self, name: str) -> None:
        """Select the row of the layer called ``name`` (its profile is plotted)."""
        for i, r in enumerate(self.rows):
            if r.layer == name:
                self.table.selectRow(i)
                return
        raise KeyError(name)

    def selected_row(self) -> Row | None:
        rows = self.table.selectionModel().selectedRows()
        if rows and rows[0].row() < len(self.rows):
            return self.rows[rows[0].row()]
        return self.rows[0] if self.rows else None

    def _update_plot(self) -> None:
        row = self.selected_row()
        if row is None:
            self.plot.show_result("", None, "no image layer")
            return
        title = row.layer + (f"  (slice {row.slice})" if row.slice else "")
        m = row.measurement
        self.plot.show_result(title, m.fwhm if m is not None else None, row.reason)

    # ------------------------------------------------------------------ export
    def table_text(self, delimiter: str = "\t") -> str:
        """The current table as delimited text (full precision, one row per layer)."""
        return rows_to_text(self.rows, delimiter)

    def copy_to_clipboard(self) -> None:
        QApplication.clipboard().setText(self.table_text("\t"))
        self.status.setText(f"copied {len(self.rows)} row(s) to the clipboard")

    def export_csv(self, path: str | None = None) -> str | None:
        """Write the table as CSV; asks for a file name when ``path`` is None."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export measurements",
                                                  "dfct-measurements.csv",
                                                  "CSV files (*.csv)")
            if not path:
                return None
        try:
            with open(path, "w", newline="", encoding="utf-8") as fh:
                fh.write(self.table_text(","))
        except OSError as exc:
            from napari.utils.notifications import show_error

            show_error(f"Could not write {path}: {exc}")
            return None
        self.status.setText(f"exported {len(self.rows)} row(s) to {path}")
        return str(path)
