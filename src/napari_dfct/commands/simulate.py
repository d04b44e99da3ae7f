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
--specimens N --slices Z (Z > 1): a data set of N specimens, each a volume of Z slices of
its own acquisition: OUT_DIR/<specimen>/ (input.tif, target.tif, truth.tif, body.tif,
meta.json with the ROIs of every slice) and OUT_DIR/pairs.csv, which 'dfct train --pairs
OUT_DIR' and 'dfct grid --train OUT_DIR' read as they are.
--anatomy varied: body size and shape, position, rotation, lungs and heart vary between
specimens by 15 % and more (default 'fixed': the phantom of earlier versions, specimens
differ by about 3 %); --lesions K adds K regions of altered lung signal per specimen.
An existing set in OUT_DIR is replaced only with --overwrite, and then as a whole: the new
set is written into a hidden folder beside OUT_DIR and swapped in by renames, so a set in
OUT_DIR is always one complete set, old or new, even if the command is killed. meta.json
records every file's SHA-256; 'dfct train --data' and 'dfct grid' refuse a folder whose
files do not match it.

Examples:
  dfct simulate data/train --specimens 32 --size 128 --seed 0 --preset benchmark
  dfct simulate data/test --specimens 16 --size 128 --seed 1000 --preset benchmark
  dfct simulate data/volume --slices 16 --size 256
  dfct simulate data/volumes --specimens 8 --slices 16 --size 128 --anatomy varied
"""
ORDER = 10


def register(parser: argparse.ArgumentParser) -> None:
    from ..simulate import ANATOMIES, MODEL_PRESETS, PRESETS, Physics, views_for
    from ..simulate.fringe import FIRST_ORDER, MODELS

    parser.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created)")
    parser.add_argument(
        "--slices",
        type=int,
        default=None,
        metavar="Z",
        help="axial slices of one acquisition (default: 16); with --specimens: of each",
    )
    parser.add_argument(
        "--specimens",
        type=int,
        default=None,
        metavar="N",
        help="N independent specimens, one slice each (with --slices Z > 1: a data set "
        "of N volumes)",
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
        + " (streaks dominate the input's lung-ROI variance; with --physics fringe "
        + _describe(MODEL_PRESETS[("benchmark", "fringe")])
        + ", a higher dose); the "
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
        "--anatomy",
        choices=ANATOMIES,
        default="fixed",
        help="'varied': specimens differ in body, lungs, heart, position and rotation",
    )
    parser.add_argument(
        "--lesions", type=int, default=0, metavar="K", help="lesions per specimen (0: none)"
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
        ("--lesions", args.lesions, 0),
    ]
    if specimens and args.slices is not None:
        checks.append(("--slices", args.slices, 1))
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

    physics = preset_physics(
        args.preset, model=args.physics, noise=args.noise, texture=args.texture, tiles=args.tiles
    )
    physics.update(anatomy=args.anatomy, lesions=args.lesions, model=args.physics)
    if args.vibration is not None:
        physics["vibration"] = args.vibration
    if args.window is not None:
        physics["window"] = args.window
    if specimens and (args.slices or 1) > 1:
        return _run_volumes(args, n, out, physics)
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


def _run_volumes(args: argparse.Namespace, n: int, out: Path, physics: dict) -> int:
    """``--specimens N --slices Z``: a data set of N specimen volumes."""
    from tqdm import tqdm

    from ..simulate import save_volumes

    z = args.slices
    bar = tqdm(total=n * z, unit="slice", desc="simulate", file=sys.stderr, disable=args.quiet)
    try:
        meta = save_volumes(
            out,
            n,
            z,
            args.size,
            args.views,
            args.rotations,
            args.seed,
            overwrite=args.overwrite,
            progress=lambda done, total: bar.update(done - bar.n),
            filter=args.filter,
            **physics,
        )
    except FileExistsError as exc:
        raise CLIError(f"{exc}; use --overwrite to replace it") from None
    except MemoryError:
        raise CLIError(f"out of memory simulating {z} x {args.size} x {args.size}") from None
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc).splitlines()[0]) from None
    finally:
        bar.close()
    area = meta["spread"]["body_area_mm2"]
    print(
        f"wrote {n} specimen volumes ({z} x {args.size} x {args.size}, {meta['n_views']} "
        f"views, anatomy {args.anatomy}) and pairs.csv to {out}; body area "
        f"{area['mean'] / 100:.0f} cm2 (CV {100 * area['cv']:.1f} %); "
        f"train with: dfct train --pairs {out} ..."
    )
    return 0
