"""``dfct grid``: the paper's experiment grid (losses x amplification x profiles x seeds)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ._errors import CLIError
from ._help import HelpFormatter
from ._training import add_training_arguments, train_config_from_args

__all__ = [
    "HelpFormatter",
    "add_training_arguments",
    "loss_configs",
    "register",
    "run",
    "simulate_pair",
    "stopped_message",
    "train_config_from_args",
]

NAME = "grid"
HELP = "train and evaluate the paper's grid of loss configurations and seeds (local or Slurm)"
DESCRIPTION = """\
Train one model per (loss configuration, seed) on a training pair, predict the held-out test
slice with each and measure CNR, FWHM (and PSNR/SSIM against the truth when the test set has
one). The default grid is the paper's: L1 and L2, amplification none / S / F / S+F / F+S,
linear and non-linear weights (18 configurations), ten seeds (180 runs). A test data set
of volumes (--test a folder with pairs.csv) is predicted volume by volume, each from its
own slices, so context (--context K) and 3-D (--dims 3) models take part; --test-slices
chooses the measured slices of every volume (docs/datasets.md).

Each run writes OUT/runs/<config>/seed-<k>/ (model/, prediction.tif, metrics.json; the
metrics file is written last and marks the run as finished). Starting the grid again skips
finished runs; a run folder without metrics.json (crash, killed job) is moved aside to
seed-<k>.incomplete-<time> and redone (or continued with --resume). The report (tables,
violin plots, panels) is written to OUT/report at the end; `dfct grid-report OUT` redraws it.
Ctrl-C or SIGTERM stops the grid (exit 130 or 143): running runs are stopped, finished ones
kept, and no worker process outlives the grid, even after SIGKILL. Of the moved-aside
attempts, the newest of each run is kept. One grid runs per folder: OUT/grid.lock names
it, and a second `dfct grid` on OUT exits 2 saying which grid holds it (the lock of a
grid that was killed is taken over; `dfct grid-report OUT` may read at any time).

Examples:
  dfct simulate data/train --seed 0 && dfct simulate data/test --seed 1000
  dfct grid runs/paper --train data/train --test data/test --seeds 0-9 --jobs 2
  dfct grid runs/small --simulate --sim-size 128 --preset small --epochs 20 --seeds 0-2
  dfct simulate data/vtest --specimens 16 --slices 6 --seed 1000   # volumes of specimens
  dfct grid runs/ctx1 --train data/vtrain --test data/vtest --test-slices 2-3 --context 1
  dfct grid runs/paper --train data/train --test data/test --executor slurm \\
      --partition gpu --gpus-per-job 1 --cpus-per-job 8 --time 240 --mem 32
"""
ORDER = 50


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """``--executor``, ``--jobs`` and the Slurm resources."""
    g = parser.add_argument_group("execution")
    g.add_argument(
        "--executor",
        default="local",
        metavar="{local,slurm}",
        help="local: this machine (--jobs runs at a time); slurm: a job array through submitit",
    )
    g.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="local runs at a time (separate processes; one GPU each when several are visible)",
    )
    g.add_argument("--partition", default=None, help="Slurm partition")
    g.add_argument("--gpus-per-job", type=int, default=1, help="GPUs per Slurm task")
    g.add_argument("--cpus-per-job", type=int, default=8, help="CPUs per Slurm task")
    g.add_argument("--time", type=int, default=240, help="time limit per run, minutes")
    g.add_argument("--mem", type=float, default=None, help="memory per run, GB")
    g.add_argument(
        "--array-parallelism", type=int, default=32, help="at most this many array tasks at a time"
    )
    g.add_argument(
        "--slurm-folder",
        default=None,
        help="submitit's folder for job scripts and logs (default: OUT/slurm)",
    )
    g.add_argument(
        "--slurm-setup",
        action="append",
        default=[],
        metavar="LINE",
        help="shell line run before each Slurm job (repeatable), e.g. "
        "'source ~/venv/bin/activate'",
    )
    g.add_argument(
        "--slurm-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="more submitit Slurm parameters (repeatable): account=..., qos=..., constraint=...",
    )
    g.add_argument(
        "--stale-after",
        type=float,
        default=30.0,
        metavar="MINUTES",
        help="an unfinished run whose heartbeat is older counts as dead and is "
        "redone; younger ones are left to the process training them",
    )
    g.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="submit and return (then `dfct grid-report OUT` when the jobs are done)",
    )


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The training, validation and test data (or --simulate)."""
    g = parser.add_argument_group("data")
    g.add_argument(
        "--train",
        metavar="DIR",
        help="training pair: a `dfct simulate` folder (input.tif, target.tif)",
    )
    g.add_argument(
        "--train-input", metavar="FILE", help="training input volume (with --train-target)"
    )
    g.add_argument("--train-target", metavar="FILE", help="training target volume")
    g.add_argument(
        "--val",
        metavar="DIR",
        help="a separate validation set (a `dfct simulate` folder) for every run: the "
        "whole --train folder trains, instead of all but a --val-fraction of it",
    )
    g.add_argument(
        "--test",
        metavar="DIR",
        help="held-out test set: a folder with input.tif, "
        "target.tif, optional truth.tif and meta.json (ROIs, line, slice); or a data set "
        "of volumes (a folder with pairs.csv, e.g. `dfct simulate TEST --specimens N "
        "--slices Z`): each volume is predicted from its own slices, --test-slices of "
        "each are measured",
    )
    g.add_argument("--test-input", metavar="FILE", help="test input volume (with --test-target)")
    g.add_argument("--test-target", metavar="FILE", help="test target volume")
    g.add_argument("--test-truth", metavar="FILE", help="test truth volume (PSNR/SSIM)")
    g.add_argument(
        "--simulate",
        action="store_true",
        help="simulate the training set (seed S) and a test specimen (seed S+1000) into OUT/data",
    )
    g.add_argument("--sim-size", type=int, default=256, help="simulated slice size")
    g.add_argument("--sim-slices", type=int, default=16, help="simulated training slices")
    g.add_argument("--sim-test-slices", type=int, default=3, help="simulated test slices")
    g.add_argument("--sim-seed", type=int, default=0, help="simulation seed S of the training set")
    g.add_argument(
        "--sim-views",
        type=int,
        default=None,
        help="projections per rotation (default: the simulator's)",
    )
    g.add_argument(
        "--sim-rotations",
        type=int,
        default=None,
        help="rotations averaged into the target (default: the simulator's)",
    )


