"""Jobs belong to the viewer: a closed dock, a deleted layer and a closed viewer, in a real
viewer with real training processes."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from widget_helpers import click, train_widget

pytest.importorskip("napari")
pytestmark = pytest.mark.gui


@pytest.fixture
def notes(capture_notifications):
    """The Train and Predict widgets' notifications, captured."""
    from napari_dfct.widgets import predict, train

    return {"train": capture_notifications(train), "predict": capture_notifications(predict)}


@pytest.fixture
def viewer(make_napari_viewer, small_sim):
    v = make_napari_viewer()
    v.add_image(small_sim.truth.copy(), name="truth")
    v.add_image(small_sim.input.copy(), name="input (1 rotation)")
    v.add_image(small_sim.target.copy(), name="target (20 rotations)")
    return v


def _train_widget(viewer, tmp_path=None, **settings):
    if tmp_path is None:
        return train_widget(viewer)
    base = dict(epochs=200, patience=200, patch=32, save_under=str(tmp_path))
    return train_widget(viewer, **{**base, **settings})


def _predict_widget(viewer):
    from napari_dfct.widgets.predict import PredictWidget

    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Predict")
    return widget


def _trainings() -> list:
    return [p for p in mp.active_children() if p.name == "dfct-train"]


def _started(qtbot, widget, epochs: int = 1) -> None:
    """Start training and wait for its first ``epochs`` epochs."""
    click(qtbot, widget.start_button)
    assert widget.is_running
    qtbot.waitUntil(lambda: len(widget._history) >= epochs, timeout=60_000)


def test_a_closed_dock_leaves_one_training_that_a_reopened_dock_shows_and_stops(
    viewer, tmp_path, qtbot, notes, registry
):
    old = _train_widget(viewer, tmp_path, seed=7)
    _started(qtbot, old)
    viewer.window.remove_dock_widget(old)  # the dock's ✕
    assert len(_trainings()) == 1  # still training, with no dock

    new = _train_widget(viewer)  # reopened: a new widget
    f = new.fields
    assert len(_trainings()) == 1
    assert new.is_running and not new.start_button.enabled and new.stop_button.enabled
    assert not new.tabs.isEnabled()  # the form is locked, showing the run's settings
    assert (f.preset.value, f.epochs.value, f.patch.value, f.seed.value) == ("tiny", 200, 32, 7)
    assert f.input.value is viewer.layers["input (1 rotation)"]
    assert f.run_name.value == "run"
    assert new.status.text().startswith("Epoch ")
    shown = len(new.plot.line("val")[0])
    assert shown >= 1  # the curve so far

    new.start()  # a second training in this viewer is refused
    assert any("already running in this viewer" in m for m in notes["train"]["warning"])
    assert len(_trainings()) == 1

    qtbot.waitUntil(lambda: len(new.plot.line("val")[0]) > shown, timeout=30_000)  # live
    click(qtbot, new.stop_button)
    qtbot.waitUntil(lambda: not new.is_running, timeout=60_000)
    assert new.last_result.stopped == "cancelled"
    assert _trainings() == []
    assert new.start_button.enabled and new.tabs.isEnabled()
    # the end is reported once, by the widget on screen
    saved = [m for m in notes["train"]["info"] if str(tmp_path / "run") in m]
    assert len(saved) == 1 and "stopped" in saved[0]
    assert old.last_result is None
    assert registry.registered_models() == [(tmp_path / "run").resolve()]


def test_closing_the_viewer_ends_a_training_whose_dock_was_closed(viewer, tmp_path, qtbot, notes):
    from napari_dfct.widgets import _jobs

    widget = _train_widget(viewer, tmp_path)
    _started(qtbot, widget)
    viewer.window.remove_dock_widget(widget)
    (child,) = _trainings()
    job = _jobs.running(viewer, "training")
    assert job is not None and job.view is widget
    viewer.close()
    qtbot.waitUntil(lambda: not child.is_alive(), timeout=30_000)
    qtbot.waitUntil(lambda: not job.running, timeout=10_000)  # its worker is done too
    assert _jobs.viewer_jobs(viewer) == [] and job.cancel.is_set()
    assert notes["train"]["error"] == []


def test_a_deleted_input_layer_changes_neither_the_run_nor_the_form(
    viewer, tmp_path, qtbot, notes, registry
):
    widget = _train_widget(viewer, tmp_path)
    f = widget.fields
    inp, tgt = f.input.value, f.target.value
    window = (f.window_low.value, f.window_high.value)
    assert inp.name == "input (1 rotation)" and window[0] != ""
    _started(qtbot, widget)
    viewer.layers.remove(inp)
    # the form still shows what the run uses ("truth" is there to be picked, and is not)
    assert f.input.value is inp and f.target.value is tgt
    assert f.input.native.currentText() == "input (1 rotation)"
    assert (f.window_low.value, f.window_high.value) == window
    # a Train widget opened now shows the run's input too
    viewer.window.remove_dock_widget(widget)
    widget = _train_widget(viewer)
    f = widget.fields
    assert f.input.value is inp and (f.window_low.value, f.window_high.value) == window
    done = len(widget._history)
    qtbot.waitUntil(lambda: len(widget._history) > done, timeout=30_000)  # it trains on
    click(qtbot, widget.stop_button)
    qtbot.waitUntil(lambda: not widget.is_running, timeout=60_000)
    assert notes["train"]["error"] == []
    # afterwards the input picker is empty (never "truth"), and the status says why
    assert f.input.value is None and f.target.value is tgt
    assert "input layer 'input (1 rotation)' was deleted" in widget.status.text()
    assert any("choose the input again" in m for m in notes["train"]["warning"])
    widget.start()
    assert "choose an input" in notes["train"]["error"][-1]


