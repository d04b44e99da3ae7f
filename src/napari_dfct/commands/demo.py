"""``dfct demo``: the method in minutes, on the built-in simulator and a CPU."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "simulate, train the L2 baseline and L2+S+F non-linear, and compare them (minutes, CPU)"
DESCRIPTION = """\
Simulate a training set and a held-out test specimen (another seed), train the L2 baseline
and L2 + S+F non-linear amplification (model preset `small`) for a few seeds through the
same machinery as `dfct grid`, predict the test slice and print the comparison: CNR and FWHM
(ROIs of the simulator) and PSNR/SSIM against the simulation's streak-free truth, for the
input, each model (median over seeds), the multi-rotation target and the truth.

Writes OUT/demo-table.md and .csv, OUT/demo-panel.png (input, target, truth, predictions
with ROIs and line) and OUT/demo-violins.png (CNR, FWHM, PSNR, SSIM over seeds); the runs
and the full report are in OUT/grid.
Running it again reuses finished runs. --quick is a smoke version of a few seconds.
"""
ORDER = 5


def register(parser: argparse.ArgumentParser) -> None:
    from ._help import HelpFormatter

    parser.formatter_class = HelpFormatter
    parser.add_argument("--out", default=None,
                        help="demo folder (default: dfct-demo, or dfct-demo-quick with --quick)")
    parser.add_argument("--seeds", type=int, default=None,
                        help="seeds per configuration (default: 2; 1 with --quick)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per run (default: 40; 10 with --quick)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (processes)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke version: 64x64 slices, 10 epochs, one seed (seconds)")
    parser.add_argument("--quiet", action="store_true", help="only print the table")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..cli import CLIError
    from ..experiment import GridRunError, run_demo

    out = args.out or ("dfct-demo-quick" if args.quick else "dfct-demo")
    if args.jobs < 1:
        raise CLIError("--jobs must be at least 1")
    try:
        result = run_demo(out, seeds=args.seeds, epochs=args.epochs, device=args.device,
                          quick=args.quick, jobs=args.jobs, progress=not args.quiet,
                          print_fn=(lambda m: None) if args.quiet else None)
    except (ValueError, GridRunError) as exc:
        raise CLIError(str(exc)) from None
    s = result["settings"]
    n = s["seeds"]
    print(f"\nHeld-out test slice: median ± std over {n} seed{'s' if n != 1 else ''} per "
          "model; PSNR and SSIM against the simulation's truth\n")
    print(result["table_md"])
    if not args.quiet:
        print(f"demo finished in {result['seconds']:.0f} s; table, panel and violin plots in "
              f"{result['out_dir']}", file=sys.stderr)
    return 0
