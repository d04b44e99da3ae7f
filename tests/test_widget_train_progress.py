"""The Train widget's progress within an epoch, in a real viewer: batch reports from the
training process move the bar and show the time left before the first epoch ends."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui


@pytest.fixture
def notes(capture_notifications):
    from napari_dfct.widgets import train as mod

    return capture_notifications(mod)


def test_batches_shown_before_the_first_epoch_ends(
    make_napari_viewer, small_sim, qtbot, tmp_path, notes
):
    from qtpy.QtCore import Qt

    from napari_dfct.widgets.train import TrainWidget

    viewer = make_napari_viewer()
    viewer.add_image(small_sim.input.copy(), name="input (1 rotation)")
    viewer.add_image(small_sim.target.copy(), name="target (20 rotations)")
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train")
    settings = dict(
        preset="tiny",
        epochs=2,
        batch_size=4,
        patch=32,
        patches_per_slice=16,  # 3 training slices: 48 patches, 12 batches per epoch
        bn_recalibrate=0,
        save_under=str(tmp_path),
        run_name="run",
        device="cpu",
    )
    for name, value in settings.items():
        getattr(widget.fields, name).value = value
    qtbot.mouseClick(widget.start_button.native, Qt.MouseButton.LeftButton)
    assert widget.is_running
    bar = widget.progress.native
    shown: list[tuple[str, str, int, int]] = []  # what the bar said after each report
    widget._worker.yielded.connect(
        lambda e: shown.append((e.kind, bar.format(), bar.value(), bar.maximum()))
    )
    qtbot.waitUntil(lambda: not widget.is_running, timeout=90_000)
    assert notes["error"] == [], notes["error"]
    kinds = [kind for kind, *_ in shown if kind != "data"]
    assert "batch" in kinds and kinds.index("batch") < kinds.index("epoch")
    kind, text, value, maximum = next(s for s in shown if s[0] == "batch")
    assert text.startswith("epoch 1/2 \u00b7 batch 1/12 \u00b7 about ") and text.endswith(" left")
    assert (value, maximum) == (1, 24)  # batches of the whole run
    # the bar only moves forward, and ends full
    fractions = [v / m for kind, _, v, m in shown if kind in ("batch", "epoch")]
    assert fractions == sorted(fractions)
    widget._updates.flush()
    assert bar.value() == bar.maximum()
    assert widget.last_result.stopped == "completed"
