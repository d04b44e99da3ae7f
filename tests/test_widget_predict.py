"""The predict widget in a real viewer: registry, current slice, whole volume, cancel."""

from __future__ import annotations

import numpy as np
import pytest

from widget_helpers import click

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

SCALE = (2.0, 0.5, 0.25)
TRANSLATE = (10.0, -4.0, 3.0)


@pytest.fixture
def notes(capture_notifications):
    """Capture the widget's notifications instead of showing them."""
    from napari_dfct.widgets import predict as mod

    return capture_notifications(mod)


@pytest.fixture
def viewer(make_napari_viewer, small_sim):
    v = make_napari_viewer()
    v.add_image(
        small_sim.input.copy(),
        name="input (1 rotation)",
        scale=SCALE,
        translate=TRANSLATE,
        contrast_limits=(0.0, 0.5),
    )
    return v


def _widget(viewer):
    from napari_dfct.widgets.predict import PredictWidget

    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Predict")
    return widget


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.is_running, timeout=60_000)


def test_registry_offers_models(viewer, registry, trained_model, notes):
    widget = _widget(viewer)
    assert widget.fields.model.value is None  # nothing trained yet
    registry.register_model(trained_model)  # what the Train widget does when a run ends
    assert widget.fields.model.value == trained_model.resolve()
    text = widget.info.toPlainText()
    assert "l2+s-linear" in text and "preset   tiny" in text and "best epoch 1" in text
    assert "window" in text
    assert "recipe" in text and "select" in text
    assert notes["error"] == []


def test_current_slice_and_whole_volume(viewer, registry, trained_model, qtbot, notes, small_sim):
    from napari_dfct.checkpoint import load_model
    from napari_dfct.infer import predict

    registry.register_model(trained_model)
    widget = _widget(viewer)
    widget.fields.device.value = "cpu"
    source = viewer.layers["input (1 rotation)"]
    name = f"input (1 rotation) [prediction: {trained_model.name}]"

    z = 2
    viewer.dims.set_point(0, TRANSLATE[0] + z * SCALE[0])
    click(qtbot, widget.slice_button)
    _wait(qtbot, widget)
    assert notes["error"] == []
    out = viewer.layers[name]
    assert out.data.shape == small_sim.input.shape
    np.testing.assert_allclose(out.scale, SCALE)
    np.testing.assert_allclose(out.translate, TRANSLATE)
    np.testing.assert_allclose(out.contrast_limits, source.contrast_limits)
    finite = np.isfinite(out.data).all(axis=(1, 2))
    assert finite.tolist() == [i == z for i in range(small_sim.input.shape[0])]
    loaded = load_model(trained_model)
    expected = predict(loaded, small_sim.input, slices=[z], device="cpu")[0]
    np.testing.assert_allclose(out.data[z], expected, rtol=1e-4, atol=1e-5)

    # the whole volume reuses the same layer (no pile-up) and fills every slice
    n_layers = len(viewer.layers)
    click(qtbot, widget.volume_button)
    _wait(qtbot, widget)
    assert len(viewer.layers) == n_layers
    assert viewer.layers[name] is out
    assert np.isfinite(out.data).all()
    np.testing.assert_allclose(
        out.data, predict(loaded, small_sim.input, device="cpu"), rtol=1e-4, atol=1e-5
    )
    assert widget.progress.value == small_sim.input.shape[0]
    assert notes["error"] == []


def test_canvas_refreshed_only_when_a_slice_in_view_was_filled(viewer):
    """Filled slices are always announced (a data event); the layer is re-sliced and
    repainted only when the canvas shows one of them: in 2-D the slice in view, in 3-D
    every slice."""
    from types import SimpleNamespace

    widget = _widget(viewer)
    out = viewer.add_image(
        np.zeros((6, 8, 8), np.float32), name="prediction", scale=SCALE, translate=TRANSLATE
    )
    z = 4
    viewer.dims.set_point(0, TRANSLATE[0] + z * SCALE[0])  # world -> data slice 4
    refreshes, events = [], []
    out.refresh = lambda *a, **k: refreshes.append(1)
    out.events.data.connect(lambda e: events.append(1))

    def announce(written):
        widget._refresh_output(SimpleNamespace(output=out, changed=True, written=set(written)))
        return len(events), len(refreshes)

    assert announce({0, 1, 2}) == (1, 0)  # not in view: announced, not repainted
    assert announce({3, 4}) == (2, 1)
    assert announce(set()) == (3, 2)  # nothing recorded: refreshed, to be safe
    viewer.dims.ndisplay = 3
    assert announce({0}) == (4, 3)  # a 3-D view shows every slice


