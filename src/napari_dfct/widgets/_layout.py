"""Layout helpers that let the dock widgets share one screen.

Four docks stacked on a 1280 x 1024 screen get about 220 pixels each. Every widget
therefore puts its content into a vertical scroll area (:func:`scroll_body`), so the dock's
minimum height is that of the scroll area, never that of the full content, and the main
window never grows past the screen; less used parts fold away in a :class:`Section`.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFrame,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

__all__ = ["MIN_BODY_HEIGHT", "Section", "scroll_body"]

#: Smallest height of a widget's scroll area: enough for a few lines of its content.
MIN_BODY_HEIGHT = 120


def scroll_body(owner: QWidget, margins: int = 4) -> tuple[QWidget, QVBoxLayout]:
    """Fill ``owner`` with a vertical scroll area and return its content widget and layout.

    The content takes the whole dock when there is room and scrolls when there is not;
    it never scrolls sideways (it follows the dock's width).
    """
    outer = QVBoxLayout(owner)
    outer.setContentsMargins(0, 0, 0, 0)
    area = QScrollArea(owner)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setMinimumHeight(MIN_BODY_HEIGHT)
    area.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
    body = QWidget()
    body.setObjectName("dfct_body")
    layout = QVBoxLayout(body)
    layout.setContentsMargins(margins, margins, margins, margins)
    area.setWidget(body)
    outer.addWidget(area)
    owner.scroll_area = area  # type: ignore[attr-defined]  # the dock widget keeps it
    return body, layout


class Section(QWidget):
    """A titled part of a widget that folds away with a click on its title.

    Parameters
    ----------
    title : str
    content : QWidget
    expanded : bool
        Shown at first.
    """

    def __init__(
        self, title: str, content: QWidget, expanded: bool = True, parent: QWidget | None = None
    ):
        super().__init__(parent)
        self.content = content
        self.toggle = QToolButton(self)
        self.toggle.setText(title)
        self.toggle.setCheckable(True)
        self.toggle.setChecked(expanded)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.toggle.toggled.connect(self.set_expanded)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.toggle)
        layout.addWidget(content, 1)
        self.set_expanded(expanded)

    def set_expanded(self, expanded: bool) -> None:
        """Show or fold the content."""
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        if self.toggle.isChecked() != expanded:
            self.toggle.setChecked(expanded)
        self.content.setVisible(expanded)

    @property
    def expanded(self) -> bool:
        """Whether the content is shown."""
        return self.toggle.isChecked()
