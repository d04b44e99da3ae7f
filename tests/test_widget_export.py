"""The Predict widget's Export... button: a bioimage.io package of the chosen model, its
test tensors from the image's current slice; failures are one notification."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui


@pytest.fixture
def widget(make_napari_viewer, small_sim, registry, trained_model):
    from napari_dfct.widgets.predict import PredictWidget

    viewer = make_napari_viewer()
    viewer.add_image(small_sim.input.copy(), name="input (1 rotation)")
    viewer.dims.set_current_step(0, 2)
    registry.register_model(trained_model)
    w = PredictWidget(viewer)
    viewer.window.add_dock_widget(w, name="Predict")
    return w


@pytest.fixture
def notes(capture_notifications):
    from napari_dfct.widgets import predict as mod

    return capture_notifications(mod)


@pytest.mark.slow
def test_export_button_writes_a_package(widget, notes, qtbot, tmp_path, monkeypatch, small_sim):
    pytest.importorskip("bioimageio.spec", reason="export needs napari-dfct[bioimageio]")
    from qtpy.QtCore import Qt

    from napari_dfct.widgets import predict as mod

    out = tmp_path / "chosen"  # the dialog's name without .zip: the widget adds it
    monkeypatch.setattr(
        mod.QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), ""))
    )
    qtbot.mouseClick(widget.export_button.native, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: widget._export_worker is None and widget.export_button.enabled, timeout=60_000
    )
    assert notes["error"] == []
    package = tmp_path / "chosen.zip"
    assert widget.last_export == package and package.is_file()
    assert any("bioimage.io package written" in m for m in notes["info"])
    with zipfile.ZipFile(package) as zf:
        zf.extract("test_input.npy", tmp_path)
        readme = zf.read("README.md").decode()
    x = np.load(tmp_path / "test_input.npy")
    assert x.shape == (1, 1, 64, 64)
    np.testing.assert_array_equal(x[0, 0], small_sim.input[2])  # the slice on view
    assert "layer 'input (1 rotation)', slice 2" in readme


def test_export_refusals_are_notifications(widget, notes, qtbot, tmp_path, monkeypatch):
    pytest.importorskip("bioimageio.spec", reason="export needs napari-dfct[bioimageio]")
    with monkeypatch.context() as patch:
        patch.setattr(
            "napari_dfct.export.bioimageio_missing",
            lambda: "bioimage.io export needs the package bioimageio.spec",
        )
        widget.export_package(path=tmp_path / "m.zip")
    assert notes["error"] == [
        "Cannot export: bioimage.io export needs the package bioimageio.spec"
    ]

    existing = tmp_path / "theirs.zip"
    existing.write_bytes(b"theirs")
    widget.export_package(path=existing)  # a path given directly is never replaced
    qtbot.waitUntil(lambda: widget._export_worker is None, timeout=60_000)
    assert "exists" in notes["error"][-1] and existing.read_bytes() == b"theirs"

    widget.fields.model.value = None
    widget.export_package(path=tmp_path / "m.zip")
    assert notes["error"][-1].startswith("Cannot export: choose a model")


@pytest.fixture(scope="module")
def deep_model(tmp_path_factory):
    """A model folder of the ``small`` preset's depth (halo 137 px, smallest package input
    288x288, larger than the sample's 256x256 slices), with 4 channels to stay fast."""
    import torch

    from napari_dfct.checkpoint import save_checkpoint
    from napari_dfct.model import build_model

    torch.manual_seed(0)
    model = build_model("small", zero_init=False, base_channels=4).eval()
    out = tmp_path_factory.mktemp("models") / "deep"
    return save_checkpoint(out, model, {"preset": "small", "window": {"low": -3.0, "high": 4.0}})


