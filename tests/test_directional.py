"""Directional amplification D: weights, the angle convention against the projector, the
validity of the estimate against the simulator's truth, losses, names, refusal, CLI and
training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_dfct import directional as D
from napari_dfct import weights as W
from napari_dfct.losses import AmplifiedLoss, LossConfig, effective_scale, paper_configs

D_NAMES = [
    "l2+d-nonlinear",
    "l2+s+d-nonlinear",
    "l2+d+s-linear",
    "l1+d-sqrt",
    "l2+s-linear+d-nonlinear",
    "l1+d+s-nonlinear-norm",
    "l2+d-linear@2.5",
]


def _streak(n, theta_deg, width=1.0):
    """A line through the centre whose profile varies along (cos t, sin t) in (col, row):
    what one view at angle t back-projects."""
    yy, xx = np.mgrid[:n, :n] - n / 2.0
    t = np.radians(theta_deg)
    return np.exp(-0.5 * ((xx * np.cos(t) + yy * np.sin(t)) / width) ** 2)


def _flip(a):
    """a[-k mod N] over the last two axes."""
    return np.roll(np.flip(a, axis=(-2, -1)), 1, axis=(-2, -1))


# ------------------------------------------------------------------------------ weights
@pytest.mark.parametrize("shape", [(32, 32), (33, 20), (64, 48)])
@pytest.mark.parametrize("profile", ["linear", "nonlinear", "sqrt"])
def test_weights_range_and_hermitian_symmetry(shape, profile):
    rng = np.random.default_rng(0)
    inp = torch.from_numpy(rng.standard_normal((3, 1, *shape)).astype(np.float32))
    inp[1, 0] += (
        torch.from_numpy(_streak(max(shape), 30)[: shape[0], : shape[1]].astype(np.float32)) * 5
    )
    a = D.directional_weight(inp, torch.zeros_like(inp), profile).numpy()
    assert a.shape == (3, 1, *shape) and a.dtype == np.float32
    assert a.min() >= 1.0 and a.max() <= 2.0
    np.testing.assert_array_equal(a, _flip(a))  # exactly, Nyquist rows included
    assert np.all(a[:, 0, 0, 0] == 1.0)  # DC
    a_f = W.frequency_weight_np(shape, profile)
    assert np.all(a <= a_f.astype(np.float32) + 1e-6)  # never above its radial profile
    # the filtered error of a real field is real: imaginary part at rounding level
    spec = np.fft.fft2(inp.numpy()) * a
    assert np.abs(np.fft.ifft2(spec).imag).max() < 1e-4 * np.abs(inp.numpy()).max()


@pytest.mark.parametrize("theta", [0.0, 17.0, 45.0, 90.0, 123.0, 158.0])
def test_single_angle_streak_puts_the_maximum_at_its_angle(theta):
    angles, g = D.angular_profile(_streak(128, theta), np.zeros((128, 128)))
    err = abs((angles[np.argmax(g)] - theta + 90) % 180 - 90)
    assert err <= 2.0, f"G peaks at {angles[np.argmax(g)]} deg for a streak at {theta}"
    assert g.max() == 1.0 and g.min() == 0.0


def test_projector_view_lands_at_its_spectral_angle():
    """The convention, checked against the simulator's own back-projector: a single view
    at theta back-projected fills the spectral line at phi = theta mod 180."""
    from napari_dfct.simulate import back_project, detector_bins, filter_sinogram, view_angles

    n, v = 96, 288
    nd = detector_bins(n)
    for view in (10, 50, 100, 200, 250):
        sino = np.zeros((v, nd), np.float32)
        sino[view, nd // 2 - 3 : nd // 2 + 4] = 1.0
        img = back_project(filter_sinogram(sino, "hann"), n)
        angles, g = D.angular_profile(img, np.zeros_like(img))
        theta = np.degrees(view_angles(v)[view]) % 180
        err = abs((angles[np.argmax(g)] - theta + 90) % 180 - 90)
        assert err <= 2.0, (view, theta, angles[np.argmax(g)])


def test_isotropic_or_zero_residual_gives_a_flat_angular_part():
    g = D.angular_weight(torch.zeros(2, 1, 32, 32))
    assert torch.all(g == 1.0)
    g = D.angular_from_energy(torch.full((1, 180), 3.0))
    assert torch.all(g == 1.0)


def test_oracle_places_view_energy_at_its_angle():
    theta = np.radians(np.arange(0, 360, 2.0))
    energy = np.ones_like(theta)
    energy[np.argmin(np.abs(np.degrees(theta) - 250))] = 50.0  # 250 deg = 70 deg mod 180
    g = D.oracle_angular(theta, energy)
    assert D.bin_angles()[np.argmax(g)] == pytest.approx(70.0, abs=1.0)


def test_estimate_follows_the_simulators_per_view_error_energy():
    """Validity: Spearman correlation of the estimated G of each full slice with the
    oracle G from the simulator's true per-view error energy (input - target)."""
    from scipy.stats import spearmanr

    from napari_dfct.simulate import simulate_dfct, view_error_energy

    sim = simulate_dfct(6, 96, rotations=4, seed=11, specimens=True)
    angles, energy = view_error_energy(sim)
    assert energy.shape == (6, len(angles))
    oracle = D.oracle_angular(angles, energy)
    est = D.angular_weight(torch.from_numpy(sim.input - sim.target)).numpy()
    rho = [spearmanr(est[k], oracle[k]).statistic for k in range(6)]
    print(f"Spearman per slice {np.round(rho, 3)}, median {np.median(rho):.3f}")
    assert np.median(rho) >= 0.5, f"median Spearman {np.median(rho):.3f}, per slice {rho}"
    assert min(rho) > 0.2, rho


