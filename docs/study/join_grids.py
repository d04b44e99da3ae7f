"""Paired comparison of arms that live in different ``dfct grid`` folders.

A grid folder holds one set of training options; arms that differ in the model (2-D,
2.5-D, 3-D) are therefore separate grids on the same data and seeds. This script joins
them: each arm is ``LABEL=DIR[:CONFIG]`` (a grid folder and one of its configurations,
default the only one), the runs are paired by seed, and every family of ``--family``
(``A:B,C:D``; one Holm correction per family) is compared with the project's statistics
(:func:`napari_dfct.experiment.paired.paired_results`: median paired difference, 95 %
bootstrap interval, Wilcoxon p with Holm, TOST at the default margins, verdict).

Writes into ``--out``: ``runs.csv`` (one row per run: arm, seed, metrics, seconds, best
epoch), ``summary.csv`` (median, standard deviation and n per arm and metric),
``paired.csv`` (one row per comparison and metric, with its family) and ``paired.md``.

Usage::

    python docs/study/join_grids.py --out docs/data/context-study \\
        2-D=runs/ctx0 K1=runs/ctx1 K2=runs/ctx2 3-D=runs/d3 \\
        --family K1:2-D,K2:2-D,3-D:2-D --family K2:K1,3-D:K2
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from napari_dfct.experiment.paired import paired_results, paired_tables, parse_compare
from napari_dfct.experiment.report import collect_runs, summarize

METRICS = ("cnr", "fwhm", "error_cnr", "psnr_body")
RUN_COLUMNS = (
    "arm",
    "seed",
    *METRICS,
    "best_epoch",
    "epochs_run",
    "best_val_loss",
    "seconds_train",
    "seconds",
)


def _arm(text: str) -> tuple[str, Path, str | None]:
    label, sep, rest = text.partition("=")
    if not sep or not label or not rest:
        raise argparse.ArgumentTypeError(f"bad arm {text!r}: use LABEL=DIR[:CONFIG]")
    folder, _, config = rest.partition(":")
    return label, Path(folder), config or None


def _records(label: str, folder: Path, config: str | None) -> list[dict]:
    records = collect_runs(folder)
    names = sorted({r["name"] for r in records})
    if config is None:
        if len(names) != 1:
            raise SystemExit(f"{folder} holds {names or 'no runs'}: name one as {label}=DIR:NAME")
        config = names[0]
    picked = [dict(r, name=label) for r in records if r["name"] == config]
    if not picked:
        raise SystemExit(f"{folder} has no finished run of {config!r} (it has {names})")
    return picked


def _csv(rows: list[list], header: tuple | list) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("arms", nargs="+", type=_arm, help="LABEL=DIR[:CONFIG]")
    ap.add_argument("--family", action="append", required=True, help="A:B[,C:D] (one Holm family)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--bootstrap", type=int, default=10_000)
    args = ap.parse_args(argv)

    records = [r for label, folder, config in args.arms for r in _records(label, folder, config)]
    summary = summarize(records)
    for label, entry in summary.items():
        # the arms differ in the model or the data, not only in the loss: none trains as
        # another (the loss alone would call two `l2` arms an identity)
        entry["trains_as"] = label
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    runs = sorted(records, key=lambda r: ([a[0] for a in args.arms].index(r["name"]), r["seed"]))
    (out / "runs.csv").write_text(
        _csv(
            [[r["name"] if k == "arm" else r.get(k) for k in RUN_COLUMNS] for r in runs],
            RUN_COLUMNS,
        )
    )
    rows = []
    for name, entry in summary.items():
        for m in (*METRICS, "seconds", "best_epoch"):
            s = entry[m]
            rows.append([name, m, s["median"], s["std"], s["n"]])
    (out / "summary.csv").write_text(_csv(rows, ("arm", "metric", "median", "std", "n")))

    md, csv_parts = [], []
    for i, family in enumerate(args.family, start=1):
        pairs = parse_compare(family)
        res = paired_results(summary, compare=pairs, metrics=METRICS, n_boot=args.bootstrap)
        tables = paired_tables(res)
        md.append(f"## Family {i}: {family}\n\n" + tables["markdown"])
        lines = tables["csv"].splitlines()
        csv_parts.append(lines if i == 1 else lines[1:])
        csv_parts[-1] = [
            (("family," + line) if j == 0 and i == 1 else f"{i}," + line)
            for j, line in enumerate(csv_parts[-1])
        ]
    (out / "paired.csv").write_text("\n".join(line for part in csv_parts for line in part) + "\n")
    (out / "paired.md").write_text("\n\n".join(md) + "\n")
    print((out / "paired.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