@pytest.mark.slow
def test_export_of_the_sample_input_pads_its_slice_and_passes_the_model_test(
    make_napari_viewer, capture_notifications, registry, deep_model, qtbot, tmp_path, monkeypatch
):
    """The issue's case: the sample's 256x256 input with a model whose smallest input is
    288x288. Export... warns once that the slice is padded, and writes a package that
    passes bioimage.io's own model test."""
    pytest.importorskip("bioimageio.core", reason="the model test needs napari-dfct[bioimageio]")
    from bioimageio.core import test_model
    from qtpy.QtCore import Qt

    from napari_dfct._sample_data import SAMPLE_PARAMS
    from napari_dfct.simulate import simulate_dfct
    from napari_dfct.widgets import predict as mod
    from napari_dfct.widgets.predict import PredictWidget

    size = SAMPLE_PARAMS["size"]
    sim = simulate_dfct(n_slices=3, size=size, n_views=64, rotations=1, seed=0)
    viewer = make_napari_viewer()
    viewer.add_image(sim.input, name="input (1 rotation)")
    viewer.dims.set_current_step(0, 1)
    registry.register_model(deep_model)
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Predict")
    assert widget.fields.image.value.name == "input (1 rotation)"
    notes = capture_notifications(mod)
    out = tmp_path / "sample.zip"
    monkeypatch.setattr(
        mod.QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), ""))
    )
    qtbot.mouseClick(widget.export_button.native, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: widget._export_worker is None and widget.export_button.enabled, timeout=120_000
    )
    assert notes["error"] == []
    # one message before the export, saying what is used instead of the too-small slice
    assert notes["warning"] == [
        (
            f"Export: the test tile is layer 'input (1 rotation)', slice 1: {size}x{size}, "
            "smaller than the package's smallest input (288x288: twice the network's receptive "
            "radius, a multiple of its pooling grid), padded by reflection to 288x288."
        )
    ]
    assert notes["info"] == [
        (
            f"bioimage.io package written: {out} (test tile: layer 'input (1 rotation)', "
            "slice 1, padded to 288x288)"
        )
    ]
    with zipfile.ZipFile(out) as zf:
        zf.extract("test_input.npy", tmp_path)
        readme = zf.read("README.md").decode()
    x = np.load(tmp_path / "test_input.npy")
    pad = (288 - size) // 2
    assert x.shape == (1, 1, 288, 288)
    np.testing.assert_array_equal(x[0, 0, pad : pad + size, pad : pad + size], sim.input[1])
    assert "padded by reflection to 288x288" in readme

    summary = test_model(out, devices=["cpu"])
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed


@pytest.mark.slow
def test_export_of_a_3d_model_takes_the_slices_around_the_one_on_view(
    make_napari_viewer, capture_notifications, registry, qtbot, tmp_path, monkeypatch
):
    """A 3-D model's Export... cuts its test input from the layer's consecutive slices
    around the slice on view (moved inside the volume at its end), the ends reflected;
    a 2-D layer is one notification."""
    pytest.importorskip("bioimageio.spec", reason="export needs napari-dfct[bioimageio]")
    import torch
    from qtpy.QtCore import Qt

    from napari_dfct.checkpoint import save_checkpoint
    from napari_dfct.model import build_model
    from napari_dfct.widgets import predict as mod
    from napari_dfct.widgets.predict import PredictWidget

    torch.manual_seed(0)
    net = build_model("tiny", dims=3, zero_init=False).eval()
    config = {"preset": "tiny", "window": {"low": 0.0, "high": 8.0}, "train": {"patch_depth": 8}}
    model = save_checkpoint(tmp_path / "m3d", net, config)
    volume = np.arange(8, dtype=np.float32)[:, None, None] + np.zeros((1, 64, 64), np.float32)
    viewer = make_napari_viewer()
    viewer.add_image(volume, name="volume")
    viewer.dims.set_current_step(0, 7)  # the last slice: slices 4-7
    registry.register_model(model)
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Predict")
    notes = capture_notifications(mod)
    out = tmp_path / "m3d.zip"
    monkeypatch.setattr(
        mod.QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), ""))
    )
    qtbot.mouseClick(widget.export_button.native, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: widget._export_worker is None and widget.export_button.enabled, timeout=60_000
    )
    assert notes["error"] == []
    with zipfile.ZipFile(out) as zf:
        zf.extract("test_input.npy", tmp_path)
        readme = zf.read("README.md").decode()
    x = np.load(tmp_path / "test_input.npy")
    assert x.shape == (1, 1, 8, 64, 64)
    assert x[0, 0, :, 0, 0].tolist() == [6, 5, 4, 5, 6, 7, 6, 5]
    assert "layer 'volume', slices 4-7" in readme

    viewer.add_image(volume[3], name="one slice")
    widget.fields.image.value = viewer.layers["one slice"]
    widget.export_package(path=tmp_path / "flat.zip")
    assert notes["error"][-1] == (
        "Cannot export: a 3-D model reads volumes; layer 'one slice' is a single slice: "
        "choose a volume layer"
    )
