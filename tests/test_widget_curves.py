"""The Train widget's loss-curve plot (QPainter): ticks, geometry and what is painted."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("qtpy.QtWidgets", reason="the plot is a Qt widget")

from napari_dfct.widgets._curves import CurvePlot, linear_ticks, log_ticks


def test_log_ticks_are_1_2_5_per_decade_within_the_range():
    assert log_ticks(1e-3, 1e-2) == pytest.approx([1e-3, 2e-3, 5e-3, 1e-2])
    # under half a decade: every integer multiple, so the axis has labels to read
    assert log_ticks(1.7e-3, 7.2e-3) == pytest.approx([2e-3, 3e-3, 4e-3, 5e-3, 6e-3, 7e-3])
    many = log_ticks(1e-8, 1.0)  # too many 1-2-5 ticks: powers of ten only
    assert len(many) <= 6 and all(abs(math.log10(v) - round(math.log10(v))) < 1e-9 for v in many)
    assert log_ticks(0.0, 1.0) == [] and log_ticks(2.0, 1.0) == []


def test_linear_ticks_are_round_and_inside():
    assert linear_ticks(0.0, 10.0) == pytest.approx([0, 2, 4, 6, 8, 10])
    t = linear_ticks(0.6, 14.4)
    assert t == pytest.approx([2, 4, 6, 8, 10, 12, 14])
    assert linear_ticks(3.0, 3.0) == [3.0]


@pytest.fixture
def plot(qtbot):
    w = CurvePlot(xlabel="epoch", ylabel="loss")
    qtbot.addWidget(w)
    w.resize(320, 170)
    w.grab()  # laid out at its size before geometry is asked
    return w


def _rgb(image, pt):
    c = image.pixelColor(int(round(pt.x())), int(round(pt.y())))
    return c.red(), c.green(), c.blue()


@pytest.mark.gui
def test_curves_and_the_marker_are_painted_where_the_data_map(plot):
    x = np.arange(1, 11)
    plot.set_line("val", x, 1.0 / x, color="#ff0000", label="validation", dots=False)
    plot.set_marker(10, 0.1, color="#00ff00")
    assert plot.to_pixel(1.0, -1.0) is None  # a log axis cannot show it
    # the data span the plot area: first and last point near its corners
    area = plot.plot_rect()
    first, last = plot.to_pixel(1, 1.0), plot.to_pixel(10, 0.1)
    assert area.contains(first) and area.contains(last)
    assert first.x() < area.left() + 0.1 * area.width()
    assert last.x() > area.right() - 0.1 * area.width()
    assert first.y() < last.y()  # larger loss higher up
    image = plot.grab().toImage()
    assert _rgb(image, last) == (0, 255, 0)  # the star on top of the curve
    # the curve passes through its data points (a point that is not the marker)
    mid = plot.to_pixel(4, 0.25)
    r, g, b = _rgb(image, mid)
    assert r > 200 and g < 80 and b < 80
    # the background of the plot area elsewhere is not the curve's colour
    corner = area.topRight()
    corner.setX(corner.x() - 3)
    corner.setY(corner.y() + 3)
    assert _rgb(image, corner) != _rgb(image, mid)


@pytest.mark.gui
def test_legend_lies_above_the_plot_area_and_clear_empties(plot):
    plot.set_line("a", [1, 2], [1.0, 2.0], color="#4fa3ff", label="training")
    plot.set_line("b", [1, 2], [2.0, 3.0], color="#ff9f40", label="validation")
    assert plot.legend_rect().bottom() <= plot.plot_rect().top()
    assert plot.line("a")[1].tolist() == [1.0, 2.0]
    plot.grab()  # paints without error
    plot.clear()
    assert plot.line("a") is None and plot.marker is None
    assert plot.to_pixel(1, 1.0) is None
    plot.grab()  # an empty plot paints too


@pytest.mark.gui
def test_a_linear_axis_shows_non_positive_values(plot):
    plot.log_y = False
    plot.set_line("d", [0, 1, 2], [-1.0, 0.0, 1.0], color="#ffffff")
    lo, hi = plot.to_pixel(0, -1.0), plot.to_pixel(2, 1.0)
    assert plot.plot_rect().contains(lo) and plot.plot_rect().contains(hi)
    assert lo.y() > hi.y()


@pytest.mark.gui
def test_dots_without_a_line_a_dashed_marker_line_and_the_title_row(qtbot):
    w = CurvePlot(log_y=False, integer_x=False, title_row=True)
    qtbot.addWidget(w)
    w.resize(320, 170)
    w.grab()
    plain = CurvePlot(log_y=False, integer_x=False)
    plain.resize(320, 170)
    # the title's row lies above the legend, which still lies above the plot area
    assert w.plot_rect().top() == plain.plot_rect().top() + CurvePlot.TITLE_HEIGHT
    assert w.legend_rect().top() >= CurvePlot.TITLE_HEIGHT
    assert w.legend_rect().bottom() <= w.plot_rect().top()
    w.set_line("p", [0.0, 10.0], [0.0, 10.0], color="#ff0000", line=False)
    w.set_vline(2.5, color="#00ff00")
    w.set_title("edge", color="#ffffff")
    assert w.vline == 2.5 and w.title == "edge"
    image = w.grab().toImage()
    assert _rgb(image, w.to_pixel(0.0, 0.0))[0] > 200  # the dots are painted
    r, g, b = _rgb(image, w.to_pixel(5.0, 5.0))  # no line joins them
    assert r < 100

    def column(image):  # the pixels the 1-px vertical line at x = 2.5 covers most
        return [
            image.pixelColor(int(w.to_pixel(2.5, y).x()), int(w.to_pixel(2.5, y).y())).getRgb()[:3]
            for y in np.linspace(0.5, 9.5, 40)
        ]

    on_line = column(image)
    assert any(g > 200 and r < 100 for r, g, b in on_line)  # dashed: some, not all
    assert not all(g > 200 and r < 100 for r, g, b in on_line)
    w.set_vline(None)
    assert w.vline is None
    image = w.grab().toImage()
    assert all(g < 150 for r, g, b in column(image))