def test_open_folder_and_2d_layer(
    make_napari_viewer, registry, trained_model, qtbot, notes, small_sim, tmp_path
):
    viewer = make_napari_viewer()
    viewer.add_image(
        small_sim.input[1].copy(), name="slice", scale=(0.5, 0.5), translate=(1.0, 2.0)
    )
    widget = _widget(viewer)
    widget.fields.device.value = "cpu"
    # a folder that is not a model
    widget.fields.model_dir.value = str(tmp_path)
    assert notes["error"] and "not a model folder" in notes["error"][-1]
    assert widget.fields.model.value is None
    # a model folder from disk
    widget.fields.model_dir.value = str(trained_model)
    assert widget.fields.model.value == trained_model.resolve()
    assert registry.registered_models() == [trained_model.resolve()]
    click(qtbot, widget.slice_button)
    _wait(qtbot, widget)
    out = viewer.layers[f"slice [prediction: {trained_model.name}]"]
    assert out.data.shape == small_sim.input.shape[1:]
    assert np.isfinite(out.data).all()
    np.testing.assert_allclose(out.scale, (0.5, 0.5))
    np.testing.assert_allclose(out.translate, (1.0, 2.0))


def test_cancel_and_refusals(make_napari_viewer, registry, trained_model, qtbot, notes, small_sim):
    viewer = make_napari_viewer()
    widget = _widget(viewer)
    click(qtbot, widget.volume_button)  # no model, no layer
    assert notes["error"] and "choose a model" in notes["error"][-1]
    registry.register_model(trained_model)
    click(qtbot, widget.volume_button)
    assert "choose an image layer" in notes["error"][-1]

    # 256 slices: the prediction must outlast the first slice's layer creation (up to
    # 400 ms, docs/performance.md), after which Cancel is clicked
    big = np.tile(small_sim.input, (64, 1, 1))
    viewer.add_image(big, name="stack")
    widget.fields.device.value = "cpu"
    seen = []

    def on_item(event):
        if event.kind == "slice":
            seen.append(event.index)
            if len(seen) == 1:
                widget.predict_current_slice()  # refused while running
                click(qtbot, widget.cancel_button)

    click(qtbot, widget.volume_button)
    widget._worker.yielded.connect(on_item)
    _wait(qtbot, widget)
    assert any("running" in m for m in notes["warning"])
    out = viewer.layers[f"stack [prediction: {trained_model.name}]"]
    done = np.isfinite(out.data).all(axis=(1, 2))
    assert 1 <= done.sum() < big.shape[0]
    assert any("cancelled" in m for m in notes["info"])
    assert widget.slice_button.enabled and not widget.cancel_button.enabled


def _measure_column(widget, name):
    for row in widget.rows:
        if row.layer == name:
            return row
    return None


