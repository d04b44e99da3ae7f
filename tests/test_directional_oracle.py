"""The oracle variant of directional amplification: the simulator's known angular part of
each slice's streaks, carried through the patch augmentation into the loss, for training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_dfct import directional as D
from napari_dfct.data import PatchSampler, augment_angular
from napari_dfct.losses import AmplifiedLoss, LossConfig


def _wave(n, phi_deg, freq=0.3):
    """A plane wave whose spectrum sits at spectral angle phi (atan2(f_row, f_col))."""
    yy, xx = np.mgrid[:n, :n].astype(np.float64)
    t = np.radians(phi_deg)
    return np.cos(2 * np.pi * freq * (xx * np.cos(t) + yy * np.sin(t))).astype(np.float32)


def _circ_diff(a, b):
    d = abs(a - b) % 180.0
    return min(d, 180.0 - d)


# ------------------------------------------------------------------------- augmentation
@pytest.mark.parametrize("phi", [20.0, 65.0, 140.0])
def test_patch_angular_part_follows_rotation_and_flips(phi):
    """Each augmented patch of a plane wave at ``phi``: the angular part the sampler
    carries peaks where the estimator finds the patch's own streak direction."""
    n, p = 96, 48
    x = _wave(n, phi)[None].repeat(2, 0)
    y = np.zeros_like(x)
    g = D.oracle_angular([np.radians(phi)], [1.0])
    s = PatchSampler(x, y, patch=p, seed=3, angular=np.stack([g, g]), max_angle=15.0)
    batch = s.sample(list(range(2)) * 16)
    assert batch.g.shape == (32, D.ANGLE_BINS)
    est = D.angular_weight(batch[0][:, 0] - batch[1][:, 0]).numpy()
    peaks_carried = D.bin_angles()[batch.g.numpy().argmax(1)]
    peaks_seen = D.bin_angles()[est.argmax(1)]
    for carried, seen in zip(peaks_carried, peaks_seen):
        assert _circ_diff(carried, seen) <= 2.0, (carried, seen)
    # the draws rotated and mirrored patches: the carried peaks are not all at phi
    assert len({round(float(a)) for a in peaks_carried}) > 3


def test_augment_angular_identities():
    g = torch.rand(5, 180, dtype=torch.float64)
    zero = torch.zeros(5, dtype=torch.float64)
    no = torch.zeros(5, dtype=torch.bool)
    yes = torch.ones(5, dtype=torch.bool)
    assert torch.equal(augment_angular(g, zero, no), g)
    # a turn by 180 degrees (mod pi) and a double mirror change nothing
    assert torch.allclose(augment_angular(g, zero + 180.0, no), g)
    assert torch.allclose(augment_angular(augment_angular(g, zero, yes), zero, yes), g)
    # whole-bin rotation is a roll; a mirror reverses the angles around 0
    assert torch.allclose(augment_angular(g, zero + 7.0, no), torch.roll(g, 7, dims=1))
    mirrored = augment_angular(g, zero, yes)
    k = torch.arange(180)
    assert torch.equal(mirrored, g[:, (-k) % 180])
    # interpolation stays within the range of G
    half = augment_angular(g, zero + 0.5, no)
    assert half.min() >= g.min() and half.max() <= g.max()


def test_sampler_checks_the_angular_parts():
    x = np.zeros((3, 32, 32), np.float32)
    with pytest.raises(ValueError, match=r"\(N, n_bins\) with N = 3"):
        PatchSampler(x, x, patch=16, angular=np.ones((2, 180)))
    batch = PatchSampler(x, x, patch=16).sample([0, 1])
    assert batch.g is None and len(batch) == 3


# -------------------------------------------------------------------------------- loss
def test_oracle_loss_with_the_estimate_equals_the_estimated_d_loss():
    gen = torch.Generator().manual_seed(0)
    t = torch.rand(3, 1, 40, 40, generator=gen)
    x = t + torch.from_numpy(np.stack([_wave(40, a) for a in (10, 80, 150)]))[:, None] * 0.1
    pred = t + 0.05 * torch.randn(3, 1, 40, 40, generator=gen)
    g = D.angular_weight(x[:, 0] - t[:, 0])
    for name in ("l2+d-nonlinear", "l2+s+d-linear", "l1+d+s-nonlinear-norm"):
        est = AmplifiedLoss(name)(pred, t, input=x)
        orc = AmplifiedLoss(
            name + "-oracle"
            if not name.endswith("-norm")
            else name.replace("-norm", "-oracle-norm")
        )
        assert torch.allclose(orc(pred, t, angular=g), est, rtol=1e-6, atol=0)
    # a known angular part replaces the estimate: a different G gives a different loss
    other = torch.roll(g, 90, dims=1)
    assert not torch.allclose(
        AmplifiedLoss("l2+d-nonlinear-oracle")(pred, t, angular=other),
        AmplifiedLoss("l2+d-nonlinear")(pred, t, input=x),
    )
    with pytest.raises(ValueError, match="angular="):
        AmplifiedLoss("l2+d-nonlinear-oracle")(pred, t, input=x)
    with pytest.raises(ValueError, match=r"\(B, n_bins\)"):
        AmplifiedLoss("l2+d-nonlinear-oracle")(pred, t, angular=g[:2])


