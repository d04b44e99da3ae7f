"""The Reader study widget's screenshots in docs/reader-study.md: a trial and the report.

    xvfb-run -a -s "-screen 0 1280x1024x24" python docs/reader/screenshots.py

Simulates a small thorax (3 slices, 256x256, seed 7), makes a study of three candidates
(the single-rotation input, the multi-rotation target and a smoothed input; every pair on
every slice, 20 % repeated), opens it in a 1280x1024 napari window with the user's input
layer loaded, and answers six trials as reader JD: docs/images/reader-trial.png is the
window at the seventh trial (``viewer.screenshot(canvas_only=False)``). Two simulated
readers then answer every trial, JD finishes in the widget, and
docs/images/reader-report.png is the widget's dock after *Report*.
"""

from __future__ import annotations

import time
from pathlib import Path

import napari
import numpy as np
from PIL import Image
from qtpy.QtCore import Qt
from qtpy.QtGui import QImage
from qtpy.QtWidgets import QApplication
from scipy.ndimage import gaussian_filter

from napari_dfct.reader_study.judgments import append_judgment
from napari_dfct.reader_study.study import make_study
from napari_dfct.simulate import simulate_dfct
from napari_dfct.widgets.reader_study import ReaderStudyWidget

OUT = Path(__file__).resolve().parents[1] / "images"
#: How the simulated readers rank the candidates (higher is better).
PREFERENCE = {"target": 2, "input": 1, "smoothed": 0}


def settle(seconds: float = 0.5) -> None:
    """Let the window draw for ``seconds``."""
    app = QApplication.instance()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def save(rgb: np.ndarray, path: Path) -> None:
    """A palette PNG (small, and exact for the widget's flat colours)."""
    image = Image.fromarray(np.ascontiguousarray(rgb[..., :3]))
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(path)


def grab(widget) -> np.ndarray:
    """``widget`` as drawn on screen, RGB."""
    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    bits = image.constBits()
    bits.setsize(image.sizeInBytes())
    rows = np.frombuffer(bits, np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3).copy()


def better(trial, noise: float, rng) -> str:
    """A simulated reader's answer: the preferred candidate, with decision noise."""
    margin = PREFERENCE[trial.left] - PREFERENCE[trial.right] + rng.normal(0.0, noise)
    return "left" if margin > 0 else "right"


def main(work: Path) -> None:
    sim = simulate_dfct(n_slices=3, size=256, n_views=360, rotations=4, seed=7)
    smoothed = gaussian_filter(sim.input, (0, 1.5, 1.5)).astype(np.float32)
    images = {"input": sim.input, "target": sim.target, "smoothed": smoothed}
    study = make_study(work / "study", images, slices="all", repeats=0.2, seed=1)
    rng = np.random.default_rng(0)

    viewer = napari.Viewer(show=True)
    viewer.add_image(sim.input, name="input (1 rotation)")
    viewer.window._qt_window.resize(1280, 1024)
    widget = ReaderStudyWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Reader study")
    widget.fields.reader.value = "JD"
    widget.fields.study.value = study.dir
    settle(1.0)
    widget.start()
    for _ in range(6):
        settle(0.2)
        widget.answer(better(study.trials[widget.trial], 1.0, rng))
    settle(1.5)
    save(np.asarray(viewer.screenshot(canvas_only=False, flash=False)), OUT / "reader-trial.png")

    for reader in ("AB", "CK"):
        for trial in study.trials:
            append_judgment(study, reader, trial, better(trial, 0.8, rng), 2.0)
    while widget.running:
        settle(0.2)
        widget.answer(better(study.trials[widget.trial], 0.0, rng))
    widget.report_button.native.click()
    end = time.monotonic() + 120
    while widget._report_worker is not None and time.monotonic() < end:
        settle(0.2)
    dock = widget.parentWidget()
    viewer.window._qt_window.resizeDocks([dock], [820], Qt.Orientation.Horizontal)
    settle(1.0)
    save(grab(dock)[:560], OUT / "reader-report.png")
    viewer.close()


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        main(Path(tmp))
