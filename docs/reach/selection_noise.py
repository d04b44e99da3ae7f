"""Selection noise of each diagnosis arm: how much the validation loss that selects the
model jumps from epoch to epoch (docs/reach-the-target.md).

Per run (``RUNS/<arm>/runs/<config>/seed-<k>/history.csv``), over its last 10 epochs:
the range of the validation loss relative to its median, ``(max - min) / median``, and
the median epoch-to-epoch change relative to the median, ``median |v[e] - v[e-1]| /
median``. Per arm, the median of each over its runs, with the number of validation
specimens. Writes ``OUT.csv`` and prints a Markdown table.

Usage: python docs/reach/selection_noise.py docs/data/reach/runs OUT.csv [--config l2]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from statistics import median

LAST = 10


def _val_losses(history: Path) -> list[float]:
    with open(history, newline="") as fh:
        return [float(r["val_loss"]) for r in csv.DictReader(fh) if r["val_loss"] not in ("",)]


def _n_val_specimens(run: Path) -> int:
    split = json.loads((run / "config.json").read_text()).get("split", {})
    return len(split.get("val") or [])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--config", default="l2")
    args = ap.parse_args(argv)
    per_arm: dict[str, list[dict]] = {}
    for history in sorted(args.runs.glob(f"*/runs/{args.config}/seed-*/history.csv")):
        run = history.parent
        arm = run.parts[-4]
        v = _val_losses(history)[-LAST:]
        if len(v) < 3:
            continue
        m = median(v)
        steps = [abs(b - a) for a, b in zip(v, v[1:])]
        grid = json.loads((run.parents[2] / "grid.json").read_text())
        separate = "val_input" in grid.get("train_data", {})
        per_arm.setdefault(arm, []).append(
            {
                "range": (max(v) - min(v)) / m,
                "step": median(steps) / m,
                "n_val": "8 (separate set)" if separate else str(_n_val_specimens(run)),
            }
        )
    rows = []
    for arm, runs in per_arm.items():
        rows.append(
            {
                "arm": arm,
                "n_runs": len(runs),
                "validation_specimens": runs[0]["n_val"],
                "range_rel_median": f"{median(r['range'] for r in runs):.4g}",
                "step_rel_median": f"{median(r['step'] for r in runs):.4g}",
            }
        )
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(
        "| arm | runs | validation specimens | range / median | epoch-to-epoch change / median |"
    )
    print("| --- | ---: | --- | ---: | ---: |")
    for r in rows:
        print(
            f"| `{r['arm']}` | {r['n_runs']} | {r['validation_specimens']} | "
            f"{float(r['range_rel_median']):.1%} | {float(r['step_rel_median']):.1%} |"
        )
    print(f"-> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
