"""Per arm and set: the median (and range) over seeds of each fit measure of
``diagnosis.csv``; writes ``diagnosis-summary.csv`` beside it and prints a Markdown table
(the numbers docs/reach-the-target.md quotes).

Usage: python docs/reach/summary.py docs/data/reach/diagnosis.csv [--seeds 0-2] [--out CSV]
(``--seeds``: only those seeds, e.g. the seeds a stage decided on; ``--out``: another
summary file than ``diagnosis-summary.csv``)
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from statistics import median

MEASURES = ("mse_target", "error_cnr", "psnr_body", "cnr", "best_epoch", "seconds_train")
SETS = ("train", "val", "test")


def main(path: str, seeds: str | None = None, out_path: str | None = None) -> int:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if seeds:
        lo, _, hi = seeds.partition("-")
        keep = set(range(int(lo), int(hi or lo) + 1))
        rows = [r for r in rows if int(r["seed"]) in keep]
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    out = []
    for arm in arms:
        for s in SETS:
            sel = [r for r in rows if r["arm"] == arm and r["set"] == s]
            rec = {"arm": arm, "set": s, "n_seeds": len(sel)}
            for m in MEASURES:
                v = [float(r[m]) for r in sel if r[m] not in ("", "None")]
                rec[f"{m}_median"] = f"{median(v):.6g}" if v else ""
                rec[f"{m}_min"] = f"{min(v):.6g}" if v else ""
                rec[f"{m}_max"] = f"{max(v):.6g}" if v else ""
            out.append(rec)
    dest = Path(out_path) if out_path else Path(path).with_name("diagnosis-summary.csv")
    with open(dest, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(out[0]))
        w.writeheader()
        w.writerows(out)
    print(
        "| arm | seeds | train MSE | test MSE | train error CNR | test error CNR "
        "| test PSNR body (dB) | best epoch |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    by = {(r["arm"], r["set"]): r for r in out}
    for arm in arms:
        tr, te = by[(arm, "train")], by[(arm, "test")]

        def rng(r, m, f):
            lo, hi = float(r[m + "_min"]), float(r[m + "_max"])
            return f"{float(r[m + '_median']):{f}} [{lo:{f}}, {hi:{f}}]"

        print(
            f"| `{arm}` | {te['n_seeds']} | {float(tr['mse_target_median']):.5f} | "
            f"{float(te['mse_target_median']):.5f} | {float(tr['error_cnr_median']):.2f} | "
            f"{rng(te, 'error_cnr', '.2f')} | {rng(te, 'psnr_body', '.2f')} | "
            f"{float(te['best_epoch_median']):.0f} |"
        )
    print(f"-> {dest}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--seeds")
    ap.add_argument("--out")
    a = ap.parse_args()
    sys.exit(main(a.csv, a.seeds, a.out))
