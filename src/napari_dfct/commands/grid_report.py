"""``dfct grid-report``: tables, violin plots and panels of a grid folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._errors import CLIError

NAME = "grid-report"
HELP = (
    "write the tables (Markdown, CSV), paired statistics, violin plots and panels of a grid folder"
)
DESCRIPTION = """\
Read every finished run of a `dfct grid` folder (OUT/runs/*/seed-*/metrics.json) and write
OUT/report: per loss the paper's table (rows baseline, +S, +F, +S+F, +F+S; CNR and FWHM,
linear and non-linear; median ± standard deviation over seeds, n per cell, best CNR in bold)
with the input's, target's and truth's values as reference rows; a summary of all metrics;
the paired comparisons (paired.md, paired.csv, paired.png): each configuration against its
family's baseline (and each amplified one against its scale-matched control) paired by
seed, for CNR, FWHM, error CNR and PSNR in the body: the median per-seed difference with a
95 % bootstrap interval, a Wilcoxon signed-rank p-value, two one-sided Wilcoxon tests of
equivalence (TOST) against the metric's margin (--margins), both corrected by Holm over
the table's family, and a verdict (better: the interval excludes zero on the good side and
the corrected p is below 0.05; worse: the other side; else equivalent: the corrected TOST
p is below 0.05; else inconclusive). Rows whose configuration trains identically to its
reference (identity) or to another row's (duplicate) stay out of the family, and with
--baseline-family amplified the scale-matched controls' rows against the baseline. power.md:
per metric the spread of the paired differences and the seeds TOST needs for 80 % power
at the margin. Also violin plots per configuration; and Fig.-3-like panels with the
representative prediction of each configuration (the seed whose
CNR is closest to the median). A run's value is its median over the test slices. Works on
incomplete grids, so it can follow a running Slurm array. Nothing is trained or predicted.
"""
ORDER = 55


def register(parser: argparse.ArgumentParser) -> None:
    from ._help import HelpFormatter

    parser.formatter_class = HelpFormatter
    parser.add_argument("out", metavar="OUT", help="grid folder (made by `dfct grid`)")
    parser.add_argument("--report-dir", default=None, help="where to write (default: OUT/report)")
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=10_000,
        metavar="N",
        help="bootstrap resamples of the paired intervals",
    )
    parser.add_argument(
        "--compare",
        default=None,
        metavar="A:B[,C:D]",
        help="also compare configuration A with configuration B paired by "
        "seed (a third kind of table), e.g. "
        "l2+d-nonlinear:l2+f-nonlinear-spectral",
    )
    parser.add_argument(
        "--margins",
        default=None,
        metavar="METRIC=VALUE[,...]",
        help="equivalence margins (± in the metric's units) that replace the defaults, "
        "e.g. cnr=0.5,fwhm=0.3,error_cnr=0.5,psnr_body=0.3 (the defaults)",
    )
    parser.add_argument(
        "--baseline-family",
        choices=("all", "amplified"),
        default="all",
        help="the Holm family of the table against the baseline: every configuration's "
        "row, or the amplified configurations' only (the scale-matched controls' rows are "
        "shown outside it, verdict 'outside'), as a study that asks only about the "
        "amplified configurations declares",
    )
    parser.add_argument("--quiet", action="store_true", help="do not print the tables")


def print_tables(out: Path, report_dir: Path | None = None) -> None:
    """Print the per-loss tables and the summary of a written report to stdout."""
    rdir = Path(report_dir) if report_dir else Path(out) / "report"
    for path in sorted(rdir.glob("table-*.md")):
        print(f"\n{path.stem[len('table-') :].upper()} (median ± std over seeds)\n")
        print(path.read_text(encoding="utf-8"))
    summary = rdir / "summary.md"
    if summary.is_file():
        print("\nAll metrics (medians over the test slices, median ± std over seeds)\n")
        print(summary.read_text(encoding="utf-8"))
    paired = rdir / "paired.md"
    if paired.is_file():
        print("\nPaired by seed: configuration − reference\n")
        print(paired.read_text(encoding="utf-8"))
    power = rdir / "power.md"
    if power.is_file():
        print("\nSpread of the paired differences and seeds for 80 % power of TOST\n")
        print(power.read_text(encoding="utf-8"))


def run(args: argparse.Namespace) -> int:
    import sys

    from ..experiment import grid_report, grid_status
    from ..experiment.lock import lock_holder
    from ..experiment.status import aside_summary

    out = Path(args.out)
    if args.bootstrap < 1:
        raise CLIError(f"--bootstrap must be at least 1, got {args.bootstrap}")
    from ..experiment.paired import parse_compare
    from ..experiment.stats import parse_margins

    try:
        margins = parse_margins(args.margins)
    except ValueError as exc:
        raise CLIError(f"--margins: {exc}") from None
    try:
        files = grid_report(
            out,
            args.report_dir,
            n_boot=args.bootstrap,
            compare=parse_compare(args.compare),
            margins=margins,
            baseline_family=args.baseline_family,
        )
        status = grid_status(out)
    except (ValueError, OSError) as exc:
        raise CLIError(str(exc)) from None
    if not args.quiet:
        print_tables(out, args.report_dir)
        print(
            f"runs finished: {len(status['done'])}, incomplete: {len(status['incomplete'])}, "
            f"not started: {len(status['missing'])}, moved-aside attempts: "
            f"{len(status['aside'])}",
            file=sys.stderr,
        )
        if status["aside"]:
            aside = aside_summary(out)
            print(
                f"moved-aside attempts hold {aside['bytes'] / 1e6:.1f} MB; remove them "
                f"with: rm -r {aside['pattern']}",
                file=sys.stderr,
            )
        holder = lock_holder(out)
        if holder is not None:
            print(
                f"a grid still runs on {out} (host {holder.get('host')}, pid "
                f"{holder.get('pid')}, started {holder.get('started')}): the report shows "
                "the runs finished so far",
                file=sys.stderr,
            )
        print(f"report: {files['report.md']}", file=sys.stderr)
    return 0
