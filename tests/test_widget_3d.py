"""3-D models in the viewer: the Train widget offers the dimensionality (2-D / 2.5-D with
a context, 3-D with a patch depth) with a line that says what the model sees and the
memory a training step needs, trains a 3-D model from layers through the same worker as
2-D (curves, progress, stop), and the Predict widget describes it and predicts the
current slice (the z-chunks that reach it) and the whole volume."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from widget_helpers import click, train_widget

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

SCALE = (2.0, 0.5, 0.5)
TRANSLATE = (4.0, -3.0, 1.0)


@pytest.fixture
def notes(capture_notifications, monkeypatch):
    """The Train and Predict widgets' notifications, in one record."""
    from napari_dfct.widgets import predict, train

    seen = capture_notifications(train)
    for kind in seen:
        monkeypatch.setattr(predict, f"show_{kind}", lambda m, k=kind: seen[k].append(str(m)))
    return seen


def _shown(field) -> bool:
    """Whether the form shows ``field`` (not hidden; the dock itself may be)."""
    return not field.native.isHidden()


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.is_running, timeout=120_000)


def test_the_form_offers_3d_with_what_it_sees_and_its_memory(make_napari_viewer):
    from napari_dfct._memory import format_bytes
    from napari_dfct.train.resources import memory_estimate

    widget = train_widget(make_napari_viewer(), patch=64, batch_size=4)
    f, panel = widget.fields, widget.dims_panel
    assert tuple(f.dims.choices) == (2, 3) and f.dims.value == 2
    assert f.dims.native.currentText().startswith("2-D / 2.5-D")
    assert _shown(f.context) and not _shown(f.patch_depth)
    panel.wait()
    flat = f.dims_note.value
    assert flat.startswith("2-D: sees one slice, predicts it. A training step needs at least")
    f.context.value = 1
    panel.wait()
    assert f.dims_note.value.startswith("2.5-D: each input is the 3 slices z-1..z+1")

    f.dims.value = 3
    f.patch_depth.value = 4
    assert not _shown(f.context) and _shown(f.patch_depth)
    config = widget.train_config()  # the hidden context does not count
    assert (config.dims, config.patch_depth, config.context) == (3, 4, 0)
    panel.wait()
    note = f.dims_note.value
    assert note.startswith("3-D U-Net on 4x64x64 patches (4 consecutive slices of one scan)")
    # the figure is the estimate every run checks before it starts, 3-D patch counted
    need, per_patch, _ = memory_estimate(config)
    assert (
        f"needs at least {format_bytes(need)} (4 x {format_bytes(per_patch)} per patch +" in note
    )
    f.batch_size.value = 10**5  # far beyond this machine's memory: said before training
    panel.wait()
    assert "training will be refused: lower the batch size or the patch depth" in (
        f.dims_note.value
    )
    assert "patch depth" in f.patch_depth.label and "one scan" in f.dims.tooltip


def test_what_a_3d_model_cannot_train_on_is_one_notification(
    make_napari_viewer, small_sim, tmp_path, qtbot, notes
):
    import tifffile

    from napari_dfct.data import window_from_percentiles

    viewer = make_napari_viewer()
    viewer.add_image(small_sim.input[0].copy(), name="one slice")
    viewer.add_image(small_sim.target[0].copy(), name="its target")
    widget = train_widget(viewer, epochs=1, patch=32, dims=3)
    f = widget.fields
    f.input.value, f.target.value = viewer.layers["one slice"], viewer.layers["its target"]
    click(qtbot, widget.start_button)
    assert not widget.is_running
    assert notes["error"][-1] == (
        "Cannot start training: a 3-D model trains on volumes of neighbouring slices; "
        "layer 'one slice' is a single 2-D image: choose volume layers"
    )
    # a volume whose training block is shorter than the patch depth: 4 slices, 3 train
    f.input.value = viewer.add_image(small_sim.input.copy(), name="input")
    f.target.value = viewer.add_image(small_sim.target.copy(), name="target")
    f.patch_depth.value = 4
    said = "3-D patches are 4 consecutive slices of one scan; layer 'input' has 3 consecutive"
    assert said in f.data_summary.value
    click(qtbot, widget.start_button)
    assert not widget.is_running and said in notes["error"][-1]
    f.patch_depth.value = 3  # fits: the summary names the block split
    summary = f.data_summary.value
    assert "validation slices: 3" in summary and "3-D: patches of 3 consecutive" in summary
    # the default window is the training block's, as fit() computes it for a 3-D model
    block = window_from_percentiles(small_sim.input[:3], small_sim.target[:3])
    assert widget.data_panel.default == block
    # a data set read as dfct train --pairs reads it: a folder of scans gives each scan's
    # central slice, one slice, no 3-D patch
    rng = np.random.default_rng(0)
    for name in ("s0", "s1"):
        (tmp_path / name).mkdir()
        for kind in ("input", "target"):
            vol = rng.random((6, 32, 32)).astype(np.float32)
            tifffile.imwrite(tmp_path / name / f"{kind}.tif", vol, photometric="minisblack")
    f.source.value = "dataset"
    f.dataset.value = str(tmp_path)
    said = r"3-D patches are 3 consecutive slices of one scan; scan 's\d' has 1 consecutive"
    assert re.search(said, f.data_summary.value), f.data_summary.value
    click(qtbot, widget.start_button)
    assert not widget.is_running and re.search(said, notes["error"][-1])