def test_measure_follows_the_prediction(
    viewer, registry, trained_model, qtbot, notes, small_sim, capture_notifications
):
    """Measure recomputes as the prediction fills slices (no stale n/a, no stale cached
    PSNR/SSIM), and a slice not predicted yet is never handed to a metric as NaN."""
    from napari_dfct import metrics
    from napari_dfct.widgets import train as train_mod
    from napari_dfct.widgets.measure import MeasureWidget
    from napari_dfct.widgets.train import TrainWidget

    viewer.add_image(small_sim.truth.copy(), name="truth", scale=SCALE, translate=TRANSLATE)
    viewer.layers.move(viewer.layers.index("truth"), 0)  # the input stays on top
    registry.register_model(trained_model)
    measure = MeasureWidget(viewer)
    viewer.window.add_dock_widget(measure, name="Measure")
    measure.set_reference("truth")
    widget = _widget(viewer)
    widget.fields.device.value = "cpu"
    name = f"input (1 rotation) [prediction: {trained_model.name}]"
    truth = small_sim.truth

    def at(z):
        viewer.dims.set_point(0, TRANSLATE[0] + z * SCALE[0])

    def measured(z):
        row = _measure_column(measure, name)
        return (
            row is not None
            and row.slice == str(z)
            and row.measurement is not None
            and np.isfinite(row.measurement.cnr.cnr)
            and np.isfinite(row.measurement.psnr)
        )

    at(2)
    click(qtbot, widget.slice_button)
    _wait(qtbot, widget)
    qtbot.waitUntil(lambda: measured(2), timeout=5000)
    out = viewer.layers[name]
    # right above its input, under the ROI shapes (which stay visible)
    order = [layer.name for layer in viewer.layers]
    assert order.index(name) == order.index("input (1 rotation)") + 1
    assert order.index("DFCT ROIs") > order.index(name)
    m = _measure_column(measure, name).measurement
    assert m.psnr == pytest.approx(metrics.psnr(out.data[2], truth[2]))
    assert m.ssim == pytest.approx(metrics.ssim(out.data[2], truth[2]))

    # a slice not predicted yet: said so, never "non-finite pixels"
    at(0)
    qtbot.waitUntil(lambda: _measure_column(measure, name).slice == "0", timeout=5000)
    row = _measure_column(measure, name)
    assert row.measurement is None and "not predicted" in row.reason
    assert "non-finite" not in row.reason
    # the Train widget refuses a partly predicted layer with one clear message
    train_notes = capture_notifications(train_mod)
    train = TrainWidget(viewer)
    viewer.window.add_dock_widget(train, name="Train")
    train.fields.input.value = out
    train.fields.target.value = viewer.layers["input (1 rotation)"]
    train.start()
    assert not train.is_running
    assert len(train_notes["error"]) == 1 and "not predicted" in train_notes["error"][0]

    # the whole volume fills every slice: the values follow (no stale cache)
    click(qtbot, widget.volume_button)
    _wait(qtbot, widget)
    qtbot.waitUntil(lambda: measured(0), timeout=5000)
    m = _measure_column(measure, name).measurement
    assert m.psnr == pytest.approx(metrics.psnr(out.data[0], truth[0]))
    assert m.ssim == pytest.approx(metrics.ssim(out.data[0], truth[0]))
    at(1)
    qtbot.waitUntil(lambda: measured(1), timeout=5000)
    assert notes["error"] == []


def test_failed_prediction_leaves_no_layer(
    viewer, registry, trained_model, qtbot, notes, monkeypatch
):
    from napari_dfct import infer

    def broken(*_args, **_kwargs):
        raise RuntimeError("the model could not run")
        yield  # a generator, like the real one

    monkeypatch.setattr(infer, "predict_iter", broken)
    registry.register_model(trained_model)
    widget = _widget(viewer)
    widget.fields.device.value = "cpu"
    before = [layer.name for layer in viewer.layers]
    for button in (widget.slice_button, widget.volume_button):
        notes["error"].clear()
        click(qtbot, button)
        _wait(qtbot, widget)
        assert len(notes["error"]) == 1 and "could not run" in notes["error"][0]
        assert [layer.name for layer in viewer.layers] == before
        assert "could not run" in widget.status.text()
    assert widget.slice_button.enabled


def test_status_says_what_is_missing(viewer, registry, trained_model):
    widget = _widget(viewer)  # an image layer, no model yet
    text = widget.status.text()
    assert "model" in text.lower() and "image layer" not in text
    registry.register_model(trained_model)
    text = widget.status.text()
    assert "Choose" not in text
    assert trained_model.name in text and "input (1 rotation)" in text
    widget.fields.image.value = None
    assert "image layer" in widget.status.text()
