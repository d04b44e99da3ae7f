"""Help in the five widgets, in a real viewer: a tooltip on every field and button, and a
Help button that opens the widget's section of the documentation (a local file)."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

KINDS = ("train", "predict", "measure", "weights", "reader")


def _widget(kind, viewer):
    from napari_dfct.widgets.measure import MeasureWidget
    from napari_dfct.widgets.predict import PredictWidget
    from napari_dfct.widgets.reader_study import ReaderStudyWidget
    from napari_dfct.widgets.train import TrainWidget
    from napari_dfct.widgets.weights import WeightsWidget

    cls = {
        "train": TrainWidget,
        "predict": PredictWidget,
        "measure": MeasureWidget,
        "weights": WeightsWidget,
        "reader": ReaderStudyWidget,
    }[kind]
    return cls(viewer)


def _inputs(root):
    """Every field and button under ``root`` that a user can operate (Qt's own parts of
    compound widgets, tab bars and tables left out)."""
    from qtpy.QtWidgets import (
        QAbstractButton,
        QAbstractItemView,
        QAbstractSpinBox,
        QComboBox,
        QLineEdit,
        QSlider,
        QTabBar,
        QWidget,
    )

    kinds = (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit, QSlider)
    parts = (QComboBox, QAbstractSpinBox, QTabBar, QAbstractItemView)
    return [
        w
        for w in root.findChildren(QWidget)
        if isinstance(w, kinds) and not isinstance(w.parentWidget(), parts)
    ]


def _tooltip(w, root) -> str:
    """The tooltip Qt shows for ``w``: its own, or its nearest ancestor's (a compound
    field such as a file picker carries it on its container)."""
    while w is not None:
        if w.toolTip().strip():
            return w.toolTip()
        if w is root:
            return ""
        w = w.parentWidget()
    return ""


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_and_button_has_a_tooltip(make_napari_viewer, kind):
    viewer = make_napari_viewer()
    widget = _widget(kind, viewer)
    inputs = _inputs(widget)
    assert len(inputs) >= 5  # the walk finds the form
    missing = [
        f"{type(w).__name__} {getattr(w, 'text', lambda: '')()!r}"
        for w in inputs
        if not _tooltip(w, widget)
    ]
    assert missing == [], missing


def _slugs(text: str) -> set[str]:
    """The anchors GitHub and Markdown viewers give the file's headings."""
    out = set()
    for line in text.splitlines():
        m = re.match(r"#+\s+(.*)", line)
        if m:
            title = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
            out.add(title.replace(" ", "-"))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_help_opens_the_widgets_docs_section(make_napari_viewer, qtbot, monkeypatch, kind):
    from qtpy.QtCore import Qt
    from qtpy.QtGui import QDesktopServices

    from napari_dfct.widgets import _help

    path, anchor = _help.help_target(kind)
    assert path.is_file(), path
    assert anchor in _slugs(path.read_text(encoding="utf-8")), (path.name, anchor)

    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    widget = _widget(kind, make_napari_viewer())
    qtbot.mouseClick(widget.help_button.native, Qt.MouseButton.LeftButton)
    assert len(opened) == 1
    url = opened[0]
    assert url.isLocalFile() and url.fragment() == anchor
    assert url.toLocalFile() == str(path)
