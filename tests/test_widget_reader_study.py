"""The Reader study widget in a real viewer: a study made by ``make_study`` from small
arrays (3 candidates, 2 slices of 32 x 32), answered by key press and by button; the rows
in ``judgments.csv``; blinding (no candidate or file name in any layer, tooltip or status);
the viewer given back on pause and close; errors as one line; the report; and a viewer
process killed mid-study that loses no answer and resumes at the first unanswered trial.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from widget_helpers import click

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

#: Candidate names a reader must never see (distinctive, so a leak is found by search).
NAMES = ("noisyinput", "unetmodel", "truetarget")
READER = "jd"
KILL_AFTER = 3  # answers given before the viewer process is killed
START_TIMEOUT = 120.0  # seconds for the killed process to import napari and answer


@pytest.fixture
def notes(capture_notifications):
    from napari_dfct.widgets import reader_study as mod

    return capture_notifications(mod)


def _study(root: Path, **kwargs):
    from napari_dfct.reader_study.study import make_study

    rng = np.random.default_rng(0)
    base = rng.random((2, 32, 32)).astype(np.float32)
    images = {
        name: base + k * 0.1 * rng.standard_normal(base.shape).astype(np.float32)
        for k, name in enumerate(NAMES)
    }
    kwargs = {"slices": "all", "repeats": 0.0, "seed": 3, **kwargs}
    return make_study(root / "study", images, **kwargs)


@pytest.fixture
def study(tmp_path):
    return _study(tmp_path)


@pytest.fixture
def viewer(make_napari_viewer):
    v = make_napari_viewer()
    v.add_image(np.zeros((4, 16, 16), np.float32), name="scan", contrast_limits=(0, 1))
    v.add_image(np.ones((16, 16), np.float32), name="A")  # the user's own layer named A
    return v


def _widget(viewer, study_dir=None, reader=READER):
    from napari_dfct.widgets.reader_study import ReaderStudyWidget

    widget = ReaderStudyWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Reader study")
    widget._guard.min_s = 0.0  # the tests answer at once (the guard has its own test)
    if reader is not None:
        widget.fields.reader.value = reader
    if study_dir is not None:
        widget.fields.study.value = study_dir
    return widget


def _rows(study_dir):
    from napari_dfct.reader_study.judgments import read_judgments

    return read_judgments(study_dir)


def _press(qtbot, viewer, key) -> None:
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, key)


def test_answers_by_key_and_button(viewer, study, qtbot, notes):
    from qtpy.QtCore import QEvent, Qt
    from qtpy.QtGui import QKeyEvent
    from qtpy.QtWidgets import QApplication

    widget = _widget(viewer, study.dir)
    click(qtbot, widget.start_button)
    n = len(study.trials)
    assert n == 6 and widget.progress.text() == f"1 / {n}"

    _press(qtbot, viewer, Qt.Key.Key_Left)  # A (left) is better
    assert widget.progress.text() == f"2 / {n}"
    _press(qtbot, viewer, Qt.Key.Key_Right)
    click(qtbot, widget.a_button)
    click(qtbot, widget.b_button)
    assert widget.progress.text() == f"5 / {n}"

    # a held key: napari passes the arrow keys' auto-repeat on; it must not answer
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.keyPress(canvas, Qt.Key.Key_Left)  # held down: answers trial 5 ...
    for _ in range(3):  # ... and its auto-repeats answer nothing
        event = QKeyEvent(QEvent.Type.KeyPress, Qt.Key.Key_Left, Qt.KeyboardModifier.NoModifier,
                          "", True)  # fmt: skip
        QApplication.sendEvent(canvas, event)
    assert widget.progress.text() == f"6 / {n}"
    qtbot.keyRelease(canvas, Qt.Key.Key_Left)
    _press(qtbot, viewer, Qt.Key.Key_Right)

    rows = _rows(study.dir)
    assert [r["choice"] for r in rows] == ["left", "right", "left", "right", "left", "right"]
    for row, trial in zip(rows, study.trials, strict=True):
        assert (row["reader"], row["trial"], row["slice"]) == (READER, trial.index, trial.slice)
        assert (row["left"], row["right"]) == (trial.left, trial.right)  # left is A
        assert row["seconds"] >= 0
    assert widget.status.text().startswith("Done")
    assert not widget.running and [layer.name for layer in viewer.layers] == ["scan", "A"]
    assert notes["error"] == []


def _seen_text(viewer, widget) -> list[str]:
    """Everything a reader can read: layer names, metadata, sources and list tooltips,
    the status bar, every tooltip and label of the window and the widget."""
    from qtpy.QtWidgets import QAbstractButton, QLabel, QWidget

    texts = [viewer.title, str(viewer.status), str(viewer.tooltip.text), str(viewer.help)]
    for layer in viewer.layers:
        texts += [layer.name, repr(layer.metadata), str(layer.source.path or ""),
                  layer.get_source_str()]  # fmt: skip
    windows = [viewer.window._qt_window, widget]
    for root in windows:
        for w in [root, *root.findChildren(QWidget)]:
            texts.append(w.toolTip())
            texts.append(w.windowTitle())
            if isinstance(w, QLabel | QAbstractButton):
                texts.append(w.text())
    return texts


def test_blinding_layers_grid_and_lock(viewer, study, qtbot):
    widget = _widget(viewer, study.dir)
    assert widget.start()
    shown = [layer for layer in viewer.layers if layer.visible]
    assert [layer.name for layer in shown] == ["A", "B"]
    a, b = shown
    assert viewer.layers.index(a) < viewer.layers.index(b)  # A in the left cell
    grid = viewer.canvas.grid
    assert grid.enabled and tuple(grid.shape) == (1, 2) and grid.stride == 1
    trial = study.trials[0]
    left, right = study.pair(trial.index)
    np.testing.assert_array_equal(a.data, left)
    np.testing.assert_array_equal(b.data, right)
    for layer in (a, b):
        assert layer.source.path is None and layer.metadata == {}
        assert layer.colormap.name == "gray"
        np.testing.assert_allclose(layer.contrast_limits, study.window(trial.slice))
    # the user cannot unlock the window or the colormap
    a.contrast_limits = (0.0, 0.01)
    b.colormap = "viridis"
    np.testing.assert_allclose(a.contrast_limits, study.window(trial.slice))
    assert b.colormap.name == "gray"

    # the status bar over both cells names nothing either
    viewer.cursor.position = (10.0, 10.0)
    viewer.update_status_from_cursor()
    secrets = {n.lower() for n in NAMES}
    secrets |= {p.name.lower() for p in (study.dir / "images").iterdir()}  # c0.npy, ...
    assert len(secrets) == 2 * len(NAMES)
    for step in range(3):  # the first trials, by keys and buttons
        seen = "\n".join(_seen_text(viewer, widget)).lower()
        leaks = sorted(s for s in secrets if s in seen)
        assert leaks == [], (step, leaks)
        assert widget.answer("left" if step % 2 else "right")
        np.testing.assert_allclose(a.contrast_limits, study.window(study.trials[step + 1].slice))


def test_pause_resume_and_close_give_the_viewer_back(viewer, study, qtbot):
    from qtpy.QtCore import Qt

    viewer.layers["scan"].visible = True
    viewer.layers["A"].visible = False  # the user's choice is restored, not made visible
    widget = _widget(viewer, study.dir)
    click(qtbot, widget.start_button)
    assert viewer.layers["A (yours)"].visible is False and not viewer.layers["scan"].visible
    assert widget.report_button.enabled is False  # names are not shown during reading
    _press(qtbot, viewer, Qt.Key.Key_Right)
    points = viewer.add_points([[1.0, 1.0]], name="added during the study")
    assert not points.visible  # hidden like every layer but A and B, shown again after
    click(qtbot, widget.pause_button)
    viewer.layers.remove(points)

    assert points.visible
    assert [layer.name for layer in viewer.layers] == ["scan", "A"]
    assert viewer.layers["scan"].visible and not viewer.layers["A"].visible
    assert not viewer.canvas.grid.enabled
    assert not any(str(k) in ("Left", "Right") for k in viewer.keymap)
    _press(qtbot, viewer, Qt.Key.Key_Left)  # unbound: answers nothing
    assert len(_rows(study.dir)) == 1
    assert widget.start_button.text == "Resume" and "saved" in widget.status.text()

    click(qtbot, widget.start_button)
    assert widget.progress.text() == f"2 / {len(study.trials)}"
    viewer.window.remove_dock_widget(widget)  # the dock's close button
    assert not widget.running
    assert [layer.name for layer in viewer.layers] == ["scan", "A"]
    assert not viewer.canvas.grid.enabled and viewer.keymap == {}
    assert len(_rows(study.dir)) == 1


def test_a_shown_viewer_survives_leaving_the_study(make_napari_viewer, study, qtbot):
    """A drawn canvas, the user's grid on: pause, a deleted layer and the end of the study
    give the viewer back, and it still draws and resizes (napari 0.9 crashed at the next
    resize after two layers were removed before a draw)."""
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((4, 16, 16), np.float32), name="scan")
    viewer.canvas.grid.enabled = True
    window = viewer.window._qt_window
    widget = _widget(viewer, study.dir)
    finish = lambda: all(widget.answer("right") for _ in range(len(study.trials) - 2))  # noqa: E731
    leaves = (widget.pause, lambda: viewer.layers.remove(viewer.layers["B"]), finish)
    for k, leave in enumerate(leaves):
        assert widget.start()
        qtbot.wait(50)
        assert widget.answer("left")
        qtbot.wait(50)
        leave()
        assert not widget.running
        assert viewer.canvas.grid.enabled
        assert [(layer.name, layer.visible) for layer in viewer.layers] == [("scan", True)]
        window.resize(900 - 100 * k, 700)
        qtbot.wait(150)
    assert len(_rows(study.dir)) == len(study.trials)


def test_deleting_a_study_layer_pauses(viewer, study, qtbot, notes):
    widget = _widget(viewer, study.dir)
    assert widget.start()
    viewer.layers.remove(viewer.layers["B"])
    assert not widget.running
    qtbot.waitUntil(lambda: "deleted" in widget.status.text(), timeout=5_000)
    assert notes["warning"] == [widget.status.text()]
    assert [layer.name for layer in viewer.layers] == ["scan", "A"]


def test_back_only_when_the_study_allows_it(viewer, tmp_path, qtbot):
    study = _study(tmp_path, allow_back=True)
    widget = _widget(viewer, study.dir)
    assert widget.start()
    assert not widget.back_button.native.isHidden() and not widget.back_button.enabled
    assert widget.answer("left")
    assert widget.back_button.enabled
    click(qtbot, widget.back_button)
    assert widget.progress.text() == f"1 / {len(study.trials)}"
    assert widget.answer("right")  # changed: appended, the last answer counts
    assert widget.progress.text() == f"2 / {len(study.trials)}"
    assert [r["choice"] for r in _rows(study.dir)] == ["left", "right"]
    widget.pause()

    plain = _widget(viewer, _study(tmp_path / "plain").dir)
    assert plain.start()
    assert plain.answer("left")
    assert plain.back_button.native.isHidden()
    plain.back()
    assert plain.progress.text() == f"2 / {len(study.trials)}"


def test_errors_are_one_line(viewer, study, tmp_path, qtbot, notes):
    widget = _widget(viewer, study.dir, reader="")
    assert not widget.start()
    assert notes["error"][-1] == "Enter your name or initials first."

    widget.fields.reader.value = "a,b"
    assert not widget.start()
    assert "comma" in notes["error"][-1]

    widget.fields.reader.value = READER
    empty = tmp_path / "empty"
    empty.mkdir()
    widget.fields.study.value = empty
    assert not widget.start()
    assert (
        notes["error"][-1].startswith("Cannot open the study:")
        and "study.json" in (notes["error"][-1])
    )

    image = next((study.dir / "images").glob("*.npy"))  # changed after the study was made
    data = np.load(image)
    np.save(image, data + 1.0)
    widget.fields.study.value = study.dir
    assert not widget.start()
    assert "checksum" in notes["error"][-1]
    assert all("\n" not in m and "Traceback" not in m for m in notes["error"])
    assert [layer.name for layer in viewer.layers] == ["scan", "A"] and not widget.running


def test_answer_guard():
    from napari_dfct.widgets.reader_study import AnswerGuard

    guard = AnswerGuard(min_s=0.15, repeat_s=2.0)
    assert guard.answer(10.0) is None  # nothing shown
    guard.shown(10.0)
    assert guard.answer(10.1) is None  # too soon after the pair appeared
    assert guard.answer(10.4) == pytest.approx(0.4)
    assert guard.answer(10.5) is None  # one answer per pair
    assert guard.key_down(11.0)
    assert not guard.key_down(11.5) and not guard.key_down(11.53)  # auto-repeat
    guard.key_up()
    assert guard.key_down(11.6)  # released and pressed again
    assert guard.key_down(20.0)  # a release that never came blocks only a while


def test_the_guard_ignores_an_answer_right_after_a_pair(viewer, study, qtbot):
    widget = _widget(viewer, study.dir)
    widget._guard.min_s = 0.15
    assert widget.start()
    assert not widget.answer("left")  # within 150 ms of the pair
    qtbot.wait(200)
    assert widget.answer("left")
    assert not widget.answer("left")  # the next pair is new again
    assert len(_rows(study.dir)) == 1


def test_report_button(viewer, study, qtbot, notes, monkeypatch):
    pytest.importorskip("choix")
    pytest.importorskip("krippendorff")
    widget = _widget(viewer, study.dir)
    assert widget.start()
    for k in range(len(study.trials)):
        assert widget.answer("left" if k % 2 else "right")
    assert not widget.running
    click(qtbot, widget.report_button)
    qtbot.waitUntil(lambda: widget.report_text.toPlainText() != "", timeout=30_000)
    text = widget.report_text.toPlainText()
    assert all(name in text for name in NAMES)  # names revealed here only
    assert widget.report_text.isReadOnly()
    qtbot.waitUntil(lambda: widget.report_button.enabled, timeout=5_000)

    monkeypatch.setitem(sys.modules, "choix", None)  # not installed
    click(qtbot, widget.report_button)
    qtbot.waitUntil(lambda: bool(notes["error"]), timeout=10_000)
    message = notes["error"][-1]
    assert message.startswith("No report:") and "choix" in message and "pip install" in message
    assert "\n" not in message


_KILLED = """
import sys
import napari
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication

