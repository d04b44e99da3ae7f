"""The readers and writers inside a real napari viewer (run under ``xvfb-run -a``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from napari_dfct import io  # noqa: E402

PLUGIN = "napari-dfct"


def test_viewer_opens_tiff_and_npz(make_napari_viewer, tmp_path):
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(4, 12, 10)).astype(np.float32)
    tif = io.write_volume(tmp_path / "stack.tif", vol, scale=(2.0, 0.5, 0.25), unit="mm")
    npz = tmp_path / "pair.npz"
    np.savez(npz, input=vol[0], target=vol[1:].astype(np.float64))

    viewer = make_napari_viewer()
    (layer,) = viewer.open(tif, plugin=PLUGIN)
    assert layer.name == "stack" and layer.ndim == 3
    np.testing.assert_array_equal(layer.data, vol)
    np.testing.assert_allclose(layer.scale, (2.0, 0.5, 0.25))
    assert layer.colormap.name == "gray"
    assert layer.metadata["source"] == str(tif)
    assert layer.source.reader_plugin == PLUGIN

    layers = viewer.open(npz, plugin=PLUGIN)
    assert [ly.name for ly in layers] == ["pair:input", "pair:target"]
    np.testing.assert_array_equal(layers[0].data, vol[0])
    np.testing.assert_array_equal(layers[1].data, vol[1:])
    assert layers[1].data.dtype == np.float32


def test_viewer_opens_a_real_dicom_file(make_napari_viewer):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    if path is None or not Path(path).is_file():  # pragma: no cover
        pytest.skip("pydicom does not ship CT_small.dcm in this installation")
    ds = pydicom.dcmread(path)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(path, plugin=PLUGIN)
    truth = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(layer.data, truth.astype(np.float32))
    np.testing.assert_allclose(layer.scale, [float(v) for v in ds.PixelSpacing])
    assert layer.metadata["modality"] == "CT"
    assert -950 < layer.data[:20, :10].mean() < -700  # aerated lung in HU


def test_viewer_reports_bad_files_with_the_readers_message(make_napari_viewer, tmp_path):
    bad = tmp_path / "colour.npy"
    np.save(bad, np.zeros((16, 16, 3), np.uint8))
    viewer = make_napari_viewer()
    # napari shows this message in its error notification / reader dialog
    with pytest.raises(ValueError, match=r"colour\.npy looks like an RGB\(A\) colour image"):
        viewer.open(bad, plugin=PLUGIN)
    assert len(viewer.layers) == 0


def test_viewer_reports_a_truncated_tiff_in_one_line(make_napari_viewer, tmp_path):
    whole = io.write_volume(tmp_path / "whole.tif", np.ones((16, 64, 64), np.float32))
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[:120000])
    viewer = make_napari_viewer()
    # napari shows this message in its error notification / reader dialog
    with pytest.raises(ValueError) as info:
        viewer.open(cut, plugin=PLUGIN)
    message = str(info.value)
    assert "cut.tif is not a readable TIFF file: it ends at byte 120000" in message
    assert "\n" not in message
    assert len(viewer.layers) == 0


def test_viewer_saves_through_the_plugin_writers(make_napari_viewer, tmp_path):
    rng = np.random.default_rng(1)
    vol = rng.random((3, 8, 9)).astype(np.float64)
    viewer = make_napari_viewer()
    layer = viewer.add_image(vol, name="pred", scale=(3.0, 0.7, 0.8), metadata={"unit": "mm"})

    tif = tmp_path / "pred.tif"
    written = viewer.layers.save(str(tif), selected=False, plugin=PLUGIN)
    assert [Path(p) for p in written] == [tif]
    out, info = io.read_volume(tif)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, vol.astype(np.float32))
    assert info["scale"] == pytest.approx((3.0, 0.7, 0.8))

    # open it again: the scale comes back through the reader
    (again,) = viewer.open(tif, plugin=PLUGIN)
    np.testing.assert_allclose(again.scale, layer.scale)

    npy = tmp_path / "pred.npy"
    viewer.layers.selection = {layer}
    written = viewer.layers.save(str(npy), selected=True, plugin=PLUGIN)
    assert [Path(p) for p in written] == [npy]
    np.testing.assert_array_equal(np.load(npy, allow_pickle=False), vol.astype(np.float32))
