"""``dfct simulate``: write a simulated DFCT set (input, target, truth, meta.json)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "simulate"
HELP = "simulate a thorax DFCT set: 1-rotation input, multi-rotation target, clean truth"
DESCRIPTION = (
    "Simulate X-ray dark-field CT of a thorax phantom (lungs, airways, air cavities, ribs, "
    "spine) with grating-vibration streaks and photon noise, reconstructed by filtered "
    "back-projection over one 360-degree rotation. Writes OUT_DIR/input.tif (one "
    "rotation), target.tif (mean of --rotations rotations), truth.tif (no errors, no "
    "noise), all float32 (Z, Y, X) in 1/m, and meta.json (parameters and the suggested "
    "lung/air ROIs, line and slice, as read by 'dfct measure')."
)
ORDER = 10


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created)")
    parser.add_argument("--slices", type=int, default=16, metavar="Z",
                        help="number of axial slices")
    parser.add_argument("--size", type=int, default=256, metavar="N",
                        help="slice width and height in pixels (>= 32)")
    parser.add_argument("--views", type=int, default=360, metavar="V",
                        help="views per 360-degree rotation (>= 8)")
    parser.add_argument("--rotations", type=int, default=20, metavar="R",
                        help="rotations averaged into the target (>= 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (>= 0)")
    parser.add_argument("--filter", choices=("ramp", "hann"), default="hann",
                        help="FBP filter")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..cli import CLIError

    checks = (
        ("--slices", args.slices, 1),
        ("--size", args.size, 32),
        ("--views", args.views, 8),
        ("--rotations", args.rotations, 1),
        ("--seed", args.seed, 0),
    )
    for option, value, minimum in checks:
        if value < minimum:
            raise CLIError(f"{option} must be >= {minimum}, got {value}")
    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        raise CLIError(f"{out} exists and is not a directory")

    from tqdm import tqdm

    from ..simulate import save_simulation, simulate_dfct

    bar = tqdm(total=args.slices, unit="slice", desc="simulate", file=sys.stderr,
               disable=args.quiet)

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    try:
        sim = simulate_dfct(n_slices=args.slices, size=args.size, n_views=args.views,
                            rotations=args.rotations, seed=args.seed, filter=args.filter,
                            progress=progress)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    finally:
        bar.close()
    try:
        paths = save_simulation(sim, out)
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot write to {out}: {exc}") from None
    m = sim.meta
    print(
        f"wrote {', '.join(p.name for p in paths.values())} to {out} "
        f"({args.slices} x {args.size} x {args.size}); ROIs {m['roi_size']} px: "
        f"signal {m['signal_center']}, background {m['background_center']}, "
        f"slice {m['slice']}"
    )
    return 0
