"""``dfct predict``: run a trained model on a volume (or chosen slices)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from .._onnx import BACKENDS, ONNX_MIN_SLICES
from ._errors import CLIError

NAME = "predict"
HELP = "reduce streaks in a volume (or chosen slices) with a trained model"
DESCRIPTION = """\
Run a model folder written by `dfct train` on full slices of a volume and write the
prediction (float32, in the input's units) as TIFF or .npy (by the --out extension).
--slices picks slices (0-based; e.g. 3,5-7); the output then holds just those, in that
order. --tile N processes N x N tiles with blending (also used automatically when a slice
does not fit in GPU memory). An existing --out is replaced only with --overwrite, and never
when it is the input file itself; the file is written atomically (a reader sees the old
file or the complete new one). With the model's ONNX export in the disk cache (`dfct
train` leaves it there on a machine without a GPU) and the CPU as the device, the command
runs on ONNX Runtime without loading torch, with the same output as with torch.

Examples:
  dfct predict --model models/l2-s --input data/sim/input.tif --out pred.tif
  dfct predict --model models/l2-s --input scan.tif --out pred.tif --slices 40-44 --tile 512
"""
ORDER = 30


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``dfct predict`` arguments."""
    parser.add_argument(
        "--model", required=True, metavar="MODEL_DIR", help="model folder from `dfct train`"
    )
    parser.add_argument("--input", required=True, help="volume or slice to process")
    parser.add_argument("--out", required=True, help="output file (.tif, .tiff or .npy)")
    parser.add_argument("--slices", help="slices to process, 0-based, e.g. 3,5-7 (default: all)")
    parser.add_argument("--batch-size", type=int, default=4, help="slices per forward pass")
    parser.add_argument("--tile", type=int, help="tile side in pixels (default: whole slices)")
    parser.add_argument("--overlap", type=int, default=32, help="tile overlap in pixels")
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps"
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="auto (ONNX Runtime on the CPU where it is installed and the model's export is "
        f"cached, or for {ONNX_MIN_SLICES} slices or more; else torch), eager (torch), onnx "
        "(ONNX Runtime on the CPU, from the extra napari-dfct[onnx]; without it: eager, with "
        "a message). Exports are cached in ~/.cache/napari-dfct/onnx (NAPARI_DFCT_CACHE_DIR "
        "moves it; deleting it is safe)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing --out file (never the --input file)",
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar"
    )


_RANGE = re.compile(r"^\s*(-?\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_slices(text: str, n: int) -> list[int]:
    """Parse ``"3,5-7"`` into ``[3, 5, 6, 7]``; ValueError on bad syntax or range.

    Parameters
    ----------
    text : str
        Comma-separated indices and inclusive ranges ``a-b`` (0-based).
    n : int
        Number of slices in the volume.
    """
    out: list[int] = []
    if not str(text).strip():
        raise ValueError("--slices is empty")
    for part in str(text).split(","):
        m = _RANGE.match(part)
        if not m:
            raise ValueError(f"bad --slices syntax {text!r}: use e.g. 3,5-7")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if a < 0 or b < a:
            raise ValueError(f"bad --slices range {part.strip()!r} in {text!r}")
        if b >= n:
            raise ValueError(
                f"--slices {part.strip()} is out of range: the volume has {n} slices (0-{n - 1})"
            )
        out.extend(range(a, b + 1))
    return out


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (the same path, a link, a hard link)."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:  # one of them does not exist (yet)
        pass
    return a.resolve() == b.resolve()


def check_output(in_path: Path, out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that is the input file, a folder, or (without ``overwrite``) an
    existing file: :class:`napari_dfct.cli.CLIError` with one line."""
    if _same_file(in_path, out):
        raise CLIError(f"--out {out} is the input file: write the prediction to another file")
    if out.is_dir():
        raise CLIError(f"--out {out} is a folder: give a file ending in .tif, .tiff or .npy")
    if os.path.lexists(out) and not overwrite:
        raise CLIError(f"{out} already exists: use --overwrite to replace it")


def _check_options(args: argparse.Namespace) -> tuple[Path, Path]:
    """The input and output paths, after the checks that need neither torch nor files."""
    in_path = Path(args.input)
    if not in_path.exists():
        raise CLIError(f"input not found: {in_path}")
    out = Path(args.out)
    if out.suffix.lower() not in (".tif", ".tiff", ".npy"):
        raise CLIError(f"--out must end in .tif, .tiff or .npy, got {out.name}")
    check_output(in_path, out, args.overwrite)
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.tile is not None and args.tile < 16:
        raise CLIError(f"--tile must be at least 16 pixels, got {args.tile}")
    return in_path, out


def _load_torch(args: argparse.Namespace, in_path: Path):
    """The model loaded with torch and the device: (LoadedModel, torch.device)."""
    from ..checkpoint import CheckpointError, load_model
    from ..train import resolve_device

    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    try:
        model = load_model(args.model, device="cpu")
    except CheckpointError as exc:
        raise CLIError(str(exc)) from None
    try:  # a context model on a --specimens N set would read other specimens' slices
        from ..context import check_one_scan_folder

        net = model.model
        check_one_scan_folder(in_path.parent, getattr(net, "context", 0), getattr(net, "dims", 2))
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    return model, device


def _predict_into(result, model, device, volume, index, args: argparse.Namespace) -> None:
    """Fill ``result`` with the predictions of slices ``index``: with the torch-free
    :class:`napari_dfct._fast_predict.FastModel` when ``device`` is None, else with
    :func:`napari_dfct.infer.predict_iter`; a progress bar on stderr."""
    from tqdm import tqdm

    if device is None:
        stream = model.predict_iter(
            volume, index, batch_size=args.batch_size, tile=args.tile, overlap=args.overlap
        )
    else:
        from ..infer import predict_iter

        stream = predict_iter(
            model,
            volume,
            index,
            batch_size=args.batch_size,
            tile=args.tile,
            overlap=args.overlap,
            device=device,
            backend=args.backend,
        )
    bar = tqdm(
        total=len(index),
        desc=f"predict {model.name}",
        unit="slice",
        file=sys.stderr,
        disable=not args.progress,
        dynamic_ncols=True,
    )
    try:
        for k, (_, y) in enumerate(stream):
            result[k] = y
            bar.update(1)
    except (ValueError, MemoryError) as exc:
        raise CLIError(str(exc).splitlines()[0]) from None
    finally:
        bar.close()


def run(args: argparse.Namespace) -> int:
    """Predict; write the output file; exit status 0 (2 on bad input). Without torch where
    the model's ONNX export is cached and the device is the CPU
    (:mod:`napari_dfct._fast_predict`), else with it."""
    import numpy as np

    from .. import _fast_predict
    from ..io import read_volume, write_volume

    in_path, out = _check_options(args)
    model: Any = _fast_predict.load(args.model, args.device, args.backend)
    device = None
    if model is None:
        model, device = _load_torch(args, in_path)
    try:
        data, info = read_volume(in_path)
    except ValueError as exc:
        raise CLIError(f"cannot read input {in_path}: {exc}") from None
    if data.ndim not in (2, 3):
        raise CLIError(f"input must be a 2-D slice or a 3-D volume, got shape {data.shape}")
    volume = data if data.ndim == 3 else data[None]
    n = volume.shape[0]
    if args.slices is not None:
        try:
            index = parse_slices(args.slices, n)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
    else:
        index = list(range(n))
    bad = [z for z in index if not np.isfinite(volume[z]).all()]
    if bad:
        raise CLIError(f"input slice(s) {bad[:5]} contain NaN or infinite values")
    result = np.empty((len(index), *volume.shape[1:]), dtype=np.float32)
    try:
        _predict_into(result, model, device, volume, index, args)
    except _fast_predict.Unavailable:  # before anything is written: torch predicts it all
        model, device = _load_torch(args, in_path)
        _predict_into(result, model, device, volume, index, args)
    if data.ndim == 2:
        result = result[0]
    scale = info.get("scale") if isinstance(info, dict) else None
    if scale is not None and len(scale) != result.ndim:
        scale = tuple(scale)[-result.ndim :]
    check_output(in_path, out, args.overwrite)  # again: it may have appeared meanwhile
    try:
        path = write_volume(out, result, scale=scale)
    except (ValueError, OSError) as exc:
        raise CLIError(f"cannot write {out}: {exc}") from None
    print(f"wrote {path} ({'x'.join(map(str, result.shape))}, float32) with {model.name}")
    return 0
