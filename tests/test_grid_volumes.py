"""``dfct grid`` on a test data set of volumes: 2-D, 2.5-D (``--context``) and 3-D runs.

Volumes of independent specimens (``dfct simulate --specimens N --slices Z``, 48-px
slices) train tiny models for one epoch through the real command line. Each run's
``metrics.json`` is checked against an independent recomputation: every test volume
predicted whole with the run's saved model, the chosen slices cut out and measured with
their specimen's own ROIs, truth and body mask.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_dfct.cli import main

TINY = ["--preset", "tiny", "--epochs", "1", "--patch", "32", "--device", "cpu"]
KEYS = ("cnr", "fwhm", "error_cnr", "psnr", "ssim", "psnr_body", "ssim_body", "psnr_target")
ARMS = {
    "2d": ["--batch-size", "4"],
    "ctx1": ["--context", "1", "--batch-size", "4"],
    "3d": ["--dims", "3", "--patch-depth", "4", "--batch-size", "2"],
}


def _simulate(out: Path, seed: int, *extra: str) -> Path:
    argv = ["simulate", str(out), "--size", "48", "--seed", str(seed), *extra]
    assert main([*argv, "--views", "32", "--rotations", "2", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def volume_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("vols")
    train = _simulate(root / "train", 0, "--specimens", "3", "--slices", "4")
    test = _simulate(root / "test", 1000, "--specimens", "2", "--slices", "4")
    return train, test


def _grid(out: Path, train: Path, test: Path, *extra: str) -> int:
    argv = ["grid", str(out), "--train", str(train), "--test", str(test), "--configs", "l2"]
    return main([*argv, "--seeds", "0", *TINY, "--quiet", *extra])


@pytest.fixture(scope="module")
def grids(volume_sets, tmp_path_factory):
    """One finished grid per arm, measured on slices 1-2 of each test volume."""
    train, test = volume_sets
    root = tmp_path_factory.mktemp("grids")
    out = {}
    for arm, options in ARMS.items():
        assert _grid(root / arm, train, test, "--test-slices", "1-2", *options) == 0
        out[arm] = root / arm
    return out


def _specimens(test: Path) -> list[Path]:
    with open(test / "pairs.csv", newline="") as fh:
        return [test / Path(row["input"]).parent for row in csv.DictReader(fh)]


def _recompute(grid: Path, test: Path, slices: list[int], predict_slice=None) -> dict:
    """The run's metrics from first principles: every test volume predicted whole (or,
    with ``predict_slice``, slice by slice), then the chosen slices measured."""
    from napari_dfct.checkpoint import load_model
    from napari_dfct.experiment.scoring import measure_slices
    from napari_dfct.infer import predict
    from napari_dfct.roi import ROISet

    model = load_model(grid / "runs" / "l2" / "seed-0" / "model", device="cpu")
    stacks: dict[str, list] = {k: [] for k in ("input", "pred", "target", "truth", "mask")}
    rois = []
    for folder in _specimens(test):
        vol = tifffile.imread(folder / "input.tif")
        meta = json.loads((folder / "meta.json").read_text())
        if predict_slice is None:
            pred = predict(model, vol, device="cpu")  # the whole volume
        else:
            pred = np.stack([predict_slice(model, vol[z]) for z in range(len(vol))])
        stacks["pred"].append(pred[slices])
        stacks["input"].append(vol[slices])
        for key, name in (("target", "target"), ("truth", "truth"), ("mask", "body")):
            stacks[key].append(tifffile.imread(folder / f"{name}.tif")[slices])
        rois += [ROISet.from_meta(meta, len(vol), slice=z).to_dict() for z in slices]
    s = {k: np.concatenate(v) for k, v in stacks.items()}
    got = measure_slices(s["pred"], rois, s["truth"], s["target"], s["mask"] != 0)
    return {"metrics": got, "pred": s["pred"], "input": s["input"], "model": model}


@pytest.mark.parametrize("arm", ["ctx1", "3d"])
def test_context_and_3d_grids_measure_every_test_volume_from_its_own_slices(
    grids, volume_sets, arm
):
    from napari_dfct.experiment.volume_test import origin
    from napari_dfct.infer import predict

    grid, (_, test) = grids[arm], volume_sets
    run = grid / "runs" / "l2" / "seed-0"
    cfg = json.loads((run / "model" / "config.json").read_text())
    assert (cfg["model"].get("context", 0), cfg["model"].get("dims", 2)) == {
        "ctx1": (1, 2),
        "3d": (0, 3),
    }[arm]
    metrics = json.loads((run / "metrics.json").read_text())
    truth = _recompute(grid, test, [1, 2])
    assert metrics["n_slices"] == 4 and len(metrics["per_slice"]) == 4
    for key in KEYS:
        assert np.isclose(metrics[key], truth["metrics"][key], rtol=1e-6), key
    # the measured slices stacked as one volume (neighbours of other specimens, cut at
    # the chosen slices) would give other predictions: the check above can fail
    mixed = predict(truth["model"], truth["input"], device="cpu")
    assert np.abs(mixed - truth["pred"]).max() > 1e-3
    # the representative slice: the middle specimen's own slice (2 of 4), the 4th measured
    settings = json.loads((grid / "grid.json").read_text())
    assert settings["test_slices"] == [["specimen-000", [1, 2]], ["specimen-001", [1, 2]]]
    assert settings["roi"]["slice"] == metrics["slice"] == 3
    assert origin(settings["test_slices"], 3) == ("specimen-001", 2)  # the panels' title
    src = tifffile.imread(test / "specimen-001" / "input.tif")[2]
    np.testing.assert_array_equal(tifffile.imread(grid / "test-slice" / "input.tif"), src)
    pred = tifffile.imread(run / "prediction.tif")
    np.testing.assert_allclose(pred, truth["pred"][3], rtol=1e-6, atol=1e-6)


def test_a_2d_model_on_volumes_measures_as_predicting_slice_by_slice(grids, volume_sets):
    """2-D models have no z dependence: the volume test set measures what predicting each
    slice on its own gives (the baseline arm of a context study)."""
    from napari_dfct.infer import predict

    grid, (_, test) = grids["2d"], volume_sets
    metrics = json.loads((grid / "runs" / "l2" / "seed-0" / "metrics.json").read_text())
    alone = _recompute(grid, test, [1, 2], lambda m, image: predict(m, image, device="cpu"))
    for key in KEYS:
        assert np.isclose(metrics[key], alone["metrics"][key], rtol=1e-5), key
    reference = json.loads((grid / "reference.json").read_text())
    assert reference["n_slices"] == 4 and reference["test_slices"][1] == ["specimen-001", [1, 2]]


def test_grid_report_draws_a_volume_grid(grids, capsys):
    out = grids["ctx1"]
    shutil.rmtree(out / "report")
    assert main(["grid-report", str(out), "--quiet"]) == 0, capsys.readouterr().err
    for name in ("report.md", "runs.csv", "panel-l2.png", "violin-cnr.png"):
        assert (out / "report" / name).is_file(), name
    with open(out / "report" / "runs.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["name"], r["n_slices"]) for r in rows] == [("l2", "4")]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_test_slices_out_of_range_is_one_line(volume_sets, tmp_path, capsys):
    train, test = volume_sets
    assert _grid(tmp_path / "g", train, test, "--test-slices", "2-4", "--context", "1") == 2
    line = _one_line(capsys)
    assert "'specimen-000'" in line and "2-4 out of range" in line and "4 slices" in line
    assert not (tmp_path / "g" / "grid.json").exists() and not (tmp_path / "g" / "runs").exists()


def test_context_on_a_test_set_of_one_slice_specimens_is_refused(volume_sets, tmp_path, capsys):
    train, _ = volume_sets
    flat = _simulate(tmp_path / "flat", 7, "--specimens", "2")
    capsys.readouterr()
    for options in (["--context", "1"], ["--dims", "3", "--patch-depth", "4"]):
        assert _grid(tmp_path / "g", train, flat, *options) == 2
        line = _one_line(capsys)
        assert "holds independent specimens, one slice each" in line, line
        assert "--test FOLDER" in line and "--test-slices" in line, line
        assert not (tmp_path / "g").exists()


def test_a_grid_started_again_with_other_test_slices_is_refused(
    grids, volume_sets, tmp_path, capsys
):
    train, test = volume_sets
    out = tmp_path / "g"
    shutil.copytree(grids["ctx1"], out)
    before = (out / "runs" / "l2" / "seed-0" / "metrics.json").read_bytes()
    assert _grid(out, train, test, "--test-slices", "0-1", *ARMS["ctx1"]) == 2
    line = _one_line(capsys)
    assert "other settings" in line and "test_slices" in line and "train" not in line, line
    assert (out / "runs" / "l2" / "seed-0" / "metrics.json").read_bytes() == before
    # the same settings continue: the finished run is skipped
    assert _grid(out, train, test, "--test-slices", "1-2", *ARMS["ctx1"]) == 0
    assert (out / "runs" / "l2" / "seed-0" / "metrics.json").read_bytes() == before


def test_test_slice_picks_among_the_measured_slices(volume_sets, tmp_path):
    """``--test-slice K`` (``roi={"slice": K}``) is the K-th measured slice, specimen after
    specimen; outside them, one line."""
    from napari_dfct.experiment import prepare_grid
    from napari_dfct.train import TrainConfig

    train, test = volume_sets
    config = TrainConfig(preset="tiny", patch=32, context=1)
    settings, specs = prepare_grid(
        train, test, tmp_path / "g", ["l2"], [0], config, roi={"slice": 2}, test_slices="1-2"
    )
    assert settings["roi"]["slice"] == specs[0]["roi"]["slice"] == 2
    assert specs[0]["test"]["scans"][1]["slices"] == [1, 2]
    want = tifffile.imread(test / "specimen-001" / "input.tif")[1]
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "g" / "test-slice" / "input.tif"), want
    )
    with pytest.raises(ValueError, match="outside the 4 measured test slices"):
        prepare_grid(
            train, test, tmp_path / "h", ["l2"], [0], config, roi={"slice": 4}, test_slices="1-2"
        )


def test_every_arm_holds_out_the_same_training_scans(grids):
    """Paired by seed: 2-D, context and 3-D runs of one seed validate on the same scans."""
    held = {
        arm: json.loads((g / "runs" / "l2" / "seed-0" / "model" / "config.json").read_text())[
            "dataset"
        ]["val_scans"]
        for arm, g in grids.items()
    }
    assert held["2d"] and held["2d"] == held["ctx1"] == held["3d"], held
