"""Every test slice is measured: scoring.measure_slices, the grid's reference.json and
grid.json, and one real (tiny) run whose metrics.json is recomputed from its model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from napari_dfct import metrics
from napari_dfct.experiment import prepare_grid, run_one
from napari_dfct.experiment.scoring import SLICE_KEYS, aggregate, measure_slice, measure_slices

ROIS = [
    {
        "signal_center": [32.0, 44.0],
        "background_center": [32.0, 14.0],
        "line": [[32.0, 44.0], [32.0, 14.0]],
        "roi_size": 12,
        "slice": k,
    }
    for k in range(3)
]
ROIS[2] = {
    **ROIS[2],
    "signal_center": [30.0, 46.0],
    "line": [[30.0, 46.0], [32.0, 14.0]],
}  # slice 2 has its own ROIs


def _volumes(seed=0):
    rng = np.random.default_rng(seed)
    from scipy.ndimage import gaussian_filter1d

    truth = np.zeros((3, 64, 64), np.float32)
    truth[:, :, 30:] = 2.0
    truth = gaussian_filter1d(truth, 2.0, axis=2)  # an edge of finite width
    truth += rng.normal(0, 0.2, truth.shape).astype(np.float32)  # texture
    noise = np.array([0.1, 0.4, 0.8])[:, None, None]
    image = (truth + noise * rng.normal(0, 1, truth.shape)).astype(np.float32)
    mask = np.zeros(truth.shape, np.uint8)
    mask[:, 4:60, 4:60] = 1
    return image, truth, mask


def test_measure_slices_uses_each_slices_rois_and_takes_medians():
    image, truth, mask = _volumes()
    target = (truth + 0.05).astype(np.float32)
    rec = measure_slices(image, ROIS, truth=truth, target=target, mask=mask, representative=1)
    assert rec["n_slices"] == 3 and rec["slice"] == 1 and rec["slices_undefined"] == {}
    json.dumps(rec, allow_nan=False)
    for k, entry in enumerate(rec["per_slice"]):
        assert entry["slice"] == k
        own = measure_slice(image[k], ROIS[k], truth=truth[k], target=target[k], mask=mask[k])
        for key in SLICE_KEYS:
            assert entry[key] == pytest.approx(own[key]), (k, key)
    # slice 2 with its own signal ROI
    c = metrics.cnr(image[2], ROIS[2]["signal_center"], ROIS[2]["background_center"], 12)
    assert rec["per_slice"][2]["cnr"] == pytest.approx(c.cnr)
    for key in ("cnr", "error_cnr", "psnr_body", "ssim_body", "rmse_body", "psnr_target"):
        vals = [e[key] for e in rec["per_slice"]]
        assert rec[key] == pytest.approx(np.median(vals)), key
    # noise grows with the slice: the error CNR falls
    e = [x["error_cnr"] for x in rec["per_slice"]]
    assert e[0] > e[1] > e[2]
    # one ROI dict serves every slice; a mismatched list is refused
    one = measure_slices(image, ROIS[0])
    assert one["per_slice"][2]["cnr"] == pytest.approx(
        metrics.cnr(image[2], ROIS[0]["signal_center"], ROIS[0]["background_center"], 12).cnr
    )
    assert one["error_cnr"] is None and one["psnr"] is None
    with pytest.raises(ValueError, match="ROI sets"):
        measure_slices(image, ROIS[:2])


def test_aggregate_leaves_out_undefined_slices_and_counts_them():
    per_slice = [
        {"cnr": 1.0, "fwhm": None},
        {"cnr": 3.0, "fwhm": 4.0},
        {"cnr": float("nan"), "fwhm": 6.0},
        {"cnr": 2.0, "fwhm": None},
    ]
    agg = aggregate(per_slice, ("cnr", "fwhm", "psnr"))
    assert agg["cnr"] == 2.0 and agg["fwhm"] == 5.0 and math.isnan(agg["psnr"])
    assert agg["slices_undefined"] == {"cnr": 1, "fwhm": 2, "psnr": 4}


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """A simulation-like test folder: three slices, truth, body.tif and meta.json."""
    from napari_dfct.io import write_volume

    folder = tmp_path_factory.mktemp("scoring") / "test"
    folder.mkdir()
    image, truth, mask = _volumes(1)
    write_volume(folder / "input.tif", image)
    write_volume(folder / "target.tif", (truth + 0.1 * (image - truth)).astype(np.float32))
    write_volume(folder / "truth.tif", truth)
    write_volume(folder / "body.tif", mask)
    meta = {k: ROIS[0][k] for k in ("signal_center", "background_center", "line", "roi_size")}
    meta.update(slice=1, mask="body.tif")
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def _tiny_config():
    from napari_dfct.train import TrainConfig

    return TrainConfig(
        preset="tiny",
        epochs=1,
        patience=1,
        batch_size=4,
        patch=32,
        patches_per_slice=2,
        device="cpu",
    )


def test_prepare_grid_measures_every_reference_slice(tmp_path, held_out):
    from napari_dfct.io import read_volume

    out = tmp_path / "grid"
    settings, specs = prepare_grid(held_out, held_out, out, ["l2"], [0], _tiny_config())
    assert settings["format"].endswith("/2")
    assert len(settings["rois"]) == 3 and [r["slice"] for r in settings["rois"]] == [0, 1, 2]
    assert settings["roi"]["slice"] == 1
    assert settings["test"]["mask"].endswith("body.tif") and "test_mask" in settings["data"]
    assert specs[0]["rois"] == settings["rois"] and specs[0]["test"] == settings["test"]
    ref = json.loads((out / "reference.json").read_text())
    assert ref["n_slices"] == 3 and ref["slice"] == 1
    inp, _ = read_volume(held_out / "input.tif")
    truth, _ = read_volume(held_out / "truth.tif")
    mask, _ = read_volume(held_out / "body.tif")
    for k in range(3):
        e = metrics.error_cnr(
            inp[k], truth[k], ROIS[0]["signal_center"], ROIS[0]["background_center"], 12
        )
        assert ref["input"]["per_slice"][k]["error_cnr"] == pytest.approx(e.error_cnr)
        assert ref["input"]["per_slice"][k]["psnr_body"] == pytest.approx(
            metrics.psnr_body(inp[k], truth[k], mask[k])
        )
    assert ref["input"]["cnr"] == pytest.approx(
        np.median([e["cnr"] for e in ref["input"]["per_slice"]])
    )
    # the representative slice is written for the panels
    shown, _ = read_volume(out / "test-slice" / "input.tif")
    np.testing.assert_array_equal(shown, inp[1])
    # a grid folder of the earlier one-slice format is not extended with these runs
    old = json.loads((out / "grid.json").read_text())
    old.pop("rois")
    old["format"] = "napari-dfct-grid/1"
    (out / "grid.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="one test slice"):
        prepare_grid(held_out, held_out, out, ["l2"], [0], _tiny_config())


def test_a_run_is_measured_on_every_test_slice(tmp_path, held_out):
    from napari_dfct.checkpoint import load_model
    from napari_dfct.infer import predict
    from napari_dfct.io import read_volume

    out = tmp_path / "grid"
    _, specs = prepare_grid(held_out, held_out, out, ["l2"], [0], _tiny_config())
    rec = run_one(specs[0])
    assert rec["status"] == "trained" and rec["n_slices"] == 3 and rec["slice"] == 1
    run_dir = out / "runs" / "l2" / "seed-0"
    stored = json.loads((run_dir / "metrics.json").read_text())
    assert len(stored["per_slice"]) == 3
    # the per-slice values are those of the model's prediction of each slice
    inp, _ = read_volume(held_out / "input.tif")
    truth, _ = read_volume(held_out / "truth.tif")
    pred = predict(load_model(run_dir / "model"), inp, device="cpu")
    for k in range(3):
        e = metrics.error_cnr(
            pred[k], truth[k], ROIS[0]["signal_center"], ROIS[0]["background_center"], 12
        )
        assert stored["per_slice"][k]["error_cnr"] == pytest.approx(e.error_cnr, rel=1e-4)
    for key in ("cnr", "error_cnr", "psnr_body"):
        assert stored[key] == pytest.approx(np.median([e[key] for e in stored["per_slice"]]))
    # only the representative slice's prediction is stored
    saved, _ = read_volume(run_dir / "prediction.tif")
    assert saved.shape == inp.shape[1:]
    np.testing.assert_allclose(saved, pred[1], rtol=1e-4, atol=1e-5)


def test_independent_specimens_give_each_slice_its_own_rois(tmp_path):
    """A ``dfct simulate --specimens`` test set: per-slice ROIs in meta.json reach the
    grid (grid.json's ``rois``) and each slice of reference.json is measured with them."""
    from napari_dfct.simulate import save_simulation, simulate_dfct

    sim = simulate_dfct(n_slices=3, size=64, n_views=96, rotations=4, seed=5, specimens=True)
    folder = tmp_path / "test"
    save_simulation(sim, folder)
    meta = json.loads((folder / "meta.json").read_text())
    # slice 2's own signal ROI moved by two pixels (small anatomies may share the centres)
    r2 = meta["rois"][2]
    r2["signal_center"] = [r2["signal_center"][0] + 2, r2["signal_center"][1]]
    r2.pop("line", None)
    (folder / "meta.json").write_text(json.dumps(meta))
    settings, _ = prepare_grid(folder, folder, tmp_path / "grid", ["l2"], [0], _tiny_config())
    assert settings["rois"][2]["signal_center"] != settings["rois"][0]["signal_center"]
    for k in range(3):
        own = meta["rois"][k]
        got = settings["rois"][k]
        assert got["signal_center"] == pytest.approx(own["signal_center"])
        assert got["background_center"] == pytest.approx(own["background_center"])
    ref = json.loads((tmp_path / "grid" / "reference.json").read_text())
    for k in range(3):
        r = settings["rois"][k]
        c = metrics.cnr(sim.input[k], r["signal_center"], r["background_center"], r["roi_size"])
        assert ref["input"]["per_slice"][k]["cnr"] == pytest.approx(c.cnr, rel=1e-5)
    assert ref["input"]["psnr_body"] is not None  # the body mask was found and used
