"""``dfct simulate``: write a simulated DFCT set (input, target, truth, body mask,
meta.json)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._errors import CLIError

NAME = "simulate"
HELP = "simulate a thorax DFCT set: 1-rotation input, multi-rotation target, clean truth"
DESCRIPTION = """\
Simulate X-ray dark-field CT of a thorax phantom (lungs, airways, air cavities, ribs,
spine) with grating-vibration streaks and photon noise, reconstructed by filtered
back-projection over one 360-degree rotation. Writes to OUT_DIR: input.tif (one
rotation), target.tif (mean of --rotations rotations), truth.tif (no errors, no noise),
all float32 (Z, Y, X) in 1/m; body.tif (uint8 body mask, same shape); meta.json (the
parameters, the lung/air ROIs and line of every slice as read by 'dfct measure', and the
share of the input's lung-ROI variance that streaks make up).

--slices Z: one acquisition of one specimen. Its slices share the vibration, as the
detector rows of a real cone-beam volume do, so their streaks are alike (about one
streak pattern per volume).
--specimens N: N independent scans, one slice each (the central slice of its own
specimen, with its own anatomy, vibration and noise), as the paper's training data of
central slices of independent scans. Use these to train and test models.
An existing set in OUT_DIR is replaced only with --overwrite, and then as a whole: the new
set is written into a hidden folder beside OUT_DIR and swapped in by renames, so a set in
OUT_DIR is always one complete set, old or new, even if the command is killed. meta.json
records every file's SHA-256; 'dfct train --data' and 'dfct grid' refuse a folder whose
files do not match it.

Examples:
  dfct simulate data/train --specimens 32 --size 128 --seed 0 --preset benchmark
  dfct simulate data/test --specimens 16 --size 128 --seed 1000 --preset benchmark
  dfct simulate data/volume --slices 16 --size 256
"""
ORDER = 10


def register(parser: argparse.ArgumentParser) -> None:
    from ..simulate import PRESETS, Physics, views_for
    from ..simulate.fringe import FIRST_ORDER, MODELS

    parser.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created)")
    count = parser.add_mutually_exclusive_group()
    count.add_argument(
        "--slices",
        type=int,
        default=None,
        metavar="Z",
        help="axial slices of one acquisition (default: 16)",
    )
    count.add_argument(
        "--specimens",
        type=int,
        default=None,
        metavar="N",
        help="N independent specimens, one slice each",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=256,
        metavar="N",
        help="slice width and height in pixels (>= 32)",
    )
    parser.add_argument(
        "--views",
        type=int,
        default=None,
        metavar="V",
        help=f"views per 360-degree rotation (>= 8; default: 3 per pixel "
        f"of --size, rounded up to a multiple of 8: "
        f"{views_for(128)} at 128, {views_for(800)} at 800)",
    )
    parser.add_argument(
        "--rotations",
        type=int,
        default=20,
        metavar="R",
        help="rotations averaged into the target (>= 1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (>= 0)")
    parser.add_argument("--filter", choices=("ramp", "hann"), default="hann", help="FBP filter")
    parser.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default="default",
        help="realism options: 'default' is the plain simulator; "
        "'benchmark' = "
        + _describe(PRESETS["benchmark"])
        + " (streaks dominate the input's lung-ROI variance); the "
        "options below override the preset's",
    )
    parser.add_argument(
        "--noise",
        type=float,
        default=None,
        metavar="M",
        help="multiplier of the photon-noise level (default 1)",
    )
    parser.add_argument(
        "--texture",
        type=float,
        default=None,
        metavar="M",
        help="multiplier of the lung texture amplitude (fine texture and coarse "
        "modulation; the vessels stay) (default 1)",
    )
    parser.add_argument(
        "--tiles",
        type=int,
        default=None,
        metavar="K",
        help=f"grating tiles across the detector, each with its own "
        f"visibility error ({Physics().tile_amplitude:g} RMS): ring "
        f"and band artefacts (default 0: none)",
    )
    parser.add_argument(
        "--physics",
        choices=MODELS,
        default=FIRST_ORDER,
        help="acquisition model: 'first-order' (an error model added to the dark-field "
        "sinogram, the default) or 'fringe' (fringe intensities with photon noise, a "
        "reference scan and sliding-window least-squares phase retrieval; the target by "
        "virtual phase stepping over all rotations); see docs/simulator.md",
    )
    parser.add_argument(
        "--vibration",
        type=float,
        default=None,
        metavar="X",
        help="multiplier of the grating-vibration and tile errors (default 1; 0: none)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=None,
        metavar="W",
        help=f"views (fringe: shots) per phase-retrieval window (default "
        f"{Physics().window}; >= 3 with --physics fringe)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a simulated set already in OUT_DIR"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _describe(preset: dict) -> str:
    return ", ".join(f"--{k} {v:g}" for k, v in preset.items())


def _check(args: argparse.Namespace) -> tuple[int, bool, Path]:
    """Validated (slice count, independent specimens?, output folder)."""
    from ..simulate import dataset_files, recover_dataset

    specimens = args.specimens is not None
    n = args.specimens if specimens else (16 if args.slices is None else args.slices)
    checks = [
        ("--specimens" if specimens else "--slices", n, 1),
        ("--size", args.size, 32),
        ("--rotations", args.rotations, 1),
        ("--seed", args.seed, 0),
    ]
    if args.views is not None:
        checks.append(("--views", args.views, 8))
    if args.tiles is not None:
        checks.append(("--tiles", args.tiles, 0))
    if args.window is not None:
        checks.append(("--window", args.window, 1))
    for option, value, minimum in checks:
        if value < minimum:
            raise CLIError(f"{option} must be >= {minimum}, got {value}")
    options = (
        ("--noise", args.noise),
        ("--texture", args.texture),
        ("--vibration", args.vibration),
    )
    for option, value in options:
        if value is not None and not value >= 0:
            raise CLIError(f"{option} must be >= 0, got {value}")
    out = Path(args.out_dir)
    if out.exists() and not out.is_dir():
        raise CLIError(f"{out} exists and is not a directory")
    recover_dataset(out)  # what a killed earlier write left
    existing = dataset_files(out)
    if existing and not args.overwrite:
        raise CLIError(
            f"{out} already holds a simulated set "
            f"({', '.join(p.name for p in existing)}); use --overwrite to "
            "replace it, or another OUT_DIR"
        )
    return n, specimens, out


def run(args: argparse.Namespace) -> int:
    n, specimens, out = _check(args)

    from tqdm import tqdm

    from ..simulate import preset_physics, save_simulation, simulate_dfct

    physics = preset_physics(args.preset, noise=args.noise, texture=args.texture, tiles=args.tiles)
    physics["model"] = args.physics
    if args.vibration is not None:
        physics["vibration"] = args.vibration
    if args.window is not None:
        physics["window"] = args.window
    bar = tqdm(
        total=n,
        unit="specimen" if specimens else "slice",
        desc="simulate",
        file=sys.stderr,
        disable=args.quiet,
    )

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    try:
        sim = simulate_dfct(
            n_slices=n,
            size=args.size,
            n_views=args.views,
            rotations=args.rotations,
            seed=args.seed,
            filter=args.filter,
            specimens=specimens,
            progress=progress,
            **physics,
        )
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    except MemoryError:
        raise CLIError(
            f"out of memory simulating {n} x {args.size} x {args.size}: use a "
            "smaller --size or fewer slices"
        ) from None
    finally:
        bar.close()
    try:
        paths = save_simulation(sim, out, overwrite=args.overwrite)
    except FileExistsError as exc:
        raise CLIError(f"{exc}; use --overwrite to replace it") from None
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot write to {out}: {exc}") from None
    m = sim.meta
    share = m["streak_share"]
    kind = "independent specimens" if specimens else "slices of one acquisition"
    print(
        f"wrote {', '.join(p.name for p in paths.values())} to {out} "
        f"({n} {kind}, {args.size} x {args.size}, {m['n_views']} views, "
        f"{args.physics} physics); ROIs "
        f"{m['roi_size']} px per slice in meta.json (slice {m['slice']}: signal "
        f"{m['signal_center']}, background {m['background_center']})\n"
        f"streaks make up {100 * share['input']:.0f} % of the input's lung-ROI variance "
        f"(texture {100 * (1 - share['input']):.0f} %); in the target "
        f"{100 * share['target']:.0f} %"
    )
    return 0