def test_oracle_names():
    cfg = LossConfig.from_name("l2+s+d-nonlinear-oracle")
    assert cfg.oracle and cfg.scheme == "S+D" and cfg.mode == "spectral"
    assert LossConfig.from_name(cfg.name) == cfg
    assert LossConfig.from_dict(cfg.to_dict()) == cfg
    assert LossConfig.from_name("l2+d-linear-oracle-norm").name == "l2+d-linear-oracle-norm"
    # a saved loss from before the field existed is the estimated D
    old = {
        k: v for k, v in LossConfig.from_name("l2+d-nonlinear").to_dict().items() if k != "oracle"
    }
    assert not LossConfig.from_dict(old).oracle
    for bad in ("l2-oracle", "l2+s-linear-oracle", "l2+f-nonlinear-spectral-oracle"):
        with pytest.raises(ValueError):
            LossConfig.from_name(bad)
    with pytest.raises(ValueError, match="directional configuration"):
        LossConfig(spatial="linear", oracle=True)


# ----------------------------------------------------------------------------- training
def test_training_with_the_oracle(small_sim, tmp_path):
    from napari_dfct.simulate import slice_angular
    from napari_dfct.train import TrainConfig, run_fit

    cfg = TrainConfig(
        loss=LossConfig.from_name("l2+s+d-nonlinear-oracle"),
        preset="tiny",
        epochs=2,
        patience=5,
        batch_size=4,
        patch=32,
        patches_per_slice=2,
        device="cpu",
        seed=0,
    )
    g = slice_angular(small_sim)
    assert g.shape == (small_sim.input.shape[0], D.ANGLE_BINS)
    assert np.all((g >= 0) & (g <= 1)) and np.isclose(g.max(), 1.0)
    with pytest.raises(ValueError, match="dfct simulate"):
        run_fit(small_sim.input, small_sim.target, cfg, tmp_path / "none")
    with pytest.raises(ValueError, match="Z = 4"):
        run_fit(small_sim.input, small_sim.target, cfg, tmp_path / "short", oracle=g[:3])
    events = []
    res = run_fit(
        small_sim.input, small_sim.target, cfg, tmp_path / "m", oracle=g, callback=events.append
    )
    assert res.epochs_run == 2 and np.isfinite(res.best_val_loss)
    assert all(np.isfinite(e.train_loss) and np.isfinite(e.val_amplified) for e in events)
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert LossConfig.from_dict(saved["loss"]).oracle


def test_cli_trains_the_oracle_on_a_simulated_folder_only(small_sim, tmp_path, capsys):
    from napari_dfct.cli import main
    from napari_dfct.io import write_volume
    from napari_dfct.simulate import save_simulation

    save_simulation(small_sim, tmp_path / "sim")
    base = [
        "train",
        "--preset",
        "tiny",
        "--patch",
        "32",
        "--batch-size",
        "4",
        "--epochs",
        "1",
        "--no-progress",
        "--loss",
        "l2+d-nonlinear-oracle",
    ]
    assert main(base + ["--data", str(tmp_path / "sim"), "--out", str(tmp_path / "m")]) == 0
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["loss"]["name"] == "l2+d-nonlinear-oracle"
    # the same volumes outside a simulated folder: no truth, one clear line, exit 2
    (tmp_path / "plain").mkdir()
    write_volume(tmp_path / "plain" / "x.tif", small_sim.input)
    write_volume(tmp_path / "plain" / "y.tif", small_sim.target)
    capsys.readouterr()
    assert (
        main(
            base
            + [
                "--input",
                str(tmp_path / "plain" / "x.tif"),
                "--target",
                str(tmp_path / "plain" / "y.tif"),
                "--out",
                str(tmp_path / "n"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dfct simulate" in err[0], err
    assert not (tmp_path / "n").exists()


def test_grid_refuses_the_oracle_without_simulated_training_data(small_sim, tmp_path):
    from napari_dfct.experiment.layout import _check_oracle_data
    from napari_dfct.simulate import save_simulation

    configs = [LossConfig.from_name("l2"), LossConfig.from_name("l2+d-nonlinear-oracle")]
    save_simulation(small_sim, tmp_path / "sim")
    _check_oracle_data(configs, {"input": str(tmp_path / "sim" / "input.tif")})
    with pytest.raises(ValueError, match="dfct simulate"):
        _check_oracle_data(configs, {"input": str(tmp_path / "input.tif")})
    with pytest.raises(ValueError, match="--pairs"):
        _check_oracle_data(configs, {"pairs": "x.csv"})
    _check_oracle_data(configs[:1], {"pairs": "x.csv"})  # no oracle, nothing to check
