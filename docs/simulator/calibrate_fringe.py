"""The fringe model's calibration: what the input's lung-ROI error is made of.

For each model (first-order, fringe with its calibrated defaults) and realism preset
(default, benchmark; the fringe-level benchmark also at the first-order benchmark's
dose, ``--noise 1``, as before it took four times the dose), on sets of independent
specimens (128 px, 384 views, 20 rotations): the variance of ``input - truth`` in the
lung ROI with vibration only (streaks), with photon noise only (noise), the lung
texture's variance in the truth (texture), and their shares of the sum; the mean squared
error in the body of the input and of the target.
Writes docs/data/simulator/fringe-calibration.csv (one row per model, preset, noise level
and seed).

    python docs/simulator/calibrate_fringe.py          # about 4 minutes on 2 cores
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from napari_dfct.metrics import roi_bounds
from napari_dfct.simulate import simulate_dfct
from napari_dfct.simulate.presets import preset_physics

OUT = Path(__file__).resolve().parents[1] / "data" / "simulator" / "fringe-calibration.csv"
SEEDS = (0, 1, 2)
SPECIMENS = 8


def _lung(vol, truth, rois, minus_truth=True):
    out = []
    for k, r in enumerate(rois):
        r0, r1, c0, c1 = roi_bounds(r["signal_center"], r["roi_size"])
        a = vol[k, r0:r1, c0:c1] - (truth[k, r0:r1, c0:c1] if minus_truth else 0)
        out.append(float(a.var()))
    return float(np.mean(out))


#: (model, preset, noise multiplier or None for the preset's own): the fringe-level
#: benchmark also at the first-order benchmark's dose (``--noise 1``), as before its
#: recalibration.
ARMS = (
    ("first-order", "default", None),
    ("first-order", "benchmark", None),
    ("fringe", "default", None),
    ("fringe", "benchmark", 1.0),
    ("fringe", "benchmark", None),
)


def _sim(model, preset, seed, vibration, noise):
    kw = preset_physics(preset, model=model, noise=noise)
    kw.update(vibration=vibration)
    return simulate_dfct(
        SPECIMENS, 128, n_views=384, rotations=20, seed=seed, specimens=True, model=model, **kw
    )


def main() -> None:
    rows = []
    for model, preset, level in ARMS:
        level = preset_physics(preset, model=model, noise=level)["noise"]
        for seed in SEEDS:
            full = _sim(model, preset, seed, 1.0, level)
            rois = full.meta["rois"]
            streak = _lung(_sim(model, preset, seed, 1.0, 0.0).input, full.truth, rois)
            noise = _lung(_sim(model, preset, seed, 0.0, level).input, full.truth, rois)
            texture = _lung(full.truth, full.truth, rois, minus_truth=False)
            total = streak + noise + texture
            body = full.mask.astype(bool)
            row = {
                "model": model,
                "preset": preset,
                "noise": level,
                "seed": seed,
                "streak_var": streak,
                "noise_var": noise,
                "texture_var": texture,
                "streak_share": streak / total,
                "noise_share": noise / total,
                "texture_share": texture / total,
                "input_lung_var": _lung(full.input, full.truth, rois),
                "input_body_mse": float(((full.input - full.truth)[body] ** 2).mean()),
                "target_body_mse": float(((full.target - full.truth)[body] ** 2).mean()),
            }
            rows.append(row)
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.5g}" if isinstance(v, float) else v) for k, v in r.items()})


if __name__ == "__main__":
    main()
