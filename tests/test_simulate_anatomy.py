"""The simulator's anatomy (fixed, as always; varied; lesions) and data sets of specimen
volumes (``dfct simulate OUT --specimens N --slices Z``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_dfct.cli import main
from napari_dfct.io.dataset import PAIRS_FILE, load_scans, read_pairs
from napari_dfct.simulate import (
    LABELS,
    body_mask,
    check_dataset,
    save_volumes,
    simulate_dfct,
    specimen_seeds,
    suggest_rois,
    thorax_phantom,
)
from napari_dfct.simulate.files import _PAIRS

SEEDS = specimen_seeds(0, 16)


REFERENCE = Path(__file__).parent / "data" / "first_order_reference.npz"


def _same(new: np.ndarray, ref: np.ndarray, name: str) -> None:
    """Integer arrays (labels, masks) equal; float arrays equal up to rounding: within
    1e-5 of the array's range (a changed model moves them by orders of magnitude more;
    another CPU's FFT/BLAS/SIMD kernels may round differently, so no digits are asserted)."""
    assert new.dtype == ref.dtype and new.shape == ref.shape, name
    if np.issubdtype(ref.dtype, np.integer):
        np.testing.assert_array_equal(new, ref, err_msg=name)
    else:
        span = float(np.ptp(ref)) or 1.0
        np.testing.assert_allclose(new, ref, rtol=0, atol=1e-5 * span, err_msg=name)


def test_the_default_anatomy_is_the_phantom_of_earlier_versions():
    """The default phantom and simulations against arrays written by the code before the
    anatomy and physics options existed (``tests/data/first_order_reference.npz``): the
    labels and masks equal, the values equal up to rounding. On the machine that wrote
    them they are equal bit for bit, which the closing check of a change compares."""
    ref = np.load(REFERENCE)
    ph = thorax_phantom(64, 3, seed=0)
    for k in ("mu", "eps", "labels"):
        _same(getattr(ph, k), ref[f"phantom_{k}"], f"phantom {k}")
    ph_fixed = thorax_phantom(64, 3, seed=0, anatomy="fixed", lesions=0)
    for k in ("mu", "eps", "labels"):
        np.testing.assert_array_equal(getattr(ph_fixed, k), getattr(ph, k))
    sim = simulate_dfct(2, 64, seed=0)
    for k in ("input", "target", "truth", "mask"):
        _same(getattr(sim, k), ref[f"acq_{k}"], f"acquisition {k}")
    sim = simulate_dfct(3, 64, seed=0, specimens=True, anatomy="fixed")
    for k in ("input", "target", "truth", "mask"):
        _same(getattr(sim, k), ref[f"spec_{k}"], f"specimens {k}")


def _shape_of(mask2d: np.ndarray, pixel_mm: float) -> tuple[float, float, float, float, float]:
    """(area mm2, major and minor RMS extent mm, axis angle deg, centroid offset mm) of a
    body mask, from its second moments (independent of how it was drawn)."""
    rows, cols = np.nonzero(mask2d)
    c = np.array([(mask2d.shape[0] - 1) / 2, (mask2d.shape[1] - 1) / 2])
    pts = np.stack([rows, cols], 1).astype(float)
    mean = pts.mean(0)
    w, v = np.linalg.eigh(np.cov((pts - mean).T))
    major = v[:, 1]
    angle = np.degrees(np.arctan2(major[0], major[1]))
    angle = (angle + 90) % 180 - 90  # the body's long axis is horizontal: about 0
    off = float(np.hypot(*(mean - c))) * pixel_mm
    return len(rows) * pixel_mm**2, np.sqrt(w[1]) * pixel_mm, np.sqrt(w[0]) * pixel_mm, angle, off


def test_varied_anatomy_spreads_body_size_shape_position_and_rotation():
    shapes = {}
    for kind in ("fixed", "varied"):
        rows = []
        for s in SEEDS:
            ph = thorax_phantom(64, 1, seed=s, anatomy=kind, supersample=1)
            rows.append(_shape_of(body_mask(ph.labels)[0], ph.pixel_size_mm))
        shapes[kind] = np.array(rows)
    area, major, minor, angle, off = shapes["varied"].T
    assert area.std() / area.mean() >= 0.08  # the bar: CV of body areas >= 8 %
    for extent in (major, minor):  # width and depth: beyond +-15 % of the median
        assert extent.max() / np.median(extent) > 1.1 and extent.min() / np.median(extent) < 0.9
    assert np.ptp(angle) > 15.0 and np.ptp(off) > 10.0  # rotation (deg) and position (mm)
    f_area, _, _, f_angle, _ = shapes["fixed"].T
    assert f_area.std() / f_area.mean() < 0.05 and np.ptp(f_angle) < 3.0  # as always


def _inside(lab: np.ndarray, centre, size: int, label: int) -> bool:
    h = size // 2
    r, c = centre
    block = lab[..., r - h : r - h + size, c - h : c - h + size]
    return block.shape[-2:] == (size, size) and bool(np.all(block == label))


@pytest.mark.parametrize("size", [64, 128])
def test_rois_follow_each_specimens_anatomy(size):
    seeds = specimen_seeds(7, 40 if size == 64 else 16)
    signal, cavity = set(), 0
    for s in seeds:
        ph = thorax_phantom(size, 1, seed=s, anatomy="varied", lesions=1, supersample=1)
        r = suggest_rois(ph.labels)
        assert _inside(ph.labels, r["signal_center"], r["roi_size"], LABELS["lung"])
        bg = LABELS[r["background_region"]]
        assert _inside(ph.labels, r["background_center"], r["roi_size"], bg)
        cavity += r["background_region"] == "air_cavity"
        signal.add(tuple(r["signal_center"]))
    assert cavity >= 0.75 * len(seeds)  # the air ROI is mostly in the pleural air gap
    assert len(signal) >= 0.75 * len(seeds)  # not a few positions shared by all


