"""bioimage.io export of a 3-D model: z as a space axis (batch, channel, z, y, x), its test
input one z-chunk of napari-dfct's prediction (slices of the data with reflected ends),
the package passes bioimage.io's own model test offline, and its test output is
napari-dfct's prediction of those slices."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import tifffile
import torch

from napari_dfct.cli import main
from napari_dfct.export import ExportError, model_patch_depth, read_sample, sample_input
from napari_dfct.export.volume import z_plan
from napari_dfct.infer import _chunk_plan

#: The identity's tolerance, in units of the intensity window's width: the package's
#: pipeline (clip, scale_linear, network, scale_linear) and napari-dfct's prediction
#: (its window's normalisation, the network, z-chunk blending of one chunk) differ by
#: float32 rounding only.
IDENTITY_TOL = 1e-5


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """A simulated volume of 8 neighbouring slices of one acquisition, as a TIFF."""
    from napari_dfct.simulate import simulate_dfct

    sim = simulate_dfct(n_slices=8, size=64, n_views=64, rotations=2, seed=1)
    path = tmp_path_factory.mktemp("exp3d") / "input.tif"
    tifffile.imwrite(path, sim.input.astype(np.float32))
    return sim.input.astype(np.float32), path


@pytest.fixture(scope="module")
def model_3d(volume, tmp_path_factory):
    """A tiny 3-D model (patch depth 8) with fixed random weights and batch-norm
    statistics, saved with the checkpoint API: far from the identity, so that its
    prediction tells a wrong package apart."""
    from napari_dfct.checkpoint import save_checkpoint
    from napari_dfct.model import build_model

    x, _ = volume
    torch.manual_seed(7)
    net = build_model("tiny", dims=3, zero_init=False)
    with torch.no_grad():
        for name, buf in net.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
    low, high = (float(v) for v in np.percentile(x, [1, 99]))
    config = {
        "name": "random-3d",
        "preset": "tiny",
        "window": {"low": low, "high": high},
        "train": {"dims": 3, "patch_depth": 8, "preset": "tiny"},
    }
    return save_checkpoint(tmp_path_factory.mktemp("exp3dm") / "m3d", net.eval(), config)


@pytest.mark.parametrize("depth, inner, ends", [(8, 4, 2), (6, 4, 1), (4, 2, 1), (3, 3, 0)])
def test_the_test_block_is_one_z_chunk_of_the_prediction(depth, inner, ends):
    """The test input's inner slices and reflected ends are the z-chunk that
    :func:`napari_dfct.predict` runs for a volume of those inner slices: one chunk of
    ``depth`` slices starting at the extended volume's first slice."""
    assert z_plan(depth) == (inner, ends)
    got_ends, chunk, starts, _ = _chunk_plan(inner, depth)
    assert (got_ends, chunk, starts) == (ends, depth, [0])


def test_the_test_input_is_the_central_slices_with_reflected_ends():
    # voxel values name their slice
    v = np.arange(8, dtype=np.float32)[:, None, None] + np.zeros((1, 70, 90), np.float32)
    tile, words = sample_input(v, 4, smallest=60, depth=8)
    assert tile.shape == (8, 68, 68) and tile.dtype == np.float32
    # the central four slices 2..5, each end reflected about its end slice (-1 is 1)
    assert tile[:, 30, 30].tolist() == [4, 3, 2, 3, 4, 5, 4, 3]
    assert "(slices 2-5)" in words and "2 slices reflected at each end" in words
    # too small in-plane: every slice padded alike, by reflection
    tile, words = sample_input(v[2:6, :40, :40], 4, smallest=60, depth=8)
    assert tile.shape == (8, 60, 60) and "padded by reflection to 60x60" in words
    np.testing.assert_array_equal(tile[2:6, 10:50, 10:50], v[2:6, :40, :40])
    for bad, got in ((v[0], "a single slice"), (v[:3], "3 slices")):
        with pytest.raises(ExportError, match=f"at least 4 consecutive slices .*got {got}"):
            sample_input(bad, 4, smallest=60, depth=8)


def test_read_sample_takes_the_slices_around_the_chosen_one(volume, tmp_path):
    x, path = volume
    for z, first in ((None, 2), (0, 0), (4, 2), (7, 4)):  # moved inside at the ends
        block, words = read_sample(path, z, depth=8)
        np.testing.assert_array_equal(block, x[first : first + 4])
        assert words == f"input.tif, slices {first}-{first + 3}"
    one = tmp_path / "one.tif"
    tifffile.imwrite(one, x[3])
    with pytest.raises(ExportError, match="one.tif is a single slice: a 3-D model"):
        read_sample(one, depth=8)
    # a data set of scans: its first scan's first chosen slice, in that scan's own volume
    vols = tmp_path / "vols"
    argv = ["simulate", str(vols), "--specimens", "2", "--slices", "5", "--size", "64"]
    assert main([*argv, "--views", "32", "--rotations", "2", "--quiet"]) == 0
    block, words = read_sample(vols, depth=8)
    np.testing.assert_array_equal(block, tifffile.imread(vols / "specimen-000" / "input.tif")[:4])
    assert words == "scan 'specimen-000' of vols, slices 0-3"
    with pytest.raises(ExportError, match="^a 3-D model .* got 5 slices$"):
        read_sample(vols, depth=12)  # 6 slices needed


