"""Stage 3's results as docs/reach-the-target.md quotes them, read from the grid report.

Reads ``paired.csv``, ``runs.csv`` and ``power.csv`` of ``dfct grid-report stage3
--baseline-family amplified`` and prints Markdown: per configuration the median over seeds
of each metric (a run's value is its median over the test slices); per primary metric
(error CNR, PSNR in the body) the declared families (6 amplified configurations against
the baseline, 6 against their scale-matched controls) with the median paired difference,
its 95 % interval, the Holm-corrected superiority and TOST p and the verdict; CNR and FWHM
against the baseline and the controls as descriptive intervals (no verdict: not part of
the declared design); and the spread of the paired differences per metric. Nothing is
computed here that the report did not compute, except the medians of ``runs.csv``.

Usage: python docs/reach/stage3_results.py docs/data/reach/stage3/report
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from statistics import median

PRIMARY = {"error_cnr": "error CNR", "psnr_body": "PSNR in the body (dB)"}
DESCRIPTIVE = {"cnr": "CNR", "fwhm": "FWHM (px)"}


def _num(value: str, digits: int = 3) -> str:
    x = float(value)
    return f"{x:+.{digits}f}"


def _p(value: str) -> str:
    if value in ("", "nan", "None"):
        return "n/a"
    x = float(value)
    return f"{x:.3f}" if x >= 0.001 else f"{x:.1e}"


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def main(report: str) -> int:
    folder = Path(report)
    paired = _read(folder / "paired.csv")
    runs = _read(folder / "runs.csv")
    # the baseline, then the rows in the report's order (each amplified one before its control)
    names = list(
        dict.fromkeys(["l2"] + [r["configuration"] for r in paired if r["kind"] == "baseline"])
    )

    print("| configuration | seeds | error CNR | PSNR in the body (dB) | CNR | FWHM (px) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in names:
        mine = [r for r in runs if r["name"] == name]
        cells = [
            f"{median(float(r[m]) for r in mine):.2f}"
            for m in ("error_cnr", "psnr_body", "cnr", "fwhm")
        ]
        print(f"| {name} | {len(mine)} | " + " | ".join(cells) + " |")

    for metric, label in PRIMARY.items():
        for kind, title in (
            ("baseline", "against the baseline `l2`"),
            ("control", "against the scale-matched control"),
        ):
            rows = [r for r in paired if r["metric"] == metric and r["kind"] == kind]
            margin, family = rows[0]["margin"], rows[0]["family_size"]
            print(f"\n{label}, {title} (margin ±{margin}; Holm over {family}):\n")
            print(
                "| configuration | vs | n | median Δ | 95 % CI | p (Holm) "
                "| p TOST (Holm) | verdict |"
            )
            print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
            for r in rows:
                if r["verdict"] == "outside":
                    continue
                print(
                    f"| {r['configuration']} | {r['reference']} | {r['n']} "
                    f"| {_num(r['median_diff'])} "
                    f"| [{_num(r['ci_low'])}, {_num(r['ci_high'])}] | {_p(r['p_holm'])} "
                    f"| {_p(r['p_tost_holm'])} | {r['verdict']} |"
                )

    for metric, label in DESCRIPTIVE.items():
        print(f"\n{label} (descriptive: median Δ [95 % CI]):\n")
        print("| configuration | vs `l2` | vs its control |")
        print("| --- | ---: | ---: |")
        rows = [r for r in paired if r["metric"] == metric]
        amplified = [r["configuration"] for r in rows if r["kind"] == "control"]
        for name in amplified:
            cells = []
            for kind in ("baseline", "control"):
                (r,) = [r for r in rows if r["configuration"] == name and r["kind"] == kind]
                low, high = _num(r["ci_low"], 2), _num(r["ci_high"], 2)
                cells.append(f"{_num(r['median_diff'], 2)} [{low}, {high}]")
            print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nSpread of the paired differences (80 % power at the margin):\n")
    print("| metric | SD of Δ (pooled) | range | seeds needed | with Holm (α/6) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in _read(folder / "power.csv"):
        low, high = float(r["sd_min"]), float(r["sd_max"])
        print(
            f"| {r['metric']} | {float(r['sd_pooled']):.3f} | {low:.3f}–{high:.3f} "
            f"| {r['seeds_needed']} | {r['seeds_needed_holm']} |"
        )
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
