"""3-D residual U-Nets (``--dims 3``): the model and its parameters, patches of
consecutive slices of one scan, per-slice losses, training, z-chunked prediction and the
command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_dfct.checkpoint import load_config, load_model
from napari_dfct.cli import main
from napari_dfct.infer import predict
from napari_dfct.io.dataset import load_scans
from napari_dfct.losses import AmplifiedLoss, LossConfig
from napari_dfct.model import (
    PRESETS,
    ResidualUNet,
    architecture_parameters,
    build_model,
    count_parameters,
    model_config,
)
from napari_dfct.train import TrainConfig, resume_config, run_fit
from napari_dfct.volume3d import GroupedVolumePatchSampler, slice_runs
from zshift import loss_in_units_of_the_bound

TINY = ["--preset", "tiny", "--patch", "32", "--batch-size", "2", "--device", "cpu"]


# ------------------------------------------------------------------------------ model
@pytest.mark.parametrize("preset", ["tiny", "small", "paper"])
@pytest.mark.parametrize("bilinear", [True, False])
def test_3d_parameters_are_the_2d_ones_with_3x3x3_kernels(preset, bilinear):
    """Every 3x3 kernel becomes 3x3x3 (three times its weights); batch norms, the 1x1
    output conv and the 2x2 -> 1x2x2 transposed convs keep theirs."""
    with torch.device("meta"):
        flat = build_model(preset, bilinear=bilinear)
        deep = build_model(preset, bilinear=bilinear, dims=3)
    kernels = sum(
        m.weight.numel()
        for m in flat.modules()
        if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
    )
    n = count_parameters(deep)
    assert n == count_parameters(flat) + 2 * kernels
    arch = {k: v for k, v in PRESETS[preset].items() if k != "bilinear"}
    assert n == architecture_parameters(**arch, bilinear=bilinear, dims=3)


def test_3d_parameter_counts():
    assert count_parameters(build_model("tiny", dims=3)) == 22_305
    assert count_parameters(build_model("small", dims=3)) == 5_885_505
    assert architecture_parameters(64, 4, dims=3) == 94_127_361  # paper


def test_3d_model_pools_in_plane_and_keeps_any_depth():
    m = build_model("tiny", dims=3, zero_init=False).eval()
    assert m.inc[0].weight.shape == (4, 1, 3, 3, 3)
    assert m.downs[0][0].kernel_size == (1, 2, 2)
    assert m.ups[0].up.mode == "trilinear" and m.ups[0].up.scale_factor == (1, 2, 2)
    torch.manual_seed(0)
    for z in (1, 3, 8):
        x = torch.rand(2, 1, z, 20, 13)
        with torch.no_grad():
            y = m(x)
            assert y.shape == x.shape
            torch.testing.assert_close(y - x, m.residual(x))
    ident = build_model("tiny", dims=3).eval()  # zero-initialised output conv: identity
    with torch.no_grad():
        assert torch.equal(ident(x), x)
    with pytest.raises(ValueError, match=r"expected a \(B, 1, Z, H, W\) tensor"):
        m(torch.rand(1, 1, 16, 16))


def test_config_records_dims_and_old_configs_load_2d():
    m = build_model("tiny", dims=3, zero_init=False)
    cfg = json.loads(json.dumps(model_config(m)))
    assert cfg["dims"] == 3
    ResidualUNet(**cfg).load_state_dict(m.state_dict())  # strict: the same architecture
    old = model_config(build_model("tiny"))
    assert "dims" not in old and ResidualUNet(**old).dims == 2


def test_a_3d_model_takes_no_context():
    with pytest.raises(ValueError, match="3-D model .dims 3. .* takes no context"):
        build_model("tiny", dims=3, context=1)
    with pytest.raises(ValueError, match="takes no context"):
        TrainConfig(preset="tiny", dims=3, context=1).validate()
    with pytest.raises(ValueError, match="dims must be in 2..3"):
        build_model("tiny", dims=4)


# ------------------------------------------------------------------------------ losses
@pytest.mark.parametrize(
    "loss",
    ["l2", "l1+s+f-nonlinear", "l2+f+s-linear", "l2+s+f-nonlinear-spectral", "l2+d-nonlinear"],
)
def test_the_3d_loss_is_the_2d_loss_of_its_slices(loss):
    torch.manual_seed(1)
    n, z, h, w = 2, 3, 20, 16
    p, t, x = (torch.rand(n, 1, z, h, w) for _ in range(3))
    fn = AmplifiedLoss(loss)
    got = fn(p, t, input=x)
    # the slices gathered one by one, as 2-D samples
    slices = [(b, k) for b in range(n) for k in range(z)]

    def flat(a):
        return torch.stack([a[b, :, k] for b, k in slices])

    assert torch.allclose(got, fn(flat(p), flat(t), input=flat(x)), rtol=1e-6)
    lmap = fn.loss_map(p, t, input=x)
    assert lmap.shape == p.shape
    single = fn.loss_map(p[1:2, :, 2], t[1:2, :, 2], input=x[1:2, :, 2])
    torch.testing.assert_close(lmap[1:2, :, 2], single)


def test_the_dc_identity_holds_for_3d_outputs_in_paper_mode():
    torch.manual_seed(2)
    p, t = torch.rand(2, 1, 4, 24, 24), torch.rand(2, 1, 4, 24, 24)
    plain = AmplifiedLoss("l2")(p, t).item()
    for normalize in (False, True):
        cfg = LossConfig(loss="l2", frequency="nonlinear", normalize=normalize)
        fn = AmplifiedLoss(cfg)
        dc = float(fn.frequency_weight((24, 24))[0, 0])
        assert fn(p, t).item() == pytest.approx(dc * plain, rel=2e-5)
    s = AmplifiedLoss(LossConfig(loss="l2", spatial="nonlinear"))(p, t).item()
    sf = AmplifiedLoss(LossConfig(loss="l2", spatial="nonlinear", frequency="nonlinear"))
    assert sf(p, t).item() == pytest.approx(s, rel=2e-5)


# ------------------------------------------------------------------- patches and scans
def _write_scans(folder, values: list[float], n: int = 6, size: int = 24):
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


def test_patches_are_consecutive_slices_of_one_scan_with_one_transform(tmp_path):
    data = load_scans(_write_scans(tmp_path, [0.0, 1000.0, 2000.0]))
    scan_of = np.asarray(data.scans)
    z_of = np.asarray([z for _, z in data.origins])
    runs = slice_runs(np.arange(len(data)), scan_of, z_of)
    assert [r.tolist() for r in runs] == [list(range(6)), list(range(6, 12)), list(range(12, 18))]
    stacks = [(np.stack(data.inputs)[r], np.stack(data.targets)[r]) for r in runs]
    sampler = GroupedVolumePatchSampler(stacks, depth=4, patch=12, seed=3)
    assert sampler.n_slices == 3 * 3  # 3 patch positions along z in each 6-slice scan
    gen = torch.Generator().manual_seed(5)
    x, y, _ = sampler.sample(torch.arange(9).repeat(6), generator=gen)
    assert x.shape == y.shape == (54, 1, 4, 12, 12)
    steps = set()
    for b in range(len(x)):
        v = x[b, 0].numpy()
        # every slice minus the first: one constant (the same crop, flips and rotation),
        # the slice offset along z, +-1 per slice (reversed order: a z flip)
        diffs = [float(np.median(v[k] - v[0])) for k in range(4)]
        for k in range(4):
            np.testing.assert_allclose(v[k] - v[0], diffs[k], atol=1e-3)
        step = round(diffs[1])
        assert step in (-1, 1) and [round(d) for d in diffs] == [step * k for k in range(4)]
        steps.add(step)
        lo = 1000.0 * np.floor(v.min() / 1000.0)  # one scan: all its values in its range
        assert v.max() < lo + 10
        np.testing.assert_allclose(y[b, 0].numpy() - v, 100.0, atol=1e-3)
    assert steps == {-1, 1}  # both z directions are drawn


def test_a_scan_shorter_than_the_patch_depth_is_refused(tmp_path):
    data = load_scans(_write_scans(tmp_path, [0.0, 10.0], n=4))
    cfg = TrainConfig(preset="tiny", epochs=1, patch=16, batch_size=2, dims=3, device="cpu")
    with pytest.raises(ValueError, match=r"3-D patches are 8 consecutive slices.*'scan\d' has 4"):
        run_fit(data, None, cfg, None)
    x = np.zeros((9, 16, 16), np.float32)  # the last 2 slices validate, 7 train
    with pytest.raises(ValueError, match="the volume has 7 consecutive training slices"):
        run_fit(x, x, cfg, None)


# ------------------------------------------------------------------- training, inference
def test_train_3d_saves_resumes_and_predicts_in_chunks(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.random((12, 24, 24)).astype(np.float32)
    y = 0.5 * x
    cfg = TrainConfig(
        loss="l2+s+f-nonlinear",
        preset="tiny",
        epochs=1,
        patch=16,
        batch_size=2,
        dims=3,
        patch_depth=4,
        device="cpu",
        bn_recalibrate=1,
    )
    res = run_fit(x, y, cfg, tmp_path / "m", preview=True)
    saved = load_config(tmp_path / "m")
    assert saved["model"]["dims"] == 3 and saved["train"]["dims"] == 3
    assert saved["split"] == {"train": list(range(10)), "val": [10, 11]}  # two blocks
    again = resume_config(tmp_path / "m", epochs=2)
    assert again.dims == 3 and again.patch_depth == 4
    res = run_fit(x, y, again, tmp_path / "m", resume=True)
    assert res.epochs_run == 2 and res.model.dims == 3
    with pytest.raises(ValueError, match="dims"):
        run_fit(x, y, TrainConfig(**{**again.to_dict(), "dims": 2}), tmp_path / "m", resume=True)
    loaded = load_model(tmp_path / "m")
    assert loaded.model.patch_depth == 4
    whole = predict(loaded, x, device="cpu")
    assert whole.shape == x.shape and np.isfinite(whole).all()
    for z in (0, 5, 11):  # one slice computes the chunks around it, as the volume does
        one = predict(loaded, x, slices=[z], device="cpu")
        np.testing.assert_allclose(one[0], whole[z], rtol=1e-5, atol=1e-6)
    tiled = predict(loaded, x, tile=16, overlap=16, device="cpu")
    assert tiled.shape == x.shape
    with pytest.raises(ValueError, match="give it the volume, not a single slice"):
        predict(loaded, x[0], device="cpu")


@pytest.mark.parametrize("n, depth", [(2, 8), (5, 4), (13, 8), (30, 6)])
def test_chunks_blend_to_the_input_with_an_identity_model(n, depth):
    """The untrained (zero-initialised) model is the identity: every slice of the blended
    chunks must come back exactly, whatever the chunk plan."""
    net = build_model("tiny", dims=3)
    net.patch_depth = depth
    x = np.random.default_rng(n).random((n, 20, 20)).astype(np.float32)
    np.testing.assert_allclose(predict(net, x, device="cpu"), x, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(predict(net, x, slices=[n - 1, 0], device="cpu"), x[[n - 1, 0]])


def test_the_memory_estimate_counts_the_3d_patch():
    """memory_estimate (the check before training, and the Train widget's figure) counts
    the layer outputs of a depth x patch x patch patch: an independent count on a real
    patch, depth times a 2-D patch's (in-plane pooling keeps z), and its refusal names
    the 3-D patch."""
    from napari_dfct.train import OutOfMemory, check_memory
    from napari_dfct.train.resources import memory_estimate

    cfg = TrainConfig(preset="tiny", patch=24, batch_size=3, dims=3, patch_depth=4)
    model = build_model("tiny", dims=3).eval()
    outputs = []
    for m in model.modules():
        if not list(m.children()):
            m.register_forward_hook(lambda _m, _i, o: outputs.append(o.numel()))
    with torch.no_grad():
        model(torch.zeros(1, 1, 4, 24, 24))
    need, per_patch, fixed = memory_estimate(cfg)
    assert per_patch == 4 * sum(outputs)
    assert fixed == 4 * 4 * sum(p.numel() for p in model.parameters())
    assert need == fixed + 3 * per_patch
    flat = memory_estimate(TrainConfig(preset="tiny", patch=24, batch_size=3))
    assert per_patch == 4 * flat[1]
    with pytest.raises(OutOfMemory, match=r"with 4x24x24 patches .* needs at least"):
        check_memory(TrainConfig(**{**vars(cfg), "batch_size": 10**9}), torch.device("cpu"))


def test_a_volume_streams_chunk_by_chunk():
    """predict_iter gives each slice once the last chunk reaching it is computed: the
    first slices come before the last chunk runs, every slice once, in the asked order,
    and equal to what the whole volume gives."""
    from napari_dfct.infer import predict_iter

    torch.manual_seed(0)
    net = build_model("tiny", dims=3, zero_init=False).eval()
    net.patch_depth = 4
    x = np.random.default_rng(3).random((16, 16, 16)).astype(np.float32)
    passes = []
    net.register_forward_hook(lambda *_: passes.append(1))
    seen = []  # (slice, forward passes so far) at each yield
    got = {}
    for z, y in predict_iter(net, x, device="cpu"):
        seen.append((z, len(passes)))
        got[z] = y
    assert [z for z, _ in seen] == list(range(16))
    assert seen[0][1] < len(passes) / 2  # slice 0 came with the first chunks
    whole = predict(net, x, device="cpu")
    np.testing.assert_array_equal(np.stack([got[z] for z in range(16)]), whole)
    order = [15, 2, 9]
    assert [z for z, _ in predict_iter(net, x, order, device="cpu")] == order


def test_a_3d_model_learns_the_z_shift():
    """The target of slice z is the input of slice z - 1 (independent noise slices): a
    2-D model cannot beat the target's variance; a 3-D model reads slice z - 1 with its
    3x3x3 kernels and goes far below it (same steps and settings)."""
    rng = np.random.default_rng(0)
    x = rng.random((32, 16, 16)).astype(np.float32)
    y = np.concatenate([x[1:2], x[:-1]])  # slice 0's target: slice 1 (reflected)
    common = dict(batch_size=4, patches_per_slice=4, augment=False)
    losses = {d: loss_in_units_of_the_bound(x, y, dims=d, **common) for d in (2, 3)}
    assert losses[2] > 0.8, losses
    assert losses[3] < 0.4 and losses[3] < losses[2] / 3, losses


# ----------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    out = tmp_path_factory.mktemp("v3") / "vols"
    argv = ["simulate", str(out), "--specimens", "2", "--slices", "8", "--size", "64"]
    assert main([*argv, "--views", "32", "--rotations", "2", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def model_3d(volumes, tmp_path_factory):
    model = tmp_path_factory.mktemp("m3") / "m"
    argv = ["train", "--pairs", str(volumes), "--out", str(model), "--epochs", "1"]
    assert main([*argv, "--dims", "3", *TINY, "--no-progress"]) == 0
    return model


def test_cli_trains_a_3d_model_on_volumes_and_predicts_the_input_shape(
    volumes, model_3d, tmp_path, capsys
):
    import tifffile

    cfg = json.loads((model_3d / "config.json").read_text())
    assert cfg["model"]["dims"] == 3 and cfg["train"]["patch_depth"] == 8
    assert len(cfg["dataset"]["val_scans"]) == 1
    src = volumes / "specimen-000" / "input.tif"
    out = tmp_path / "pred.tif"
    argv = ["predict", "--model", str(model_3d), "--input", str(src), "--out", str(out)]
    assert main([*argv, "--no-progress"]) == 0, capsys.readouterr().err
    assert tifffile.imread(out).shape == tifffile.imread(src).shape == (8, 64, 64)


def test_cli_refuses_what_3d_does_not_do(volumes, model_3d, tmp_path, capsys):
    flat = tmp_path / "flat"
    argv = ["simulate", str(flat), "--specimens", "3", "--size", "64", "--views", "32"]
    assert main([*argv, "--rotations", "2", "--quiet"]) == 0
    capsys.readouterr()
    cases = [
        (["train", "--data", str(flat), "--out", str(tmp_path / "m"), "--dims", "3"], "one"),
        (
            ["predict", "--model", str(model_3d), "--input", str(flat / "input.tif")]
            + ["--out", str(tmp_path / "p.tif")],
            "holds independent specimens, one slice each: a 3-D model",
        ),
        (
            ["grid", str(tmp_path / "g"), "--train", str(flat), "--test", str(volumes)]
            + ["--dims", "3"],
            "holds independent specimens, one slice each: a 3-D model",
        ),
        (["train", "--pairs", str(volumes), "--out", str(tmp_path / "d"), "--dims", "4"], "2, 3"),
        (
            ["train", "--pairs", str(volumes), "--out", str(tmp_path / "c"), "--dims", "3"]
            + ["--context", "1"],
            "takes no context",
        ),
    ]
    for argv, words in cases:
        rc = main(argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and words in err and len(err.splitlines()) == 1, (argv, err)
    assert not (tmp_path / "p.tif").exists()
