"""The Train widget tells the truth about a run: a resumed run's plot shows its whole
history, a finished run is not resumed silently, and the preview layer lives on its slice
and stays deleted once the user deletes it during a run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from widget_helpers import click, train_widget

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

SCALE = (2.0, 0.7, 0.7)
TRANSLATE = (1.0, 5.0, -2.0)
INPUT = "input (1 rotation)"


@pytest.fixture
def notes(capture_notifications):
    from napari_dfct.widgets import train as mod

    return capture_notifications(mod)


def _viewer(make_napari_viewer, small_sim, show: bool = False):
    v = make_napari_viewer(show=show)
    for data, name in ((small_sim.input, INPUT), (small_sim.target, "target (20 rotations)")):
        v.add_image(data.copy(), name=name, scale=SCALE, translate=TRANSLATE)
    return v


@pytest.fixture
def viewer(make_napari_viewer, small_sim):
    return _viewer(make_napari_viewer, small_sim)


@pytest.fixture
def shown_viewer(make_napari_viewer, small_sim):
    """A viewer on screen (Xvfb): only a shown canvas renders a screenshot."""
    return _viewer(make_napari_viewer, small_sim, show=True)


def _widget(viewer, tmp_path, **overrides):
    settings = dict(epochs=2, patience=20, patch=32, save_under=str(tmp_path))
    return train_widget(viewer, **{**settings, **overrides})


@pytest.fixture
def finished_run(trained_model, tmp_path):
    """A copy of the shared run trained to its end (1 of 1 epochs) on the viewer's data,
    its resume state kept (the default)."""
    import shutil

    from napari_dfct import checkpoint

    out = shutil.copytree(trained_model, tmp_path / "models" / "finished")
    assert checkpoint.training_state_summary(out)["epoch"] == 1
    return out


@pytest.mark.slow
def test_a_finished_run_says_so_and_a_resumed_plot_shows_every_epoch(
    viewer, tmp_path, qtbot, notes, registry, finished_run
):
    widget = _widget(viewer, tmp_path)
    widget.fields.resume.value = str(finished_run)
    # choosing the folder fills the form (epochs 1) and says the run has finished
    assert widget.fields.epochs.value == 1
    message = (
        "run 'finished' finished at epoch 1 of 1; nothing is left to train: raise epochs "
        "above 1 to continue it"
    )
    assert notes["info"] == [message[0].upper() + message[1:] + "."]
    click(qtbot, widget.start_button)  # nothing to do: not started, and said so
    assert not widget.is_running
    assert notes["error"] == [f"Cannot start training: {message}"]

    widget.fields.epochs.value = 2
    click(qtbot, widget.start_button)
    assert widget.is_running
    past = json.loads((finished_run / "history.json").read_text())
    epochs, val = widget.plot.line("val")  # the earlier epoch at once, before epoch 2
    assert list(epochs) == [1]
    np.testing.assert_allclose(val, [h["val_loss"] for h in past])
    qtbot.waitUntil(lambda: not widget.is_running, timeout=90_000)
    assert notes["error"] == [f"Cannot start training: {message}"]
    assert widget.last_result.stopped == "completed"
    history = json.loads((finished_run / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    for key, column in (("train", "train_loss"), ("val", "val_loss")):
        epochs, values = widget.plot.line(key)
        assert list(epochs) == [1, 2], key
        np.testing.assert_allclose(values, [h[column] for h in history])


def _canvas(viewer) -> np.ndarray:
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    return np.asarray(viewer.screenshot(canvas_only=True, flash=False))[..., :3]


def _drawn_on(viewer, layer, z: int) -> bool:
    """Whether ``layer`` changes the canvas at slice ``z`` (the other layers hidden)."""
    for other in viewer.layers:
        other.visible = other is layer
    viewer.dims.set_current_step(0, z)
    shown = _canvas(viewer)
    layer.visible = False
    hidden = _canvas(viewer)
    layer.visible = True
    return not np.array_equal(shown, hidden)


@pytest.mark.slow
def test_the_preview_lives_on_its_slice_and_stays_deleted(
    shown_viewer, tmp_path, qtbot, notes, registry
):
    from napari_dfct.widgets.train import PREVIEW_SUFFIX

    viewer = shown_viewer

    name = INPUT + PREVIEW_SUFFIX
    widget = _widget(viewer, tmp_path, epochs=500, patience=500)
    widget.fields.preview.value = "2"
    epochs: list[int] = []
    click(qtbot, widget.start_button)
    widget._worker.yielded.connect(lambda e: e.kind == "epoch" and epochs.append(e.value.epoch))
    qtbot.waitUntil(lambda: name in viewer.layers and viewer.layers[name].visible, timeout=90_000)
    preview = viewer.layers[name]
    assert preview.metadata["preview_slice"] == 2
    # one slice on the input's grid, at slice 2: drawn there and nowhere else
    assert preview.data.shape == (1, 64, 64)
    np.testing.assert_allclose(preview.scale, SCALE)
    np.testing.assert_allclose(preview.translate, (TRANSLATE[0] + 2 * SCALE[0], *TRANSLATE[1:]))
    assert viewer.dims.range[0].start == TRANSLATE[0]  # the viewer's range is the input's
    assert viewer.dims.nsteps[0] == 4
    assert _drawn_on(viewer, preview, 2)
    assert not _drawn_on(viewer, preview, 0)
    assert not _drawn_on(viewer, preview, 3)

    viewer.layers.remove(preview)  # the user deletes it during the run
    deleted_at = len(epochs)
    qtbot.waitUntil(lambda: len(epochs) >= deleted_at + 2, timeout=90_000)
    assert name not in viewer.layers  # not brought back by the later epochs
    assert notes["info"] == ["Training preview deleted: it stays hidden until the next run."]
    click(qtbot, widget.stop_button)
    qtbot.waitUntil(lambda: not widget.is_running, timeout=90_000)
    assert name not in viewer.layers
    assert notes["error"] == []

    # the next run shows it again
    widget.fields.epochs.value = 1
    widget.fields.run_name.value = "again"
    click(qtbot, widget.start_button)
    qtbot.waitUntil(lambda: not widget.is_running, timeout=90_000)
    assert notes["error"] == []
    assert name in viewer.layers and viewer.layers[name].visible
    assert viewer.layers[name].data.shape == (1, 64, 64)
