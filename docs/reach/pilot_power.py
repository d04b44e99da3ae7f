"""Stage 3's seed count from its pilot (docs/reach-the-target.md): per metric, the standard
deviation of the pilot's paired differences (``paired.csv`` of ``dfct grid-report``, the
rows of CONFIG against the baseline) and the seeds a Wilcoxon TOST needs for 80 % power
at the declared margin, at alpha 0.05 and at Holm's first step over the family
(``alpha = 0.05 / m``), by :func:`napari_dfct.experiment.stats.seeds_for_power`.

Writes ``OUT.csv`` and prints a Markdown table.

Usage: python docs/reach/pilot_power.py REPORT/paired.csv CONFIG OUT.csv [--family 6]
"""

from __future__ import annotations

import argparse
import csv
import sys

import numpy as np

from napari_dfct.experiment.stats import EQUIVALENCE_MARGINS, seeds_for_power, tost_power


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paired")
    ap.add_argument("config")
    ap.add_argument("out")
    ap.add_argument("--family", type=int, default=6, help="rows per Holm family (m)")
    args = ap.parse_args(argv)
    with open(args.paired, newline="") as fh:
        rows = [
            r
            for r in csv.DictReader(fh)
            if r["kind"] == "baseline" and r["configuration"] == args.config
        ]
    if not rows:
        raise SystemExit(f"no baseline rows for {args.config!r} in {args.paired}")
    out = []
    for r in rows:
        metric = r["metric"]
        if metric not in EQUIVALENCE_MARGINS:
            continue
        d = np.array([float(x) for x in r["differences"].split()])
        sd = float(np.std(d, ddof=1))
        margin = EQUIVALENCE_MARGINS[metric]
        alpha_m = 0.05 / args.family
        out.append(
            {
                "metric": metric,
                "n_pilot": len(d),
                "median_diff": f"{np.median(d):.4g}",
                "sd_diff": f"{sd:.4g}",
                "margin": margin,
                "power_at_pilot_n": f"{tost_power(sd, margin, len(d)):.3f}",
                "seeds_80_alpha_0.05": seeds_for_power(sd, margin),
                f"seeds_80_alpha_0.05/{args.family}": seeds_for_power(sd, margin, alpha=alpha_m),
            }
        )
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(out[0]))
        w.writeheader()
        w.writerows(out)
    keys = list(out[0])
    print("| " + " | ".join(keys) + " |")
    print("| " + " | ".join("---" for _ in keys) + " |")
    for r in out:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    print(f"-> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
