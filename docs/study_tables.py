"""Extra tables of docs/study.md from a grid folder: where CNR changes come from.

For each configuration (median over seeds of each run's median over the test slices):
the contrast (signal ROI mean - background ROI mean), the standard deviations in the two
ROIs (the paper's CNR noise: texture, streaks and noise together), the standard deviations
of the error against the truth in the two ROIs (the error CNR's noise: streaks and noise
only) and the epochs run. (Training times are left out: they depend on what else the
machine ran at the time.)

Usage::

    python docs/study_tables.py GRID_FOLDER
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def run_records(grid: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for path in sorted(grid.glob("runs/*/seed-*/metrics.json")):
        rec = json.loads(path.read_text())
        out.setdefault(rec["name"], []).append(rec)
    return out


def _median(records: list[dict], key: str) -> float:
    vals = [r.get(key) for r in records]
    vals = [float(v) for v in vals if v is not None]
    return float(np.median(vals)) if vals else float("nan")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("grid", type=Path)
    a = ap.parse_args(argv)
    runs = run_records(a.grid)
    print(
        "| configuration | seeds | contrast | σ signal | σ background | σ error signal | "
        "σ error background | epochs run |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, recs in runs.items():
        contrast = _median([{"c": r["signal_mean"] - r["background_mean"]} for r in recs], "c")
        print(
            f"| {name} | {len(recs)} | {contrast:.3f} | {_median(recs, 'signal_std'):.3f} | "
            f"{_median(recs, 'background_std'):.3f} | "
            f"{_median(recs, 'signal_error_std'):.3f} | "
            f"{_median(recs, 'background_error_std'):.3f} | "
            f"{_median(recs, 'epochs_run'):.0f} |"
        )


if __name__ == "__main__":
    main()
