"""2.5-D context models (``--context K``): the model, the neighbour rule, patches within
one scan, training, inference, the command line, and that the context is really used."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from napari_dfct.checkpoint import load_config, load_model
from napari_dfct.cli import main
from napari_dfct.context import context_indices, context_stack, reflect_index
from napari_dfct.data import PatchSampler
from napari_dfct.infer import predict
from napari_dfct.io.dataset import load_scans
from napari_dfct.model import PRESETS, ResidualUNet, build_model, count_parameters, model_config
from napari_dfct.train import TrainConfig, resume_config, run_fit
from zshift import loss_in_units_of_the_bound

TINY = ["--preset", "tiny", "--patch", "16", "--batch-size", "4", "--device", "cpu"]


# ------------------------------------------------------------------------------ model
@pytest.mark.parametrize("preset", ["tiny", "small"])
@pytest.mark.parametrize("k", [1, 2])
def test_context_grows_only_the_first_conv_by_2k_base_9_weights(preset, k):
    base = PRESETS[preset]["base_channels"]
    flat, deep = build_model(preset), build_model(preset, context=k)
    assert count_parameters(deep) - count_parameters(flat) == 2 * k * base * 9
    assert deep.inc[0].weight.shape == (base, 2 * k + 1, 3, 3)
    assert deep.in_channels == 2 * k + 1 and deep.out_channels == 1 and deep.context == k


def test_the_residual_goes_to_the_centre_slice():
    torch.manual_seed(0)
    x = torch.rand(2, 5, 20, 12)
    m = build_model("tiny", context=2).eval()  # zero-initialised output: the identity
    with torch.no_grad():
        assert torch.equal(m(x), x[:, 2:3])
        trained = build_model("tiny", context=2, zero_init=False).eval()
        y = trained(x)
        assert y.shape == (2, 1, 20, 12)
        torch.testing.assert_close(y - x[:, 2:3], trained.residual(x))


def test_config_records_context_and_rebuilds_it():
    m = build_model("tiny", context=1, zero_init=False)
    cfg = json.loads(json.dumps(model_config(m)))
    assert cfg["context"] == 1 and cfg["in_channels"] == 3 and cfg["out_channels"] == 1
    rebuilt = ResidualUNet(**cfg)
    rebuilt.load_state_dict(m.state_dict())  # strict: the same architecture
    assert "context" not in model_config(build_model("tiny"))  # 2-D: as before context


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"context": 1, "in_channels": 1}, "context 1 needs in_channels == "),
        ({"context": -1}, "context must be in 0..31"),
        ({"context": 40}, "context must be in 0..31"),
    ],
)
def test_bad_context_arguments_are_one_line(kw, words):
    with pytest.raises(ValueError, match=words):
        build_model("tiny", **kw)


def test_an_old_model_folder_loads_as_2d(trained_model, tmp_path):
    """A folder whose config.json predates context (no ``context`` anywhere) loads as a
    2-D model and resumes as one."""
    old = tmp_path / "old"
    shutil.copytree(trained_model, old)
    cfg = json.loads((old / "config.json").read_text())
    assert "context" not in cfg["model"]
    cfg["train"].pop("context", None)
    (old / "config.json").write_text(json.dumps(cfg))
    loaded = load_model(old)
    assert loaded.model.context == 0 and loaded.model.in_channels == 1
    assert TrainConfig.from_dict(load_config(old)["train"]).context == 0
    x = np.random.default_rng(0).random((1, 40, 40)).astype(np.float32)
    assert predict(loaded, x[0], device="cpu").shape == (40, 40)  # a 2-D slice is fine


# ------------------------------------------------------------------- the neighbour rule
def test_neighbours_are_reflected_at_the_ends_without_repeating_them():
    assert context_indices(0, 5, 2).tolist() == [[2, 1, 0, 1, 2]]
    assert context_indices(4, 5, 2).tolist() == [[2, 3, 4, 3, 2]]
    assert context_indices([1, 3], 5, 1).tolist() == [[0, 1, 2], [2, 3, 4]]
    assert reflect_index(np.arange(-3, 4), 1).tolist() == [0] * 7
    # two scans in one volume: neighbours never cross the border at slice 3
    assert context_indices([2, 3], 6, 1, starts=(0, 3)).tolist() == [[1, 2, 1], [4, 3, 4]]
    v = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    assert context_stack(v, [0], 1)[0, :, 0, 0].tolist() == [1, 0, 1]


# --------------------------------------------------------------------- patches and scans
def _write_scans(folder, values: list[float], n: int = 4, size: int = 24):
    """Scans whose slice ``z`` is ``pattern + value + z`` (input) and that plus 100
    (target): a voxel's value names its scan and slice."""
    rng = np.random.default_rng(0)
    rows = ["input,target,slices,name"]
    for s, v in enumerate(values):
        pattern = rng.random((size, size)).astype(np.float32)
        vol = np.stack([pattern + v + z for z in range(n)]).astype(np.float32)
        np.save(folder / f"in{s}.npy", vol)
        np.save(folder / f"gt{s}.npy", vol + 100)
        rows.append(f"in{s}.npy,gt{s}.npy,all,scan{s}")
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n")
    return folder / "pairs.csv"


