"""The fringe-level acquisition model (simulate/fringe.py) and the checks of
docs/simulator.md: first-order unchanged bit for bit, the noiseless residual, the
photon-noise variance against the analytic least-squares variance, the vibration's
correlation with the first-order model and its square-law scaling, and the directional
oracle recomputed from the fringe model."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from napari_dfct.cli import main
from napari_dfct.simulate import detector_bins, load_simulation, simulate_dfct, view_error_energy
from napari_dfct.simulate.acquisition import Physics, _error_fields, _Run, _sinogram_errors
from napari_dfct.simulate.fringe import lsq_variance, nominal_phases, retrieve


def _digest(sim) -> dict[str, str]:
    return {
        k: hashlib.sha256(np.ascontiguousarray(getattr(sim, k)).tobytes()).hexdigest()[:16]
        for k in ("input", "target", "truth")
    }


def test_first_order_is_bit_identical_to_the_model_before_the_fringe_model():
    # digests of the arrays computed by the code before the fringe model existed
    a = simulate_dfct(2, 64, rotations=3, seed=5, specimens=True)
    assert _digest(a) == {
        "input": "8e12a03707cf529f",
        "target": "e6c8cef7f40da2c7",
        "truth": "bc4e9b8834726fdf",
    }
    b = simulate_dfct(2, 64, n_views=96, rotations=4, seed=1, tiles=4, noise=2.0)
    assert _digest(b) == {
        "input": "1255993a7bdfd62f",
        "target": "89a94761266f8e9b",
        "truth": "bb81b0507369f265",
    }
    assert a.meta["physics"]["model"] == "first-order"


def _sinogram_errors_of(seed=7, size=64, n_views=192, rotations=4, **physics):
    phys = Physics(**physics)
    run = _Run(phys, size, n_views, rotations, detector_bins(size))
    ph = run.phantom(1, seed)
    fields = _error_fields(phys, seed, rotations, n_views, run.n_det, np.zeros(1))
    p_eps, e_in, e_tg = _sinogram_errors(run, ph.mu, ph.eps, ph.pixel_size_mm, fields, [(seed, 0)])
    return p_eps[0], e_in[0].astype(np.float64), e_tg[0].astype(np.float64)


@pytest.fixture(scope="module")
def noiseless():
    """Input sinogram errors without photon noise: fringe at vibration 0, 0.5 and 1, and
    the first-order model."""
    out = {"first": _sinogram_errors_of(noise=0.0)[1]}
    for x in (0.0, 0.5, 1.0):
        out[x] = _sinogram_errors_of(noise=0.0, model="fringe", vibration=x)[1]
    return out


def test_without_vibration_and_noise_only_the_window_motion_remains(noiseless):
    residual = noiseless[0.0]
    vibration = noiseless[1.0] - residual
    ratio = (residual**2).sum() / (vibration**2).sum()
    assert 0 < ratio < 0.02  # measured 0.005 at 64 px: small against the vibration's error
    # a static object (no rotation within the window) is retrieved exactly
    v, u = np.mgrid[0:48, 0:30]
    p_mu = (2 + np.sin(2 * np.pi * v / 48 + u / 5)).astype(np.float32)
    p_eps = (0.3 + 0.1 * np.cos(2 * np.pi * v / 48 - u / 7)).astype(np.float32)
    kw = dict(rotations=2, window=3, steps=3, photons=1e5, visibility=0.25, noise=0.0)
    d_in, d_tg = retrieve(p_mu, p_eps, 0.1, spacing=0.0, **kw)
    assert np.abs(d_in - p_eps).max() < 1e-4 and np.abs(d_tg - p_eps).max() < 1e-4
    # ... and a rotating one is not: the residual grows with the rotation per shot
    d_rot, _ = retrieve(p_mu, p_eps, 0.1, spacing=0.2, **kw)
    d_rot2, _ = retrieve(p_mu, p_eps, 0.1, spacing=0.4, **kw)
    e1, e2 = (((d - p_eps) ** 2).sum() for d in (d_rot, d_rot2))
    assert e1 > 1e-4 and 3.0 < e2 / e1 < 5.0  # first order in the rotation: energy x 4


def test_vibration_error_energy_scales_with_its_square(noiseless):
    energy = {x: ((noiseless[x] - noiseless[0.0]) ** 2).sum() for x in (0.5, 1.0)}
    assert 0.2 < energy[0.5] / energy[1.0] < 0.32  # measured 0.28


def test_small_vibration_matches_the_first_order_model():
    """The same vibration draws through both models. The first-order error of view v,
    averaged over the retrieval window (the fringe model averages each shot's
    perturbation over it), against the fringe model's vibration error (minus its
    vibration-free residual). The visibility channel alone correlates > 0.9; with the
    phase channel the fringe model adds the phase jitter within the window, which the
    first-order model lacks (docs/simulator.md)."""
    x = 0.05

    def window_mean(e):
        return sum(np.roll(e, -j, axis=0) for j in (-1, 0, 1)) / 3.0

    no_phase = dict(noise=0.0, phase_amplitude=0.0, phase_jitter=0.0)
    first = window_mean(_sinogram_errors_of(**no_phase)[1])
    f0 = _sinogram_errors_of(model="fringe", vibration=0.0, **no_phase)[1]
    fx = _sinogram_errors_of(model="fringe", vibration=x, **no_phase)[1]
    corr = np.corrcoef((fx - f0).ravel(), first.ravel())[0, 1]
    assert corr > 0.9  # measured 0.97
    # the whole model: lower, the phase channel differs (measured 0.89)
    first = window_mean(_sinogram_errors_of(noise=0.0)[1])
    f0 = _sinogram_errors_of(model="fringe", vibration=0.0, noise=0.0)[1]
    fx = _sinogram_errors_of(model="fringe", vibration=x, noise=0.0)[1]
    corr_all = np.corrcoef((fx - f0).ravel(), first.ravel())[0, 1]
    assert 0.7 < corr_all < corr
    energy_ratio = ((fx - f0) ** 2).sum() / (x**2 * (first**2).sum())
    assert 0.5 < energy_ratio < 2.0


def _uniform_variance(noise: float, rotations: int = 1):
    v, d = 384, 200
    p_mu, p_eps = 2.0, 0.3
    rng = np.random.default_rng(11)
    kw = dict(rotations=rotations, window=3, steps=3, photons=5e4, visibility=0.25)
    d_in, d_tg = retrieve(
        np.full((v, d), p_mu), np.full((v, d), p_eps), 0.0, noise=noise, rng=rng, **kw
    )
    phases = np.tile(nominal_phases(3, 3), rotations)
    analytic = lsq_variance(
        0.25 * np.exp(-p_eps), 5e4 * np.exp(-p_mu), phases, noise=noise
    ) + lsq_variance(0.25, 5e4, phases, noise=noise)
    return d_in.var(), d_tg.var(), analytic


def test_noise_variance_matches_the_least_squares_fit():
    var_in, _, analytic = _uniform_variance(1.0)
    assert abs(var_in / analytic - 1) < 0.1
    _, var_tg, analytic_tg = _uniform_variance(1.0, rotations=4)  # R W samples per fit
    assert abs(var_tg / analytic_tg - 1) < 0.1
    assert abs(analytic / analytic_tg - 4) < 1e-6
    var2, _, analytic2 = _uniform_variance(2.0)
    assert abs(var2 / var_in / 4 - 1) < 0.1
    assert abs(analytic2 / analytic - 4) < 1e-9


def test_closed_form_of_the_least_squares_variance():
    v, n0 = 0.2, 1e4
    phases = nominal_phases(8, 4)  # K = 4, two periods
    want = (2 - v**2) / (8 * n0 * v**2)
    for phase in (0.0, 0.7, 2.0):
        assert lsq_variance(v, n0, phases, phase=phase) == pytest.approx(want, rel=1e-9)


def test_oracle_is_recomputed_from_the_fringe_model():
    kw = dict(n_views=96, rotations=3, seed=2, specimens=True, model="fringe")
    sim = simulate_dfct(1, 48, **kw)
    angles, energy = view_error_energy(sim)
    assert angles.shape == (48,) and energy.shape == (1, 48)
    # input - target is exactly the FBP of the sinogram difference the oracle filters
    quiet = simulate_dfct(1, 48, vibration=0.0, noise=0.0, **kw)
    assert np.abs(quiet.input - quiet.target).max() == 0  # no vibration, no noise
    assert view_error_energy(quiet)[1].max() == 0
    first = simulate_dfct(1, 48, **{**kw, "model": "first-order"})
    assert not np.allclose(view_error_energy(first)[1], energy)
    noise_only = simulate_dfct(1, 48, vibration=0.0, **kw)
    assert view_error_energy(noise_only)[1].sum() < 0.5 * energy.sum()


def test_cli_fringe_physics_writes_its_model_to_meta(tmp_path, capsys):
    out = tmp_path / "set"
    code = main(
        ["simulate", str(out), "--specimens", "1", "--size", "64", "--physics", "fringe"]
        + ["--vibration", "0.5", "--window", "5", "--quiet", "--rotations", "3"]
    )
    assert code == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["physics"]["model"] == "fringe"
    assert meta["physics"]["vibration"] == 0.5 and meta["physics"]["window"] == 5
    assert "fringe physics" in capsys.readouterr().out
    bad = main(
        ["simulate", str(tmp_path / "b"), "--size", "64", "--physics", "fringe"]
        + ["--window", "2", "--quiet"]
    )
    assert bad == 2
    assert "window must be >= 3" in capsys.readouterr().err


def test_fringe_defaults_keep_the_target_cleaner_than_the_input():
    """``model="fringe"`` takes the fringe model's own coupling and jitter unless given;
    with them the multi-rotation target's error in the body is well below the input's
    (at the first-order amplitudes it was not: docs/simulator.md)."""
    from napari_dfct.simulate.fringe import FRINGE_DEFAULTS

    kw = dict(n_views=192, rotations=8, seed=5, specimens=True, model="fringe")
    sim = simulate_dfct(2, 64, **kw)
    assert {k: sim.meta["physics"][k] for k in FRINGE_DEFAULTS} == FRINGE_DEFAULTS
    given = simulate_dfct(2, 64, **{**kw, "phase_jitter": 0.35, "attenuation_coupling": 3.0})
    assert given.meta["physics"]["phase_jitter"] == 0.35
    assert given.meta["physics"]["attenuation_coupling"] == 3.0

    def ratio(s):  # the target's squared error in the body over the input's
        body = s.mask.astype(bool)
        return ((s.target - s.truth)[body] ** 2).mean() / ((s.input - s.truth)[body] ** 2).mean()

    # measured 0.44 with the fringe defaults and 1.5 at the first-order amplitudes
    assert ratio(sim) < 0.7 < 1.0 < ratio(given)


def test_fringe_benchmark_takes_four_times_the_dose(tmp_path):
    """``--preset benchmark --physics fringe`` halves the noise's standard deviation (the
    noise-only error variance falls to about a quarter of the first-order benchmark's dose,
    ``--noise 1``); ``--noise`` still overrides it and the first-order benchmark keeps its
    dose (docs/simulator.md, "Calibration")."""
    common = ["--specimens", "1", "--size", "64", "--rotations", "1", "--quiet"]
    common += ["--preset", "benchmark", "--vibration", "0"]

    def noise_variance(name, *extra):
        out = tmp_path / name
        assert main(["simulate", str(out), *common, *extra]) == 0
        meta = json.loads((out / "meta.json").read_text())
        sim = load_simulation(out)
        body = sim.mask.astype(bool)
        return meta["physics"]["noise"], float((sim.input - sim.truth)[body].var())

    level, low = noise_variance("fringe", "--physics", "fringe")
    before, high = noise_variance("fringe-noise1", "--physics", "fringe", "--noise", "1")
    first, _ = noise_variance("first-order", "--physics", "first-order")
    assert (level, before, first) == (0.5, 1.0, 1.0)
    assert 0.2 < low / high < 0.35
