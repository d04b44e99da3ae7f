"""The Measure widget's plot: the edge profile with its erf fit, and the line spread
function with the FWHM marked (two stacked :class:`~napari_dfct.widgets._curves.CurvePlot`
panels over the same distance along the line, painted with QPainter)."""

from __future__ import annotations

import math

import numpy as np
from qtpy.QtWidgets import QVBoxLayout, QWidget

from .. import metrics
from ._curves import CurvePlot
from ._measure_table import WARN

__all__ = ["ProfilePlot"]

_COLORS = {
    "profile": "#9aa5b1",
    "fit": "#ff9f40",
    "lsf": "#4fa3ff",
    "gauss": "#ff9f40",
    "fwhm": "#5fd38d",
    "edge": "#c792ea",
}


class ProfilePlot(QWidget):
    """Edge profile with the erf fit (top) and the LSF with the FWHM marked (bottom): two
    stacked :class:`~napari_dfct.widgets._curves.CurvePlot` panels over the same distance.

    Both are painted with QPainter in the paint event Qt schedules (a few milliseconds),
    so they follow a drag of an ROI or the line live, like the table.
    """

    def __init__(self, theme: str = "dark", parent: QWidget | None = None):
        super().__init__(parent)
        self.esf = CurvePlot(
            ylabel="profile", log_y=False, integer_x=False, theme=theme, height=90, title_row=True
        )
        self.lsf = CurvePlot(
            xlabel="distance along the line (px)",
            ylabel="LSF",
            log_y=False,
            integer_x=False,
            theme=theme,
            height=90,
            title_row=True,
        )
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.esf, 1)
        lay.addWidget(self.lsf, 1)
        self._set_lines(*(np.zeros(0),) * 7)

    def _set_lines(self, x, profile, xf, fit, lsf, gauss, fwhm_x, fwhm_y=None) -> None:
        c = _COLORS
        self.esf.set_line("profile", x, profile, color=c["profile"], label="profile", line=False)
        self.esf.set_line("fit", xf, fit, color=c["fit"], label="erf fit", dots=False, width=1.6)
        self.lsf.set_line(
            "lsf", x, lsf, color=c["lsf"], label="d/dx smoothed", dots=False, width=1.2
        )
        self.lsf.set_line(
            "gauss", xf, gauss, color=c["gauss"], label="fit (Gaussian)", dots=False, width=1.4
        )
        self.lsf.set_line(
            "fwhm",
            fwhm_x,
            np.zeros(0) if fwhm_y is None else fwhm_y,
            color=c["fwhm"],
            label="FWHM",
            dots=False,
            width=2.2,
        )

    def show_result(self, title: str, res: metrics.FWHMResult | None, reason: str | None):
        self.esf.set_title(title)
        empty = np.zeros(0)
        if res is None or res.distance.size == 0:
            self._set_lines(*(empty,) * 7)
            self.esf.set_vline(None)
            self.lsf.set_title(_short(f"FWHM n/a: {reason}") if reason else "", WARN.name())
            self._redraw()
            return
        x = res.distance
        ok = res.reason is None
        # the fitted curves on a fine grid (sharp edges would look jagged at the samples)
        xf = np.linspace(x[0], x[-1], max(8 * x.size, 200)) if ok else empty
        sp = res.sigma_profile
        fit = metrics.erf_edge(xf, res.offset, res.amplitude, res.edge_position, sp)
        gauss = (
            (
                abs(res.amplitude)
                * math.sqrt(2 / math.pi)
                / sp
                * np.exp(-0.5 * ((xf - res.edge_position) / sp) ** 2)
            )
            if ok
            else empty
        )
        lsf = res.derivative if res.derivative.size else np.zeros_like(x)
        if ok:
            peak = float(np.max(gauss)) if gauss.size else 0.0
            half = res.sigma_profile * metrics.FWHM_PER_SIGMA / 2.0
            self._set_lines(
                x,
                res.profile,
                xf,
                fit,
                lsf,
                gauss,
                [res.edge_position - half, res.edge_position + half],
                [peak / 2.0, peak / 2.0],
            )
            self.esf.set_vline(res.edge_position, color=_COLORS["edge"])
            text = f"FWHM {res.fwhm:.2f} \u00b1 {res.fwhm_stderr:.2f} px"
            if not math.isnan(res.halfmax_fwhm):
                text += f"   (half-max check {res.halfmax_fwhm:.2f})"
            self.lsf.set_title(text)
        else:
            self._set_lines(x, res.profile, empty, empty, lsf, empty, empty)
            self.esf.set_vline(None)
            self.lsf.set_title(_short(f"FWHM n/a: {res.reason}"), WARN.name())
        self._redraw()

    def _redraw(self) -> None:
        self.esf.redraw()
        self.lsf.redraw()


def _short(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"