@pytest.mark.slow
def test_train_a_3d_model_and_predict_the_current_slice_and_the_volume(
    make_napari_viewer, small_sim, tmp_path, qtbot, notes, registry
):
    from napari_dfct.checkpoint import load_model
    from napari_dfct.infer import predict
    from napari_dfct.widgets.predict import PredictWidget

    viewer = make_napari_viewer()
    kw = dict(scale=SCALE, translate=TRANSLATE)
    viewer.add_image(small_sim.input.copy(), name="input (1 rotation)", **kw)
    viewer.add_image(small_sim.target.copy(), name="target (4 rotations)", **kw)
    widget = train_widget(
        viewer,
        epochs=50,
        patience=50,
        patch=32,
        dims=3,
        patch_depth=2,
        save_under=str(tmp_path),
    )
    click(qtbot, widget.start_button)
    assert widget.is_running
    epochs = []

    def on_event(event):  # the first epoch's report (curves, progress), then Stop
        if event.kind == "epoch":
            epochs.append(event.value)
            if len(epochs) == 1:
                click(qtbot, widget.stop_button)

    widget._worker.yielded.connect(on_event)
    _wait(qtbot, widget)
    assert notes["error"] == [], notes["error"]
    result = widget.last_result
    assert result.stopped == "cancelled" and 1 <= result.epochs_run < 50
    bar = widget.progress.native
    assert 0 < bar.value() < bar.maximum() and bar.format().startswith("epoch ")
    assert len(widget.plot.line("val")[0]) == len(epochs)  # the curves of every epoch
    assert all(np.isfinite(e.val_loss) for e in epochs)
    preview = viewer.layers["input (1 rotation) [training preview]"]
    assert np.isfinite(np.asarray(preview.data)).all()
    model_dir = tmp_path / "run"
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["model"]["dims"] == 3 and cfg["train"]["patch_depth"] == 2
    assert cfg["split"]["val"] == [3]  # the last slice: the block split of one volume

    pw = PredictWidget(viewer)
    viewer.window.add_dock_widget(pw, name="Predict")
    assert pw.fields.model.value == model_dir.resolve()  # the run just stopped
    info = pw.info.toPlainText()
    assert "input    3-D, patch depth 2 (a volume, in z-chunks of 2 slices)" in info
    assert "dims 3" in info
    pw.fields.device.value = "cpu"
    pw.fields.image.value = viewer.layers["input (1 rotation)"]
    name = f"input (1 rotation) [prediction: {model_dir.name}]"
    loaded = load_model(model_dir)
    volume = small_sim.input
    z = 2
    viewer.dims.set_point(0, TRANSLATE[0] + z * SCALE[0])
    click(qtbot, pw.slice_button)
    _wait(qtbot, pw)
    assert notes["error"] == [], notes["error"]
    out = viewer.layers[name]
    assert out.data.shape == volume.shape
    np.testing.assert_allclose(out.scale, SCALE)
    np.testing.assert_allclose(out.translate, TRANSLATE)
    one = out.data[z].copy()
    assert np.isnan(out.data[[0, 1, 3]]).all()  # only the current slice is predicted
    np.testing.assert_allclose(one, predict(loaded, volume, slices=[z], device="cpu")[0])
    click(qtbot, pw.volume_button)
    _wait(qtbot, pw)
    assert notes["error"] == [], notes["error"]
    whole = predict(loaded, volume, device="cpu")
    np.testing.assert_allclose(out.data, whole, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.data[z], one)  # current slice = the volume's slice
    assert not np.allclose(out.data, volume)  # a trained model, not the identity
    pw.fields.image.value = viewer.add_image(volume[1].copy(), name="one slice")
    click(qtbot, pw.slice_button)  # a single slice holds no volume to predict
    _wait(qtbot, pw)
    assert "a 3-D model predicts volumes: give it the volume" in notes["error"][-1]
    assert "one slice [prediction: run]" not in viewer.layers
