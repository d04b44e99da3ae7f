"""bioimage.io export of a 2.5-D context model: the slice and its neighbours as input
channels, test tensors from the data's neighbouring slices (reflected at the ends), the
package passes bioimage.io's own model test offline, and its standalone architecture file
reproduces the network."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tifffile

from napari_dfct.cli import main
from napari_dfct.export import ExportError, input_channel_names, sample_input


@pytest.fixture(scope="module")
def ctx_volume(tmp_path_factory):
    """A simulated volume of 5 neighbouring slices of one acquisition, as a TIFF."""
    from napari_dfct.simulate import simulate_dfct

    sim = simulate_dfct(n_slices=5, size=64, n_views=64, rotations=2, seed=1)
    path = tmp_path_factory.mktemp("ctxexp") / "input.tif"
    tifffile.imwrite(path, sim.input.astype(np.float32))
    return sim, path


@pytest.fixture(scope="module")
def ctx_model(ctx_volume, tmp_path_factory):
    """A tiny context-1 model trained for one epoch on :func:`ctx_volume`."""
    from napari_dfct.train import TrainConfig, run_fit

    sim, _ = ctx_volume
    out = tmp_path_factory.mktemp("ctxexpm") / "ctx1"
    cfg = TrainConfig(preset="tiny", epochs=1, patch=32, batch_size=4, context=1, device="cpu")
    run_fit(sim.input, sim.target, cfg, out, preview=False)
    return out


def test_channel_names_are_the_slices_in_order():
    assert input_channel_names(0) == ["dark_field"]
    assert input_channel_names(1) == ["z_minus_1", "z", "z_plus_1"]
    assert input_channel_names(2) == ["z_minus_2", "z_minus_1", "z", "z_plus_1", "z_plus_2"]


def test_the_test_input_is_the_central_slice_and_its_neighbours():
    v = np.arange(4, dtype=np.float32)[:, None, None] + np.zeros((1, 70, 90), np.float32)
    tile, words = sample_input(v, 4, smallest=60, context=1)
    assert tile.shape == (3, 68, 68) and "central slice and 2 neighbours" in words
    assert tile[:, 30, 30].tolist() == [1.0, 2.0, 3.0]  # slices 1, 2, 3 around slice 2
    # the last slice of a volume (the central one of two): slice 2 is slice 0, reflected
    tile, _ = sample_input(v[:2], 4, smallest=60, context=1)
    assert tile[:, 30, 30].tolist() == [0.0, 1.0, 0.0]
    # too small: every channel padded alike, by reflection
    tile, words = sample_input(v[1:4, :40, :40], 4, smallest=60, context=1)
    assert tile.shape == (3, 60, 60) and "padded by reflection to 60x60" in words
    np.testing.assert_array_equal(tile[:, 10:50, 10:50], v[1:4, :40, :40])
    for bad in (v[0], v[:1]):  # a single slice has no neighbours
        with pytest.raises(ExportError, match="must be a volume of 2 slices or more"):
            sample_input(bad, 4, smallest=60, context=1)


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


_STANDALONE = """
import json, sys
import numpy as np, torch
sys.modules["napari_dfct"] = None  # any import of the package fails
folder, kwargs = sys.argv[1], json.loads(sys.argv[2])
low, high = float(sys.argv[3]), float(sys.argv[4])
sys.path.insert(0, folder)
from dfct_unet import ResidualUNet
net = ResidualUNet(**kwargs)
net.load_state_dict(torch.load(folder + "/weights.pt", weights_only=True))
net.eval()
x = np.load(folder + "/test_input.npy")
xn = ((np.clip(x, low, high) - low) / (high - low)).astype(np.float32)
with torch.no_grad():
    y = net(torch.from_numpy(xn)).numpy() * (high - low) + low
