"""Tests of the DFCT simulator: projector, physics of the streaks, ROIs, I/O and CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from napari_dfct import simulate as S
from napari_dfct.simulate import (
    LABELS,
    Simulation,
    detector_bins,
    fbp,
    forward_project,
    load_simulation,
    save_simulation,
    simulate_dfct,
    suggest_rois,
    thorax_phantom,
    view_angles,
)

SMALL = dict(n_slices=2, size=64, n_views=64, seed=3)
NO_VIBRATION = dict(
    phase_amplitude=0.0, phase_jitter=0.0, visibility_amplitude=0.0, visibility_jitter=0.0
)


def _disk(n, r, center):
    yy, xx = np.mgrid[:n, :n]
    return ((yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= r * r).astype(np.float32)


def _angular_energy(err: np.ndarray, n_sectors: int = 8) -> np.ndarray:
    """Fourier energy of a 2-D error image in orientation sectors (DC and lowest band out)."""
    power = np.abs(np.fft.fftshift(np.fft.fft2(err))) ** 2
    n = err.shape[-1]
    k = np.arange(n) - n // 2
    ky, kx = np.meshgrid(k, k, indexing="ij")
    radius = np.hypot(ky, kx)
    angle = np.mod(np.arctan2(ky, kx), np.pi)
    ring = (radius > n / 16) & (radius < n / 2)
    sector = np.minimum((angle / np.pi * n_sectors).astype(int), n_sectors - 1)
    return np.array([power[ring & (sector == i)].sum() for i in range(n_sectors)])


@pytest.fixture(scope="module")
def by_rotations():
    """Same seed, R = 1, 4, 16 rotations."""
    return {r: simulate_dfct(rotations=r, **SMALL) for r in (1, 4, 16)}


# --------------------------------------------------------------------------------------
# projector and FBP against analytic cases
# --------------------------------------------------------------------------------------
def test_projection_of_disk_matches_chord_length():
    n, r, (cr, cc) = 64, 12.0, (35.0, 27.0)
    img = _disk(n, r, (cr, cc))
    sino = forward_project(img, 32)
    assert sino.shape == (32, detector_bins(n)) and sino.dtype == np.float32
    t = np.arange(sino.shape[1]) - (sino.shape[1] - 1) / 2
    x0, y0 = cc - (n - 1) / 2, cr - (n - 1) / 2  # disk centre in (x, y)
    for k, th in enumerate(view_angles(32)):
        t0 = x0 * np.cos(th) + y0 * np.sin(th)
        chord = 2 * np.sqrt(np.clip(r * r - (t - t0) ** 2, 0, None))
        # every view integrates the whole (pixelated) disk
        assert sino[k].sum() == pytest.approx(img.sum(), rel=5e-3)
        inner = np.abs(t - t0) < r - 2  # away from the pixelated rim
        np.testing.assert_allclose(sino[k][inner], chord[inner], atol=1.5)
    # opposite views see mirrored line integrals
    np.testing.assert_allclose(sino[16], sino[0][::-1], atol=1e-4)


def test_fbp_reconstructs_disk_value():
    n = 64
    img = 2.5 * _disk(n, 14, (30, 33))
    for filt in ("ramp", "hann"):
        rec = fbp(forward_project(img, 96), n, filter_name=filt)
        assert rec.shape == (n, n) and rec.dtype == np.float32
        inside = ndimage.binary_erosion(img > 0, iterations=3)
        outside = ndimage.binary_dilation(img > 0, iterations=4) == 0
        assert rec[inside].mean() == pytest.approx(2.5, rel=0.02)
        assert abs(rec[outside].mean()) < 0.02


@pytest.mark.parametrize("n_views, fold", [(24, 8), (20, 4), (26, 2)])
def test_symmetric_and_direct_projector_agree(n_views, fold):
    """The grid symmetries (mirror, 90-degree turn, transpose) only permute pixels."""
    rng = np.random.default_rng(0)
    n = 48
    img = rng.random((2, n, n)).astype(np.float32) * (_disk(n, n / 2 - 2, ((n - 1) / 2,) * 2))
    fast = S._Geometry(n, n_views)
    direct = S._Geometry(n, n_views, symmetry=False)
    direct.fold, direct.theta = 1, view_angles(n_views)
    assert fast.fold == fold
    np.testing.assert_allclose(fast.project(img), direct.project(img), rtol=1e-4, atol=1e-4)
    sino = rng.standard_normal((2, n_views, detector_bins(n))).astype(np.float32)
    np.testing.assert_allclose(
        fast.back_project(sino), direct.back_project(sino), rtol=1e-4, atol=1e-5
    )


def test_fbp_matches_scikit_image():
    """Independent reference: skimage radon/iradon of the same phantom slice."""
    from skimage.transform import iradon, radon

    eps = thorax_phantom(64, 1).eps[0]
    theta = np.degrees(view_angles(90))
    ref = iradon(
        radon(eps, theta, circle=False), theta, circle=False, filter_name="hann", output_size=64
    )
    ours = fbp(forward_project(eps, 90), 64, filter_name="hann")
    assert np.sqrt(np.mean((ours - ref) ** 2)) < 0.02 * eps.max()


# --------------------------------------------------------------------------------------
# outputs
# --------------------------------------------------------------------------------------
def test_outputs_dtype_shape_and_meta(small_sim):
    for name in ("input", "target", "truth"):
        arr = getattr(small_sim, name)
        assert arr.dtype == np.float32 and arr.shape == (4, 64, 64)
        assert np.isfinite(arr).all()
    m = small_sim.meta
    json.dumps(m)  # JSON-serialisable
    assert m["slice"] == 2 and m["n_slices"] == 4 and m["rotations"] == 4
    assert m["line"] == [m["signal_center"], m["background_center"]]
    assert m["physics"]["n0"] > 0 and m["units"] == "1/m"


def test_deterministic_for_a_seed(small_sim):
    again = simulate_dfct(n_slices=4, size=64, n_views=96, rotations=4, seed=1)
    for name in ("input", "target", "truth"):
        np.testing.assert_array_equal(getattr(again, name), getattr(small_sim, name))
    assert again.meta == small_sim.meta
    other = simulate_dfct(n_slices=4, size=64, n_views=96, rotations=4, seed=2)
    for name in ("input", "target"):
        assert not np.allclose(getattr(other, name), getattr(small_sim, name))


def test_input_is_the_first_rotation(by_rotations):
    # one rotation: the target is that rotation
    np.testing.assert_array_equal(by_rotations[1].target, by_rotations[1].input)
    # the input rotation does not depend on how many rotations the target averages
    np.testing.assert_array_equal(by_rotations[4].input, by_rotations[16].input)
    np.testing.assert_array_equal(by_rotations[4].truth, by_rotations[16].truth)


# --------------------------------------------------------------------------------------
# physics
# --------------------------------------------------------------------------------------
def test_streak_energy_falls_with_rotations(by_rotations):
    err = {r: s.target - s.truth for r, s in by_rotations.items()}
    std = {r: float(e.std()) for r, e in err.items()}
    assert std[1] > std[4] > std[16]
    assert std[16] < 0.5 * std[1]
    # in every orientation sector of the spectrum, not only in total
    e1 = sum(_angular_energy(e) for e in err[1])
    e16 = sum(_angular_energy(e) for e in err[16])
    assert np.all(e16 < e1)
    # streaks are directional: the single-rotation error spectrum is anisotropic
    assert e1.max() > 2.0 * e1.min()


def test_photon_noise_averages_as_one_over_sqrt_r():
    one = simulate_dfct(rotations=1, **SMALL, **NO_VIBRATION)
    four = simulate_dfct(rotations=4, **SMALL, **NO_VIBRATION)
    ratio = (four.target - four.truth).std() / (one.target - one.truth).std()
    assert ratio == pytest.approx(0.5, abs=0.08)


def test_photon_noise_scales_with_dose_and_attenuation():
    """Variance ~ exp(p_mu) / n0: 16x the photons, a quarter of the noise; more noise
    where every ray crosses the thick body (centre) than in the air corners."""
    kw = dict(n_slices=2, size=64, n_views=64, rotations=1, seed=0, **NO_VIBRATION)
    base = simulate_dfct(**kw)
    more = simulate_dfct(n0=S.Physics().n0 * 16, **kw)
    err, err_more = base.input - base.truth, more.input - more.truth
    assert err_more.std() / err.std() == pytest.approx(0.25, rel=0.05)
    centre = err[:, 24:40, 24:40].std()
    corners = np.concatenate([err[:, :10, :10], err[:, -10:, -10:]]).std()
    assert centre > 2.0 * corners


def test_target_keeps_residual_streaks():
    kw = dict(SMALL, n_views=128, n0=1e15)  # vibration only
    locked = {r: simulate_dfct(rotations=r, **kw) for r in (400, 1600)}
    free = {r: simulate_dfct(rotations=r, correlated_fraction=0.0, **kw) for r in (400, 1600)}

    def err(sim):
        return float((sim.target - sim.truth).std())

    # with the gantry-locked share the error converges to a non-zero floor ...
    assert err(locked[1600]) == pytest.approx(err(locked[400]), rel=0.1)
    assert err(locked[1600]) > 0.05 * float((locked[400].input - locked[400].truth).std())
    # ... without it, it keeps falling (as 1/sqrt(R) on average; one realisation of a
    # few strong vibration modes scatters around that)
    assert err(free[1600]) / err(free[400]) < 0.75
    assert err(free[1600]) < 0.5 * err(locked[1600])


def test_default_target_residual_is_structured(by_rotations):
    sim = by_rotations[16]
    res = sim.target - sim.truth
    assert res.std() > 0.1 * (sim.input - sim.truth).std()
    # the same vibration hits every detector row: residual streaks repeat across slices,
    # while photon noise does not
    corr = np.corrcoef(res[0].ravel(), res[1].ravel())[0, 1]
    noise = simulate_dfct(rotations=16, **SMALL, **NO_VIBRATION)
    nres = noise.target - noise.truth
    ncorr = np.corrcoef(nres[0].ravel(), nres[1].ravel())[0, 1]
    assert corr > 0.5 and abs(ncorr) < 0.2


def test_truth_has_no_streaks(by_rotations):
    sim = by_rotations[4]
    phantom = sim.phantom
    for z in range(sim.truth.shape[0]):
        ref = ndimage.gaussian_filter(phantom.eps[z], 1.0)
        truth_err = np.sqrt(np.mean((sim.truth[z] - ref) ** 2))
        input_err = np.sqrt(np.mean((sim.input[z] - ref) ** 2))
        assert truth_err < 0.03 * phantom.eps[z].max()
        assert truth_err < 0.15 * input_err
    # and no directional structure: isotropic error spectrum compared to the input's
    te = _angular_energy(sim.truth[0] - ndimage.gaussian_filter(phantom.eps[0], 1.0))
    ie = _angular_energy(sim.input[0] - sim.truth[0])
    assert te.sum() < 0.01 * ie.sum()


def test_lung_air_contrast_matches_phantom(small_sim):
    m, ph = small_sim.meta, small_sim.phantom
    h = m["roi_size"] // 2
    (sr, sc), (br, bc) = m["signal_center"], m["background_center"]
    z = m["slice"]
    lung = small_sim.truth[z, sr - h : sr + h, sc - h : sc + h].mean()
    air = small_sim.truth[z, br - h : br + h, bc - h : bc + h].mean()
    lung_ref = ph.eps[z, sr - h : sr + h, sc - h : sc + h].mean()
    assert lung == pytest.approx(lung_ref, rel=0.05)
    assert abs(air) < 0.03 * lung_ref
    # lung scatters strongly, soft tissue and bone little, air not at all
    eps_lung = S.MATERIALS["lung"][2]
    assert eps_lung > 4 * max(S.MATERIALS[m][2] for m in ("soft", "cortical", "cancellous"))


# --------------------------------------------------------------------------------------
# ROIs
# --------------------------------------------------------------------------------------
def _assert_rois_valid(labels, meta):
    size = labels.shape[-1]
    s = meta["roi_size"]
    for key, allowed in (
        ("signal_center", {LABELS["lung"]}),
        ("background_center", {LABELS["air"], LABELS["air_cavity"]}),
    ):
        r, c = meta[key]
        # covers a napari rectangle at centre -/+ s/2, whichever pixel rounding is used
        r0, r1, c0, c1 = r - s // 2 - 1, r + s // 2 + 1, c - s // 2 - 1, c + s // 2 + 1
        assert r0 >= 0 and r1 < size and c0 >= 0 and c1 < size
        block = labels[:, r0 : r1 + 1, c0 : c1 + 1]
        assert set(np.unique(block)) <= allowed, key


def test_rois_inside_and_in_tissue_for_every_slice(small_sim):
    _assert_rois_valid(small_sim.phantom.labels, small_sim.meta)


def test_rois_at_sample_size_are_30_px_in_lung_and_air_cavity():
    ph = thorax_phantom(256, 16)
    rois = suggest_rois(ph.labels)
    assert rois["roi_size"] == 30 and rois["background_region"] == "air_cavity"
    _assert_rois_valid(ph.labels, rois)
    # near the image centre, and the line crosses a lung-air edge
    for key in ("signal_center", "background_center"):
        assert np.hypot(*(np.array(rois[key]) - 127.5)) < 80
    (r0, c0), (r1, c1) = rois["line"]
    t = np.linspace(0, 1, 200)
    rr = np.round(r0 + t * (r1 - r0)).astype(int)
    cc = np.round(c0 + t * (c1 - c0)).astype(int)
    along = ph.labels[8, rr, cc]
    assert along[0] == LABELS["lung"] and along[-1] == LABELS["air_cavity"]


def test_phantom_varies_smoothly_along_z():
    ph = thorax_phantom(96, 12)
    changes = [(ph.labels[k] != ph.labels[k + 1]).mean() for k in range(11)]
    assert 0 < max(changes) < 0.05
    assert (ph.labels[0] != ph.labels[-1]).mean() > max(changes)


# --------------------------------------------------------------------------------------
# progress, errors, save / load, CLI
# --------------------------------------------------------------------------------------
def test_progress_reports_every_block():
    calls = []
    simulate_dfct(
        n_slices=5,
        size=32,
        n_views=16,
        rotations=2,
        chunk=2,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(2, 5), (4, 5), (5, 5)]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(size=16), "size"),
        (dict(rotations=0), "rotations"),
        (dict(n_views=4), "n_views"),
        (dict(n_slices=0), "n_slices"),
        (dict(filter="shepp"), "filter"),
        (dict(wobble=1.0), "unknown physics"),
        (dict(correlated_fraction=2.0), "correlated_fraction"),
    ],
)
def test_bad_values_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_dfct(**{**dict(n_slices=1, size=32, n_views=16, rotations=1), **kwargs})


def test_save_load_round_trip(tmp_path, small_sim):
    paths = save_simulation(small_sim, tmp_path / "sim")
    assert {p.name for p in paths.values()} == {
        "input.tif",
        "target.tif",
        "truth.tif",
        "body.tif",
        "meta.json",
    }
    back = load_simulation(tmp_path / "sim")
    assert isinstance(back, Simulation)
    for name in ("input", "target", "truth"):
        np.testing.assert_array_equal(getattr(back, name), getattr(small_sim, name))
        assert getattr(back, name).dtype == np.float32
    assert back.meta == json.loads(json.dumps(small_sim.meta))
    with pytest.raises(ValueError, match="missing"):
        (tmp_path / "sim" / "truth.tif").unlink()
        load_simulation(tmp_path / "sim")


def test_cli_simulate_writes_readable_files(tmp_path, capsys):
    import tifffile

    from napari_dfct.cli import main

    out = tmp_path / "run"
    rc = main(
        [
            "simulate",
            str(out),
            "--slices",
            "3",
            "--size",
            "48",
            "--views",
            "32",
            "--rotations",
            "3",
            "--seed",
            "5",
            "--quiet",
        ]
    )
    assert rc == 0
    for name in ("input", "target", "truth"):
        arr = tifffile.imread(out / f"{name}.tif")
        assert arr.shape == (3, 48, 48) and arr.dtype == np.float32
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seed"] == 5 and meta["rotations"] == 3 and meta["n_views"] == 32
    direct = simulate_dfct(n_slices=3, size=48, n_views=32, rotations=3, seed=5)
    np.testing.assert_array_equal(tifffile.imread(out / "target.tif"), direct.target)
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--size", "16"], "--size must be >= 32"),
        (["--rotations", "0"], "--rotations must be >= 1"),
        (["--views", "4"], "--views must be >= 8"),
    ],
)
def test_cli_simulate_bad_values(tmp_path, capsys, args, message):
    from napari_dfct.cli import main

    assert main(["simulate", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_simulate_out_dir_is_a_file(tmp_path, capsys):
    from napari_dfct.cli import main

    f = tmp_path / "file.txt"
    f.write_text("x")
    assert main(["simulate", str(f), "--size", "32", "--slices", "1", "--quiet"]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_seed_varies_the_specimen_but_rois_still_fit():
    a, b = thorax_phantom(128, 3, seed=0), thorax_phantom(128, 3, seed=7)
    assert (a.labels != b.labels).mean() > 0.005  # other anatomy, not only other texture
    for seed in (0, 7, 11):
        ph = thorax_phantom(256, 4, seed=seed)
        rois = suggest_rois(ph.labels)
        assert rois["roi_size"] == 30
        _assert_rois_valid(ph.labels, rois)


def test_results_do_not_depend_on_the_slice_block_size():
    kw = dict(n_slices=5, size=32, n_views=16, rotations=3, seed=2)
    one, other = simulate_dfct(chunk=1, **kw), simulate_dfct(chunk=4, **kw)
    for name in ("input", "target", "truth"):
        np.testing.assert_array_equal(getattr(one, name), getattr(other, name))