def test_view_error_energy_reproduces_input_minus_target():
    """The oracle's sinogram error difference, back-projected, is input - target."""
    from napari_dfct.simulate import simulate_dfct
    from napari_dfct.simulate.acquisition import _Run, _sinogram_errors
    from napari_dfct.simulate.oracle import _slice_sources

    sim = simulate_dfct(2, 64, n_views=96, rotations=3, seed=5, specimens=True)
    m = sim.meta
    from napari_dfct.simulate import Physics

    run = _Run(Physics(**m["physics"]), 64, 96, 3, m["detector_bins"])
    for k, (mu, eps, err, key) in enumerate(_slice_sources(sim.phantom, run, m)):
        _, e_in, e_tg = _sinogram_errors(run, mu[None], eps[None], m["pixel_size_mm"], err, [key])
        rec = run.geom.back_project(e_in - e_tg, filter_name=run.phys.filter)
        rec /= np.float32(m["pixel_size_mm"] * 1e-3)
        diff = sim.input[k] - sim.target[k]
        assert np.abs(rec[0] - diff).max() <= 1e-3 * np.abs(diff).max()


# ------------------------------------------------------------------------------- losses
@pytest.mark.parametrize("loss", ["l1", "l2"])
@pytest.mark.parametrize("profile", ["linear", "nonlinear", "sqrt"])
@pytest.mark.parametrize("order", ["sf", "fs"])
def test_d_with_flat_angular_part_equals_spectral_f(loss, profile, order):
    g = torch.Generator().manual_seed(0)
    p = torch.rand(3, 1, 20, 24, generator=g, requires_grad=True)
    t = torch.rand(3, 1, 20, 24, generator=g)
    for spatial in ("none", "linear"):
        d = AmplifiedLoss(LossConfig(loss=loss, spatial=spatial, directional=profile, order=order))
        f = AmplifiedLoss(
            LossConfig(loss=loss, spatial=spatial, frequency=profile, order=order, mode="spectral")
        )
        # input == target: zero residual, flat G = 1, A_D == A_F
        ld = d(p, t, input=t)
        lf = f(p, t)
        assert ld.item() == pytest.approx(lf.item(), rel=1e-6, abs=1e-7)
        (gd,) = torch.autograd.grad(ld, p)
        (gf,) = torch.autograd.grad(lf, p)
        torch.testing.assert_close(gd, gf, rtol=1e-5, atol=1e-8)


def test_d_loss_against_a_numpy_reference():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 1, 32, 32)).astype(np.float32)
    x[0, 0] += 4 * _streak(32, 60).astype(np.float32)
    t = rng.standard_normal((2, 1, 32, 32)).astype(np.float32)
    p = rng.standard_normal((2, 1, 32, 32)).astype(np.float32)
    a_d = D.directional_weight(torch.from_numpy(x), torch.from_numpy(t), "nonlinear").numpy()
    a_s = W.spatial_weight_np((32, 32), "linear")
    e = (p - t).astype(np.float64)
    filt = lambda z: np.real(np.fft.ifft2(np.fft.fft2(z) * a_d))  # noqa: E731
    want = {
        "l2+d-nonlinear": np.mean(filt(e) ** 2),
        "l2+s-linear+d-nonlinear": np.mean(filt(np.sqrt(a_s) * e) ** 2),
        "l2+d-nonlinear+s-linear": np.mean(a_s * filt(e) ** 2),
    }
    for name, ref in want.items():
        got = AmplifiedLoss(name)(
            torch.from_numpy(p), torch.from_numpy(t), input=torch.from_numpy(x)
        ).item()
        assert got == pytest.approx(ref, rel=1e-4), name
    # the estimate differs from the flat one: D is not F here
    f = AmplifiedLoss("l2+f-nonlinear-spectral")(torch.from_numpy(p), torch.from_numpy(t))
    assert abs(f.item() - want["l2+d-nonlinear"]) > 1e-3 * f.item()


def test_d_needs_the_input():
    p = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="input"):
        AmplifiedLoss("l2+d-linear")(p, p)


def test_effective_scale_of_d_is_the_flat_bound():
    for d, f in (
        ("l2+d-nonlinear", "l2+f-nonlinear-spectral"),
        ("l2+s+d-linear", "l2+s+f-linear-spectral"),
    ):
        assert effective_scale(d, (128, 128), 64)["scale"] == pytest.approx(
            effective_scale(f, (128, 128), 64)["scale"]
        )


