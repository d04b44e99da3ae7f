"""``dfct train``: train a streak-reduction U-Net on an input/target pair."""

from __future__ import annotations

import argparse
import math
import sys
import threading
from pathlib import Path

from ._errors import CLIError

NAME = "train"
HELP = "train a residual U-Net with an amplified loss on input/target volumes"
DESCRIPTION = """\
Train a residual U-Net on single-rotation inputs and multi-rotation targets (float volumes
of the same shape, at least 2 slices; 20 % of the slices are held out for validation). The
best model is saved to --out (model.safetensors, config.json, history.json) whenever the
plain (un-amplified) validation loss improves; Ctrl-C stops after the current batch and
keeps it. --resume continues a stopped run in the same folder. On a machine without a
GPU where ONNX Runtime is installed (napari-dfct[onnx]), the saved model is then exported
for it once (a few seconds, into ~/.cache/napari-dfct/onnx), so that `dfct predict` runs
it with ONNX Runtime from its first slice.

Recipes (--recipe; every option below can still be set on its own):
{recipes}

The loss: --loss l1|l2 with --spatial / --frequency / --directional amplification
profiles, or a full loss name such as --loss l2+s+f-nonlinear or l2+s+d-nonlinear;
--loss-scale X multiplies it by X (a scale-matched control of an amplified loss). The
directional weight (D) is spectral only: without --mode it trains in spectral mode, and
--mode paper with D is refused (exit 2).

--context K trains a 2.5-D model: its input is the 2K+1 neighbouring slices z-K..z+K of
one scan, its output slice z (docs/context.md). A --data or --input volume is one scan;
with --pairs each scan's neighbours come from its own volume (any slices value), and
every scan needs at least 2K+1 slices. Neighbours beyond a scan's first or last slice are
reflected; a set of independent specimens, one slice each, is refused.

--dims 3 trains a 3-D U-Net on patches of --patch-depth consecutive slices of one scan
(never two), with the loss applied slice by slice; every training scan (or, for one
volume, its first slices: the last validate) needs at least --patch-depth slices.

Examples:
  dfct simulate data/sim
  dfct train --data data/sim --out models/l2-s --spatial nonlinear --preset small
  dfct train --input in.tif --target gt.tif --out models/l2sf --loss l2+s+f-nonlinear
  dfct train --data data/sim --out models/l2-d --directional nonlinear --preset small
  dfct train --data data/sim --out models/l2-paper --recipe paper --preset small
  dfct train --data data/sim --out models/l2-s --resume --epochs 150
  dfct train --pairs study/pairs.csv --out models/l2-study --preset small
  dfct train --pairs data/volumes --out models/l2-ctx1 --preset small --context 1
  dfct train --pairs data/volumes --out models/l2-3d --preset small --dims 3
"""
ORDER = 20


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``dfct train`` arguments."""
    from ._help import HelpFormatter
    from ._training import add_training_arguments, recipe_help

    parser.formatter_class = HelpFormatter
    parser.description = DESCRIPTION.format(recipes=recipe_help())
    d = parser.add_argument_group("data")
    d.add_argument("--input", help="single-rotation input volume (TIFF, .npy, .npz, DICOM)")
    d.add_argument("--target", help="multi-rotation target volume, same shape as --input")
    d.add_argument(
        "--data",
        metavar="DIR",
        help="a `dfct simulate` folder (input.tif and target.tif) instead of --input/--target",
    )
    d.add_argument(
        "--pairs",
        metavar="CSV|DIR",
        help="a data set of many scans instead: a CSV with columns input,target "
        "[,slices] (paths relative to it; slices: center (default), all, "
        "120-130 or 3,5,7) or a folder DATASET/<scan>/input.* + target.*; "
        "scans may differ in size; validation holds out whole scans "
        "(docs/datasets.md)",
    )
    d.add_argument(
        "--val-data",
        metavar="DIR",
        help="a separate validation set (a `dfct simulate` folder, slices of the training "
        "size): every training slice trains and these validate, instead of a "
        "--val-fraction of the training slices",
    )
    parser.add_argument("--out", required=True, metavar="MODEL_DIR", help="model folder")
    lo = parser.add_argument_group("loss")
    lo.add_argument(
        "--loss",
        help="l1 or l2, or a full loss name such as l2+s+f-nonlinear "
        f"(default: {_loss_default('loss')})",
    )
    lo.add_argument(
        "--spatial",
        help=f"A_S profile: none, linear, nonlinear (default: {_loss_default('spatial')})",
    )
    lo.add_argument(
        "--frequency",
        help=f"A_F profile: none, linear, nonlinear, sqrt (default: {_loss_default('frequency')})",
    )
    lo.add_argument(
        "--directional",
        help="A_D profile (directional, streak-oriented frequency weight, "
        "spectral mode only): none, linear, nonlinear, sqrt "
        f"(default: {_loss_default('directional')})",
    )
    lo.add_argument(
        "--order",
        help=f"sf (S then F or D) or fs (F or D then S) (default: {_loss_default('order')})",
    )
    lo.add_argument(
        "--mode",
        default=None,
        help="paper or spectral (default: the loss's own: paper; spectral with "
        "--directional or a directional or -spectral loss name); paper with a "
        "directional weight is refused",
    )
    lo.add_argument(
        "--normalize-weights",
        action="store_true",
        default=None,
        help="rescale the weight maps to mean 1",
    )
    lo.add_argument(
        "--loss-scale",
        type=float,
        metavar="X",
        help="multiply the loss by X (the scale-matched control of an amplified "
        f"loss: the plain loss with its effective scale; default: {_loss_default('scale')})",
    )
    add_training_arguments(parser, seed=True)
    t = parser.add_argument_group("run")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the stopped run in --out on the same data: options left out "
        "take the run's saved values, options given must equal them (only --epochs, "
        "--patience, --device and --tensorboard may change)",
    )
    t.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bar (shown by default)",
    )


def _read(path: str, what: str):
    from ..io import read_volume

    p = Path(path)
    if not p.exists():
        raise CLIError(f"{what} not found: {p}")
    try:
        data, _ = read_volume(p)
    except ValueError as exc:
        raise CLIError(f"cannot read {what} {p}: {exc}") from None
    except OSError as exc:
        raise CLIError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    return data


def _read_validation_set(folder: str | None, pairs: bool) -> tuple:
    """(input, target) of ``--val-data`` (a `dfct simulate` folder), or (None, None)."""

    if not folder:
        return None, None
    if pairs:
        raise CLIError("--val-data goes with --input/--target or --data; --pairs holds out scans")
    path = Path(folder)
    if not path.is_dir():
        raise CLIError(f"--val-data folder not found: {path}")
    return _read(str(path / "input.tif"), "validation input"), _read(
        str(path / "target.tif"), "validation target"
    )


def _read_scans(path: Path, patch: int, context: int = 0):
    """The chosen slices of a data set of scans, with their neighbours for a context
    model (one summary line on stderr)."""
    from ..io.dataset import describe_scans, load_scans

    try:
        data = load_scans(path, patch=patch, context=context)
    except ValueError as exc:
        raise CLIError(str(exc).splitlines()[0]) from None
    print(f"dfct train: {path}: {describe_scans(data)}", file=sys.stderr)
    return data


def _inputs(args):
    if getattr(args, "pairs", None):
        if args.data or args.input or args.target:
            raise CLIError("give either --pairs or --data or --input/--target, not several")
        return Path(args.pairs), None
    if args.data:
        from ..simulate import check_dataset

        folder = Path(args.data)
        try:
            check_dataset(folder)  # its files were written together (and recovered)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
        if not folder.is_dir():
            raise CLIError(f"--data folder not found: {folder}")
        if args.input or args.target:
            raise CLIError("give either --data or --input/--target, not both")
        return folder / "input.tif", folder / "target.tif"
    if not args.input or not args.target:
        raise CLIError("give --input and --target (or --data DIR with input.tif/target.tif)")
    return Path(args.input), Path(args.target)


def _loss_default(name: str):
    """The default of a :class:`~napari_dfct.losses.LossConfig` field (for the help)."""
    import dataclasses

    from ..loss_config import LossConfig

    return next(f.default for f in dataclasses.fields(LossConfig) if f.name == name)


#: The loss options (argparse ``dest``) and the LossConfig field each one sets.
_LOSS_OPTIONS = {
    "loss": "loss",
    "spatial": "spatial",
    "frequency": "frequency",
    "directional": "directional",
    "order": "order",
    "mode": "mode",
    "normalize_weights": "normalize",
    "loss_scale": "scale",
}


def _loss_config(args, base=None):
    """The loss of the options given; the others take ``base``'s values (a resumed run's
    saved loss) or the defaults."""
    import dataclasses

    from ..loss_config import LossConfig, build_loss_config

    given = {
        field: getattr(args, dest)
        for dest, field in _LOSS_OPTIONS.items()
        if getattr(args, dest, None) is not None
    }
    try:
        name = str(given.get("loss", "l2")).strip().lower()
        if base is not None and name in ("l1", "l2"):  # resuming: given over the saved loss
            if "loss" in given:
                given["loss"] = name
            return LossConfig(**{**dataclasses.asdict(base), **given})
        return build_loss_config(**given)
    except ValueError as exc:
        raise CLIError(str(exc).splitlines()[0]) from None


def _resume_config(args, out: Path):
    """The saved TrainConfig of a stopped run with the options given applied: refused
    (one line naming them) when they change more than :data:`RESUME_MAY_CHANGE`."""
    import dataclasses

    from ..checkpoint import CheckpointError
    from ..train import check_resume, resume_config, resume_finished
    from ._training import given_options, option_name

    try:
        saved = resume_config(out)
    except (CheckpointError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    given = given_options(args)
    try:
        loss = _loss_config(args, base=saved.loss)
    except CLIError:  # the options given name a loss of their own: compared below
        loss = _loss_config(args)
    try:
        config = dataclasses.replace(saved, loss=loss, **given)
        check_resume(saved, config, out, label=option_name)
    except (TypeError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    finished = resume_finished(out, config, label=option_name)
    if finished:
        raise CLIError(finished)
    return config


def _check_out(out: Path, resume: bool) -> None:
    """Before any work: a new run needs a new, empty or never-finished folder, a resumed
    one a writable folder (the one rule: :mod:`napari_dfct.checkpoint`)."""
    from ..checkpoint import CheckpointError, check_new_run_dir, check_writable

    try:
        if resume:
            check_writable(out)
        else:
            check_new_run_dir(out)
    except CheckpointError as exc:
        raise CLIError(str(exc)) from None


def _fmt(v: float) -> str:
    return "nan" if not math.isfinite(v) else f"{v:.4g}"


def _duration(seconds: float) -> str:
    """A duration in words: ``"0.4 s"``, ``"40 s"``, ``"12 min"``, ``"3.5 h"``,
    ``"2.1 days"``."""
    if seconds < 10:
        return f"{seconds:.2g} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def estimate_text(est) -> str:
    """The line ``dfct train`` prints on a CPU once the first steps are timed."""
    steps = f"{est.steps} step{'s' if est.steps != 1 else ''}"
    text = (
        f"on the CPU one epoch takes about {_duration(est.seconds)} ({steps} of "
        f"{_duration(est.seconds_per_step)} and validation, timed on the first steps)"
    )
    if est.epochs > 1:
        text += f", up to {_duration(est.seconds * est.epochs)} for {est.epochs} epochs"
    if est.preset == "paper":
        text += (
            "; the paper preset (31 M parameters) is meant for a GPU: --preset small "
            "trains much faster"
        )
    return text


def _on_estimate(est) -> None:
    """Print the CPU time estimate (through tqdm, so the progress bar stays intact)."""
    from tqdm import tqdm

    if est.device == "cpu":
        tqdm.write(f"dfct train: {estimate_text(est)}", file=sys.stderr)


def _interrupted_text(out: Path) -> str:
    """What Ctrl-C leaves: the folder's real state, never a folder that does not exist."""
    from ..checkpoint import has_training_state, is_model_dir

    if is_model_dir(out):
        text = f"interrupted; the best model so far is in {out}"
        if has_training_state(out):
            text += " (continue with --resume)"
        return text
    if has_training_state(out):
        return f"interrupted before any model was saved; continue the run in {out} with --resume"
    return "interrupted before the first epoch finished; nothing was saved"