np.save(folder + "/standalone.npy", y.astype(np.float32))
"""


@pytest.mark.slow
def test_a_context_package_passes_the_model_test_and_runs_standalone(
    ctx_model, ctx_volume, tmp_path, capsys, monkeypatch
):
    """Bar: ``dfct export`` of a context-1 model, its test input slice 0 of the data and
    its neighbours (slice 1 twice: reflected), passes ``bioimageio.core.test_model`` with
    no network; the shipped architecture file, imported where napari_dfct cannot be,
    gives the package's test output from its test input."""
    pytest.importorskip("bioimageio.core", reason="needs the extra napari-dfct[bioimageio]")
    from bioimageio.core import test_model

    from napari_dfct.checkpoint import load_model

    sim, tif = ctx_volume
    requests = _no_network(monkeypatch)
    out = tmp_path / "ctx.zip"
    argv = ["export", str(ctx_model), str(out), "--data", str(tif), "--slice", "0"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "slice 0 and its 2 neighbours" in capsys.readouterr().err
    assert requests == []
    summary = test_model(out, devices=["cpu"])
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed

    folder = tmp_path / "pkg"
    with zipfile.ZipFile(out) as zf:
        zf.extractall(folder)
    rdf = (folder / "rdf.yaml").read_text()
    assert "- z_minus_1\n" in rdf and "- z_plus_1\n" in rdf and "context: 1" in rdf
    assert "- 2.5d" in rdf
    # the test input: slices 1, 0, 1 of the volume (the first slice's reflected neighbour),
    # a central 64x64 crop (the whole slice)
    x = np.load(folder / "test_input.npy")
    assert x.shape == (1, 3, 64, 64)
    np.testing.assert_array_equal(x[0], sim.input[[1, 0, 1]].astype(np.float32))
    # the standalone architecture reproduces the test output, and napari-dfct's
    # prediction of slice 0 of the volume is that output too
    loaded = load_model(ctx_model)
    low, high = loaded.window.low, loaded.window.high
    kwargs = json.loads((ctx_model / "config.json").read_text())["model"]
    script = [sys.executable, "-c", _STANDALONE, str(folder), json.dumps(kwargs)]
    subprocess.run([*script, repr(low), repr(high)], check=True, timeout=120)
    expected = np.load(folder / "test_output.npy")
    np.testing.assert_allclose(np.load(folder / "standalone.npy"), expected, atol=1e-5)
    from napari_dfct.infer import predict

    ours = predict(loaded, sim.input, slices=[0], device="cpu")[0]
    np.testing.assert_allclose(expected[0, 0], ours, rtol=1e-4, atol=1e-4)


def test_context_export_refuses_data_without_neighbours(ctx_model, ctx_volume, tmp_path, capsys):
    sim, _ = ctx_volume
    one = tmp_path / "one.tif"
    tifffile.imwrite(one, sim.input[2].astype(np.float32))
    flat = tmp_path / "flat"
    argv = ["simulate", str(flat), "--specimens", "3", "--size", "64", "--views", "32"]
    assert main([*argv, "--rotations", "2", "--quiet"]) == 0
    capsys.readouterr()
    for data, words in (
        (one, "one.tif is a single slice: a 2.5-D model (context 1) needs its 2 neighbouring"),
        (flat, "holds independent specimens, one slice each"),
    ):
        out = tmp_path / "m.zip"
        assert main(["export", str(ctx_model), str(out), "--data", str(data)]) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
        assert len(err) == 1 and words in err[0], err
        assert not out.exists()


def test_test_data_from_a_data_set_is_its_first_scans_slice(tmp_path, capsys):
    """``--data DATASET``: the first scan's first chosen slice (with its neighbours for a
    context model), read from that scan's own volume."""
    from napari_dfct.export import read_sample

    vols = tmp_path / "vols"
    argv = ["simulate", str(vols), "--specimens", "2", "--slices", "4", "--size", "64"]
    assert main([*argv, "--views", "32", "--rotations", "2", "--quiet"]) == 0
    first = tifffile.imread(vols / "specimen-000" / "input.tif")
    flat, words = read_sample(vols)
    np.testing.assert_array_equal(flat, first[0])
    assert words == "scan 'specimen-000' of vols, slice 0"
    stack, words = read_sample(vols, context=1)
    np.testing.assert_array_equal(stack, first[[1, 0, 1]])
    assert words.endswith("slice 0 and its 2 neighbours")
