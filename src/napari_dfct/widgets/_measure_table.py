"""The Measure widget's table and rows: one column per measured layer, one row per metric.

Metrics run down the rows (CNR, FWHM, the ROI means and standard deviations, PSNR, SSIM
and a note), layers across the columns, so every metric stays visible in a narrow dock.
A value and its error (or a mean and its standard deviation) share a cell on two short
lines; the columns share the dock's width (a long layer name is shortened in the header,
line by line, and shown in full in its tool tip); the table is exactly as tall as its
rows.

:class:`Row` is one layer's measurement (the export unit: :data:`EXPORT_COLUMNS`,
:func:`rows_to_text`); nothing here computes a metric (:mod:`napari_dfct.metrics` does).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QColor, QFontMetrics
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
)

from .. import metrics

__all__ = [
    "EXPORT_COLUMNS",
    "METRICS",
    "MetricsTable",
    "Row",
    "rows_to_text",
    "signal_below_background",
]

#: Columns of the copied / exported table (numbers unformatted; NaN as empty).
EXPORT_COLUMNS = (
    "layer",
    "slice",
    "cnr",
    "cnr_stderr",
    "fwhm",
    "fwhm_stderr",
    "fwhm_halfmax",
    "signal_mean",
    "signal_std",
    "signal_n",
    "background_mean",
    "background_std",
    "background_n",
    "psnr",
    "ssim",
    "error_cnr",
    "psnr_body",
    "ssim_body",
    "rmse_body",
    "reference",
    "line_width",
    "reason",
    "note",
)

#: The metric rows of the table, top to bottom.
METRICS = (
    "CNR",
    "FWHM (px)",
    "Signal",
    "Background",
    "PSNR (dB)",
    "SSIM",
    "Error CNR",
    "PSNR body (dB)",
    "Note",
)
_TIPS = {
    "CNR": "(mean_signal - mean_bkg) / sqrt(std_signal^2 + std_bkg^2) \u00b1 standard "
    "error (delta method, uncorrelated pixels)",
    "FWHM (px)": "FWHM of the line spread function from an erf fit to the edge "
    "profile \u00b1 fit error, in pixels of the layer",
    "Signal": "signal ROI mean \u03bc and sample standard deviation \u03c3 (ddof = 1)",
    "Background": "background ROI mean \u03bc and sample standard deviation \u03c3 (ddof = 1)",
    "PSNR (dB)": "against the reference layer; data range = reference max - min",
    "SSIM": "against the reference layer (7x7 window)",
    "Error CNR": "(mean_signal - mean_bkg) / sqrt(var(e_signal) + var(e_bkg)), e = layer - "
    "reference in each ROI: the CNR with the reference's own texture removed, "
    "so smoothing real texture lowers it",
    "PSNR body (dB)": "PSNR against the reference inside the body mask (a Labels layer "
    "named 'body', e.g. the body.tif of a simulated set)",
    "Note": "why a value is n/a, and warnings about the ROIs",
}
NA = "n/a"
WARN = QColor("#ffb454")
#: The note of a layer whose signal ROI is darker than its background ROI.
BELOW_NOTE = "signal ROI mean below the background's (CNR < 0): ROIs swapped?"


# --------------------------------------------------------------------------------------
# formatting (no Qt)
# --------------------------------------------------------------------------------------
def _fmt(v: float, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return NA
    if math.isinf(v):
        return "\u221e" if v > 0 else "-\u221e"
    return f"{v:.{digits}g}"


def _decimals(v: float, sig: int = 3) -> int:
    """Decimals that show ``v`` with ``sig`` significant digits (at least 0)."""
    if v == 0 or not math.isfinite(v):
        return sig - 1
    return max(0, sig - 1 - math.floor(math.log10(abs(v))))


def _pm(v: float, e: float, sig: int = 3, sep: str = " ") -> str:
    """``v +/- e`` with the error rounded to the value's decimals (``sep`` between)."""
    if v is None or math.isnan(v):
        return NA
    d = _decimals(v, sig)
    if e is None or math.isnan(e):
        return f"{v:.{d}f}"
    return f"{v:.{d}f}{sep}\u00b1 {e:.{d}f}"


