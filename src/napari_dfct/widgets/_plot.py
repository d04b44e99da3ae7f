"""A small embedded matplotlib line plot for dock widgets.

:class:`PlotCanvas` wraps a :class:`matplotlib.figure.Figure` in a
``FigureCanvasQTAgg`` (never pyplot, so no global figure state and no extra windows).
Lines are addressed by a key and updated in place, which keeps live plots (a loss curve
growing every epoch) cheap: only ``set_data`` and a deferred ``draw_idle``.

The colours follow a napari theme (``"dark"`` by default) so the plot sits well in a dock.

Examples
--------
>>> plot = PlotCanvas(xlabel="epoch", ylabel="loss")  # doctest: +SKIP
>>> plot.set_line("train", [1, 2, 3], [0.3, 0.2, 0.15], label="training")  # doctest: +SKIP
>>> plot.redraw()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

__all__ = ["PlotCanvas", "theme_colors"]

#: Line colours that read well on both dark and light napari themes.
PALETTE = ("#4fa3ff", "#ff9f40", "#5fd38d", "#f0637a", "#c792ea", "#ffd166")


def theme_colors(theme: str = "dark") -> dict[str, str]:
    """Return background, axes and text colours (hex) for a napari theme name.

    Falls back to a neutral dark scheme when napari's theme registry is unavailable.
    """
    colors = {"background": "#23242b", "axes": "#2e333e", "text": "#f0f1f2", "grid": "#565f6c"}
    try:
        from napari.utils.theme import get_theme

        t = get_theme(theme)
        colors = {
            "background": t.background.as_hex(),
            "axes": t.foreground.as_hex(),
            "text": t.text.as_hex(),
            "grid": t.secondary.as_hex(),
        }
    except Exception:  # noqa: BLE001 - unknown theme name or old napari: keep defaults
        pass
    return colors


class PlotCanvas(QWidget):
    """An embedded matplotlib figure with one or more axes and keyed lines.

    Parameters
    ----------
    parent : QWidget, optional
        Qt parent.
    ncols : int
        Number of side-by-side axes.
    xlabel, ylabel, title : str or sequence of str
        Axis labels and titles, one per axes (a single string applies to all).
    height : float
        Figure height in inches (the width follows the dock).
    theme : str
        napari theme name for the colours.
    integer_x : bool
        Put x ticks on integers only (epochs, slice indices).
    """

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        ncols: int = 1,
        xlabel: str | Sequence[str] = "",
        ylabel: str | Sequence[str] = "",
        title: str | Sequence[str] = "",
        height: float = 2.4,
        theme: str = "dark",
        integer_x: bool = False,
    ) -> None:
        super().__init__(parent)
        self._colors = theme_colors(theme)
        # Fixed margins (in inches, see _apply_margins) instead of a layout engine: a
        # constrained layout costs more than the drawing itself on every live update.
        self.figure = Figure(figsize=(4.0, height), dpi=100)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.canvas.setMinimumHeight(int(height * 72))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        axes = self.figure.subplots(1, ncols, squeeze=False)[0]
        self.axes: list[Axes] = list(axes)
        self._lines: dict[tuple[int, str], Line2D] = {}
        self._markers: dict[tuple[int, str], Line2D] = {}
        self._figure_legend: Any = None
        self._figure_legend_axes: int | None = None
        self._figure_legend_ncol = 0
        self._labels = {
            "xlabel": _per_axes(xlabel, ncols),
            "ylabel": _per_axes(ylabel, ncols),
            "title": _per_axes(title, ncols),
        }
        if integer_x:
            for ax in self.axes:
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        self._style()
        self._apply_margins()
        # keep the margins fixed in inches when the dock is resized
        self.canvas.mpl_connect("resize_event", lambda _event: self._on_resize())

    # ------------------------------------------------------------------ styling
    @property
    def ax(self) -> Axes:
        """The first (often only) axes."""
        return self.axes[0]

    def set_theme(self, theme: str) -> None:
        """Re-colour the figure for a napari theme name and redraw."""
        self._colors = theme_colors(theme)
        self._style()
        self.redraw()

    #: Margins around the axes in inches (left, right, bottom, top) and between axes.
    MARGINS = (0.62, 0.15, 0.45, 0.32)
    WSPACE = 0.55
    #: Height of one row of a figure legend (:meth:`figure_legend`) in inches.
    LEGEND_ROW = 0.2
    #: Width of one entry of a figure legend in inches (handle, label and spacing).
    LEGEND_ENTRY = 0.95

    def _on_resize(self) -> None:
        if self._figure_legend is not None and self._figure_legend_ncol != (
            self._figure_legend_cols()
        ):
            self._build_figure_legend()
        self._apply_margins()

    def _apply_margins(self) -> None:
        w, h = self.figure.get_size_inches()
        if w <= 0 or h <= 0:
            return
        left, right, bottom, top = self.MARGINS
        bottom += self._figure_legend_rows() * self.LEGEND_ROW
        n = len(self.axes)
        frac_w = max(w - left - right - (n - 1) * self.WSPACE, 0.5)
        self.figure.subplots_adjust(
            left=min(left / w, 0.4),
            right=max(1 - right / w, 0.6),
            bottom=min(bottom / h, 0.45),
            top=max(1 - top / h, 0.55),
            wspace=(self.WSPACE * n / frac_w) if n > 1 else 0.2,
        )

    def _style(self) -> None:
        c = self._colors
        self.figure.set_facecolor(c["background"])
        for i, ax in enumerate(self.axes):
            ax.set_facecolor(c["axes"])
            for spine in ax.spines.values():
                spine.set_color(c["grid"])
            ax.tick_params(colors=c["text"], labelsize=7)
            ax.grid(True, color=c["grid"], alpha=0.35, linewidth=0.6)
            ax.set_xlabel(self._labels["xlabel"][i], color=c["text"], fontsize=8)
            ax.set_ylabel(self._labels["ylabel"][i], color=c["text"], fontsize=8)
            ax.set_title(self._labels["title"][i], color=c["text"], fontsize=8)
            legend = ax.get_legend()
            if legend is not None:
                self._style_legend(legend)
        if self._figure_legend is not None:
            self._style_legend(self._figure_legend)

    def _style_legend(self, legend) -> None:
        c = self._colors
        legend.get_frame().set_facecolor(c["axes"])
        legend.get_frame().set_edgecolor(c["grid"])
        for text in legend.get_texts():
            text.set_color(c["text"])

    # ------------------------------------------------------------------ content
    def set_line(
        self,
        key: str,
        x: Sequence[float] | np.ndarray,
        y: Sequence[float] | np.ndarray,
        *,
        axes: int = 0,
        **style,
    ) -> Line2D:
        """Create or update the line ``key`` on axes number ``axes``.

        Style keywords (``color``, ``label``, ``linestyle``, ``linewidth``, ``marker``...)
        apply on creation and on every update.
        """
        ax = self.axes[axes]
        line = self._lines.get((axes, key))
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        if line is None:
            style.setdefault("color", PALETTE[len(ax.lines) % len(PALETTE)])
            style.setdefault("linewidth", 1.4)
            (line,) = ax.plot(x, y, **style)
            self._lines[(axes, key)] = line
        else:
            line.set_data(x, y)
            if style:
                line.set(**style)
        return line

    def set_marker(
        self, key: str, x: float | None, y: float | None, *, axes: int = 0, **style
    ) -> None:
        """Show a single marker (e.g. the best epoch) or hide it when ``x`` is None."""
        ax = self.axes[axes]
        mk = self._markers.get((axes, key))
        if mk is None:
            style.setdefault("marker", "o")
            style.setdefault("linestyle", "none")
            style.setdefault("color", self._colors["text"])
            (mk,) = ax.plot([], [], **style)
            self._markers[(axes, key)] = mk
        elif style:
            mk.set(**style)
        if x is None or y is None:
            mk.set_data([], [])
        else:
            mk.set_data([x], [y])

    def line(self, key: str, axes: int = 0) -> Line2D | None:
        """Return the line ``key`` (None if absent)."""
        return self._lines.get((axes, key))

    def clear(self) -> None:
        """Remove all lines, markers and legends (labels and styling are kept)."""
        for artist in (*self._lines.values(), *self._markers.values()):
            artist.remove()
        self._lines.clear()
        self._markers.clear()
        for ax in self.axes:
            legend = ax.get_legend()
            if legend is not None:
                legend.remove()
        self.figure_legend(None)
        self.redraw()

    def set_labels(
        self,
        *,
        axes: int = 0,
        xlabel: str | None = None,
        ylabel: str | None = None,
        title: str | None = None,
    ) -> None:
        """Change an axes' labels or title."""
        for name, value in (("xlabel", xlabel), ("ylabel", ylabel), ("title", title)):
            if value is not None:
                self._labels[name][axes] = value
        self._style()

    def set_title(self, title: str, axes: int = 0) -> None:
        """Change one axes' title only (cheaper than :meth:`set_labels` in live updates)."""
        self._labels["title"][axes] = title
        self.axes[axes].set_title(title, color=self._colors["text"], fontsize=8)

    def set_yscale(self, scale: str, axes: int = 0) -> None:
        """Set ``"linear"`` or ``"log"`` y scale on one axes.

        Log axes get ticks at 1, 2 and 5 per decade labelled as plain numbers (no
        mathtext, which is slow to render on every live update).
        """
        ax = self.axes[axes]
        ax.set_yscale(scale)
        if scale == "log":
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.3g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())

    def legend(self, axes: int = 0, **kwargs) -> None:
        """(Re)draw the legend of one axes from the labelled lines."""
        ax = self.axes[axes]
        kwargs.setdefault("fontsize", 7)
        kwargs.setdefault("loc", "best")
        kwargs.setdefault("framealpha", 0.8)
        handles = [h for h in ax.get_lines() if not str(h.get_label()).startswith("_")]
        if handles:
            self._style_legend(ax.legend(handles=handles, **kwargs))

    def figure_legend(self, axes: int | None = 0) -> None:
        """(Re)draw the labelled lines of one axes as a legend under all axes, outside
        the data, so that it hides no curve; ``None`` removes it.

        The bottom margin grows by one :data:`LEGEND_ROW` per row of the legend; the
        entries wrap into as many rows as the figure's width needs (redone on resize).
        """
        self._figure_legend_axes = axes
        self._build_figure_legend()
        self._apply_margins()

    def _figure_legend_handles(self) -> list[Line2D]:
        if self._figure_legend_axes is None:
            return []
        ax = self.axes[self._figure_legend_axes]
        return [h for h in ax.get_lines() if not str(h.get_label()).startswith("_")]

    def _figure_legend_cols(self) -> int:
        n = len(self._figure_legend_handles())
        width = float(self.figure.get_size_inches()[0])
        return max(1, min(n, int(width // self.LEGEND_ENTRY)))

    def _figure_legend_rows(self) -> int:
        n = len(self._figure_legend_handles())
        return 0 if n == 0 else -(-n // self._figure_legend_cols())

    def _build_figure_legend(self) -> None:
        if self._figure_legend is not None:
            self._figure_legend.remove()
            self._figure_legend = None
        handles = self._figure_legend_handles()
        if not handles:
            return
        self._figure_legend_ncol = self._figure_legend_cols()
        self._figure_legend = self.figure.legend(
            handles=handles,
            loc="lower center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=self._figure_legend_ncol,
            fontsize=7,
            frameon=False,
            handlelength=1.6,
            columnspacing=1.0,
            borderaxespad=0.2,
        )
        self._style_legend(self._figure_legend)

    def redraw(self) -> None:
        """Rescale the axes to their data and schedule a repaint."""
        for ax in self.axes:
            ax.relim()
            ax.autoscale_view()
        self.canvas.draw_idle()


def _per_axes(value: str | Sequence[str], n: int) -> list[str]:
    if isinstance(value, str):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise ValueError(f"expected {n} labels, got {len(values)}")
    return values