def test_lesions_alter_the_lung_signal_only():
    plain = thorax_phantom(64, 3, seed=5, anatomy="varied")
    ill = thorax_phantom(64, 3, seed=5, anatomy="varied", lesions=3)
    assert np.array_equal(plain.labels, ill.labels)
    changed = plain.eps != ill.eps
    assert changed.any()
    from scipy import ndimage

    near_lung = ndimage.binary_dilation(plain.labels == LABELS["lung"], iterations=1)
    assert np.all(near_lung[changed])  # lung pixels (and partial-volume edges) only
    lesions = ill.anatomy["lesions"]
    assert len(lesions) == 3 and all(0 < x["eps_factor"] < 1 for x in lesions)
    # the anatomy and texture do not depend on the number of lesions
    assert np.array_equal(plain.eps[~changed], ill.eps[~changed])
    with pytest.raises(ValueError, match="lesions"):
        thorax_phantom(64, 1, lesions=-1)
    with pytest.raises(ValueError, match="anatomy"):
        simulate_dfct(1, 64, anatomy="random")


def test_meta_reports_the_spread_of_the_anatomy():
    sim = simulate_dfct(6, 64, n_views=64, rotations=2, seed=3, specimens=True, anatomy="varied")
    a = sim.meta["anatomy"]
    assert a["kind"] == "varied" and len(a["specimens"]) == 6
    spread = a["spread"]
    areas = body_mask(sim.phantom.labels).reshape(6, -1).sum(1) * sim.meta["pixel_size_mm"] ** 2
    assert spread["body_area_mm2"]["mean"] == pytest.approx(areas.mean(), rel=1e-3)
    assert spread["body_area_mm2"]["cv"] == pytest.approx(areas.std() / areas.mean(), abs=1e-3)
    assert spread["signal_center"]["distinct"] == len(
        {tuple(r["signal_center"]) for r in sim.meta["rois"]}
    )
    json.dumps(sim.meta)  # JSON-ready


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_specimen_volumes_form_a_data_set_the_reader_takes(tmp_path):
    out = tmp_path / "vols"
    meta = save_volumes(out, 3, 4, 64, 64, 2, seed=1, anatomy="varied", lesions=1)
    assert _PAIRS == PAIRS_FILE
    assert meta["specimen_seeds"] == specimen_seeds(1, 3)
    pairs = read_pairs(out)
    assert [p.name for p in pairs] == ["specimen-000", "specimen-001", "specimen-002"]
    data = load_scans(out)
    assert len(data) == 12 and sorted({int(s) for s in data.scans}) == [0, 1, 2]
    check_dataset(out)  # every specimen's files are those written with the set
    top = json.loads((out / "meta.json").read_text())
    assert top["n_specimens"] == 3 and top["spread"]["body_area_mm2"]["cv"] > 0
    for k, p in enumerate(pairs):
        m = json.loads((p.input.parent / "meta.json").read_text())
        assert m["specimen"]["seed"] == specimen_seeds(1, 3)[k] and len(m["rois"]) == 4
        x = tifffile.imread(p.input)
        t = tifffile.imread(p.input.parent / "truth.tif")
        assert x.shape == (4, 64, 64)
        # anatomy continuous along z; streaks of neighbouring slices alike (one acquisition)
        assert _corr(t[1], t[2]) > 0.7
        assert _corr(x[1] - t[1], x[2] - t[2]) > 0.5
    # one specimen's file replaced by another write: refused
    other = tmp_path / "other"
    save_volumes(other, 1, 4, 64, 64, 2, seed=9)
    (out / "specimen-001" / "input.tif").write_bytes(
        (other / "specimen-000" / "input.tif").read_bytes()
    )
    with pytest.raises(ValueError, match="different writes"):
        check_dataset(out)


def test_cli_writes_specimen_volumes_that_dfct_train_takes(tmp_path, capsys):
    out = tmp_path / "vols"
    argv = ["simulate", str(out), "--specimens", "2", "--slices", "3", "--size", "64"]
    argv += ["--views", "64", "--rotations", "2", "--anatomy", "varied", "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "2 specimen volumes" in capsys.readouterr().out
    assert main(argv) == 2  # an existing set is kept without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    # replaced whole: no specimen of the old set is left
    assert main([*argv[:3], "1", *argv[4:], "--overwrite"]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "pairs.csv", "specimen-000"]
    assert main([*argv[:3], "2", *argv[4:], "--overwrite"]) == 0
    model = tmp_path / "m"
    rc = main(
        ["train", "--pairs", str(out), "--out", str(model), "--epochs", "1", "--preset", "tiny"]
        + ["--patch", "32", "--batch-size", "4", "--device", "cpu", "--no-progress"]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "2 scans, 6 slices" in err
    cfg = json.loads((model / "config.json").read_text())
    assert len(cfg["dataset"]["val_scans"]) == 1  # split by specimen
    # --specimens N without --slices: one slice per specimen, stacked, as before
    flat = tmp_path / "flat"
    assert main(["simulate", str(flat), "--specimens", "2", "--size", "64", "--quiet"]) == 0
    assert tifffile.imread(flat / "input.tif").shape == (2, 64, 64)
    assert not (flat / PAIRS_FILE).exists()
