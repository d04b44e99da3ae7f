"""The Measure widget's plot: the edge profile with its erf fit, and the line spread
function with the FWHM marked (two stacked :class:`~napari_dfct.widgets._plot.PlotCanvas`
panels over the same distance along the line)."""

from __future__ import annotations

import math

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QVBoxLayout, QWidget

from .. import metrics
from ._measure_table import WARN
from ._plot import PlotCanvas, theme_colors

__all__ = ["ProfilePlot"]

_COLORS = {"profile": "#9aa5b1", "fit": "#ff9f40", "lsf": "#4fa3ff", "gauss": "#ff9f40",
           "fwhm": "#5fd38d", "edge": "#c792ea"}


class ProfilePlot(QWidget):
    """Edge profile with the erf fit (top) and the LSF with the FWHM marked (bottom): two
    stacked :class:`~napari_dfct.widgets._plot.PlotCanvas` panels over the same distance.

    The lines take new data at once; the figure is rendered once the data have rested
    for :attr:`REST_MS` (a drag of an ROI or the line updates the table live, and the
    35-55 ms of Agg rendering run once when the drag pauses, not on every step).
    """

    REST_MS = 150

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
        self._draw_timer = QTimer(self)
        self._draw_timer.setSingleShot(True)
        self._draw_timer.setInterval(self.REST_MS)
        self._draw_timer.timeout.connect(self.draw_now)

    def _redraw(self) -> None:
        self._draw_timer.start()  # restarted by every change: drawn once they rest

    def draw_now(self) -> None:
        """Render both panels now (pending changes included)."""
        self._draw_timer.stop()
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
            self.note.set_color(WARN.name())
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
            self.note.set_color(WARN.name())
        self._redraw()


def _short(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"
