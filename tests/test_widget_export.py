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
