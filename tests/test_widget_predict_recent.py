"""Predict offers the recent models of the default model folder (where Train saves runs
by default), from earlier sessions too, newest first, in a real viewer."""

from __future__ import annotations

import os
import shutil

import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui


@pytest.fixture
def home_models(tmp_path, monkeypatch, trained_model):
    """Three model folders written at known times (copies of the shared model), a folder
    without a model and a stray file, in a default model folder of this test."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("NAPARI_DFCT_MODELS_DIR", str(folder))
    for name, when in (("older", 1_000_000), ("newest", 3_000_000), ("middle", 2_000_000)):
        shutil.copytree(trained_model, folder / name)
        os.utime(folder / name / "config.json", (when, when))
    (folder / "not-a-model").mkdir()
    (folder / "notes.txt").write_text("x")
    return folder


def test_recent_models_newest_first(home_models):
    from napari_dfct.widgets import _models

    found = _models.recent_models()
    assert [p.name for p in found] == ["newest", "middle", "older"]
    assert [p.name for p in _models.recent_models(limit=2)] == ["newest", "middle"]
    assert _models.recent_models(home_models / "missing") == []


def test_predict_lists_recent_models_after_the_sessions(
    make_napari_viewer, registry, home_models, trained_model
):
    from napari_dfct.widgets.predict import PredictWidget
    from napari_dfct.widgets.train import TrainWidget

    viewer = make_napari_viewer()
    # the Train widget saves under the same folder by default
    train = TrainWidget(viewer)
    assert train.fields.save_under.value == home_models
    widget = PredictWidget(viewer)
    choices = [value for _, value in widget._model_choices()]
    names = [(home_models / n).resolve() for n in ("newest", "middle", "older")]
    assert choices == names  # a fresh session: the folder's models, newest first
    assert widget.fields.model.value == names[0]
    # a model of this session comes first, and is not listed twice
    registry.register_model(home_models / "older")
    choices = [value for _, value in widget._model_choices()]
    assert choices == [names[2], names[0], names[1]]
    assert widget.fields.model.value == names[2]
