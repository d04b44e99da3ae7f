"""2.5-D context models in the viewer: the Train widget trains one from layers and from a
data set of scans (neighbours read within each scan), and the Predict widget describes it
and predicts the current slice from the layer's neighbouring slices."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

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


def _wait(qtbot, widget, attr="is_running"):
    qtbot.waitUntil(lambda: not getattr(widget, attr), timeout=90_000)


@pytest.mark.slow
def test_train_a_context_model_from_layers_and_predict_the_current_slice(
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
        viewer, epochs=1, patience=5, patch=32, context=1, save_under=str(tmp_path)
    )
    summary = widget.fields.data_summary.value
    assert "context 1: each input is 3 neighbouring slices of its scan" in summary, summary
    click(qtbot, widget.start_button)
    _wait(qtbot, widget)
    assert notes["error"] == [], notes["error"]
    model_dir = tmp_path / "run"
    assert json.loads((model_dir / "config.json").read_text())["model"]["context"] == 1

    pw = PredictWidget(viewer)
    viewer.window.add_dock_widget(pw, name="Predict")
    assert pw.fields.model.value == model_dir.resolve()  # the run just trained
    assert "input    2.5-D, context 1 (3 slices: z-1, z, z+1)" in pw.info.toPlainText()
    pw.fields.device.value = "cpu"
    pw.fields.image.value = source = viewer.layers["input (1 rotation)"]
    loaded = load_model(model_dir)
    volume = small_sim.input
    for z in (0, 2):  # an end slice (a reflected neighbour) and an inner one
        viewer.dims.set_point(0, TRANSLATE[0] + z * SCALE[0])
        click(qtbot, pw.slice_button)
        _wait(qtbot, pw)
        assert notes["error"] == [], notes["error"]
        out = viewer.layers[f"input (1 rotation) [prediction: {model_dir.name}]"]
        assert out.data.shape == volume.shape
        np.testing.assert_allclose(out.scale, SCALE)
        np.testing.assert_allclose(out.translate, TRANSLATE)
        expected = predict(loaded, volume, slices=[z], device="cpu")[0]
        np.testing.assert_allclose(out.data[z], expected, rtol=1e-4, atol=1e-5)
    # the current slice reads its neighbours from the layer: change slice 3 of the
    # layer, and the prediction of slice 2 changes as predict() says it does
    before = out.data[2].copy()
    source.data[3] = np.flipud(source.data[3])
    click(qtbot, pw.slice_button)
    _wait(qtbot, pw)
    changed = predict(loaded, source.data, slices=[2], device="cpu")[0]
    np.testing.assert_allclose(out.data[2], changed, rtol=1e-4, atol=1e-5)
    assert np.abs(out.data[2] - before).max() > 1e-4


def _write_scans(root, lengths):
    """Scans of ``lengths`` slices (32 x 32) as a folder of scans."""
    rng = np.random.default_rng(0)
    for i, n in enumerate(lengths):
        y = rng.standard_normal((n, 32, 32)).astype(np.float32)
        x = (y + 0.3 * rng.standard_normal(y.shape)).astype(np.float32)
        (root / f"s{i}").mkdir(parents=True)
        tifffile.imwrite(root / f"s{i}" / "input.tif", x, photometric="minisblack")
        tifffile.imwrite(root / f"s{i}" / "target.tif", y, photometric="minisblack")
    return root


@pytest.mark.slow
def test_a_data_set_trains_a_context_model_with_each_scans_neighbours(
    make_napari_viewer, tmp_path, qtbot, notes, registry
):
    from napari_dfct.io.dataset import load_scans

    study = _write_scans(tmp_path / "study", [4, 5])
    widget = train_widget(
        make_napari_viewer(),
        epochs=1,
        patience=5,
        patch=16,
        save_under=str(tmp_path / "models"),
    )
    f = widget.fields
    f.source.value = "dataset"
    f.dataset.value = str(study)
    assert "context" not in f.data_summary.value  # a 2-D run
    f.context.value = 1
    summary = f.data_summary.value
    # a folder of scans: the central slice of each (with its neighbours)
    assert "2 scans, 2 slices" in summary and "context 1: each input is 3" in summary
    # the data the run gets: each slice with its neighbours of its own scan, as the CLI
    # reads them
    scans = widget.data_panel.scans()
    truth = load_scans(study, context=1)
    assert scans.context == 1 and len(scans.contexts) == 2
    for a, b in zip(scans.contexts, truth.contexts, strict=True):
        np.testing.assert_array_equal(a, b)
    click(qtbot, widget.start_button)
    _wait(qtbot, widget)
    assert notes["error"] == [], notes["error"]
    cfg = json.loads((tmp_path / "models" / "run" / "config.json").read_text())
    assert cfg["model"]["context"] == 1 and cfg["train"]["context"] == 1
    assert cfg["dataset"]["scans"] == ["s0", "s1"]


def test_data_without_neighbours_are_refused_in_the_form(
    make_napari_viewer, tmp_path, qtbot, notes
):
    from napari_dfct.cli import main

    widget = train_widget(make_napari_viewer(), epochs=1, patch=16, context=2)
    f = widget.fields
    assert f.context.label == "context (2.5-D)"
    assert "an image layer or a volume file is one scan" in f.context.tooltip
    f.source.value = "dataset"
    f.dataset.value = str(_write_scans(tmp_path / "short", [5, 4]))
    assert "context 2 needs scans of at least 5 slices" in f.data_summary.value
    click(qtbot, widget.start_button)
    assert not widget.is_running
    assert notes["error"] and "context 2 needs scans of at least 5 slices" in notes["error"][-1]
    # files from a set of independent specimens: their slices are not neighbours
    flat = tmp_path / "flat"
    argv = ["simulate", str(flat), "--specimens", "3", "--size", "32", "--views", "16"]
    assert main([*argv, "--rotations", "2", "--quiet"]) == 0
    # a layer whose simulation record says its slices are independent specimens
    viewer = widget._viewer
    meta = {"dfct": {"acquisition": "independent"}}
    rng = np.random.default_rng(1)
    vol = rng.random((6, 32, 32)).astype(np.float32)
    f.source.value = "layers"
    f.input.value = viewer.add_image(vol, name="specimens", metadata=meta)
    f.target.value = viewer.add_image(vol.copy(), name="specimens target")
    click(qtbot, widget.start_button)
    assert not widget.is_running
    assert "layer 'specimens' holds independent specimens" in notes["error"][-1]
    f.source.value = "files"
    f.input_file.value = flat / "input.tif"
    f.target_file.value = flat / "target.tif"
    click(qtbot, widget.start_button)
    assert not widget.is_running
    assert "holds independent specimens, one slice each" in notes["error"][-1]


@pytest.mark.slow
def test_export_a_context_model_from_the_slice_and_its_neighbours(
    make_napari_viewer, small_sim, registry, tmp_path, qtbot, notes
):
    """Export... of a context model: the test input is the slice on view and its
    neighbours of the layer (the last slice: slice 2 reflected); a 2-D layer is refused."""
    pytest.importorskip("bioimageio.spec", reason="export needs napari-dfct[bioimageio]")
    import zipfile

    from napari_dfct.train import TrainConfig, run_fit
    from napari_dfct.widgets.predict import PredictWidget

    cfg = TrainConfig(preset="tiny", epochs=1, patch=32, batch_size=4, context=1, device="cpu")
    run_fit(small_sim.input, small_sim.target, cfg, tmp_path / "ctx1", preview=False)
    viewer = make_napari_viewer()
    viewer.add_image(small_sim.input.copy(), name="input (1 rotation)")
    viewer.dims.set_current_step(0, 3)
    registry.register_model(tmp_path / "ctx1")
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Predict")
    widget.export_package(path=tmp_path / "ctx1.zip")
    qtbot.waitUntil(lambda: widget._export_worker is None, timeout=60_000)
    assert notes["error"] == [], notes["error"]
    with zipfile.ZipFile(tmp_path / "ctx1.zip") as zf:
        zf.extract("test_input.npy", tmp_path)
        readme = zf.read("README.md").decode()
    x = np.load(tmp_path / "test_input.npy")
    assert x.shape == (1, 3, 64, 64)
    np.testing.assert_array_equal(x[0], small_sim.input[[2, 3, 2]])
    assert "layer 'input (1 rotation)', slice 3 and its 2 neighbours" in readme
    viewer.add_image(small_sim.input[1].copy(), name="one slice")
    widget.fields.image.value = viewer.layers["one slice"]
    widget.export_package(path=tmp_path / "flat.zip")
    assert "layer 'one slice' is a single slice: choose a volume layer" in notes["error"][-1]
    assert widget._export_worker is None and not (tmp_path / "flat.zip").exists()
    widget.fields.device.value = "cpu"
    widget.predict_current_slice()  # a 2-D layer has no neighbours to predict from
    qtbot.waitUntil(lambda: not widget.is_running, timeout=60_000)
    assert "give it the volume, not a single slice" in notes["error"][-1]
    assert "one slice [prediction: ctx1]" not in viewer.layers
