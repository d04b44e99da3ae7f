"""The ``thorax`` sample: layers in a real viewer, ROI convention, cache behaviour."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_dfct import _sample_data
from napari_dfct._sample_data import load_sample, make_sample_data

TINY = dict(n_slices=2, size=64, n_views=32, rotations=2, seed=4)
IMAGE_NAMES = ["input (1 rotation)", "target (20 rotations)", "truth"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """Point the sample cache at a temporary folder (never the home directory)."""
    monkeypatch.delenv("NAPARI_DFCT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "napari-dfct"


@pytest.mark.gui
def test_open_sample_in_viewer(make_napari_viewer, cache):
    import napari

    viewer = make_napari_viewer()
    viewer.open_sample("napari-dfct", "thorax")
    names = [layer.name for layer in viewer.layers]
    # bottom to top: the streaky single-rotation input is the image on top, seen first
    assert names == IMAGE_NAMES[::-1] + ["DFCT ROIs"]
    images = [layer for layer in viewer.layers if isinstance(layer, napari.layers.Image)]
    assert images[-1].name == "input (1 rotation)" and images[-1].visible
    limits = None
    for name in IMAGE_NAMES:
        layer = viewer.layers[name]
        assert isinstance(layer, napari.layers.Image)
        assert layer.data.shape == (16, 256, 256) and layer.data.dtype == np.float32
        assert layer.colormap.name == "gray"
        limits = limits or tuple(layer.contrast_limits)
        assert tuple(layer.contrast_limits) == limits  # shared window
    rois = viewer.layers["DFCT ROIs"]
    assert isinstance(rois, napari.layers.Shapes)
    assert rois.ndim == 2  # broadcasts over z
    assert list(rois.shape_type) == ["rectangle", "rectangle", "line"]
    assert list(rois.features["role"]) == ["signal", "background", "line"]
    edges = {tuple(np.round(c, 3)) for c in rois.edge_color}
    assert len(edges) == 3  # distinct colours
    # the arrays were cached in the (temporary) user cache
    assert len(list(cache.glob("thorax-*.npz"))) == 1
    assert len(list(cache.glob("thorax-*.json"))) == 1


def test_roi_layer_follows_the_convention(cache):
    layers = make_sample_data(**TINY)
    (data, kwargs, kind) = layers[-1]
    meta = layers[0][1]["metadata"]["dfct"]
    assert kind == "shapes" and kwargs["name"] == "DFCT ROIs"
    s = meta["roi_size"]
    for square, key in ((data[0], "signal_center"), (data[1], "background_center")):
        r, c = meta[key]
        assert square.shape == (4, 2)
        np.testing.assert_allclose(square.min(0), [r - s / 2, c - s / 2])
        np.testing.assert_allclose(square.max(0), [r + s / 2, c + s / 2])
    np.testing.assert_allclose(data[2], [meta["signal_center"], meta["background_center"]])
    assert kwargs["face_color"] == "transparent"
    # the squares sit on lung (bright) and air (about 0) in the truth
    truth = next(d for d, kw, _ in layers if kw["name"] == "truth")[meta["slice"]]
    h = s // 2
    (sr, sc), (br, bc) = meta["signal_center"], meta["background_center"]
    lung = truth[sr - h : sr + h, sc - h : sc + h].mean()
    air = truth[br - h : br + h, bc - h : bc + h].mean()
    assert lung > 1.0 and abs(air) < 0.1 * lung
    # the window shows air, lung and room for streaks on both sides
    lo, hi = layers[0][1]["contrast_limits"]
    assert lo < air - 0.2 and hi > lung


def test_cache_is_reused(cache, monkeypatch):
    first, meta = load_sample(**TINY)
    assert len(list(cache.glob("thorax-*.npz"))) == 1

    def boom(**_):  # a second call must not simulate again
        raise AssertionError("simulated although cached")

    monkeypatch.setattr("napari_dfct.simulate.simulate_dfct", boom)
    again, meta2 = load_sample(**TINY)
    for key in ("input", "target", "truth"):
        np.testing.assert_array_equal(again[key], first[key])
        assert again[key].dtype == np.float32
    assert meta2 == json.loads(json.dumps(meta))
    # other parameters, other key
    assert _sample_data._key({**TINY, "seed": 5}) != _sample_data._key(TINY)


def test_damaged_cache_is_regenerated(cache):
    first, _ = load_sample(**TINY)
    (npz,) = cache.glob("thorax-*.npz")
    npz.write_bytes(b"not a zip file")
    again, _ = load_sample(**TINY)
    np.testing.assert_array_equal(again["truth"], first["truth"])


def test_unwritable_cache_is_tolerated(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("NAPARI_DFCT_CACHE_DIR", str(blocker / "sub"))
    layers = make_sample_data(**TINY)
    assert [layer[1]["name"] for layer in layers] == [
        "truth",
        "target (2 rotations)",
        "input (1 rotation)",
        "DFCT ROIs",
    ]
    assert layers[0][0].shape == (2, 64, 64)
