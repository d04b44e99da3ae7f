"""Layout helpers that let the dock widgets share one screen.

Four docks stacked on a 1280 x 1024 screen get about 220 pixels each, too little for any
of them. The widgets' docks are therefore tabified: a dock added next to another
napari-dfct dock joins its tab group (:func:`settle`), so each widget gets the whole
height of the window and the user switches with the tabs (or drags a tab out).

Every widget puts its content into a vertical scroll area (:func:`scroll_body`), so the
dock's minimum height is that of the scroll area, never that of the full content, and the
main window never grows past the screen; the scroll area is at least as wide as the
content's minimum width, so nothing is cut off on the right. :func:`settle` also aligns a
form's labels to one width, lets combo boxes shrink to a few characters, word-wraps value
labels and shows data as plain text (a ``<`` is never read as HTML).
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, QSize, Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDockWidget,
    QFrame,
    QLabel,
    QMainWindow,
    QScrollArea,
    QSizePolicy,
    QStyle,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

__all__ = [
    "BODY_NAME",
    "COMBO_MIN_CHARS",
    "MIN_BODY_HEIGHT",
    "Section",
    "align_labels",
    "fit_fields",
    "scroll_body",
    "settle",
    "tab_pages",
    "tabify_with_siblings",
]

#: Object name of a widget's scrolled content: it marks a napari-dfct dock.
BODY_NAME = "dfct_body"
#: Space between a tab page's rows (tight: the longest page fits a 1280 x 1024 screen).
FORM_SPACING = 2
#: Width a form fits in a dock of napari's default width (check boxes indent within it).
FORM_WIDTH = 380
#: Characters a combo box keeps when its dock is narrow (it shows the rest when wider).
COMBO_MIN_CHARS = 12

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
    body.setObjectName(BODY_NAME)
    layout = QVBoxLayout(body)
    layout.setContentsMargins(margins, margins, margins, margins)
    area.setWidget(body)
    outer.addWidget(area)
    owner.scroll_area = area  # type: ignore[attr-defined]  # the dock widget keeps it
    owner._dfct_width = _FollowWidth(area, body)  # type: ignore[attr-defined]
    return body, layout


class _FollowWidth(QObject):
    """Keeps a scroll area at least as wide as its content's minimum width (plus the
    vertical scroll bar), so a dock is never narrower than what it must show."""

    def __init__(self, area: QScrollArea, body: QWidget):
        super().__init__(area)
        self._area, self._body = area, body
        body.installEventFilter(self)
        self.update()

    def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
        if event.type() in (QEvent.Type.LayoutRequest, QEvent.Type.Show):
            self.update()
        return False

    def update(self) -> None:
        style = self._area.style()
        bar = style.pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent) if style else 16
        width = self._body.minimumSizeHint().width() + bar + 2
        if self._area.minimumWidth() != width:
            self._area.setMinimumWidth(width)


class _Page(QWidget):
    """A tab page that claims room only while it is the current tab (Qt's stacked layout
    otherwise makes every tab as tall as the tallest page)."""

    def __init__(self, content: QWidget):
        super().__init__()
        self.active = True
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(content)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return super().sizeHint() if self.active else QSize(0, 0)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        return super().minimumSizeHint() if self.active else QSize(0, 0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt's name
        return self.active and super().hasHeightForWidth()

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt's name
        return super().heightForWidth(width) if self.active else 0


def tab_pages(pages, titles) -> QTabWidget:
    """A tab widget of ``pages`` (magicgui containers or widgets), rows at the top.

    The pages do not scroll on their own: the tab widget is as tall as its current page
    and the widget's scroll area (:func:`scroll_body`) scrolls the whole, so there is
    never a scroll area inside a scroll area, nor an empty page as tall as the longest.
    """
    tabs = QTabWidget()
    wrapped = []
    for page, title in zip(pages, titles, strict=True):
        native = getattr(page, "native", page)
        page_layout = native.layout()
        page_layout.setContentsMargins(6, 4, 6, 4)
        page_layout.setSpacing(FORM_SPACING)
        if hasattr(page_layout, "addStretch"):
            page_layout.addStretch(1)  # rows at the top, not spread over the page
        wrapped.append(_Page(native))
        tabs.addTab(wrapped[-1], title)

    def on_current(index: int) -> None:
        for i, page in enumerate(wrapped):
            page.active = i == index
            page.updateGeometry()
        tabs.updateGeometry()

    tabs.currentChanged.connect(on_current)
    on_current(tabs.currentIndex())
    return tabs


def align_labels(container) -> int:
    """Give every row label of a magicgui ``container`` the width of the widest one, as
    drawn in the label's own (styled) font; return that width."""
    labels = []
    for w in container:
        labeled = w._labeled_widget() if hasattr(w, "_labeled_widget") else None
        if labeled is not None:
            labels.append(labeled._label_widget.native)
    if not labels:
        return 0
    for label in labels:
        label.ensurePolished()
    width = max(label.sizeHint().width() for label in labels)
    for label in labels:
        label.setFixedWidth(width)
        label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
    # check boxes (no row label) start in the fields' column, when all of the form's do
    # within a dock's default width (else all stay at the left edge)
    row = labels[0].parentWidget().layout()
    indent = width + (row.spacing() if row is not None else 6)
    boxes = [w.native for w in container if isinstance(w.native, QCheckBox)]
    fits = all(indent + box.sizeHint().width() <= FORM_WIDTH for box in boxes)
    for box in boxes:
        box.setStyleSheet(f"QCheckBox {{ margin-left: {indent}px; }}" if fits else "")
    return width