@pytest.fixture
def stack(viewer, small_sim, registry, trained_model):
    """A 64-slice image layer and the session's model, registered."""
    registry.register_model(trained_model)
    return viewer.add_image(np.tile(small_sim.input, (16, 1, 1)), name="stack")


@pytest.fixture
def gate(monkeypatch):
    """Prediction pauses after its first slice until the test sets this event, so what
    the test does on that slice happens mid-run on any machine; ``gate.reached`` is set
    when a run has handed over its first slice and waits."""
    import threading

    from napari_dfct import infer

    real, gate = infer.predict_iter, threading.Event()
    gate.reached = threading.Event()  # type: ignore[attr-defined]

    def paced(*args, **kwargs):
        for i, item in enumerate(real(*args, **kwargs)):
            yield item
            if i == 0:
                gate.reached.set()  # type: ignore[attr-defined]
                gate.wait(timeout=60)

    monkeypatch.setattr(infer, "predict_iter", paced)
    return gate


def _at_first_slice(qtbot, gate, action) -> None:
    """Run ``action`` on the main thread once the running prediction has handed over its
    first slice, the widget has shown it, and the run waits at the gate; then let the
    run go on. A slot the test connected to the worker after the click would miss a
    first slice yielded before it (as a loaded machine makes happen): this does not
    depend on when anything was connected."""
    qtbot.waitUntil(gate.reached.is_set, timeout=60_000)
    qtbot.wait(100)  # the widget's own handler of that slice (queued before) runs
    action()
    gate.set()


def _prediction_name(model) -> str:
    return f"stack [prediction: {model.name}]"


def test_a_deleted_prediction_layer_ends_the_prediction_claiming_nothing(
    viewer, stack, trained_model, qtbot, notes, gate
):
    widget = _predict_widget(viewer)
    widget.fields.image.value, widget.fields.device.value = stack, "cpu"
    name = _prediction_name(trained_model)

    def delete_layer():
        assert name in viewer.layers  # the first slice's layer
        viewer.layers.remove(name)

    click(qtbot, widget.volume_button)
    _at_first_slice(qtbot, gate, delete_layer)
    qtbot.waitUntil(lambda: not widget.is_running, timeout=60_000)
    text = widget.status.text()
    assert "Predicted" not in text
    assert f"its layer {name!r} was deleted, so nothing was kept" in text
    assert notes["predict"]["warning"] == [text]
    assert name not in viewer.layers  # not added back by a later slice
    assert widget.volume_button.enabled and widget.fields.image.value is stack


def test_cancel_on_a_complete_layer_says_what_the_other_slices_hold(
    viewer, stack, trained_model, qtbot, notes, gate
):
    widget = _predict_widget(viewer)
    widget.fields.image.value, widget.fields.device.value = stack, "cpu"
    gate.set()
    click(qtbot, widget.volume_button)
    qtbot.waitUntil(lambda: not widget.is_running, timeout=60_000)
    gate.clear()
    gate.reached.clear()
    out = viewer.layers[_prediction_name(trained_model)]
    before = np.array(out.data)
    click(qtbot, widget.volume_button)
    _at_first_slice(qtbot, gate, lambda: click(qtbot, widget.cancel_button))
    qtbot.waitUntil(lambda: not widget.is_running, timeout=60_000)
    (text,) = notes["predict"]["info"]
    done = int(text.split("after ")[1].split(" of")[0])
    assert 1 <= done < 64
    assert f"{64 - done} other slices keep their earlier prediction" in text
    assert "not predicted" not in text
    assert np.isfinite(out.data).all()  # indeed: no placeholder anywhere
    np.testing.assert_allclose(out.data, before, rtol=1e-5, atol=1e-6)


def test_a_reopened_predict_dock_shows_the_prediction_and_cancels_it(
    viewer, stack, trained_model, qtbot, notes, gate
):
    old = _predict_widget(viewer)
    old.fields.image.value, old.fields.device.value = stack, "cpu"
    seen = {}

    def reopen_and_cancel():
        viewer.window.remove_dock_widget(old)
        seen["new"] = new = _predict_widget(viewer)  # reattaches
        seen["shown"] = (new.fields.image.value, new.is_running, new.progress.value)
        viewer.layers.remove(stack)  # the job has its copy; the picker keeps it
        seen["kept"] = new.fields.image.value
        click(qtbot, new.cancel_button)

    click(qtbot, old.volume_button)
    _at_first_slice(qtbot, gate, reopen_and_cancel)
    qtbot.waitUntil(lambda: not seen["new"].is_running, timeout=60_000)
    new = seen["new"]
    assert seen["shown"][:2] == (stack, True) and seen["shown"][2] >= 1
    assert seen["kept"] is stack
    assert not old.volume_button.enabled  # the closed dock was not told: the new one was
    assert "Prediction cancelled after" in new.status.text()
    assert "image layer 'stack' was deleted" in new.status.text()
    assert new.fields.image.value is None  # not silently another layer
    assert len(notes["predict"]["info"]) == 1
