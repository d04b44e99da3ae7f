"""The simulator as a benchmark: independent specimens, per-slice ROIs, the body mask,
views per size, tiled gratings, noise and texture options, the streak share, the default
intensity window, and the safety of `dfct simulate` (no silent overwrite, memory check,
atomic files)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_dfct.cli import main
from napari_dfct.data import window_from_percentiles
from napari_dfct.metrics import roi_bounds
from napari_dfct.roi import ROISet
from napari_dfct.simulate import (
    LABELS,
    PRESETS,
    body_mask,
    dataset_files,
    estimate_memory,
    load_simulation,
    preset_physics,
    save_simulation,
    simulate_dfct,
    specimen_seeds,
    variance_shares,
    views_for,
)

NO_VIBRATION = dict(
    phase_amplitude=0.0, phase_jitter=0.0, visibility_amplitude=0.0, visibility_jitter=0.0
)


def _streaks(sim) -> np.ndarray:
    return sim.input - sim.truth


def _neighbour_correlations(maps: np.ndarray) -> np.ndarray:
    return np.array(
        [np.corrcoef(maps[k].ravel(), maps[k + 1].ravel())[0, 1] for k in range(len(maps) - 1)]
    )


@pytest.fixture(scope="module")
def specimens():
    return simulate_dfct(n_slices=6, size=64, rotations=4, seed=5, specimens=True)


# --------------------------------------------------------------------------------------
# independent specimens
# --------------------------------------------------------------------------------------
def test_specimens_have_independent_streaks(specimens):
    """Neighbouring slices of independent scans share no streak pattern; the slices of
    one acquisition (same size, views and seed) do, which shows the measure can fail."""
    shared = simulate_dfct(n_slices=6, size=64, rotations=4, seed=5)
    assert specimens.meta["n_views"] == shared.meta["n_views"] == views_for(64)
    independent = _neighbour_correlations(_streaks(specimens))
    alike = _neighbour_correlations(_streaks(shared))
    assert independent.mean() < 0.3 and independent.max() < 0.5
    assert alike.min() > 0.5
    assert specimens.meta["acquisition"] == "independent"
    assert shared.meta["acquisition"] == "shared"


def test_specimens_differ_in_anatomy(specimens):
    labels = specimens.phantom.labels
    for k in range(len(labels) - 1):
        assert (labels[k] != labels[k + 1]).mean() > 0.005


def test_specimens_are_deterministic_and_each_is_its_own_scan(specimens):
    again = simulate_dfct(n_slices=6, size=64, rotations=4, seed=5, specimens=True, chunk=1)
    for name in ("input", "target", "truth", "mask"):
        np.testing.assert_array_equal(getattr(again, name), getattr(specimens, name))
    assert {**again.meta, "physics": None} == {**specimens.meta, "physics": None}
    seeds = specimen_seeds(5, 6)
    assert specimens.meta["specimen_seeds"] == seeds and len(set(seeds)) == 6
    # slice k is exactly the central slice of a one-slice scan with the k-th seed
    single = simulate_dfct(n_slices=1, size=64, rotations=4, seed=seeds[3])
    for name in ("input", "target", "truth"):
        np.testing.assert_array_equal(getattr(single, name)[0], getattr(specimens, name)[3])
    other = simulate_dfct(n_slices=6, size=64, rotations=4, seed=6, specimens=True)
    assert not np.allclose(other.input, specimens.input)
    # the specimens of two seeds do not overlap (unlike seed + k)
    assert not set(specimen_seeds(0, 50)) & set(specimen_seeds(1, 50))


def _assert_inside(labels2d, center, size, allowed):
    r0, r1, c0, c1 = roi_bounds(center, size)
    # one pixel more on every side: any rounding of the napari rectangle stays inside
    block = labels2d[r0 - 1 : r1 + 1, c0 - 1 : c1 + 1]
    assert r0 >= 1 and c0 >= 1 and r1 < labels2d.shape[0] and c1 < labels2d.shape[1]
    assert set(np.unique(block)) <= allowed


def test_per_slice_rois_lie_in_each_slices_lung_and_air(specimens):
    meta = specimens.meta
    rois = meta["rois"]
    assert len(rois) == 6
    air = {LABELS["air"], LABELS["air_cavity"]}
    for k, r in enumerate(rois):
        labels = specimens.phantom.labels[k]
        _assert_inside(labels, r["signal_center"], r["roi_size"], {LABELS["lung"]})
        _assert_inside(labels, r["background_center"], r["roi_size"], air)
        assert r["line"] == [r["signal_center"], r["background_center"]]
        # the ROISet of slice k is that slice's entry
        got = ROISet.from_meta(meta, 6, slice=k)
        assert list(got.signal_center) == [float(v) for v in r["signal_center"]]
        assert list(got.background_center) == [float(v) for v in r["background_center"]]
    # the top level keeps the ROIs of meta's slice for readers of one ROI set
    central = rois[meta["slice"]]
    assert meta["signal_center"] == central["signal_center"]
    assert meta["background_center"] == central["background_center"]
    # the anatomy differs, and so do some ROIs
    assert len({tuple(r["signal_center"] + r["background_center"]) for r in rois}) > 1


def test_shared_acquisition_lists_the_same_rois_for_every_slice(small_sim):
    rois = small_sim.meta["rois"]
    assert len(rois) == small_sim.input.shape[0]
    assert all(r == rois[0] for r in rois)
    assert rois[0]["signal_center"] == small_sim.meta["signal_center"]


def test_measure_uses_the_slices_own_rois(tmp_path, capsys):
    out = tmp_path / "spec"
    assert (
        main(
            [
                "simulate",
                str(out),
                "--specimens",
                "5",
                "--size",
                "64",
                "--rotations",
                "3",
                "--seed",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    meta = json.loads((out / "meta.json").read_text())
    capsys.readouterr()
    for k in (0, 4):
        assert main(["measure", str(out / "input.tif"), "--slice", str(k), "--json"]) == 0
        res = json.loads(capsys.readouterr().out)
        assert res["slice"] == k
        assert res["signal_center"] == [float(v) for v in meta["rois"][k]["signal_center"]]
        assert res["background_center"] == [float(v) for v in meta["rois"][k]["background_center"]]


# --------------------------------------------------------------------------------------
# body mask
# --------------------------------------------------------------------------------------
def test_body_mask_is_the_phantoms_body(specimens, tmp_path):
    mask = specimens.mask
    labels = specimens.phantom.labels
    assert mask.dtype == np.uint8 and mask.shape == specimens.input.shape
    assert set(np.unique(mask)) == {0, 1}
    # every tissue and air-cavity pixel is inside, the outside air (corners) is not
    assert np.all(mask[labels != LABELS["air"]] == 1)
    assert np.all(mask[:, :3, :3] == 0) and np.all(mask[:, -3:, -3:] == 0)
    # a hole of outside air enclosed by the body still counts as body
    lab = np.full((9, 9), LABELS["soft_tissue"], dtype=np.uint8)
    lab[0, :] = lab[:, 0] = LABELS["air"]
    lab[4, 4] = LABELS["air"]
    m = body_mask(lab)
    assert m[4, 4] == 1 and m[0, 3] == 0
    # saved as body.tif, named in meta.json, read back by load_simulation
    paths = save_simulation(specimens, tmp_path / "s")
    assert paths["mask"].name == "body.tif"
    assert json.loads(paths["meta"].read_text())["mask"] == "body.tif"
    stored = tifffile.imread(paths["mask"])
    assert stored.dtype == np.uint8 and stored.shape == mask.shape
    back = load_simulation(tmp_path / "s")
    np.testing.assert_array_equal(back.mask, mask)


def test_single_slice_mask_round_trip_and_old_folders(tmp_path):
    one = simulate_dfct(n_slices=1, size=48, rotations=2, seed=1)
    save_simulation(one, tmp_path / "one")
    back = load_simulation(tmp_path / "one")
    assert back.mask.shape == back.input.shape == (1, 48, 48)
    # a folder written before the mask (and generation ids) existed
    (tmp_path / "one" / "body.tif").unlink()
    with pytest.raises(ValueError, match="body.tif is missing"):
        load_simulation(tmp_path / "one")  # its meta.json lists the mask: not a whole set
    meta = json.loads((tmp_path / "one" / "meta.json").read_text())
    del meta["generation"], meta["mask"]
    (tmp_path / "one" / "meta.json").write_text(json.dumps(meta))
    assert load_simulation(tmp_path / "one").mask is None
    tifffile.imwrite(tmp_path / "one" / "body.tif", np.ones((5, 5), np.uint8))
    with pytest.raises(ValueError, match="body mask"):
        load_simulation(tmp_path / "one")


# --------------------------------------------------------------------------------------
# realism options
# --------------------------------------------------------------------------------------
def test_views_scale_with_the_size():
    assert views_for(800) == 2400  # the paper's shots per rotation
    for size in (32, 48, 100, 128, 255, 256, 801):
        v = views_for(size)
        assert v % 8 == 0 and 3 * size <= v < 3 * size + 8
    assert simulate_dfct(n_slices=1, size=40, rotations=1).meta["n_views"] == views_for(40)


def test_default_options_and_preset_change_nothing(small_sim):
    assert PRESETS["default"] == {"noise": 1.0, "texture": 1.0, "tiles": 0}
    again = simulate_dfct(
        n_slices=4, size=64, n_views=96, rotations=4, seed=1, **preset_physics("default")
    )
    for name in ("input", "target", "truth"):
        np.testing.assert_array_equal(getattr(again, name), getattr(small_sim, name))


def test_noise_option_scales_the_photon_noise():
    kw = dict(n_slices=1, size=48, n_views=48, rotations=1, seed=0, **NO_VIBRATION)
    base, double = simulate_dfct(**kw), simulate_dfct(noise=2.0, **kw)
    np.testing.assert_allclose(_streaks(double), 2 * _streaks(base), rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(double.truth, base.truth)


def test_texture_option_scales_the_lung_texture():
    kw = dict(n_slices=2, size=96, rotations=1, seed=0)
    rois = None
    var = {}
    for m in (1.0, 0.5, 0.0):
        sim = simulate_dfct(**kw, **preset_physics(texture=m))
        rois = rois or sim.meta["rois"]
        var[m] = variance_shares(sim.input, sim.truth, rois)["texture_variance"]
    assert var[1.0] > var[0.5] > var[0.0]
    p = preset_physics(texture=0.5)
    base = preset_physics()
    assert p["texture"] == pytest.approx(0.5 * base["texture"])
    assert p["coarse_texture"] == pytest.approx(0.5 * base["coarse_texture"])


def _radial_share(img: np.ndarray) -> float:
    """Share of the variance of ``img`` that is a function of the radius alone."""
    n = img.shape[0]
    yy, xx = np.mgrid[:n, :n]
    r = np.rint(np.hypot(yy - (n - 1) / 2, xx - (n - 1) / 2)).astype(int)
    inside = r < n // 2 - 2
    mean_at = np.bincount(r[inside], img[inside]) / np.maximum(np.bincount(r[inside]), 1)
    radial = mean_at[r[inside]]
    return float(radial.var() / img[inside].var())


def test_tiles_add_rings_that_scale_with_their_amplitude():
    kw = dict(n_slices=1, size=96, rotations=4, seed=3, correlated_fraction=0.0)
    plain = simulate_dfct(**kw)
    tiled = simulate_dfct(tiles=8, **kw)
    double = simulate_dfct(tiles=8, tile_amplitude=0.004, **kw)
    rings = tiled.input[0] - plain.input[0]
    assert np.abs(rings).max() > 0
    # rings: almost all of the added error is a function of the radius alone, unlike
    # the vibration streaks
    assert _radial_share(rings) > 0.6
    assert _radial_share(_streaks(plain)[0]) < 0.3
    # the error enters linearly
    np.testing.assert_allclose(
        double.input[0] - plain.input[0], 2 * rings, rtol=1e-3, atol=2e-3 * np.abs(rings).max()
    )
    np.testing.assert_array_equal(tiled.truth, plain.truth)
    with pytest.raises(ValueError, match="tiles must be <="):
        simulate_dfct(n_slices=1, size=32, n_views=16, rotations=1, tiles=1000)


def test_variance_shares_against_a_hand_computation():
    rng = np.random.default_rng(0)
    truth = np.zeros((2, 20, 20))
    inp = np.zeros((2, 20, 20))
    rois = [{"signal_center": [6, 7], "roi_size": 4}, {"signal_center": [12.5, 10], "roi_size": 6}]
    # the pixels of each ROI, from the rule "r - s/2 <= i < r + s/2" (rows and columns)
    blocks = [(slice(4, 8), slice(5, 9)), (slice(10, 16), slice(7, 13))]
    expected = []
    for k, (rs, cs) in enumerate(blocks):
        t = rng.normal(1.0, 0.5, (rs.stop - rs.start, cs.stop - cs.start))
        e = rng.normal(0.0, 1.0 + k, t.shape)
        truth[k][rs, cs] = t
        inp[k][rs, cs] = t + e
        expected.append(e.var() / (e.var() + t.var()))
    # outside the ROIs: anything, it must not count
    inp[:, 0, :] = 100.0
    res = variance_shares(inp, truth, rois, target=truth + 0.0)
    assert res["per_slice_input"] == [round(v, 4) for v in expected]
    assert res["input"] == pytest.approx(np.median(expected))
    assert res["target"] == 0.0
    with pytest.raises(ValueError, match="ROI sets"):
        variance_shares(inp, truth, rois[:1])


def test_benchmark_preset_lets_streaks_dominate():
    shares = {}
    for preset in ("default", "benchmark"):
        sim = simulate_dfct(n_slices=6, size=128, seed=0, specimens=True, **preset_physics(preset))
        shares[preset] = sim.meta["streak_share"]
        # the stored share is the function's, on the simulation's own ROIs
        again = variance_shares(sim.input, sim.truth, sim.meta["rois"], target=sim.target)
        assert again["input"] == pytest.approx(shares[preset]["input"])
    assert shares["benchmark"]["input"] >= 0.8
    assert shares["benchmark"]["input"] > shares["default"]["input"] > 0.5
    assert shares["benchmark"]["target"] < shares["benchmark"]["input"]


# --------------------------------------------------------------------------------------
# the default intensity window
# --------------------------------------------------------------------------------------
def _lung_clipped(sim, window) -> float:
    clipped = total = 0
    for k, r in enumerate(sim.meta["rois"]):
        r0, r1, c0, c1 = roi_bounds(r["signal_center"], r["roi_size"])
        lung = sim.input[k, r0:r1, c0:c1]
        clipped += int(((lung < window.low) | (lung > window.high)).sum())
        total += lung.size
    return clipped / total


@pytest.mark.parametrize(
    "size, specimens, seed",
    [
        (128, True, 0),
        (128, True, 1),
        (128, False, 2),
        (256, True, 3),
        (256, False, 0),
    ],
)
def test_default_window_clips_at_most_one_percent_of_the_lung(size, specimens, seed):
    n = 8 if size == 128 else 4
    train = simulate_dfct(n_slices=n, size=size, seed=seed, specimens=specimens)
    test = simulate_dfct(n_slices=3, size=size, seed=seed + 1000, specimens=specimens)
    window = window_from_percentiles(train.input, train.target)
    assert _lung_clipped(train, window) <= 0.01
    assert _lung_clipped(test, window) <= 0.01  # also on scans it was not computed from
    if size == 128 and specimens:  # the former default cut the lung
        old = window_from_percentiles(train.input, train.target, lower=1, upper=99)
        assert _lung_clipped(train, old) > 0.01


def test_default_window_rule():
    values = np.linspace(0.0, 1000.0, 100_001, dtype=np.float32)
    w = window_from_percentiles(values)
    lo, hi = np.percentile(values, [0.1, 99.9])
    width = hi - lo
    assert w.low == pytest.approx(lo - 0.2 * width, rel=1e-5)
    assert w.high == pytest.approx(hi + 0.2 * width, rel=1e-5)
    # given percentiles are used as they are, with a margin only when asked for
    assert window_from_percentiles(values, lower=1, upper=99).low == pytest.approx(10.0)
    w = window_from_percentiles(values, lower=1, upper=99, margin=0.5)
    assert (w.low, w.high) == pytest.approx((10.0 - 490.0, 990.0 + 490.0))
    with pytest.raises(ValueError, match="margin"):
        window_from_percentiles(values, margin=-1)


# --------------------------------------------------------------------------------------
# dfct simulate: overwrite, memory, atomic files, output
# --------------------------------------------------------------------------------------
SMALL_CLI = ["--specimens", "2", "--size", "32", "--views", "16", "--rotations", "2", "--quiet"]


def test_cli_refuses_an_existing_set_without_overwrite(tmp_path, capsys):
    out = tmp_path / "set"
    assert main(["simulate", str(out), *SMALL_CLI, "--seed", "1"]) == 0
    before = {p.name: p.read_bytes() for p in dataset_files(out)}
    assert set(before) == {"input.tif", "target.tif", "truth.tif", "body.tif", "meta.json"}
    capsys.readouterr()
    assert main(["simulate", str(out), *SMALL_CLI, "--seed", "2"]) == 2
    err = capsys.readouterr().err
    assert "already holds a simulated set" in err and "--overwrite" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in dataset_files(out)} == before  # untouched
    # any one file of a set counts (e.g. an interrupted earlier write)
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "input.tif").write_bytes(before["input.tif"])
    assert main(["simulate", str(partial), *SMALL_CLI]) == 2
    # other files in the folder do not count; --overwrite replaces the set
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert main(["simulate", str(tmp_path / "other"), *SMALL_CLI]) == 0
    assert main(["simulate", str(out), *SMALL_CLI, "--seed", "2", "--overwrite"]) == 0
    assert json.loads((out / "meta.json").read_text())["seed"] == 2
    assert (out / "input.tif").read_bytes() != before["input.tif"]


def test_save_simulation_can_refuse_to_overwrite(tmp_path, small_sim):
    save_simulation(small_sim, tmp_path)
    with pytest.raises(FileExistsError, match="already holds"):
        save_simulation(small_sim, tmp_path, overwrite=False)


def test_cli_refuses_a_size_that_does_not_fit_in_memory(tmp_path, capsys):
    out = tmp_path / "huge"
    assert main(["simulate", str(out), "--size", "100000", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "memory" in err and "--size" not in err.split("error:")[0]
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()  # refused before anything was written


def test_memory_check_uses_the_available_memory(monkeypatch):
    from napari_dfct.simulate import budget

    need = estimate_memory(4, 64, 192)
    monkeypatch.setattr(budget, "available_memory", lambda: need - 1)
    with pytest.raises(ValueError, match="needs about .* of memory"):
        simulate_dfct(n_slices=4, size=64, n_views=192, rotations=1)
    monkeypatch.setattr(budget, "available_memory", lambda: need)
    simulate_dfct(n_slices=4, size=64, n_views=192, rotations=1)
    # the estimate grows with every dimension
    base = estimate_memory(4, 128, 384)
    assert estimate_memory(8, 128, 384) > base
    assert estimate_memory(4, 256, 384) > base
    assert estimate_memory(4, 128, 768) > base


def test_an_interrupted_write_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    out = tmp_path / "set"
    assert main(["simulate", str(out), *SMALL_CLI, "--seed", "1"]) == 0
    old = {p.name: p.read_bytes() for p in dataset_files(out)}
    real = tifffile.imwrite
    calls = []

    def failing(fh, data, *args, **kwargs):  # the disk fills up on the second volume
        calls.append(1)
        if len(calls) == 2:
            fh.write(b"half a TIFF")
            raise OSError(28, "No space left on device")
        return real(fh, data, *args, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", failing)
    capsys.readouterr()
    assert main(["simulate", str(out), *SMALL_CLI, "--seed", "2", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "No space left" in err and "Traceback" not in err
    monkeypatch.setattr(tifffile, "imwrite", real)
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.startswith(".")]  # no temporary file left
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no hidden set
    # the old set is whole and untouched
    assert {p.name: p.read_bytes() for p in dataset_files(out)} == old


def test_cli_prints_and_stores_the_streak_share(tmp_path, capsys):
    out = tmp_path / "bench"
    assert (
        main(
            [
                "simulate",
                str(out),
                "--specimens",
                "3",
                "--size",
                "64",
                "--rotations",
                "3",
                "--preset",
                "benchmark",
                "--texture",
                "0.25",
                "--quiet",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    meta = json.loads((out / "meta.json").read_text())
    share = meta["streak_share"]
    assert f"{100 * share['input']:.0f} % of the input's lung-ROI variance" in text
    assert meta["physics"]["tiles"] == PRESETS["benchmark"]["tiles"]
    assert meta["physics"]["texture"] == pytest.approx(0.25 * 0.15)  # option over preset
    assert meta["n_views"] == views_for(64) and meta["acquisition"] == "independent"
    assert tifffile.imread(out / "input.tif").shape == (3, 64, 64)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--specimens", "0"], "--specimens must be >= 1"),
        (["--tiles", "-1"], "--tiles must be >= 0"),
        (["--noise", "-1"], "--noise must be >= 0"),
        (["--texture", "-0.5"], "--texture must be >= 0"),
    ],
)
def test_cli_bad_realism_values(tmp_path, capsys, args, message):
    assert main(["simulate", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_specimens_with_one_slice_is_the_stacked_set(tmp_path, capsys):
    """--specimens N --slices 1 is --specimens N (one slice per specimen, stacked); Z > 1
    writes a data set of volumes (tests/test_simulate_anatomy.py); Z < 1 is refused."""
    common = ["--specimens", "2", "--size", "64", "--views", "64", "--rotations", "2", "--quiet"]
    assert main(["simulate", str(tmp_path / "a"), *common]) == 0
    assert main(["simulate", str(tmp_path / "b"), *common, "--slices", "1"]) == 0
    for name in ("input", "target", "truth"):
        a = tifffile.imread(tmp_path / "a" / f"{name}.tif")
        assert np.array_equal(a, tifffile.imread(tmp_path / "b" / f"{name}.tif"))
    capsys.readouterr()
    assert main(["simulate", str(tmp_path / "c"), *common, "--slices", "0"]) == 2
    assert "--slices must be >= 1" in capsys.readouterr().err
