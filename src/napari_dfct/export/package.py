"""Writing a bioimage.io model package (spec 0.5) from a napari-dfct model folder.

:func:`export_bioimageio` turns a model folder (safetensors weights + ``config.json``)
into one ``.zip`` that bioimage.io tools (``bioimageio.core``, deepImageJ-style
consumers, the model zoo) load without napari-dfct:

``weights.pt``
    the network's state dict, ``torch.save(model.state_dict())`` (tensors only, so
    ``torch.load(..., weights_only=True)`` reads it), as ``pytorch_state_dict`` weights;
``dfct_unet.py``
    the architecture: the source of :mod:`napari_dfct.model` itself (it imports only
    PyTorch), with the model's keyword arguments;
``test_input.npy``, ``test_output.npy``
    a central crop of a slice in the input's units and the model's output on it
    (``(1, 1, H, W)`` float32): of a slice the caller passes (the training data), or of a
    simulated slice when none is given; a slice smaller than the package's smallest
    input is padded by reflection to it (:func:`tile_plan`, which the README names).
    A 2.5-D context model (context ``K``) takes the slice and its ``2K`` neighbours as
    ``2K + 1`` input channels (``(1, 2K + 1, H, W)``, channels named ``z_minus_1, z,
    z_plus_1`` for ``K = 1``: :func:`input_channel_names`), cut from a volume by
    :mod:`napari_dfct.context`'s rule (reflected at its ends); its output is one slice.
    A 3-D model (``dims = 3``, patch depth ``d``) takes ``(1, 1, Z, H, W)``: the test input
    is one z-chunk of ``d`` slices, ``d - 2 (d // 4)`` consecutive slices of a volume with
    ``d // 4`` reflected slices at each end (:mod:`napari_dfct.export.volume`), and the
    z axes are at least ``d`` slices, the output's with a halo of ``d // 4``;
pre- and post-processing
    the intensity window as the spec's standard operations: ``clip`` and
    ``scale_linear`` to [0, 1] before the network (every input channel alike),
    ``scale_linear`` back to the input's units after it;
``README.md``, ``cover.png``
    the documentation (loss configuration, training recipe and parameters, window, use
    without napari-dfct) and a 2:1 cover (test input | output);
``config.napari_dfct``
    the model's saved configuration (loss, window, training parameters, data).

``bioimageio.spec`` (the optional extra ``[bioimageio]``) builds and writes the
description; everything else is this package. The package is built in a hidden folder
beside the ``.zip`` (``.dfct-export-<host>-<pid>-*``, :data:`WORK_PREFIX`) and moved into
place in one rename; such folders left by killed exports are removed by the next export
into the same folder (:func:`clean_stale_exports`). Building a package needs no network:
the description is built with ``perform_io_checks=False`` (files are local and hashed
when the zip is written).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import CheckpointError, load_model
from ._errors import ExportError
from ._readme import (
    PAPER,
    SOURCE_URL,
    config_block,
    description_text,
    input_channel_names,
    readme_text,
    tensor_words,
)
from .volume import network_depth, simulated_block, volume_block, z_extend, z_plan

__all__ = [
    "ARCHITECTURE_FILE",
    "ExportError",
    "bioimageio_missing",
    "check_export_target",
    "check_license",
    "clean_stale_exports",
    "export_bioimageio",
    "input_channel_names",
    "model_context",
    "model_input_sizes",
    "read_sample",
    "sample_input",
    "tile_plan",
]

#: The standalone architecture file shipped in every package.
ARCHITECTURE_FILE = "dfct_unet.py"
WEIGHTS_FILE = "weights.pt"
#: The network's keyword arguments the package's architecture entry names.
ARCH_KWARGS = (
    "base_channels",
    "depth",
    "in_channels",
    "out_channels",
    "bilinear",
    "context",
    "dims",
)
#: Largest side of the test tensors (a central crop).
MAX_TEST_SIZE = 256
#: Side of the simulated slice used when no data are given.
SIMULATED_SIZE = 128
#: Name prefix of the hidden work folder of an export, beside the ``.zip``.
WORK_PREFIX = ".dfct-export-"


def bioimageio_missing() -> str | None:
    """None when ``bioimageio.spec`` can be imported, else the one-line reason."""
    try:
        import bioimageio.spec  # noqa: F401
    except ImportError:
        return (
            "bioimage.io export needs the package bioimageio.spec: "
            "pip install 'napari-dfct[bioimageio]'"
        )
    return None


def _license_ids() -> tuple[str, ...]:
    """The SPDX identifiers bioimage.io accepts (current and deprecated ones); empty when
    ``bioimageio.spec`` does not say."""
    from typing import get_args

    try:
        from bioimageio.spec.model.v0_5 import DeprecatedLicenseId, LicenseId

        return tuple(
            v
            for kind in (LicenseId, DeprecatedLicenseId)
            for v in get_args(kind.root_model.model_fields["root"].annotation)
        )
    except (ImportError, AttributeError, KeyError):  # pragma: no cover - another version
        return ()


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def check_license(license: str) -> str:
    """``license`` when it is an SPDX identifier that bioimage.io accepts; else an
    :class:`ExportError` naming at most three close matches (checked before any work)."""
    import difflib

    ids = _license_ids()
    if not ids or license in ids:
        return license
    by_lower = {v.lower(): v for v in ids}
    if str(license).lower() in by_lower:
        hint = f"did you mean {by_lower[str(license).lower()]}?"
    else:
        close = difflib.get_close_matches(str(license).lower(), list(by_lower), n=3, cutoff=0.6)
        hint = (
            f"did you mean {_either([by_lower[c] for c in close])}?"
            if close
            else "use one such as CC-BY-4.0, MIT or BSD-3-Clause"
        )
    raise ExportError(
        f"unknown licence {str(license)[:60]!r}: not an SPDX identifier "
        f"(https://spdx.org/licenses/); {hint}"
    )


def check_export_target(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """The package path, checked before any work: a ``.zip`` file name in a folder that
    exists, never an existing file unless ``overwrite``, never a folder."""
    out = Path(out).expanduser()
    if out.suffix.lower() != ".zip":
        raise ExportError(f"the package must be a .zip file, got {out}")
    if out.is_dir():
        raise ExportError(f"{out} is a folder; give a .zip file name")
    if out.exists() and not overwrite:
        raise ExportError(f"{out} exists; use --overwrite to replace it")
    if not out.parent.is_dir():
        raise ExportError(f"folder not found: {out.parent}")
    if not os.access(out.parent, os.W_OK):
        raise ExportError(f"cannot write to {out.parent}")
    return out


def clean_stale_exports(folder: str | os.PathLike) -> list[Path]:
    """Remove the work folders that killed exports left in ``folder``; return them.

    A work folder is named ``.dfct-export-<host>-<pid>-<random>``: one of this host whose
    process is gone, or of another host untouched for a day, is removed
    (:func:`napari_dfct._procs.left_by_dead_process`); a folder of an earlier version
    (``.dfct-export-<random>``, no owner) once it is a day old. Nothing else is touched.
    """
    import time

    from .._procs import FOREIGN_STALE_AFTER, left_by_dead_process

    removed: list[Path] = []
    try:
        candidates = [p for p in Path(folder).glob(f"{WORK_PREFIX}*") if p.is_dir()]
    except OSError:
        return removed
    for path in candidates:
        tag, _, _random = path.name[len(WORK_PREFIX) :].rpartition("-")
        if tag:
            stale = left_by_dead_process(tag, path)
        else:  # no owner in the name
            try:
                stale = time.time() - path.stat().st_mtime > FOREIGN_STALE_AFTER
            except OSError:
                stale = False
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            if not path.exists():
                removed.append(path)
    return removed


def _simulated_slice(size: int, context: int = 0) -> np.ndarray:
    """A simulated single-rotation slice ``(Y, X)``; with ``context`` K, ``2K + 1``
    neighbouring slices of one acquisition ``(2K + 1, Y, X)``."""
    from ..simulate import simulate_dfct

    k = int(context)
    sim = simulate_dfct(n_slices=2 * k + 1, size=size, rotations=1, seed=0)
    a = np.asarray(sim.input, dtype=np.float32)
    return a if k else a[0]


def input_sizes(model: torch.nn.Module) -> tuple[int, int, int]:
    """``(multiple, halo, smallest)`` of the package's input axes: sizes are multiples of
    the pooling grid ``2**depth``; the output's halo is the network's receptive radius
    (:func:`napari_dfct.infer.receptive_radius`: a tiling tool crops it from every tile);
    the smallest input is the first multiple that leaves a pixel inside the halo."""
    from ..infer import receptive_radius
    from ..model import model_config

    multiple = 2 ** int(model_config(model)["depth"])
    halo = receptive_radius(model)
    return multiple, halo, -(-(2 * halo + 1) // multiple) * multiple


def tile_plan(
    shape: tuple[int, ...], multiple: int, smallest: int = 1, max_size: int = MAX_TEST_SIZE
) -> tuple[int, str | None]:
    """The side of the square test tile cut from a slice of ``shape`` (rows, cols), and
    None when it is a central crop, else the words saying how the slice is padded.

    The tile is a multiple of ``multiple`` and at least ``smallest`` (the package's
    smallest input: twice the network's halo and more); a crop takes at most
    ``max_size``. A slice smaller than that in either axis is padded by reflection (the
    network's own padding) to the smallest input; the words name both sizes.
    """
    h, w = (int(n) for n in shape[-2:])
    need = max(int(multiple), int(smallest))
    side = min(max(max_size, smallest), h, w) // multiple * multiple
    if side >= need:
        return side, None
    how = "padded by reflection" if max(h, w) <= need else "cropped and padded by reflection"
    return need, (
        f"{h}x{w}, smaller than the package's smallest input ({need}x{need}: twice the "
        f"network's receptive radius, a multiple of its pooling grid), {how} to "
        f"{need}x{need}"
    )


def _context_slices(sample, context: int) -> tuple[np.ndarray, str]:
    """The central slice of a volume and its ``2K + 1`` neighbours ``(2K + 1, Y, X)``
    (:func:`napari_dfct.context.context_stack`, reflected at the ends), and words."""
    from ..context import context_stack

    a = np.asarray(sample, dtype=np.float32)
    k = int(context)
    if a.ndim != 3 or a.shape[0] < 2:
        raise ExportError(
            f"a 2.5-D model (context {k}) reads {2 * k + 1} neighbouring slices: its test "
            f"data must be a volume of 2 slices or more, got shape {tuple(np.shape(sample))}"
        )
    if a.shape[0] == 2 * k + 1:  # a slice and its neighbours already (read_sample)
        return a, ""
    z = a.shape[0] // 2
    return context_stack(a, [z], k)[0], f" (its central slice and {2 * k} neighbours)"


def sample_input(
    sample: np.ndarray | None,
    multiple: int,
    smallest: int = 1,
    max_size: int = MAX_TEST_SIZE,
    context: int = 0,
    depth: int = 0,
) -> tuple[np.ndarray, str]:
    """The test input: a central square crop of ``sample`` (a 2-D slice, or the central
    slice of a volume) whose side is a multiple of ``multiple``, at least ``smallest`` and
    otherwise at most ``max_size``, or the slice padded to ``smallest`` when it is
    smaller (:func:`tile_plan`); a simulated slice when ``sample`` is None. Returns
    ``(tile, words)``, the tile ``(side, side)``.

    With ``context`` K > 0 (a 2.5-D model) ``sample`` is a volume: the tile is its central
    slice and that slice's ``2K`` neighbours (reflected at the ends, as in training and
    prediction), ``(2K + 1, side, side)``, every slice cropped or padded alike; a volume
    of ``2K + 1`` slices is taken whole.

    With ``depth`` d > 0 (a 3-D model of patch depth d) ``sample`` is a volume: the tile is
    its central ``d - 2 (d // 4)`` slices, every slice cropped or padded alike, extended
    by ``d // 4`` slices reflected at each end (:mod:`napari_dfct.export.volume`),
    ``(d, side, side)``: one z-chunk of napari-dfct's prediction of those slices.
    """
    k, d = int(context), int(depth)
    words = "a central crop of the given data"
    if sample is None:
        size = max(SIMULATED_SIZE, smallest)
        sample = simulated_block(size, d) if d else _simulated_slice(size, k)
        words = "a simulated single-rotation slice (napari-dfct's phantom, seed 0)"
        if k or d:
            n = 2 * k + 1 if k else z_plan(d)[0]
            words = words.replace("slice", f"volume of {n} slices")
    if d:
        a, more = volume_block(np.asarray(sample, dtype=np.float32), None, d)
        words += f" ({more})" if len(sample) > len(a) else ""
    elif k:
        a, more = _context_slices(sample, k)
        words += more
    else:
        a = np.asarray(sample, dtype=np.float32)
        if a.ndim == 3:
            a = a[a.shape[0] // 2]
            words += " (its central slice)"
        if a.ndim != 2:
            raise ExportError(
                f"the test data must be a 2-D slice or a 3-D volume, got shape "
                f"{tuple(np.shape(sample))}"
            )
        a = a[None]
    h, w = a.shape[-2:]
    if a.size == 0:
        raise ExportError(f"the test slice is empty ({h}x{w})")
    if not np.isfinite(a).all():
        raise ExportError("the test slice contains NaN or infinite values")
    side, padded = tile_plan(a.shape, multiple, smallest, max_size)
    r0, c0 = max((h - side) // 2, 0), max((w - side) // 2, 0)
    tile = a[:, r0 : r0 + side, c0 : c0 + side]
    if padded is not None:
        (h, w), top, left = (
            tile.shape[-2:],
            (side - tile.shape[1]) // 2,
            (side - tile.shape[2]) // 2,
        )
        pad = ((0, 0), (top, side - h - top), (left, side - w - left))
        tile = np.pad(tile, pad, mode="reflect")
        words = words.replace("a central crop of ", "") + f": {padded}"
    else:
        words = f"{words}, {side}x{side}"
    tile = np.ascontiguousarray(tile, dtype=np.float32)
    if d:
        ends = z_plan(d)[1]
        words += (
            (
                f"; {ends} slices reflected at each end (slice -1 is slice 1), {d} slices: "
                "one z-chunk of napari-dfct's prediction"
            )
            if ends
            else f"; {d} slices: one z-chunk of napari-dfct's prediction"
        )
        return z_extend(tile, d), words
    return (tile if k else tile[0]), words


def model_context(model_dir: str | os.PathLike) -> int:
    """The context ``K`` of a model folder's network (0: a 2-D model, or a folder saved
    before context existed), read from its ``config.json``; :class:`ExportError` for a
    folder that is not a model folder."""
    from ..checkpoint import load_config

    try:
        arch = load_config(model_dir).get("model")
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None
    return int(arch.get("context", 0) or 0) if isinstance(arch, dict) else 0


def model_input_sizes(model_dir: str | os.PathLike) -> tuple[int, int, int]:
    """:func:`input_sizes` of the network a model folder describes, read from its
    ``config.json`` (the network is built on PyTorch's meta device: no weights are read
    or allocated); :class:`ExportError` for a folder that is not a model folder."""
    from ..checkpoint import load_config
    from ..model import ResidualUNet, check_architecture

    try:
        arch = load_config(model_dir).get("model")
        if not isinstance(arch, dict):
            raise ExportError(f"config.json in {model_dir} has no architecture ('model')")
        with torch.device("meta"):
            model = ResidualUNet(**check_architecture(**arch))
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise ExportError(f"cannot read the network of {model_dir}: {exc}") from None
    return input_sizes(model)


def read_sample(
    path: str | os.PathLike, slice_index: int | None = None, context: int = 0, depth: int = 0
) -> tuple[np.ndarray, str]:
    """A 2-D slice (input units) to cut the test tensors from, and words naming it.

    ``path`` is a volume or slice file (any format :func:`napari_dfct.io.read_volume`
    reads), a ``dfct simulate`` folder (its ``input.tif``), or a data set of scans (a
    pairs CSV or folder: the chosen slice of its first scan). ``slice_index`` picks a
    slice of a volume (default: the central one).

    With ``context`` K > 0 (a 2.5-D model): the slice and its ``2K`` neighbouring slices
    of its scan, ``(2K + 1, Y, X)`` with the slice in the middle (reflected at the scan's
    ends: :mod:`napari_dfct.context`); a single 2-D slice, and a ``dfct simulate
    --specimens N`` folder of independent specimens, are refused.

    With ``depth`` d > 0 (a 3-D model of patch depth d): the ``d - 2 (d // 4)``
    consecutive slices of its scan around the slice (moved inside the scan at its ends:
    :func:`napari_dfct.export.volume.volume_block`); a single slice, a scan of fewer
    slices and a folder of independent specimens are refused.
    """
    from ..context import check_one_scan_folder
    from ..io import read_volume
    from ..io.dataset import parse_slice_spec, read_pairs

    path = Path(path).expanduser()
    k = int(context)
    if not path.exists():
        raise ExportError(f"test data not found: {path}")
    try:
        check_one_scan_folder(path if path.is_dir() else path.parent, k, 3 if depth else 2)
        if path.is_dir() and (path / "input.tif").is_file():
            path = path / "input.tif"
        if path.suffix.lower() == ".csv" or path.is_dir():
            first = read_pairs(path)[0]  # its first chosen slice, of its own volume
            volume, _ = read_volume(first.input)
            volume = np.asarray(volume, dtype=np.float32)
            volume = volume if volume.ndim == 3 else volume[None]
            z = parse_slice_spec(first.slices, volume.shape[0])[0]
            words = f"scan {first.name!r} of {path.name}, slice {z}"
            if depth:
                block, which = volume_block(volume, z, depth)
                return block, f"scan {first.name!r} of {path.name}, {which}"
            if k:
                return _one_scan_context(volume, z, k), f"{words} and its {2 * k} neighbours"
            return volume[z], words
        volume, _ = read_volume(path)
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ExportError:
        raise  # read, but not usable: its own line
    except ValueError as exc:
        raise ExportError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    volume = np.asarray(volume, dtype=np.float32)
    if volume.ndim == 2 and k:
        raise ExportError(
            f"{path.name} is a single slice: a 2.5-D model (context {k}) needs its "
            f"{2 * k} neighbouring slices; give the volume"
        )
    if volume.ndim == 2 and depth:
        raise ExportError(
            f"{path.name} is a single slice: a 3-D model (patch depth {depth}) reads "
            f"{z_plan(depth)[0]} consecutive slices or more; give the volume"
        )
    if volume.ndim == 2:
        return volume, path.name
    if volume.ndim != 3:
        raise ExportError(f"{path} is not a 2-D slice or a 3-D volume")
    z = volume.shape[0] // 2 if slice_index is None else int(slice_index)
    if not 0 <= z < volume.shape[0]:
        raise ExportError(
            f"slice {z} is out of range: {path.name} has {volume.shape[0]} "
            f"slices (0-{volume.shape[0] - 1})"
        )
    if depth:
        block, which = volume_block(volume, z, depth)
        return block, f"{path.name}, {which}"
    if k:
        return _one_scan_context(
            volume, z, k
        ), f"{path.name}, slice {z} and its {2 * k} neighbours"
    return volume[z], f"{path.name}, slice {z}"


def _one_scan_context(volume: np.ndarray, z: int, k: int) -> np.ndarray:
    """Slice ``z`` of a scan and its ``2K`` neighbours
    (:func:`napari_dfct.context.context_stack`); a scan of one slice has none
    (:class:`ExportError`)."""
    from ..context import context_stack

    if volume.shape[0] < 2:
        raise ExportError(
            f"a 2.5-D model (context {k}) needs {2 * k} neighbouring slices; the test data "
            "is a single slice: give a volume"
        )
    return context_stack(volume, [z], k)[0]


def _run_package(model: torch.nn.Module, x: np.ndarray, low: float, high: float) -> np.ndarray:
    """The package's pipeline in its own order: clip, scale_linear, network, scale_linear
    (float32), on ``x`` of shape (C, H, W) (every channel alike); (1, 1, H, W) out; a
    3-D model's ``x`` (1, Z, H, W) gives (1, 1, Z, H, W)."""
    width = high - low
    xn = np.clip(x, np.float32(low), np.float32(high))
    xn = xn * np.float32(1.0 / width) + np.float32(-low / width)
    with torch.inference_mode():
        y = model(torch.from_numpy(xn[None].astype(np.float32))).float().numpy()
    return (y * np.float32(width) + np.float32(low)).astype(np.float32)


def _cover(path: Path, x: np.ndarray, y: np.ndarray, low: float, high: float) -> None:
    """A 2:1 PNG: test input | output, both in the window."""
    import matplotlib.image

    pair = np.concatenate([x, y], axis=1)
    matplotlib.image.imsave(path, np.clip(pair, low, high), cmap="gray", vmin=low, vmax=high)


def architecture_source() -> Path:
    """The file shipped as the package's architecture: :mod:`napari_dfct.model`, which
    imports only PyTorch, so the package runs without napari-dfct."""
    from .. import model

    return Path(model.__file__)


def _write_files(folder: Path, loaded, x: np.ndarray, y: np.ndarray, readme: str) -> None:
    """The package's files; ``x`` the test input (C, H, W) or (1, Z, H, W) of a 3-D
    model, ``y`` its output."""
    state = {k: v.detach().cpu().clone() for k, v in loaded.model.state_dict().items()}
    torch.save(state, folder / WEIGHTS_FILE)
    shutil.copyfile(architecture_source(), folder / ARCHITECTURE_FILE)
    np.save(folder / "test_input.npy", x[None].astype(np.float32))
    np.save(folder / "test_output.npy", y.astype(np.float32))
    low, high = loaded.window.low, loaded.window.high
    if x.ndim == 4:  # a volume: its central slice
        _cover(folder / "cover.png", x[0, x.shape[1] // 2], y[0, 0, x.shape[1] // 2], low, high)
    else:  # the centre slice of a context model's channels
        _cover(folder / "cover.png", x[x.shape[0] // 2], y[0, 0], low, high)
    (folder / "README.md").write_text(readme, encoding="utf-8")


def _sha256(v, path: Path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return v.Sha256(digest.hexdigest())


def _file(v, folder: Path, name: str):
    """A file of the package with its SHA-256 (computed here: no I/O checks needed)."""
    return v.FileDescr(source=Path(name), sha256=_sha256(v, folder / name))


def _axes(v, model: torch.nn.Module, output: bool) -> list:
    """Batch, channel, y, x, with the sizes and halo of :func:`input_sizes`; the input of
    a context model has one channel per slice (:func:`input_channel_names`). A 3-D model
    has a z space axis before y: at least its patch depth ``d`` slices, any number above,
    and a halo of ``d // 4`` slices on the output (:mod:`napari_dfct.export.volume`)."""
    multiple, halo, smallest = input_sizes(model)
    depth = network_depth(model)
    sizes = {"y": (smallest, multiple, halo), "x": (smallest, multiple, halo)}
    if depth:
        sizes = {"z": (depth, 1, z_plan(depth)[1]), **sizes}
    space = []
    for name, (least, step, margin) in sizes.items():
        if output:
            size = v.SizeReference(tensor_id=v.TensorId("input"), axis_id=v.AxisId(name))
            space.append(
                v.SpaceOutputAxisWithHalo(id=v.AxisId(name), size=size, halo=margin)
                if margin
                else v.SpaceOutputAxis(id=v.AxisId(name), size=size)
            )
        else:
            size = v.ParameterizedSize(min=least, step=step)
            space.append(v.SpaceInputAxis(id=v.AxisId(name), size=size))
    names = input_channel_names(0 if output else int(getattr(model, "context", 0)))
    channel = v.ChannelAxis(channel_names=[v.Identifier(n) for n in names])
    return [v.BatchAxis(), channel, *space]


def _description(folder: Path, loaded, sample_words: str, author: str, license: str):
    """The bioimage.io ``ModelDescr`` (spec 0.5) of the files in ``folder``."""
    from bioimageio.spec import ValidationContext
    from bioimageio.spec.model import v0_5 as v

    from ..model import count_parameters

    cfg, low, high = loaded.config, loaded.window.low, loaded.window.high
    width = high - low
    arch_kwargs = {k: cfg["model"][k] for k in ARCH_KWARGS if k in cfg["model"]}
    k = int(getattr(loaded.model, "context", 0))
    inp_words, out_words = tensor_words(k, network_depth(loaded.model))
    with ValidationContext(root=folder, perform_io_checks=False):
        inp = v.InputTensorDescr(
            id=v.TensorId("input"),
            axes=_axes(v, loaded.model, output=False),
            description=inp_words,
            test_tensor=_file(v, folder, "test_input.npy"),
            data=v.IntervalOrRatioDataDescr(type="float32"),
            preprocessing=[
                v.ClipDescr(kwargs=v.ClipKwargs(min=low, max=high)),
                v.ScaleLinearDescr(
                    kwargs=v.ScaleLinearKwargs(gain=1.0 / width, offset=-low / width)
                ),
            ],
        )
        out = v.OutputTensorDescr(
            id=v.TensorId("output"),
            axes=_axes(v, loaded.model, output=True),
            description=out_words,
            test_tensor=_file(v, folder, "test_output.npy"),
            data=v.IntervalOrRatioDataDescr(type="float32"),
            postprocessing=[
                v.ScaleLinearDescr(kwargs=v.ScaleLinearKwargs(gain=width, offset=low))
            ],
        )
        weights = v.WeightsDescr(
            pytorch_state_dict=v.PytorchStateDictWeightsDescr(
                source=Path(WEIGHTS_FILE),
                sha256=_sha256(v, folder / WEIGHTS_FILE),
                architecture=v.ArchitectureFromFileDescr(
                    source=Path(ARCHITECTURE_FILE),
                    sha256=_sha256(v, folder / ARCHITECTURE_FILE),
                    callable=v.Identifier("ResidualUNet"),
                    kwargs=arch_kwargs,
                ),
                pytorch_version=v.Version(torch.__version__.split("+")[0]),
            )
        )
        n_params = count_parameters(loaded.model)
        return v.ModelDescr(
            name=_package_name(cfg),
            description=description_text(cfg, n_params),
            authors=[v.Author(name=author)],
            cite=[v.CiteEntry(text=PAPER, url=SOURCE_URL)],
            license=license,
            documentation=_file(v, folder, "README.md"),
            covers=[_file(v, folder, "cover.png")],
            tags=[
                "dark-field-ct",
                "ct",
                "x-ray",
                "streak-reduction",
                "denoising",
                "image-restoration",
                "unet",
                "3d" if network_depth(loaded.model) else "2.5d" if k else "2d",
                "pytorch",
                "napari-dfct",
            ],
            inputs=[inp],
            outputs=[out],
            weights=weights,
            config={"napari_dfct": config_block(cfg, sample_words)},
        )


def _errors(exc: ValueError) -> str:
    """A validation error in one line (pydantic's first lines name only the class)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors()[:3]
        )
    return str(exc).splitlines()[0]


def _package_name(cfg: dict) -> str:
    name = str(cfg.get("name") or (cfg.get("loss") or {}).get("name") or "model")
    safe = "".join(c if c.isalnum() or c in " -_()" else "-" for c in name)
    return f"DFCT streak reduction {safe}"[:128]


def export_bioimageio(
    model_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    sample: np.ndarray | None = None,
    sample_source: str | None = None,
    overwrite: bool = False,
    author: str = "napari-dfct user",
    license: str = "CC-BY-4.0",
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Write the bioimage.io model package (spec 0.5, a ``.zip``) of a model folder.

    Parameters
    ----------
    model_dir : path
        A napari-dfct model folder (``model.safetensors`` + ``config.json`` with an
        intensity window).
    out : path
        The ``.zip`` to write (replaced atomically; an existing file only with
        ``overwrite``).
    sample : numpy.ndarray, optional
        A slice (or volume: its central slice) in the input's units to cut the test
        tensors from, e.g. the model's training input (padded when it is smaller than
        the package's smallest input: :func:`tile_plan`); None simulates one. For a
        2.5-D model (context ``K``): a volume, whose central slice and its ``2K``
        neighbours are the test input's channels (:func:`sample_input`). For a 3-D model
        (patch depth ``d``): a volume of at least ``d - 2 (d // 4)`` slices, whose central
        ones are the test input's inner slices.
    sample_source : str, optional
        Words naming ``sample`` for the README (e.g. its file name).
    author, license : str
        The package's author (the person who trained the model) and licence (SPDX).
    progress : callable, optional
        Called with a short line before each step.

    Returns
    -------
    pathlib.Path
        ``out``.

    Raises
    ------
    ExportError
        ``bioimageio.spec`` is missing, the folder is not a readable model folder, it has
        no intensity window, ``out`` exists (without ``overwrite``) or cannot be written,
        the sample is unusable; one line each (a :class:`ValueError`).
    """
    say = progress or (lambda _text: None)
    out = check_export_target(out, overwrite)
    check_license(license)
    try:
        loaded = load_model(model_dir, device="cpu")
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None
    context = int(getattr(loaded.model, "context", 0))
    depth = network_depth(loaded.model)  # 0, or a 3-D model's z-chunks
    missing = bioimageio_missing()
    if missing:
        raise ExportError(missing)
    if loaded.window is None:
        raise ExportError(
            f"{model_dir} has no intensity window in config.json; cannot "
            "describe the pre-processing"
        )
    say("test tensors")
    multiple, halo, smallest = input_sizes(loaded.model)
    x, words = sample_input(sample, multiple, smallest, context=context, depth=depth)
    x = x if context else x[None]  # (C, H, W), or (1, Z, H, W) for a 3-D model
    if sample is not None and sample_source:
        words = words.replace("the given data", sample_source)
    say(f"test tile: {words}")
    y = _run_package(loaded.model, x, loaded.window.low, loaded.window.high)
    if not np.isfinite(y).all():
        raise ExportError("the model's output on the test input is not finite")
    from ..model import count_parameters

    readme = readme_text(
        loaded.config,
        count_parameters(loaded.model),
        words,
        ARCHITECTURE_FILE,
        WEIGHTS_FILE,
        halo,
        smallest,
    )
    from .._procs import owner_tag

    clean_stale_exports(out.parent)
    with tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}{owner_tag()}-", dir=out.parent) as tmp:
        folder = Path(tmp)
        _write_files(folder, loaded, x, y, readme)
        say("description")
        try:
            descr = _description(folder, loaded, words, author, license)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise ExportError(f"the package description is not valid: {_errors(exc)}") from None
        say("package")
        from bioimageio.spec import ValidationContext, save_bioimageio_package

        partial = folder / out.name
        with ValidationContext(root=folder, perform_io_checks=False):  # no URL requests
            save_bioimageio_package(descr, output_path=partial)
        os.replace(partial, out)
    return out