def _ms(mean: float, std: float, sep: str = " ") -> str:
    """``mean`` and ``std`` with 3 significant digits each (``sep`` between)."""
    if mean is None or math.isnan(mean):
        return NA
    return f"\u03bc {_fmt(mean, 3)}{sep}\u03c3 {_fmt(std, 3)}"


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return repr(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf")
    return "" if v is None else v


def signal_below_background(m: metrics.Measurement | None) -> bool:
    """True when both ROI means are defined and the signal's is below the background's:
    on a DFCT slice the lung scatters more than air, so the ROIs are likely swapped."""
    if m is None:
        return False
    s, b = m.cnr.signal.mean, m.cnr.background.mean
    return math.isfinite(s) and math.isfinite(b) and s < b


def wrap_words(text: str, fm: QFontMetrics, width: int) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``width`` (a longer word keeps
    a line of its own)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and fm.horizontalAdvance(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [text]


def header_lines(name: str) -> list[str]:
    """A layer name as header lines: a prediction as ``prediction`` and its model, else
    the name and its bracketed part (``input``, ``(1 rotation)``)."""
    mark = " [prediction: "
    if mark in name and name.endswith("]"):
        return ["prediction", name[name.index(mark) + len(mark) : -1]]
    for mark in (" [", " ("):
        i = name.find(mark)
        if i > 0:
            return [name[:i], name[i + 1 :]]
    return [name]


@dataclass
class Row:
    """One layer's measurement on the current slice (a column of the table)."""

    layer: str
    slice: str
    measurement: metrics.Measurement | None
    reason: str | None
    reference: str | None = None
    line_width: int = 1
    note: str | None = None

    def record(self) -> dict[str, Any]:
        """The export columns: :meth:`napari_dfct.metrics.Measurement.record` (NaN where
        undefined) and the row's layer, slice, reference, line width, reason and note."""
        m = self.measurement
        vals = m.record() if m is not None else {}
        vals.update(
            layer=self.layer,
            slice=self.slice,
            reference=self.reference or "",
            line_width=self.line_width,
            reason=self.reason or "",
            note=self.note or "",
        )
        return {k: vals.get(k, float("nan")) for k in EXPORT_COLUMNS}

    def cells(self) -> list[tuple[str, str]]:
        """``(text, tool tip)`` of each metric of :data:`METRICS`."""
        m = self.measurement
        generic = self.reason or ""
        note = "; ".join(t for t in (self.note, generic) if t)
        if m is None:
            ref = NA if self.reference else ""
            return [(NA, generic)] * 4 + [(ref, generic)] * 4 + [(note, note)]
        reasons = m.reasons
        c, f = m.cnr, m.fwhm
        return [
            (_pm(c.cnr, c.stderr, sep="\n"), reasons.get("cnr", "")),
            (_pm(f.fwhm, f.fwhm_stderr, sep="\n"), reasons.get("fwhm", "")),
            (_ms(c.signal.mean, c.signal.std, "\n"), c.signal.reason or ""),
            (_ms(c.background.mean, c.background.std, "\n"), c.background.reason or ""),
            (_fmt(m.psnr, 4) if m.has_reference else "", reasons.get("psnr", "")),
            (
                _fmt(m.ssim, 3) if m.has_reference else "",
                reasons.get("ssim", reasons.get("psnr", "")),
            ),
            (
                _fmt(m.error_cnr.error_cnr, 4) if m.error_cnr is not None else "",
                reasons.get("error_cnr", ""),
            ),
            (_fmt(m.psnr_body, 4) if m.has_mask else "", reasons.get("psnr_body", "")),
            (note, note),
        ]


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
# the table
# --------------------------------------------------------------------------------------
class MetricsTable(QTableWidget):
    """Metrics as rows, layers as columns sharing the width; as tall as its rows."""

    def __init__(self, parent=None):
        super().__init__(len(METRICS), 0, parent)
        self.setVerticalHeaderLabels(list(METRICS))
        for i, name in enumerate(METRICS):
            item = self.verticalHeaderItem(i)
            if item is not None:
                item.setToolTip(_TIPS.get(name, ""))
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectColumns)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.TextElideMode.ElideRight)
        header, rows = self.horizontalHeader(), self.verticalHeader()
        assert header is not None and rows is not None  # a table widget has both
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(40)
        header.setTextElideMode(Qt.TextElideMode.ElideNone)  # elided line by line below
        header.sectionResized.connect(lambda *_: self._elide_headers())
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self._names: list[str] = []
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._fit_height()

    def show_rows(self, rows: list[Row], selected: int) -> None:
        """One column per row (layer), ``selected`` column selected."""
        self.setColumnCount(len(rows))
        self._names = [row.layer for row in rows]
        right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
        left = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
        for j, row in enumerate(rows):
            head = self.horizontalHeaderItem(j)
            if head is None:
                head = QTableWidgetItem()
                self.setHorizontalHeaderItem(j, head)
            head.setToolTip(row.layer)
            for i, (text, tip) in enumerate(row.cells()):
                item = self.item(i, j)
                if item is None:
                    item = QTableWidgetItem()
                    self.setItem(i, j, item)
                item.setText(text)
                last = i == len(METRICS) - 1
                item.setTextAlignment(left if last else right)
                warn = text == NA or (last and bool(text))
                if warn:
                    item.setForeground(WARN)
                else:
                    item.setData(Qt.ItemDataRole.ForegroundRole, None)
                item.setToolTip(tip or text)  # the full text where a cell is too narrow
        self._elide_headers()
        self._fit_width()
        self._fit_height()
        if rows:
            self.selectColumn(min(max(selected, 0), len(rows) - 1))

    def _elide_headers(self) -> None:
        """Header texts wrapped at spaces to their column's width (a word longer than the
        column is shortened; the tool tip has the whole name)."""
        header = self.horizontalHeader()
        assert header is not None  # a table widget always has one
        fm = QFontMetrics(header.font())
        changed = False
        for j, name in enumerate(self._names):
            head = self.horizontalHeaderItem(j)
            if head is None:
                continue
            width = max(header.sectionSize(j) - 10, 12)
            lines = [part for line in header_lines(name) for part in wrap_words(line, fm, width)]
            text = "\n".join(
                fm.elidedText(line, Qt.TextElideMode.ElideRight, width) for line in lines
            )
            if head.text() != text:
                head.setText(text)
                changed = True
        if changed:
            self._fit_height()

    #: Padding of a cell's text within its column (both sides together).
    CELL_PADDING = 14

    def _fit_width(self) -> None:
        """At least as wide as the row names and every value cell's widest line (the
        note, a sentence, may be shortened: its tool tip has it whole)."""
        fm = QFontMetrics(self.font())
        widest = 0
        for j in range(self.columnCount()):
            for i in range(len(METRICS) - 1):
                item = self.item(i, j)
                if item is not None and item.text():
                    lines = item.text().split("\n")
                    widest = max(widest, *(fm.horizontalAdvance(t) for t in lines))
        rows = self.verticalHeader()
        assert rows is not None  # a table widget always has one
        names = max(rows.sizeHint().width(), rows.width() if rows.isVisible() else 0)
        columns = self.columnCount() * (widest + self.CELL_PADDING)
        self.setMinimumWidth(names + columns + 2 * self.frameWidth() + 2)

    def selected_column(self) -> int | None:
        """The selected column, or None."""
        selection = self.selectionModel()
        assert selection is not None  # a table widget always has one
        cols = selection.selectedColumns()
        return cols[0].column() if cols else None

    def _fit_height(self) -> None:
        v = self.verticalHeader()
        assert v is not None  # a table widget always has one
        line = QFontMetrics(self.font()).lineSpacing()
        for i, name in enumerate(METRICS):
            two = name in ("CNR", "FWHM (px)", "Signal", "Background")
            v.resizeSection(i, (2 * line if two else line) + 8)
        header = self.horizontalHeader()
        assert header is not None
        head_h = max(header.sizeHint().height(), header.height() if header.isVisible() else 0)
        rows_h = sum(self.rowHeight(i) for i in range(self.rowCount()))
        self.setFixedHeight(head_h + rows_h + 2 * self.frameWidth() + 2)