def _no_network(monkeypatch) -> list:
    """Every httpx request raises a connection error; the requests tried are listed."""
    import httpx

    requests: list = []

    def refuse(*args, **kwargs):
        requests.append(args[:2])
        raise httpx.ConnectError("no network in this test")

    for name in ("request", "stream", "get", "head", "post"):
        monkeypatch.setattr(httpx, name, refuse)
    return requests


@pytest.mark.slow
def test_a_3d_package_passes_the_model_test_and_is_the_prediction(
    model_3d, volume, tmp_path, capsys, monkeypatch
):
    """``dfct export`` of a 3-D model with ``--data VOLUME --slice 0``: the package passes
    ``bioimageio.core.test_model`` with no network; its axes, read back by bioimage.io,
    name z as a space axis; its test input is slices 0-3 of the volume with two slices
    reflected at each end, and its test output without those ends is
    ``napari_dfct.predict`` of slices 0-3 (within :data:`IDENTITY_TOL` of the window)."""
    pytest.importorskip("bioimageio.core", reason="needs the extra napari-dfct[bioimageio]")
    from bioimageio.core import test_model
    from bioimageio.spec import load_description
    from bioimageio.spec.model import v0_5

    from napari_dfct.checkpoint import load_model
    from napari_dfct.infer import predict

    x, tif = volume
    requests = _no_network(monkeypatch)
    out = tmp_path / "m3d.zip"
    argv = ["export", str(model_3d), str(out), "--data", str(tif), "--slice", "0"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "input.tif, slices 0-3" in capsys.readouterr().err
    assert requests == []
    summary = test_model(out, devices=["cpu"])
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed

    # round trip: the description bioimage.io reads back
    descr = load_description(out, perform_io_checks=False)
    assert isinstance(descr, v0_5.ModelDescr), descr
    (inp,), (outp,) = descr.inputs, descr.outputs
    assert [str(a.id) for a in inp.axes] == ["batch", "channel", "z", "y", "x"]
    assert [str(a.id) for a in outp.axes] == ["batch", "channel", "z", "y", "x"]
    z_in, z_out = inp.axes[2], outp.axes[2]
    assert z_in.type == "space" and z_out.type == "space"
    assert (z_in.size.min, z_in.size.step) == (8, 1)  # the patch depth, any number above
    assert (inp.axes[3].size.min, inp.axes[3].size.step) == (60, 4)  # tiny: 2**2, halo 29
    assert z_out.halo == 2 and outp.axes[3].halo == 29
    assert str(z_out.size.axis_id) == "z" and str(z_out.size.tensor_id) == "input"
    assert descr.weights.pytorch_state_dict.architecture.kwargs["dims"] == 3
    assert "3d" in descr.tags

    with zipfile.ZipFile(out) as zf:
        zf.extractall(tmp_path / "pkg")
        readme = zf.read("README.md").decode()
    assert "Not in this 3-D package:" in readme
    test_in = np.load(tmp_path / "pkg" / "test_input.npy")
    test_out = np.load(tmp_path / "pkg" / "test_output.npy")
    assert test_in.shape == test_out.shape == (1, 1, 8, 64, 64)
    np.testing.assert_array_equal(test_in[0, 0], x[[2, 1, 0, 1, 2, 3, 2, 1]])
    loaded = load_model(model_3d)
    width = loaded.window.high - loaded.window.low
    ours = predict(loaded, x[0:4], device="cpu")
    inner = test_out[0, 0, 2:6]
    assert np.abs(inner - x[0:4]).max() > 0.1 * width  # the model is far from the identity
    np.testing.assert_allclose(inner, ours, rtol=0, atol=IDENTITY_TOL * width)


def test_3d_export_refuses_data_without_enough_slices(model_3d, volume, tmp_path, capsys):
    x, _ = volume
    assert model_patch_depth(model_3d) == 8
    one, short = tmp_path / "one.tif", tmp_path / "short.tif"
    tifffile.imwrite(one, x[2])
    tifffile.imwrite(short, x[:3], photometric="minisblack")
    flat = tmp_path / "flat"
    argv = ["simulate", str(flat), "--specimens", "3", "--size", "64", "--views", "32"]
    assert main([*argv, "--rotations", "2", "--quiet"]) == 0
    capsys.readouterr()
    for data, words in (
        (one, "one.tif is a single slice: a 3-D model (patch depth 8) reads 4 consecutive"),
        (short, "at least 4 consecutive slices of one scan, got 3 slices"),
        (flat, "holds independent specimens, one slice each: a 3-D model"),
    ):
        out = tmp_path / "m.zip"
        assert main(["export", str(model_3d), str(out), "--data", str(data)]) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
        assert len(err) == 1 and words in err[0], err
        assert not out.exists()
