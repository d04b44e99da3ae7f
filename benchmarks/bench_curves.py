"""The Train widget's loss-curve plot: one repaint with QPainter (``CurvePlot``) against a
matplotlib figure (``PlotCanvas``, Agg) showing the same two curves, from the same run.

Both are 400x220 widgets with 40 epochs of training and validation loss on a log axis
and a legend; the matplotlib figure is re-rendered (``draw``) and repainted, as a live
update needs. Run under a display (``xvfb-run -a`` on a headless machine)::

    xvfb-run -a python benchmarks/bench_curves.py
"""

from __future__ import annotations

import sys
import time

import numpy as np


def _time(fn, n: int) -> tuple[float, float]:
    fn()  # warm-up
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(1000.0 * (time.perf_counter() - t))
    return float(np.median(ts)), float(np.max(ts))


def main() -> int:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from napari_dfct.widgets._curves import CurvePlot
    from napari_dfct.widgets._plot import PlotCanvas

    x = np.arange(1, 41)
    ours = CurvePlot(xlabel="epoch", ylabel="loss")
    ours.resize(400, 220)
    ours.show()
    ours.set_line("train", x, 1 / x, color="#4fa3ff", label="training")
    ours.set_line("val", x, 1.2 / x, color="#ff9f40", label="validation")
    ours.set_marker(40, 1.2 / 40)
    base = PlotCanvas(xlabel="epoch", ylabel="loss", height=2.2, integer_x=True)
    base.set_yscale("log")
    base.resize(400, 220)
    base.show()
    base.set_line("train", x, 1 / x, label="training", marker=".")
    base.set_line("val", x, 1.2 / x, label="validation", marker=".")
    base.legend()
    app.processEvents()

    def redraw_base():
        base.ax.relim()
        base.ax.autoscale_view()
        base.canvas.draw()
        base.canvas.repaint()

    m_ours, x_ours = _time(ours.repaint, 50)
    m_base, x_base = _time(redraw_base, 20)
    print(f"QPainter CurvePlot:   median {m_ours:6.2f} ms, max {x_ours:6.2f} ms per update")
    print(f"matplotlib PlotCanvas: median {m_base:6.2f} ms, max {x_base:6.2f} ms per update")
    print(f"ratio {m_base / m_ours:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
