"""The four dock widgets together on a 1280 x 1024 screen (run under ``xvfb-run -a``)."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

SCREEN = (1280, 1024)
WIDGETS = ("Measure CNR / FWHM", "Loss amplification", "Train", "Predict")


def _dock_all(make_napari_viewer, qtbot):
    """The sample and the four widgets docked (as the Plugins menu does) in a window of
    the screen's size. (A function, not a fixture: a fixture's cached value would keep
    the viewer alive past napari's leak check.)"""
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(*SCREEN)
    viewer.open_sample("napari-dfct", "thorax")
    docks = {name: viewer.window.add_plugin_dock_widget("napari-dfct", name) for name in WIDGETS}
    qtbot.wait(300)
    return viewer, window, docks


def test_four_widgets_fit_a_1280x1024_screen(make_napari_viewer, qtbot):
    viewer, window, docks = _dock_all(make_napari_viewer, qtbot)
    minimum = {name: dock.minimumSizeHint().height() for name, (dock, _) in docks.items()}
    report = ", ".join(f"{name} {h}" for name, h in minimum.items())
    print(f"\n[layout] minimum heights: {report}; window {window.width()}x{window.height()}")
    # the window did not grow past the screen
    assert window.width() <= SCREEN[0] and window.height() <= SCREEN[1], report
    # stacked one above the other, the four docks fit between menu bar and status bar
    usable = SCREEN[1] - window.menuBar().height() - window.statusBar().height()
    assert sum(minimum.values()) <= usable, report
    for name, (dock, _) in docks.items():
        assert dock.isVisible() and not dock.isFloating(), name
        assert dock.height() >= 120, (name, dock.height())
    # the canvas keeps room to see the image
    assert viewer.window._qt_viewer.canvas.native.width() >= SCREEN[0] // 3


def test_measure_table_shows_every_metric_of_the_measured_images(make_napari_viewer, qtbot):
    viewer, _, docks = _dock_all(make_napari_viewer, qtbot)
    widget = docks["Measure CNR / FWHM"][1]
    widget.refresh()
    images = ["input (1 rotation)", "target (20 rotations)", "truth"]
    # the loss amplification maps are in the viewer, but not measured unless chosen
    assert "A_S" in viewer.layers
    assert [row.layer for row in widget.rows] == images
    table = widget.table
    assert [table.horizontalHeaderItem(i).toolTip() for i in range(table.columnCount())] == images
    metrics = [table.verticalHeaderItem(i).text() for i in range(table.rowCount())]
    assert metrics[:2] == ["CNR", "FWHM (px)"] and "PSNR (dB)" in metrics
    assert "SSIM" in metrics and "Note" in metrics
    # every metric of every image is visible: no scrolling inside the table
    assert table.horizontalScrollBar().maximum() == 0
    assert table.verticalScrollBar().maximum() == 0
    for i in range(table.rowCount()):
        assert table.rowViewportPosition(i) + table.rowHeight(i) <= table.viewport().height()
    # a map is measured on request
    widget.set_measured("A_S", True)
    qtbot.waitUntil(lambda: "A_S" in [row.layer for row in widget.rows], timeout=3000)
    assert table.horizontalScrollBar().maximum() == 0
    widget.set_measured("A_S", False)
    qtbot.waitUntil(lambda: [row.layer for row in widget.rows] == images, timeout=3000)
