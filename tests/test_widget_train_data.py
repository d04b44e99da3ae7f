"""The Train widget's data tab: a data set of scans as source (summary, training), and the
intensity window (the CLI's default shown, an edited one saved in the model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from widget_helpers import train_widget

pytest.importorskip("napari")
pytestmark = pytest.mark.gui


@pytest.fixture
def notes(capture_notifications):
    from napari_dfct.widgets import train as mod

    return capture_notifications(mod)


@pytest.fixture
def study(tmp_path):
    """Three scans of different sizes and slice counts, as a folder of scans."""
    rng = np.random.default_rng(0)
    root = tmp_path / "study"
    for name, (n, h, w) in {"a": (3, 40, 48), "b": (2, 32, 36), "c": (1, 36, 32)}.items():
        y = rng.standard_normal((n, h, w)).astype(np.float32)
        x = (y + 0.3 * rng.standard_normal(y.shape)).astype(np.float32)
        (root / name).mkdir(parents=True)
        tifffile.imwrite(root / name / "input.tif", x, photometric="minisblack")
        tifffile.imwrite(root / name / "target.tif", y, photometric="minisblack")
    return root


def _widget(viewer, tmp_path, **overrides):
    settings = dict(epochs=1, patience=5, patch=16, save_under=str(tmp_path / "models"))
    return train_widget(viewer, **{**settings, **overrides})


def _start_and_wait(qtbot, widget):
    from qtpy.QtCore import Qt

    qtbot.mouseClick(widget.start_button.native, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.is_running, timeout=90_000)


def _saved_config(tmp_path) -> dict:
    return json.loads((tmp_path / "models" / "run" / "config.json").read_text())


@pytest.mark.slow
def test_a_data_set_shows_its_summary_and_trains(
    make_napari_viewer, study, tmp_path, qtbot, notes, registry
):
    from napari_dfct.io.dataset import load_scans
    from napari_dfct.train import default_window

    widget = _widget(make_napari_viewer(), tmp_path, seed=1, val_fraction=0.34)
    f = widget.fields
    f.source.value = "dataset"
    assert not f.dataset.native.isHidden() and f.input.native.isHidden()
    f.dataset.value = str(study)
    summary = f.data_summary.value
    assert "3 scans, 3 slices" in summary and "held out for validation" in summary
    # the window fields show the default dfct train computes on the same data and split
    expected = default_window(load_scans(study), val_fraction=0.34, seed=1)
    assert float(f.window_low.value) == pytest.approx(expected.low, rel=1e-5)
    assert float(f.window_high.value) == pytest.approx(expected.high, rel=1e-5)
    assert widget.data_panel.histogram.line("hist") is not None
    assert widget.data_panel.histogram.line("low").get_xdata()[0] == pytest.approx(expected.low)
    _start_and_wait(qtbot, widget)
    assert notes["error"] == []
    cfg = _saved_config(tmp_path)
    assert cfg["window"] == expected.to_dict()  # exact, not the rounded text
    assert cfg["dataset"]["scans"] == ["a", "b", "c"]
    assert (
        cfg["dataset"]["val_scans"]
        and cfg["dataset"]["val_scans"][0] in summary.split("validation: ")[1]
    )


def test_a_bad_data_set_is_a_notification(make_napari_viewer, tmp_path, qtbot, notes):
    from qtpy.QtCore import Qt

    widget = _widget(make_napari_viewer(), tmp_path)
    widget.fields.source.value = "dataset"
    (tmp_path / "empty").mkdir()
    widget.fields.dataset.value = str(tmp_path / "empty")
    assert "holds no scans" in widget.fields.data_summary.value
    qtbot.mouseClick(widget.start_button.native, Qt.MouseButton.LeftButton)
    assert notes["error"] and "holds no scans" in notes["error"][-1]
    assert not widget.is_running


def test_the_window_default_is_the_clis_and_an_edited_one_is_saved(
    make_napari_viewer, small_sim, tmp_path, qtbot, notes, registry
):
    from napari_dfct.cli import main
    from napari_dfct.io import write_volume

    viewer = make_napari_viewer()
    viewer.add_image(small_sim.input.copy(), name="input (1 rotation)")
    viewer.add_image(small_sim.target.copy(), name="target (20 rotations)")
    widget = _widget(viewer, tmp_path, seed=2)
    f = widget.fields
    # the CLI on the same data and seed, without --window
    write_volume(tmp_path / "in.tif", small_sim.input)
    write_volume(tmp_path / "gt.tif", small_sim.target)
    assert (
        main(
            [
                "train",
                "--input",
                str(tmp_path / "in.tif"),
                "--target",
                str(tmp_path / "gt.tif"),
                "--out",
                str(tmp_path / "cli"),
                "--epochs",
                "1",
                "--preset",
                "tiny",
                "--patch",
                "16",
                "--batch-size",
                "4",
                "--seed",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    cli = json.loads((tmp_path / "cli" / "config.json").read_text())["window"]
    assert widget.data_panel.window().to_dict() == cli
    assert (f.window_low.value, f.window_high.value) == (f"{cli['low']:.6g}", f"{cli['high']:.6g}")
    assert "validation slices" in f.data_summary.value
    # another split, another training set: the shown default follows
    f.val_fraction.value = 0.5
    assert widget.data_panel.window().to_dict() != cli
    f.val_fraction.value = 0.2
    assert widget.data_panel.window().to_dict() == cli
    # an edited window is kept when the data change, drawn, and saved in the model
    f.window_low.value, f.window_high.value = "-0.25", "1.5"
    f.val_fraction.value = 0.5
    f.val_fraction.value = 0.2
    assert (f.window_low.value, f.window_high.value) == ("-0.25", "1.5")
    assert widget.data_panel.histogram.line("high").get_xdata()[0] == pytest.approx(1.5)
    _start_and_wait(qtbot, widget)
    assert notes["error"] == []
    assert _saved_config(tmp_path)["window"] == {"low": -0.25, "high": 1.5}
    # Default puts the data's window back; a bad entry is refused before training
    widget.fields.window_default.changed.emit(True)
    assert widget.data_panel.window().to_dict() == cli
    f.window_low.value = "2"
    f.window_high.value = "1"
    f.run_name.value = "run2"
    _start_and_wait(qtbot, widget)
    assert notes["error"] and "intensity window" in notes["error"][-1]
    assert not (tmp_path / "models" / "run2").exists()