def fit_fields(root: QWidget, row_labels=()) -> None:
    """Let ``root``'s combo boxes shrink to :data:`COMBO_MIN_CHARS` characters, and its
    other labels wrap their words; labels left in Qt's automatic format show plain text
    (a label meant as rich text sets that format itself)."""
    row_labels = set(row_labels)
    for combo in root.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(COMBO_MIN_CHARS)
    for label in root.findChildren(QLabel):
        if label.textFormat() == Qt.TextFormat.AutoText:
            label.setTextFormat(Qt.TextFormat.PlainText)
        pixmap = label.pixmap()
        if label not in row_labels and (pixmap is None or pixmap.isNull()):
            label.setWordWrap(True)
            # narrower than its one-line width and as tall as its lines at its width
            # (magicgui's fixed policy would cut the lines off at the top and bottom)
            policy = QSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
            policy.setHeightForWidth(True)
            label.setSizePolicy(policy)


def _dock_of(widget: QWidget) -> tuple[QDockWidget | None, QMainWindow | None]:
    dock, w = None, widget.parentWidget()
    while w is not None:
        if dock is None and isinstance(w, QDockWidget):
            dock = w
        if isinstance(w, QMainWindow):
            return dock, w
        w = w.parentWidget()
    return dock, None


def tabify_with_siblings(widget: QWidget) -> bool:
    """Put ``widget``'s dock, and any other napari-dfct dock of the same area not yet
    arranged, into one tab group (each dock once: a dock the user moves stays where it is
    put), raising ``widget``'s dock; False when it has no sibling or is not docked."""
    dock, window = _dock_of(widget)
    if dock is None or window is None or dock.isFloating() or dock.property("dfct_tabified"):
        return False
    area = window.dockWidgetArea(dock)
    docks = [
        d
        for d in window.findChildren(QDockWidget)
        if not d.isFloating()
        and window.dockWidgetArea(d) == area
        and d.findChild(QWidget, BODY_NAME) is not None
    ]
    if len(docks) < 2:
        return False
    # the group the docks already form, else the first dock's place
    grouped = [d for d in docks if d is not dock and window.tabifiedDockWidgets(d)]
    anchor = grouped[0] if grouped else next(d for d in docks if d is not dock)
    try:
        for d in docks:
            if d is not anchor and not d.property("dfct_tabified"):
                window.tabifyDockWidget(anchor, d)
                d.setProperty("dfct_tabified", True)
        anchor.setProperty("dfct_tabified", True)
        dock.show()
        dock.raise_()
    except RuntimeError:  # a dock deleted meanwhile: leave the rest where napari put it
        return False
    return True


class _Settle(QObject):
    """At each show: align the forms' labels, fit the fields, and (once the dock is in
    the main window) tabify the dock with the other napari-dfct docks."""

    def __init__(self, owner: QWidget, forms):
        super().__init__(owner)
        self._owner, self._forms = owner, tuple(forms)
        owner.installEventFilter(self)
        self.apply()

    def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Show:
            self.apply()
            QTimer.singleShot(0, self._tabify)
        return False

    def _tabify(self) -> None:
        try:
            tabify_with_siblings(self._owner)
        except RuntimeError:  # the widget was deleted before the timer fired
            pass

    def apply(self) -> None:
        rows = []
        for form in self._forms:
            align_labels(form)
            rows += [
                w._labeled_widget()._label_widget.native
                for w in form
                if hasattr(w, "_labeled_widget") and w._labeled_widget() is not None
            ]
        fit_fields(self._owner, rows)


def settle(owner: QWidget, *forms) -> None:
    """Align ``forms``' labels and fit ``owner``'s fields now and at each show, and tabify
    ``owner``'s dock with the other napari-dfct docks when it is first shown docked."""
    owner._dfct_settle = _Settle(owner, forms)  # type: ignore[attr-defined]


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
