"""The simulator's anatomy (fixed, as always; varied; lesions) and data sets of specimen
volumes (``dfct simulate OUT --specimens N --slices Z``)."""

from __future__ import annotations

import hashlib
import json

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


def _sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def test_the_default_anatomy_is_the_phantom_of_earlier_versions():
    """SHA-256 (first 16 hex digits) of the arrays, taken before the anatomy options
    existed: the default phantom and simulation are unchanged, bit for bit. The phantom is
    element-wise arithmetic and scipy filters; the simulation digits also go through
    numpy's FFT and BLAS (these were taken on x86_64 with the project's lock file)."""
    ph = thorax_phantom(64, 3, seed=0)
    assert {k: _sha(getattr(ph, k)) for k in ("mu", "eps", "labels")} == {
        "mu": "4f0ffe0b07f574dc",
        "eps": "56d8807c83933ecc",
        "labels": "93a01d1bf11ac03e",
    }
    ph = thorax_phantom(64, 1, seed=123456, anatomy="fixed", lesions=0)
    assert {k: _sha(getattr(ph, k)) for k in ("mu", "eps", "labels")} == {
        "mu": "069768057fca6070",
        "eps": "2891a87b5ee14e96",
        "labels": "1f4feb5da43ac957",
    }
    sim = simulate_dfct(2, 64, seed=0)
    assert {k: _sha(getattr(sim, k)) for k in ("input", "target", "truth", "mask")} == {
        "input": "a21c5dbd20d936d9",
        "target": "9936fb34225144b5",
        "truth": "fdcce3993c0d840c",
        "mask": "61fcee8e0edbcdb4",
    }
    sim = simulate_dfct(3, 64, seed=0, specimens=True, anatomy="fixed")
    assert {k: _sha(getattr(sim, k)) for k in ("input", "target", "truth", "mask")} == {
        "input": "b1bbd6c3c953660e",
        "target": "1ea84bbb0df8326a",
        "truth": "2dcf88166f936e5f",
        "mask": "6398f893fd06811b",
    }


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