from napari_dfct.widgets.reader_study import ReaderStudyWidget

study_dir, reader, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
viewer = napari.Viewer(show=True)
widget = ReaderStudyWidget(viewer)
viewer.window.add_dock_widget(widget, name="Reader study")
widget._guard.min_s = 0.0
widget.fields.reader.value = reader
widget.fields.study.value = study_dir
widget.start_button.native.click()
canvas = viewer.window._qt_viewer.canvas.native
for i in range(k):
    if i % 2:
        widget.b_button.native.click()
    else:
        QTest.keyClick(canvas, Qt.Key.Key_Left)
    QApplication.processEvents()
print("ANSWERED", widget.progress.text(), flush=True)
napari.run()  # mid-study, until killed
"""


def _line_starting(proc, prefix: str, timeout: float) -> str:
    """The first line of ``proc``'s output starting with ``prefix`` (AssertionError with
    the output when the process ends or ``timeout`` seconds pass first)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if not ready:
            continue
        line = proc.stdout.readline()
        if line.startswith(prefix):
            return line
        if not line:  # the process ended
            break
        seen.append(line)
    raise AssertionError(f"no {prefix!r} line; output:\n{''.join(seen)[-3000:]}")


def test_killed_mid_study_loses_nothing_and_resumes(tmp_path, make_napari_viewer, qtbot):
    study = _study(tmp_path)
    script = tmp_path / "read.py"
    script.write_text(textwrap.dedent(_KILLED))
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(study.dir), READER, str(KILL_AFTER)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        _line_starting(proc, "ANSWERED", START_TIMEOUT)
        assert proc.poll() is None  # still reading, the pair of trial k+1 on screen
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    n = len(study.trials)
    rows = _rows(study.dir)
    assert len(rows) == KILL_AFTER
    assert [r["trial"] for r in rows] == [t.index for t in study.trials[:KILL_AFTER]]
    assert [r["choice"] for r in rows] == ["left", "right", "left"]

    viewer = make_napari_viewer()
    widget = _widget(viewer, study.dir)
    click(qtbot, widget.start_button)
    assert widget.progress.text() == f"{KILL_AFTER + 1} / {n}"
    trial = study.trials[KILL_AFTER]
    np.testing.assert_array_equal(viewer.layers["A"].data, study.pair(trial.index)[0])
    assert widget.answer("right")
    assert len(_rows(study.dir)) == KILL_AFTER + 1