def test_patches_never_mix_scans_and_share_one_transform(tmp_path):
    data = load_scans(_write_scans(tmp_path, [0.0, 1000.0]), context=1)
    assert data.context == 1 and len(data.contexts) == 8
    sampler = PatchSampler(
        np.stack(data.contexts), np.stack(data.targets), patch=12, patches_per_slice=8, seed=3
    )
    scan_of = np.asarray(data.scans)
    z_of = np.asarray([z for _, z in data.origins])
    for batch in sampler.epoch(16):
        x, y, _ = batch
        assert x.shape[1:] == (3, 12, 12) and y.shape[1:] == (1, 12, 12)
    # each patch (augmented: flips and rotations by default): every channel minus the
    # centre is one constant (the same crop, flip and rotation for all), the offset of
    # the scan's own neighbouring slice
    gen = torch.Generator().manual_seed(5)
    index = torch.arange(8).repeat(4)
    x, y, _ = sampler.sample(index, generator=gen)
    for b, i in enumerate(index.tolist()):
        z, n = int(z_of[i]), 4
        expect = [reflect_index(z + d, n) - z for d in (-1, 0, 1)]
        for c in range(3):
            diff = (x[b, c] - x[b, 1]).numpy()
            np.testing.assert_allclose(diff, expect[c], atol=1e-3)
        np.testing.assert_allclose((y[b, 0] - x[b, 1]).numpy(), 100.0, atol=1e-3)
        # every channel lies in its own scan's range of values
        lo = 1000.0 * scan_of[i]
        assert lo <= float(x[b].min()) and float(x[b].max()) < lo + 10


def test_a_scan_too_short_for_the_context_is_refused(tmp_path):
    csv = _write_scans(tmp_path, [0.0, 10.0], n=2)
    with pytest.raises(ValueError, match=r"context 1 needs scans of at least 3 slices.*'scan0'"):
        load_scans(csv, context=1)
    x = np.zeros((2, 16, 16), np.float32)
    cfg = TrainConfig(preset="tiny", epochs=1, patch=16, batch_size=2, context=1, device="cpu")
    with pytest.raises(ValueError, match="context 1 needs scans of at least 3 slices"):
        run_fit(x, x, cfg, None)


def test_a_data_set_read_without_its_neighbours_is_refused(tmp_path):
    data = load_scans(_write_scans(tmp_path, [0.0, 10.0]))
    cfg = TrainConfig(preset="tiny", epochs=1, patch=16, batch_size=2, context=1, device="cpu")
    with pytest.raises(ValueError, match=r"load_scans\(\.\.\., context=1\)"):
        run_fit(data, None, cfg, None)


