"""Paired comparison of two arms of ``diagnosis.csv`` on one set, by seed: per metric the
median of the paired differences (arm A - arm B), its 95 % bootstrap interval, the
two-sided Wilcoxon signed-rank p and the verdict of the project's statistics
(:func:`napari_dfct.experiment.stats.paired_comparison`, one comparison: no Holm).

Writes ``OUT.csv`` and prints a Markdown table (the numbers docs/reach-the-target.md
quotes).

Usage: python docs/reach/compare.py diagnosis.csv ARM_A ARM_B OUT.csv [--set test]
"""

from __future__ import annotations

import argparse
import csv
import sys
from statistics import median

from napari_dfct.experiment.stats import paired_comparison

#: metric -> (label, higher is better)
METRICS = {
    "error_cnr": ("error CNR", True),
    "psnr_body": ("PSNR in the body (dB)", True),
    "cnr": ("CNR", True),
    "mse_target": ("MSE vs target", False),
}


def _by_seed(rows: list[dict], arm: str, set_name: str, metric: str) -> dict[int, float]:
    return {
        int(r["seed"]): float(r[metric])
        for r in rows
        if r["arm"] == arm and r["set"] == set_name and r[metric] not in ("", "None")
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("arm_a")
    ap.add_argument("arm_b")
    ap.add_argument("out")
    ap.add_argument("--set", default="test", dest="set_name")
    args = ap.parse_args(argv)
    with open(args.csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for metric, (label, higher) in METRICS.items():
        a = _by_seed(rows, args.arm_a, args.set_name, metric)
        b = _by_seed(rows, args.arm_b, args.set_name, metric)
        if not a or not b:
            raise SystemExit(f"no {args.set_name} rows for {args.arm_a!r} or {args.arm_b!r}")
        r = paired_comparison(a, b, higher_is_better=higher)
        seeds = sorted(set(a) & set(b))
        out.append(
            {
                "metric": metric,
                "arm_a": args.arm_a,
                "arm_b": args.arm_b,
                "set": args.set_name,
                "seeds": " ".join(str(s) for s in seeds),
                "median_a": f"{median(a[s] for s in seeds):.6g}",
                "median_b": f"{median(b[s] for s in seeds):.6g}",
                "median_diff": f"{r.median:.6g}",
                "ci_low": f"{r.ci_low:.6g}",
                "ci_high": f"{r.ci_high:.6g}",
                "p_wilcoxon": f"{r.p:.4g}",
                "verdict": r.verdict,
                "label": label,
            }
        )
    with open(args.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(out[0]))
        w.writeheader()
        w.writerows(out)
    print(
        f"| metric ({args.set_name} set) | `{args.arm_a}` | `{args.arm_b}` | median Δ | 95 % CI "
        "| p (Wilcoxon) | verdict |"
    )
    print("| --- | ---: | ---: | ---: | --- | ---: | --- |")
    for r in out:
        f = ".5f" if r["metric"] == "mse_target" else ".2f"
        print(
            f"| {r['label']} | {float(r['median_a']):{f}} | {float(r['median_b']):{f}} | "
            f"{float(r['median_diff']):+{f}} | [{float(r['ci_low']):+{f}}, "
            f"{float(r['ci_high']):+{f}}] | {float(r['p_wilcoxon']):.3f} | {r['verdict']} |"
        )
    print(f"-> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
