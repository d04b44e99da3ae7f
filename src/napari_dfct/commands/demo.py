"""``dfct demo``: the method in minutes, on the built-in simulator and a CPU."""

from __future__ import annotations

import argparse

from ._errors import CLIError

NAME = "demo"
HELP = "simulate, train the L2 baseline and L2+S+F non-linear, and compare them (minutes, CPU)"
DESCRIPTION = """\
Simulate a training set of independent specimens (each slice its own anatomy and its own
acquisition) and a held-out test set of other specimens, train the L2 baseline and
L2 + S+F non-linear amplification (model preset `small`, the converge recipe's optimiser
settings: no weight decay) for six seeds
through the same machinery as `dfct grid`, measure every test slice and print the
comparison -- CNR and FWHM (the simulator's ROIs of each slice), the error CNR and PSNR in
the body against the streak-free truth -- for the input, each model (median over seeds),
the multi-rotation target and the truth; then the two configurations paired by seed:
median difference, 95 % bootstrap interval, Wilcoxon p and a verdict.

Writes OUT/demo-table.md and .csv, OUT/demo-verdict.md and .csv, OUT/demo-panel.png
(input, target, truth, predictions with ROIs and line) and OUT/demo-violins.png; the runs
and the full report are in OUT/grid. Running it again reuses finished runs. --quick is a
smoke version of a few seconds (two seeds: no verdict possible).
"""
ORDER = 5


def register(parser: argparse.ArgumentParser) -> None:
    from ._help import HelpFormatter

    parser.formatter_class = HelpFormatter
    parser.add_argument(
        "--out",
        default=None,
        help="demo folder (default: dfct-demo, or dfct-demo-quick with --quick)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="seeds per configuration (default: 6; 2 with --quick)",
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs per run (default: 40; 10 with --quick)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="runs at a time (processes, each with its share of the cores)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke version: 64x64 slices, 10 epochs, two seeds (seconds)",
    )
    parser.add_argument(
        "--recipe",
        default="converge",
        help="training recipe (default converge: no weight decay; stable, paper, ...): its "
        "optimiser settings apply, the demo keeps its own sizes, patches and epochs",
    )
    parser.add_argument("--quiet", action="store_true", help="only print the table")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..experiment import GridRunError, run_demo

    out = args.out or ("dfct-demo-quick" if args.quick else "dfct-demo")
    if args.jobs < 1:
        raise CLIError("--jobs must be at least 1")
    try:
        result = run_demo(
            out,
            seeds=args.seeds,
            epochs=args.epochs,
            device=args.device,
            quick=args.quick,
            jobs=args.jobs,
            progress=not args.quiet,
            print_fn=(lambda m: None) if args.quiet else None,
            recipe=args.recipe,
        )
    except (ValueError, GridRunError) as exc:
        raise CLIError(str(exc)) from None
    s = result["settings"]
    n = s["seeds"]
    print(
        f"\nHeld-out test specimens (each value: median over the test slices): median ± "
        f"std over {n} seed{'s' if n != 1 else ''} per model; error CNR and PSNR in the "
        "body against the simulation's truth\n"
    )
    print(result["table_md"])
    if result["verdict_md"]:
        print("\nPaired by seed (l2+s+f-nonlinear - l2):\n")
        print(result["verdict_md"])
    if not args.quiet:
        print(
            f"demo finished in {result['seconds']:.0f} s; table, panel and violin plots in "
            f"{result['out_dir']}",
            file=sys.stderr,
        )
    return 0