# ------------------------------------------------------------------- training, inference
def test_train_with_context_saves_resumes_and_predicts(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.random((6, 24, 24)).astype(np.float32)
    y = 0.5 * x
    cfg = TrainConfig(
        loss="l2+s+f-nonlinear",
        preset="tiny",
        epochs=1,
        patch=16,
        batch_size=4,
        context=1,
        device="cpu",
        bn_recalibrate=1,
    )
    res = run_fit(x, y, cfg, tmp_path / "m", preview=True)
    saved = load_config(tmp_path / "m")
    assert saved["model"]["context"] == 1 and saved["train"]["context"] == 1
    again = resume_config(tmp_path / "m", epochs=2)
    assert again.context == 1
    res = run_fit(x, y, again, tmp_path / "m", resume=True)
    assert res.epochs_run == 2 and res.model.context == 1
    loaded = load_model(tmp_path / "m")
    whole = predict(loaded, x, device="cpu")
    assert whole.shape == x.shape
    # one slice reads the slices it needs, and gives what the whole volume gives
    for z in (0, 3, 5):
        one = predict(loaded, x, slices=[z], device="cpu", batch_size=1)
        np.testing.assert_allclose(one[0], whole[z], rtol=1e-5, atol=1e-6)
    # the first slice: its missing neighbour is slice 1, reflected
    net, win = loaded.model.eval(), loaded.window
    stacked = torch.from_numpy(win.normalize(x[[1, 0, 1]]))[None]
    with torch.no_grad():
        first = win.denormalize(net(stacked)[0, 0].numpy())
    np.testing.assert_allclose(whole[0], first, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="give it the volume, not a single slice"):
        predict(loaded, x[0], device="cpu")


def test_the_directional_loss_sees_the_centre_slice():
    rng = np.random.default_rng(2)
    x = rng.random((5, 24, 24)).astype(np.float32)
    cfg = TrainConfig(
        loss="l2+d-nonlinear",
        preset="tiny",
        epochs=1,
        patch=16,
        batch_size=4,
        context=1,
        device="cpu",
        bn_recalibrate=0,
    )
    res = run_fit(x, 0.5 * x, cfg, None)
    assert res.best_epoch == 1 and np.isfinite(res.best_val_loss)


def test_context_uses_the_right_neighbour():
    """Bar: the target of slice z is the input of slice z - 1 (slice 1 for slice 0, as the
    reflection rule gives). Input slices are independent uniform noise, so a 2-D model,
    which sees slice z alone, cannot predict its target better than the target's variance,
    (1/12) / width**2 in the window's units; a context-1 model reads slice z - 1 in its
    first channel and can reach zero. Same data, settings and steps for both."""
    rng = np.random.default_rng(0)
    x = rng.random((10, 16, 16)).astype(np.float32)
    y = x[reflect_index(np.arange(10) - 1, 10)]
    common = dict(batch_size=8, patches_per_slice=16)
    losses = {k: loss_in_units_of_the_bound(x, y, context=k, **common) for k in (0, 1)}
    # the 2-D model stays at the bound (up to the estimate's spread over 512 pixels, a few
    # per cent); the context model goes far below it
    assert losses[0] > 0.8, losses
    assert losses[1] < 0.4 and losses[1] < losses[0] / 3, losses


# ----------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    out = tmp_path_factory.mktemp("ctx") / "vols"
    argv = ["simulate", str(out), "--specimens", "2", "--slices", "4", "--size", "64"]
    assert main([*argv, "--views", "32", "--rotations", "2", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def ctx_model(volumes, tmp_path_factory):
    """``dfct train --pairs VOLUMES --context 1``: the model folder and the stderr."""
    model = tmp_path_factory.mktemp("ctxm") / "m"
    rc = main(
        ["train", "--pairs", str(volumes), "--out", str(model), "--epochs", "1", "--context"]
        + ["1", *TINY, "--no-progress"]
    )
    assert rc == 0
    return model


def test_cli_trains_a_context_model_on_volumes_and_predicts_the_input_shape(
    volumes, ctx_model, tmp_path, capsys
):
    import tifffile

    cfg = json.loads((ctx_model / "config.json").read_text())
    assert cfg["model"]["context"] == 1 and len(cfg["dataset"]["val_scans"]) == 1
    src = volumes / "specimen-000" / "input.tif"
    out = tmp_path / "pred.tif"
    argv = ["predict", "--model", str(ctx_model), "--input", str(src), "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0, capsys.readouterr().err
    assert tifffile.imread(out).shape == tifffile.imread(src).shape == (4, 64, 64)


def test_cli_refuses_context_on_independent_specimens(ctx_model, tmp_path, capsys):
    flat = tmp_path / "flat"
    argv = ["simulate", str(flat), "--specimens", "3", "--size", "64", "--views", "32"]
    assert main([*argv, "--rotations", "2", "--quiet"]) == 0
    capsys.readouterr()
    for argv in (
        ["train", "--data", str(flat), "--out", str(tmp_path / "m"), "--context", "1"],
        ["predict", "--model", str(ctx_model), "--input", str(flat / "input.tif")]
        + ["--out", str(tmp_path / "p.tif")],
        ["export", str(ctx_model), str(tmp_path / "x.zip"), "--data", str(flat)],
    ):
        rc = main(argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and "holds independent specimens, one slice each" in err, err
        assert len(err.splitlines()) == 1
    assert not (tmp_path / "p.tif").exists() and not (tmp_path / "x.zip").exists()


@pytest.mark.parametrize(
    "value, words", [("-1", "context must be >= 0"), ("40", "context must be in 0..31")]
)
def test_cli_refuses_a_bad_context(volumes, tmp_path, capsys, value, words):
    rc = main(["train", "--pairs", str(volumes), "--out", str(tmp_path / "m"), "--context", value])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and words in err and len(err.splitlines()) == 1