def run(args: argparse.Namespace) -> int:
    """Train; print one summary line; exit status 0 (2 on bad input, 130 on Ctrl-C)."""
    from tqdm import tqdm

    from ..checkpoint import CheckpointError
    from ..data import validate_pair
    from ..train import OutOfMemory, fit

    in_path, tg_path = _inputs(args)
    out = Path(args.out).expanduser()
    if args.resume:
        config = _resume_config(args, out)
        loss = config.loss
    else:
        loss = _loss_config(args)
        config = None
    _check_out(out, bool(args.resume))
    if config is None:
        from ._training import train_config_from_args

        config = train_config_from_args(args, loss=loss)
    else:
        try:
            config.validate()
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    from ..context import check_one_scan_folder

    for folder in (args.data, args.val_data):
        try:  # the slices of a --specimens N folder are not neighbours
            check_one_scan_folder(folder, config.context, config.dims)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    if tg_path is None:  # --pairs: slices of many scans
        x, y = _read_scans(in_path, config.patch, config.context), None
    else:
        x = _read(str(in_path), "input")
        y = _read(str(tg_path), "target")
        if x.ndim == 2:
            raise CLIError(
                f"input {in_path} is a single 2-D slice; training needs at least 2 slices"
            )
        try:
            validate_pair(x, y, patch=config.patch)
        except ValueError as exc:
            raise CLIError(str(exc)) from None

    val = _read_validation_set(args.val_data, tg_path is None)

    oracle = None
    if config.loss.oracle and tg_path is not None:
        from ..simulate import folder_angular

        try:
            oracle = folder_angular(in_path)
        except ValueError as exc:
            raise CLIError(str(exc)) from None

    cancel = threading.Event()
    gen = fit(
        x,
        y,
        config,
        out,
        cancel=cancel,
        resume=bool(args.resume),
        preview=False,
        on_estimate=_on_estimate,
        oracle=oracle,
        val_input=val[0],
        val_target=val[1],
    )
    bar = tqdm(
        total=config.epochs,
        desc=f"train {loss.name}",
        unit="epoch",
        file=sys.stderr,
        disable=not args.progress,
        dynamic_ncols=True,
    )
    result = None
    try:
        while True:
            try:
                ev = next(gen)
            except StopIteration as stop:
                result = stop.value
                break
            if bar.n == 0 and ev.epoch > 1:
                bar.update(ev.epoch - 1)
            bar.update(1)
            bar.set_postfix(
                train=_fmt(ev.train_loss),
                val=_fmt(ev.val_loss),
                lr=f"{ev.lr:.2e}",
                best=f"{_fmt(ev.best_val_loss)}@{ev.best_epoch}",
            )
    except KeyboardInterrupt:
        cancel.set()
        gen.close()
        bar.close()
        print(f"dfct train: {_interrupted_text(out)}", file=sys.stderr)
        return 130
    except (OutOfMemory, FloatingPointError) as exc:
        bar.close()
        raise CLIError(str(exc)) from None
    except CheckpointError as exc:
        bar.close()
        raise CLIError(str(exc)) from None
    except ValueError as exc:
        bar.close()
        raise CLIError(str(exc).splitlines()[0]) from None
    except OSError as exc:  # a full disk, a folder gone read-only: the last save stays
        bar.close()
        raise CLIError(f"cannot save the model in {out}: {exc.strerror or exc}") from None
    bar.close()
    return _summary(result)


