"""The fit of each diagnosis run on its training slices, its validation slices and the
test set (docs/reach-the-target.md), one CSV row per run.

For every finished run ``WORK/diag/<arm>/runs/<config>/seed-<k>/`` the model predicts the
training set (``WORK/data/train``: the run's own training and validation slices, from
``config.json``'s split) and the test set (``WORK/data/test``), and each set is scored
with the grid's own scoring (:func:`napari_dfct.experiment.scoring.measure_slices`: error
CNR, PSNR in the body, each slice with its own ROIs, median over slices) plus the mean
squared error against the target in the model's normalised intensity window (the
quantity training minimises).

Usage: python docs/reach/fit_table.py WORK OUT.csv [--stage diag] [--config l2]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch

from napari_dfct.checkpoint import load_model
from napari_dfct.experiment.scoring import measure_slices
from napari_dfct.infer import predict
from napari_dfct.io import read_volume
from napari_dfct.roi import ROISet
from napari_dfct.window import IntensityWindow

COLUMNS = (
    "arm",
    "config",
    "seed",
    "set",
    "n_slices",
    "mse_target",
    "error_cnr",
    "psnr_body",
    "cnr",
    "best_epoch",
    "epochs_run",
    "best_val_loss",
    "seconds_train",
    "torch_threads",
)


def _set(folder: Path) -> dict:
    meta = json.loads((folder / "meta.json").read_text())
    vols = {k: read_volume(folder / f"{k}.tif")[0] for k in ("input", "target", "truth", "body")}
    n = vols["input"].shape[0]
    vols["rois"] = [ROISet.from_meta(meta, n, slice=k).to_dict() for k in range(n)]
    return vols


def _score(pred, data, idx, window) -> dict:
    idx = list(idx)
    norm = IntensityWindow.from_dict(window).normalize
    mse = float(np.mean((norm(pred[idx]) - norm(data["target"][idx])) ** 2))
    m = measure_slices(
        pred[idx],
        [data["rois"][k] for k in idx],
        truth=data["truth"][idx],
        target=data["target"][idx],
        mask=data["body"][idx] > 0,
    )
    return {
        "n_slices": len(idx),
        "mse_target": mse,
        "error_cnr": m["error_cnr"],
        "psnr_body": m["psnr_body"],
        "cnr": m["cnr"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--stage", default="diag")
    ap.add_argument("--config", default="l2", help="the configuration diagnosed (default l2)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    test = _set(args.work / "data" / "test")
    sets: dict[Path, dict] = {}

    def data_set(path: str) -> dict:
        folder = Path(path).parent
        if folder not in sets:
            sets[folder] = _set(folder)
        return sets[folder]

    rows = []
    pattern = f"*/runs/{args.config}/seed-*/metrics.json"
    for mfile in sorted((args.work / args.stage).glob(pattern)):
        run = mfile.parent
        arm, config, seed = run.parts[-4], run.parts[-2], int(run.name[5:])
        grid = json.loads((run.parents[2] / "grid.json").read_text())
        train = data_set(grid["train_data"]["input"])
        val = (
            data_set(grid["train_data"]["val_input"])
            if "val_input" in grid["train_data"]
            else None
        )
        metrics = json.loads(mfile.read_text())
        loaded = load_model(run / "model", device="cpu")
        cfg = loaded.config
        common = {
            "arm": arm,
            "config": config,
            "seed": seed,
            **{
                k: metrics.get(k)
                for k in (
                    "best_epoch",
                    "epochs_run",
                    "best_val_loss",
                    "seconds_train",
                    "torch_threads",
                )
            },
        }
        p_train = predict(loaded, train["input"], device="cpu")
        p_test = predict(loaded, test["input"], device="cpu")
        split = cfg["split"]
        if val is None:  # validation slices of the training set
            p_val, val, val_idx = p_train, train, split["val"]
        else:  # a separate validation set, after the training slices in the split
            p_val, val_idx = predict(loaded, val["input"], device="cpu"), range(len(val["input"]))
        for name, pred, data, idx in (
            ("train", p_train, train, split["train"]),
            ("val", p_val, val, val_idx),
            ("test", p_test, test, range(test["input"].shape[0])),
        ):
            rows.append({**common, "set": name, **_score(pred, data, idx, cfg["window"])})
        print(
            f"{arm} {config} seed {seed}: "
            + ", ".join(
                f"{r['set']} mse {r['mse_target']:.5f} ecnr {r['error_cnr']:.2f}"
                for r in rows[-3:]
            ),
            file=sys.stderr,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    print(f"{len(rows)} rows -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