# -------------------------------------------------------------------------------- names
@pytest.mark.parametrize("name", D_NAMES)
def test_names_round_trip(name):
    cfg = LossConfig.from_name(name)
    assert cfg.mode == "spectral" and cfg.directional != "none"
    assert LossConfig.from_name(cfg.name) == cfg
    assert LossConfig.from_dict(cfg.to_dict()) == cfg
    assert "-spectral" not in cfg.name


def test_schemes_and_spectral_suffix():
    assert LossConfig.from_name("l2+d-nonlinear").scheme == "D"
    assert LossConfig.from_name("l2+s+d-nonlinear").scheme == "S+D"
    assert LossConfig.from_name("l2+d+s-linear").scheme == "D+S"
    assert LossConfig.from_name("l2+d-nonlinear-spectral") == LossConfig.from_name(
        "l2+d-nonlinear"
    )
    assert LossConfig(directional="linear").mode == "spectral"
    assert LossConfig().mode == "paper"
    names = [c.name for c in paper_configs(("l2",), ("none", "D", "S+D", "D+S"), ("nonlinear",))]
    assert names == ["l2", "l2+d-nonlinear", "l2+s+d-nonlinear", "l2+d+s-nonlinear"]


def test_refusals():
    with pytest.raises(ValueError) as info:
        LossConfig(loss="l2", directional="nonlinear", mode="paper")
    msg = str(info.value)
    assert "\n" not in msg and "A(DC) = 1" in msg and "spectral" in msg
    with pytest.raises(ValueError, match="paper|A\\(DC\\)"):
        LossConfig.from_name("l2+d-nonlinear", mode="paper")
    with pytest.raises(ValueError, match="do not combine"):
        LossConfig(directional="linear", frequency="linear")
    with pytest.raises(ValueError, match="unknown loss configuration"):
        LossConfig.from_name("l2+d+f-linear")


def test_grid_schemes_accept_d():
    from napari_dfct.experiment.layout import make_configs

    names = [c.name for c in make_configs(("l1",), ("none", "d", "S+D", "ds"), ("linear",))]
    assert names == ["l1", "l1+d-linear", "l1+s+d-linear", "l1+d+s-linear"]
    named = make_configs(names=["l2", "l2+d-nonlinear"])
    assert [c.mode for c in named] == ["paper", "spectral"]


# ---------------------------------------------------------------------------------- CLI
def test_cli_refuses_d_in_paper_mode(small_sim, tmp_path, capsys):
    from napari_dfct.cli import main
    from napari_dfct.simulate import save_simulation

    save_simulation(small_sim, tmp_path / "sim")
    base = [
        "train",
        "--data",
        str(tmp_path / "sim"),
        "--preset",
        "tiny",
        "--patch",
        "32",
        "--batch-size",
        "4",
        "--epochs",
        "1",
        "--no-progress",
    ]
    for extra in (
        ["--directional", "nonlinear", "--mode", "paper"],
        ["--loss", "l2+s+d-nonlinear", "--mode", "paper"],
    ):
        capsys.readouterr()
        assert main(base + ["--out", str(tmp_path / "m"), *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "A(DC) = 1" in err[0], err
    assert not (tmp_path / "m").exists()
    capsys.readouterr()
    assert main(base + ["--out", str(tmp_path / "d"), "--directional", "linear"]) == 0
    import json

    saved = json.loads((tmp_path / "d" / "config.json").read_text())
    assert saved["loss"]["name"] == "l2+d-linear" and saved["loss"]["mode"] == "spectral"


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("name", ["l2+d-nonlinear", "l2+s+d-nonlinear", "l1+d+s-linear"])
def test_training_a_few_steps_with_d(small_sim, tmp_path, name):
    from napari_dfct.train import TrainConfig, run_fit

    cfg = TrainConfig(
        loss=LossConfig.from_name(name),
        preset="tiny",
        epochs=2,
        patience=5,
        batch_size=4,
        patch=32,
        patches_per_slice=2,
        device="cpu",
        seed=0,
    )
    events = []
    res = run_fit(small_sim.input, small_sim.target, cfg, tmp_path / "m", callback=events.append)
    # without the input batch the D loss raises: training through both the optimiser
    # steps and the validation means the loop passes it
    assert res.epochs_run == 2 and np.isfinite(res.best_val_loss)
    assert all(np.isfinite(e.train_loss) and np.isfinite(e.val_amplified) for e in events)
    import json

    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert LossConfig.from_dict(saved["loss"]) == LossConfig.from_name(name)
    # the saved model describes its scheme in words (dfct predict --info, the GUI)
    from napari_dfct.checkpoint.load import describe_model

    scheme = {"l2+d-nonlinear": "D", "l2+s+d-nonlinear": "S+D", "l1+d+s-linear": "D+S"}
    assert f"({scheme[name]}; spectral mode" in describe_model(tmp_path / "m")
