"""The four dock widgets together on a 1280 x 1024 and a 1920 x 1080 screen (run under
``xvfb-run -a``)."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

SCREEN = (1280, 1024)
SCREENS = [(1280, 1024), (1920, 1080)]
WIDGETS = ("Measure CNR / FWHM", "Loss amplification", "Train", "Predict")
#: Smallest usable dock height: the Train dock's run controls (about 90 px) and its Data
#: tab with the window histogram (about 400 px) without scrolling; with less, a widget
#: shows a few rows at a time (four docks stacked on 1280 x 1024 got 140-240 px each).
MIN_DOCK_HEIGHT = 480


def _dock_all(make_napari_viewer, qtbot, screen=SCREEN):
    """The sample and the four widgets docked (as the Plugins menu does) in a window of
    the screen's size. (A function, not a fixture: a fixture's cached value would keep
    the viewer alive past napari's leak check.)"""
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(*screen)
    viewer.open_sample("napari-dfct", "thorax")
    docks = {name: viewer.window.add_plugin_dock_widget("napari-dfct", name) for name in WIDGETS}
    # the docks join one tab group once shown in the window
    qtbot.waitUntil(
        lambda: all(window.tabifiedDockWidgets(dock) for dock, _ in docks.values()), timeout=5000
    )
    qtbot.wait(100)
    return viewer, window, docks


def _clipped(widget) -> list[str]:
    """What ``widget`` shows cut off: a one-line label narrower than its text, a wrapped
    label shorter than its lines, a combo box narrower than its current text, a label
    that reads its data as HTML, content wider than the scroll area."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QComboBox, QLabel

    found = []
    for label in widget.findChildren(QLabel):
        if not label.isVisible() or not label.text():
            continue
        if label.textFormat() == Qt.TextFormat.AutoText:
            found.append(f"label {label.text()[:30]!r} in automatic (HTML) format")
        if label.wordWrap():
            if label.heightForWidth(label.width()) > label.height() + 1:
                found.append(f"wrapped label {label.text()[:30]!r} too short")
        elif label.sizeHint().width() > label.width() + 1:
            found.append(f"label {label.text()[:30]!r}: {label.sizeHint().width()} px text")
    for combo in widget.findChildren(QComboBox):
        if combo.isVisible() and combo.currentText():
            need = combo.fontMetrics().horizontalAdvance(combo.currentText()) + 24
            if need > combo.width():
                found.append(f"combo {combo.currentText()!r}: {combo.width()} < {need} px")
    body, area = widget.scroll_area.widget(), widget.scroll_area
    if body.width() > area.viewport().width():
        found.append(f"content {body.width()} px wide in {area.viewport().width()} px")
    return found


def _row_labels(form):
    return [
        w._labeled_widget()._label_widget.native
        for w in form
        if w._labeled_widget() is not None and w.visible
    ]


@pytest.mark.parametrize("screen", SCREENS, ids=lambda s: f"{s[0]}x{s[1]}")
def test_four_docks_share_the_screen_readably(make_napari_viewer, qtbot, screen):
    viewer, window, docks = _dock_all(make_napari_viewer, qtbot, screen)
    assert window.width() <= screen[0] and window.height() <= screen[1]
    # one tab group: every dock gets the whole height of the dock area
    for name, (dock, _) in docks.items():
        others = {d.windowTitle() for d in window.tabifiedDockWidgets(dock)}
        assert len(others) == 3 and not dock.isFloating(), (name, others)
    heights = {}
    for name, (dock, widget) in docks.items():
        dock.raise_()
        qtbot.waitUntil(widget.isVisible, timeout=2000)
        qtbot.wait(50)
        heights[name] = dock.height()
        assert dock.height() >= MIN_DOCK_HEIGHT, (name, dock.height())
        assert _clipped(widget) == [], name
    print(f"\n[layout] {screen}: dock heights {heights}, dock width {dock.width()}")
    # the canvas keeps room to see the image
    assert viewer.window._qt_viewer.canvas.native.width() >= screen[0] // 3


def test_form_labels_are_aligned(make_napari_viewer, qtbot):
    _, _, docks = _dock_all(make_napari_viewer, qtbot)
    train = docks["Train"][1]
    forms = {
        "Loss amplification": [docks["Loss amplification"][1].form],
        "Predict": [docks["Predict"][1].form],
        "Train": [train.data_form, train.loss_form, train.params_form, train.output_form],
    }
    for name, dock_forms in forms.items():
        docks[name][0].raise_()
        for index, form in enumerate(dock_forms):
            if name == "Train":
                train.tabs.setCurrentIndex(index)
            qtbot.wait(30)
            labels = _row_labels(form)
            assert len(labels) >= 3, name
            # one width and one left edge per form: the fields start in one column
            assert len({label.width() for label in labels}) == 1, (name, index)
            assert (
                len({label.mapTo(form.native, label.rect().topLeft()).x() for label in labels})
                == 1
            )
            for label in labels:
                assert label.sizeHint().width() <= label.width(), (name, label.text())
            # every tab readable: no clipped text on any page
            assert _clipped(docks[name][1]) == [], (name, index)


def test_train_tabs_and_plot_fit_their_content(make_napari_viewer, qtbot):
    _, _, docks = _dock_all(make_napari_viewer, qtbot)
    dock, widget = docks["Train"]
    dock.raise_()
    qtbot.waitUntil(widget.isVisible, timeout=2000)
    widget.tabs.setCurrentIndex(0)  # Data: the fields and the window histogram
    qtbot.wait(100)
    viewport = widget.scroll_area.viewport()
    page = widget.data_form.native
    histogram = widget.data_panel.plot_box
    # the whole Data tab in view, histogram included: no scrolling inside the tab
    assert page.height() >= page.minimumSizeHint().height()
    assert histogram.isVisible() and histogram.height() >= histogram.minimumSizeHint().height()
    # the loss plot below it, in view, not stretched over the dock while empty
    bottom = widget.plot.mapTo(viewport, widget.plot.rect().bottomLeft()).y()
    assert bottom <= viewport.height(), (bottom, viewport.height())
    assert widget.plot.height() <= widget.PLOT_MAX_HEIGHT
    # a short tab does not keep the height of the longest one
    widget.tabs.setCurrentIndex(3)  # Output: three rows
    qtbot.wait(100)
    short = widget.tabs.height()
    widget.tabs.setCurrentIndex(2)  # Training: every option
    qtbot.wait(100)
    assert widget.tabs.height() > short + 100


def test_measure_headers_cells_and_notes_are_readable(make_napari_viewer, qtbot):
    from qtpy.QtCore import Qt

    viewer, _, docks = _dock_all(make_napari_viewer, qtbot)
    dock, widget = docks["Measure CNR / FWHM"]
    dock.raise_()
    widget.refresh()
    widget.set_measured("A_S", True)  # four columns
    qtbot.waitUntil(lambda: len(widget.rows) == 4, timeout=3000)
    qtbot.wait(100)
    table = widget.table
    fm = table.fontMetrics()
    for j in range(table.columnCount()):
        head = table.horizontalHeaderItem(j)
        assert "\u2026" not in head.text(), head.text()  # wrapped, not elided
        for i in range(table.rowCount() - 1):  # the note row may elide (tool tip)
            lines = table.item(i, j).text().split("\n")
            width = max(fm.horizontalAdvance(t) for t in lines)
            assert width <= table.columnWidth(j) - 6, (i, j, lines, table.columnWidth(j))
    assert _clipped(widget) == []
    # a note with "<" is shown as written (plain text), not read as HTML
    assert widget.detail.textFormat() == Qt.TextFormat.PlainText


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