def _summary(result) -> int:
    """Print the one summary line of a finished training, export the saved model for ONNX
    Runtime where it runs (:func:`_warm_onnx`); exit status 0."""
    where = result.model_dir if result.model_dir is not None else "(nothing saved)"
    print(
        f"{result.stopped}: {result.epochs_run} epochs, best validation loss "
        f"{_fmt(result.best_val_loss)} at epoch {result.best_epoch}; model in {where}"
    )
    if result.model_dir is not None:
        _warm_onnx(result.model_dir)
    return 0


def _warm_onnx(model_dir: Path) -> None:
    """Put the saved model's ONNX export in the disk cache when this machine would predict
    it with ONNX Runtime (installed, no GPU, a 2-D model), so that the first `dfct
    predict` of even one slice runs on it; one line on stderr. Never fails the command."""
    import time

    from .. import _onnx
    from ..checkpoint import CheckpointError, load_model
    from ..device import resolve_device

    if _onnx.missing() is not None or resolve_device("auto").type != "cpu":
        return
    try:
        net = load_model(model_dir, device="cpu").model
    except CheckpointError:
        return
    if int(getattr(net, "dims", 2)) != 2 or _onnx.ready(net):
        return
    t0 = time.perf_counter()
    if _onnx.warm(net):
        print(
            f"dfct train: exported the model for ONNX Runtime ({time.perf_counter() - t0:.1f} "
            "s, kept in the cache folder): `dfct predict` on this CPU runs it",
            file=sys.stderr,
        )