def register(parser: argparse.ArgumentParser) -> None:
    from ._training import recipe_help

    parser.formatter_class = HelpFormatter
    parser.description = DESCRIPTION + "\nTraining recipes (--recipe):\n" + recipe_help() + "\n"
    parser.add_argument("out", metavar="OUT", help="grid folder (created, or continued)")

    _add_data_arguments(parser)

    g = parser.add_argument_group("test slice and ROIs (default: the test set's meta.json)")
    g.add_argument("--signal", metavar="R,C", help="signal (lung) ROI centre")
    g.add_argument("--background", metavar="R,C", help="background (air) ROI centre")
    g.add_argument(
        "--line",
        metavar="R0,C0,R1,C1",
        help="FWHM line (default: signal centre to background centre)",
    )
    g.add_argument("--roi-size", type=int, default=None, help="ROI side in pixels (default 30)")
    g.add_argument(
        "--test-slice",
        type=int,
        default=None,
        help="the representative test slice shown in the report's panels (default: "
        "meta.json's, else the central slice; of a data set of volumes: the K-th measured "
        "slice, default the middle volume's own slice)",
    )
    g.add_argument(
        "--test-slices",
        metavar="RANGE",
        default=None,
        help="with a data set of test volumes: the slices of every volume to measure, "
        "e.g. 2-3, 3,5 or all (default: the data set's slices column, all for a "
        "`dfct simulate --specimens N --slices Z` folder)",
    )

    g = parser.add_argument_group("configurations")
    g.add_argument("--losses", default="l1,l2", help="pixel losses")
    g.add_argument(
        "--schemes",
        default="none,S,F,S+F,F+S",
        help="amplification schemes: none, S, F, S+F, F+S and the directional D, S+D, "
        "D+S (always spectral mode)",
    )
    g.add_argument("--profiles", default="linear,nonlinear", help="weight profiles")
    g.add_argument(
        "--configs",
        default=None,
        metavar="NAMES",
        help="explicit configuration names instead of the product above, e.g. l2,l2+s+f-nonlinear",
    )
    g.add_argument("--seeds", default="0-9", help="seeds: 3, 0-9 or 0,2,5-7")
    g.add_argument(
        "--mode",
        choices=("paper", "spectral"),
        default=None,
        help="frequency weighting: the paper's formula or the spectral variant (default: "
        "each configuration's own: paper; spectral for D, S+D, D+S and -spectral names); "
        "paper with a directional configuration is refused, as in dfct train",
    )
    g.add_argument(
        "--normalize-weights", action="store_true", help="rescale the amplification maps to mean 1"
    )
    g.add_argument(
        "--controls",
        action="store_true",
        help="also train, for each amplified configuration, the plain loss "
        "multiplied by that configuration's loss scale measured on the training "
        "error, input - target (a scale-matched control, named e.g. l2@1.71); the "
        "report shows each next to the configuration it controls for",
    )

    add_training_arguments(parser)
    g = parser.add_argument_group("runs")
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue interrupted runs from their last saved epoch instead of "
        "redoing them (the partial folder is otherwise moved aside)",
    )
    g.add_argument(
        "--keep-state",
        action="store_true",
        help="keep each finished run's resume files (optimizer state)",
    )
    add_executor_arguments(parser)
    parser.add_argument(
        "--no-report",
        dest="report",
        action="store_false",
        help="do not write OUT/report at the end",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar and run lines")


def _value(text: str):
    """``"4"`` -> 4, ``"1.5"`` -> 1.5, anything else stays a string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _split(text: str) -> list[str]:
    return [p.strip() for p in str(text).split(",") if p.strip()]


def simulate_pair(
    out_dir: Path,
    size: int,
    slices: int,
    seed: int,
    test_slices: int = 3,
    views: int | None = None,
    rotations: int | None = None,
    log=print,
) -> tuple[Path, Path]:
    """Simulate a training set (``seed``) and a test specimen (``seed + 1000``) once.

    Existing folders made with the same parameters are reused; other parameters are an
    error (nothing is overwritten).
    """
    from ..simulate import save_simulation, simulate_dfct

    phys: dict[str, Any] = {}
    if views:
        phys["n_views"] = int(views)
    if rotations:
        phys["rotations"] = int(rotations)
    out = {}
    for role, n, s in (("train", slices, seed), ("test", test_slices, seed + 1000)):
        folder = out_dir / "data" / role
        wanted = {"n_slices": int(n), "size": int(size), "seed": int(s), **phys}
        stamp = folder / "simulation-request.json"
        if (folder / "meta.json").is_file() and (folder / "input.tif").is_file():
            import json

            old = json.loads(stamp.read_text()) if stamp.is_file() else None
            if old != wanted:
                raise CLIError(
                    f"{folder} holds a simulation with other parameters ({old}); "
                    "use another OUT or remove that folder"
                )
            log(f"reusing the simulated {role} set in {folder}")
        else:
            log(f"simulating the {role} set: {n} slices of {size}x{size}, seed {s}")
            sim = simulate_dfct(n_slices=int(n), size=int(size), seed=int(s), **phys)
            save_simulation(sim, folder)
            from ..experiment._util import atomic_write_json

            atomic_write_json(stamp, wanted)
        out[role] = folder
    return out["train"], out["test"]


def stopped_message(out: Path, exc: BaseException) -> str:
    """The one line of a grid stopped by a signal: what is kept and how to go on."""
    from ..experiment import grid_status

    try:
        done = len(grid_status(out)["done"])
    except (OSError, ValueError):
        done = 0
    return (
        f"{exc} (exit {getattr(exc, 'exit_status', 130)}): running runs were stopped, "
        f"{done} finished run(s) are kept in {out}; run the same command again to "
        "finish the grid"
    )


def _grid_data(args: argparse.Namespace, out: Path, log):
    """The training and test data the options name (simulated into OUT/data with
    --simulate)."""
    train: Path | tuple[Path, Path] | dict[str, Path]
    test: Path | dict[str, Any]
    if args.simulate:
        if args.train or args.train_input or args.test or args.test_input:
            raise CLIError("--simulate makes its own data: leave out --train/--test")
        train, test = simulate_pair(
            out,
            args.sim_size,
            args.sim_slices,
            args.sim_seed,
            args.sim_test_slices,
            args.sim_views,
            args.sim_rotations,
            log=log,
        )
    else:
        if args.val and not args.train:
            raise CLIError("--val goes with --train DIR (a folder with input.tif, target.tif)")
        if args.train and (args.train_input or args.train_target):
            raise CLIError("give either --train DIR or --train-input/--train-target")
        if args.train and args.val:
            train = {
                "input": Path(args.train) / "input.tif",
                "target": Path(args.train) / "target.tif",
                "val_input": Path(args.val) / "input.tif",
                "val_target": Path(args.val) / "target.tif",
            }
        elif args.train:
            train = Path(args.train)
        elif args.train_input and args.train_target:
            train = (Path(args.train_input), Path(args.train_target))
        else:
            raise CLIError(
                "no training data: give --train DIR, --train-input and "
                "--train-target, or --simulate"
            )
        if args.test and (args.test_input or args.test_target or args.test_truth):
            raise CLIError("give either --test DIR or --test-input/--test-target/--test-truth")
        if args.test:
            test = Path(args.test)
        elif args.test_input and args.test_target:
            test = {"input": args.test_input, "target": args.test_target, "truth": args.test_truth}
        else:
            raise CLIError(
                "no held-out test set: give --test DIR (e.g. `dfct simulate` with "
                "another seed), --test-input and --test-target, or --simulate"
            )
    return train, test


def _slurm_options(args: argparse.Namespace):
    """The Slurm resources of the options (``--slurm-param KEY=VALUE`` as extras)."""
    from ..experiment import SlurmOptions

    extra = {}
    for item in args.slurm_param:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CLIError(f"bad --slurm-param {item!r}: use KEY=VALUE")
        extra[key.strip().removeprefix("slurm_")] = _value(value.strip())
    slurm = SlurmOptions(
        partition=args.partition,
        gpus_per_job=args.gpus_per_job,
        cpus_per_job=args.cpus_per_job,
        time=args.time,
        mem=args.mem,
        array_parallelism=args.array_parallelism,
        folder=args.slurm_folder,
        setup=list(args.slurm_setup),
        extra=extra,
    )
    return slurm


def loss_configs(args: argparse.Namespace) -> tuple[list, list[int]]:
    """The grid's loss configurations (:func:`napari_dfct.experiment.make_configs`) and
    seeds from the options; a refused option raises :class:`CLIError` (one line)."""
    from ..experiment import make_configs
    from ..experiment._util import parse_seeds

    try:
        configs = make_configs(
            _split(args.losses),
            _split(args.schemes),
            _split(args.profiles),
            mode=args.mode,
            normalize=args.normalize_weights,
            names=_split(args.configs) if args.configs else None,
        )
        return configs, parse_seeds(args.seeds)
    except ValueError as exc:
        raise CLIError(str(exc).splitlines()[0]) from None


def run(args: argparse.Namespace) -> int:
    """Hold the grid folder (one grid per folder: a second one exits 2 naming the first),
    then make the data and run the grid."""
    import sys

    from ..experiment import EXECUTORS
    from ..experiment._procs import GridStopped, stop_on_signals
    from ..experiment.lock import grid_lock

    out = Path(args.out)
    # the options first: a refused one makes no folder, no data and starts no run
    if args.executor not in EXECUTORS:
        raise CLIError(f"unknown executor {args.executor!r}: use local or slurm")
    if args.jobs < 1:
        raise CLIError("--jobs must be at least 1")
    configs, seeds = loss_configs(args)
    config = train_config_from_args(args)
    if not args.simulate:  # independent specimens have no neighbouring slices
        from ..context import check_one_scan_folder
        from ..experiment.volume_test import check_test_folder

        try:
            for folder in (args.train, args.val):
                check_one_scan_folder(folder, config.context, config.dims)
            check_test_folder(args.test, config.context, config.dims)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    try:
        with stop_on_signals(), grid_lock(out):
            return _run(args, configs, seeds, config)
    except ValueError as exc:  # the folder is held, a file, or cannot be written
        raise CLIError(str(exc)) from None
    except GridStopped as exc:  # before the grid started
        print(f"dfct grid: {stopped_message(out, exc)}", file=sys.stderr)
        return exc.exit_status


def _run(args: argparse.Namespace, configs: list, seeds: list, config) -> int:
    import sys

    from ..experiment import GridRunError, run_grid
    from ..experiment._procs import GridStopped, stop_on_signals

    out = Path(args.out)

    def log(msg):
        if not args.quiet:
            print(msg, file=sys.stderr)

    train, test = _grid_data(args, out, log)
    roi = {
        "signal_center": args.signal,
        "background_center": args.background,
        "line": args.line,
        "roi_size": args.roi_size,
        "slice": args.test_slice,
    }
    slurm = _slurm_options(args)
    log(
        f"grid: {len(configs)} configurations x {len(seeds)} seeds = "
        f"{len(configs) * len(seeds)} runs -> {out}"
    )
    try:
        with stop_on_signals():
            run_grid(
                train,
                test,
                out,
                configs,
                seeds,
                config,
                executor=args.executor,
                jobs=args.jobs,
                roi=roi,
                device=getattr(args, "device", None),
                slurm=slurm,
                wait=args.wait,
                report=args.report,
                progress=not args.quiet,
                keep_state=args.keep_state,
                resume=args.resume,
                stale_after=60.0 * args.stale_after,
                controls=args.controls,
                test_slices=args.test_slices,
            )
    except (ValueError, GridRunError) as exc:
        raise CLIError(str(exc)) from None
    except GridStopped as exc:
        print(f"dfct grid: {stopped_message(out, exc)}", file=sys.stderr)
        return exc.exit_status
    if args.report and args.wait:
        from .grid_report import print_tables

        print_tables(out)
        log(f"report: {out / 'report' / 'report.md'}")
    return 0
