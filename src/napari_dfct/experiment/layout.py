"""The layout of a grid folder: configurations, data and settings.

Layout of a grid folder ``OUT``::

    OUT/grid.json                   settings shared by every run (data, ROIs per test slice,
                                    training options)
    OUT/grid-log.jsonl              one line per event (trained, skipped, failed, moved aside,
                                    older attempt removed)
    OUT/grid.lock                   the grid process that holds the folder (while it runs)
    OUT/test-slice/                 the representative test slice (the one figures show):
                                    input.tif, target.tif (truth.tif), 2-D float32
    OUT/reference.json              metrics of input / target / truth: medians over the test
                                    slices and the values of every slice (per_slice)
    OUT/runs/<config>/seed-<k>/     one run: spec.json, model/ (checkpoint), prediction.tif
                                    (the representative slice), metrics.json (medians over
                                    the test slices and per_slice; written atomically LAST:
                                    the completion marker)
    OUT/runs/<config>/seed-<k>.incomplete-<time>/
                                    the newest interrupted attempt of a run, moved aside
    OUT/report/                     tables and figures (:func:`napari_dfct.experiment.grid_report`)

Every run is measured on **every slice of the test volume** (e.g. 16 independent simulated
specimens), each with its own ROIs (``ROISet.from_meta(meta, n_slices, slice=k)``), and a
metric's value for the run is the median over the slices
(:func:`napari_dfct.experiment.scoring.measure_slices`). Only the representative slice's
prediction is stored (``prediction.tif``, for the report's panels): the predictions of all
slices of every run would multiply the grid's size by the number of test slices (16 x 800²
float32 is 41 MB per run, 7 GB for the paper's 180 runs), and any slice can be predicted
again from the run's ``model/``. The test data are read from where they are (their paths
and fingerprints are in ``grid.json``), like the training data. A test volume whose slices
are not independent specimens (a real scan) is measured on every slice as well; pass only
the slices that the ROIs fit. A test **data set of scans** (e.g. volumes of specimens) is
measured on chosen slices of every scan, each scan predicted from its own slices
(:mod:`.volume_test`).

:func:`prepare_grid` resolves the training and test data, the ROIs and the loss
configurations (:func:`make_configs`, :func:`add_controls`), writes ``grid.json``, the test
slice and ``reference.json``, and returns one JSON-able spec per run for
:func:`napari_dfct.experiment.run.run_one`. :mod:`.status` tells which runs are done,
incomplete, missing or still queued in Slurm, and keeps the event log.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._files import fingerprint
from ._util import _find_file, _mask_name, atomic_write_json, json_safe, read_json, timestamp
from .scoring import measure_slices
from .volume_test import check_neighbours, resolve_volume_test, volume_test_settings

__all__ = [
    "GRID_FILE",
    "LOG_FILE",
    "METRICS_FILE",
    "PREDICTION_FILE",
    "REFERENCE_FILE",
    "RUNNING_FILE",
    "RUNS_DIR",
    "TEST_SLICE_DIR",
    "add_controls",
    "fingerprint",
    "make_configs",
    "prepare_grid",
    "read_test_set",
]

GRID_FILE = "grid.json"
LOG_FILE = "grid-log.jsonl"
REFERENCE_FILE = "reference.json"
METRICS_FILE = "metrics.json"
PREDICTION_FILE = "prediction.tif"
RUNNING_FILE = "running.json"
TEST_SLICE_DIR = "test-slice"
RUNS_DIR = "runs"
#: Version of ``grid.json``: 2 measures every test slice (1: one test slice).
GRID_FORMAT = "napari-dfct-grid/2"
#: Test volumes of a grid, in the order they are listed.
_TEST_KEYS = ("input", "target", "truth", "mask")
#: Files of a training pair, and of its separate validation set when it has one.
_TRAIN_KEYS = ("input", "target", "val_input", "val_target")

#: Training options that belong to one run rather than to the grid (never compared).
_PER_RUN_KEYS = ("loss", "seed", "device", "keep_state", "tensorboard")


# --------------------------------------------------------------------------- configurations
def make_configs(
    losses: Sequence[str] = ("l1", "l2"),
    schemes: Sequence[str] = ("none", "S", "F", "S+F", "F+S"),
    profiles: Sequence[str] = ("linear", "nonlinear"),
    *,
    mode: str | None = None,
    normalize: bool = False,
    names: Sequence[str] | None = None,
) -> list:
    """The loss configurations of a grid (:class:`napari_dfct.losses.LossConfig`).

    Every configuration is built by :func:`napari_dfct.losses.build_loss_config`, the rule
    ``dfct train`` follows too.

    Parameters
    ----------
    losses, schemes, profiles : sequence of str
        Passed to :func:`napari_dfct.losses.paper_configs` (the baseline appears once per
        loss, so the defaults give the paper's 18 configurations).
    mode : {"paper", "spectral"} or None
        Frequency-weighting mode. None: each configuration's own (``"paper"``; the
        directional schemes ``D``, ``S+D``, ``D+S`` and names such as ``l2+d-nonlinear``
        ``"spectral"``; a name ending in ``-spectral`` spectral). ``"spectral"``: every
        configuration. ``"paper"``: every one but the ``-spectral`` names, and a
        directional configuration is refused (``ValueError``): D works in mode
        ``spectral`` only.
    normalize : bool
        Rescale the amplification weights to mean 1 (a name ending in ``-norm`` is
        normalised whatever ``normalize`` says).
    names : sequence of str, optional
        Explicit configuration names (``"l2"``, ``"l2+s+f-nonlinear"``,
        ``"l2+f-nonlinear-spectral"``); when given, they replace the product of
        ``losses``, ``schemes`` and ``profiles``, so that one grid can mix modes.

    Returns
    -------
    list of LossConfig
        Without duplicates, in grid order.
    """
    from ..losses import build_loss_config, paper_configs

    if names:
        configs = [
            build_loss_config(str(n).strip(), mode=mode, normalize=normalize) for n in names
        ]
    else:
        schemes = [_canonical_scheme(s) for s in schemes]
        configs = paper_configs(
            losses=tuple(str(x).strip().lower() for x in losses),
            schemes=tuple(schemes),
            profiles=tuple(str(p).strip().lower() for p in profiles),
            mode=mode,
            normalize=normalize,
        )
    out, seen = [], set()
    for c in configs:
        if c.name not in seen:
            seen.add(c.name)
            out.append(c)
    if not out:
        raise ValueError("the selection gives no loss configuration")
    return out


def add_controls(
    configs: Sequence, shape: Sequence[int], patch: int | None, data: tuple | None = None
) -> tuple[list, dict[str, str]]:
    """Append each amplified configuration's scale-matched control to ``configs``.

    The control is the plain loss times the configuration's loss scale
    (:func:`napari_dfct.losses.scale_matched_control`, e.g. ``l2@1.71``), placed right after
    the first configuration it controls for. With ``data`` (the training ``(input,
    target)`` volumes) the scale is **measured** on the real error, ``input - target``, on
    ``patch``-sized patches (:func:`napari_dfct.losses.measured_scale`); without it, the
    bound for a uniform or white error on ``patch``-sized patches of ``shape`` slices
    (:func:`napari_dfct.losses.effective_scale`), which overstates spectral weights on
    streaks. Returns the new list and ``{configuration: control}`` for every configuration
    that has one.
    """
    from ..losses import measured_scale, scale_matched_control

    h, w = int(shape[0]), int(shape[1])
    p = min(int(patch), h, w) if patch else None
    names = {c.name for c in configs}
    out, control_of = [], {}
    for c in configs:
        out.append(c)
        scale = None
        if data is not None and c.scheme != "none" and not c.oracle:
            scale = measured_scale(c, data[0], data[1], p or min(h, w), n_patches=1024)["scale"]
        ctrl = scale_matched_control(c, (h, w), p, scale=scale)
        if ctrl is None:
            continue
        control_of[c.name] = ctrl.name
        if ctrl.name not in names:
            names.add(ctrl.name)
            out.append(ctrl)
    return out, control_of


def _volume_shape(path: str | os.PathLike) -> tuple[int, ...]:
    from ..io import read_volume

    data, _ = read_volume(path)
    return tuple(np.shape(data))


def _canonical_scheme(s: str) -> str:
    key = str(s).strip().upper().replace(" ", "")
    table = {
        "NONE": "none",
        "BASELINE": "none",
        "S": "S",
        "F": "F",
        "S+F": "S+F",
        "SF": "S+F",
        "F+S": "F+S",
        "FS": "F+S",
        "D": "D",
        "S+D": "S+D",
        "SD": "S+D",
        "D+S": "D+S",
        "DS": "D+S",
    }
    if key not in table:
        raise ValueError(
            f"unknown amplification scheme {s!r}: use none, S, F, S+F, F+S, D, S+D or D+S"
        )
    return table[key]


# --------------------------------------------------------------------------- data resolution
def _is_pair_of_arrays(obj: Any) -> bool:
    return (
        isinstance(obj, (tuple, list))
        and len(obj) in (2, 3)
        and all(isinstance(a, np.ndarray) for a in obj)
    )


def _save_array(path: Path, data: np.ndarray, dtype: Any = np.float32) -> Path:
    """Save ``data`` to ``path`` unless the file exists: equal content is reused, other
    content is refused (never overwritten)."""
    from ..io import write_volume

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}-{os.getpid()}-{time.monotonic_ns()}{path.suffix}")
    write_volume(tmp, np.asarray(data, dtype=dtype))
    if path.exists():
        same = fingerprint(tmp) == fingerprint(path)
        tmp.unlink()
        if not same:
            raise ValueError(f"{path} holds other data; use another output folder")
        return path
    os.replace(tmp, path)
    return path


def _resolve_train(train: Any, out_dir: Path) -> dict:
    """Paths of the training input and target volumes (arrays are saved under OUT/data)."""
    if hasattr(train, "input") and hasattr(train, "target") and not isinstance(train, (str, Path)):
        train = (np.asarray(train.input), np.asarray(train.target))
    if _is_pair_of_arrays(train):
        folder = out_dir / "data" / "train"
        _save_array(folder / "input.tif", train[0])
        _save_array(folder / "target.tif", train[1])
        train = folder
    if isinstance(train, (str, os.PathLike)) and _is_dataset(Path(train)):
        return {"pairs": str(Path(train).resolve())}  # a data set of many scans
    if isinstance(train, (str, os.PathLike)):
        folder = Path(train)
        from ..simulate import check_dataset

        check_dataset(folder)  # files written together (a `dfct simulate` folder)
        if not folder.is_dir():
            raise ValueError(f"training data folder {folder} does not exist")
        return {
            "input": str(_find_file(folder, "input").resolve()),
            "target": str(_find_file(folder, "target").resolve()),
        }
    if isinstance(train, dict):  # with a separate validation set: val_input, val_target
        paths = {k: Path(train[k]) for k in _TRAIN_KEYS if k in train or k in ("input", "target")}
    elif isinstance(train, (tuple, list)) and len(train) == 2:
        paths = {"input": Path(train[0]), "target": Path(train[1])}
    else:
        raise ValueError("train must be a folder, (input, target) paths or (input, target) arrays")
    for k, p in paths.items():
        if not p.is_file():
            raise ValueError(f"training {k} file {p} does not exist")
    return {k: str(p.resolve()) for k, p in paths.items()}


def _volumes(train_data: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """The training (input, target) volumes, for measuring loss scales; None for a data
    set of scans (slices of several sizes)."""
    if "pairs" in train_data:
        return None
    from ..io import read_volume

    return read_volume(train_data["input"])[0], read_volume(train_data["target"])[0]


def _is_dataset(path: Path) -> bool:
    """A pairs CSV, or a folder of scans (its pairs.csv or <scan>/input.* sub-folders)
    rather than one input/target pair (:mod:`napari_dfct.io.dataset`)."""
    if path.is_file():
        return path.suffix.lower() == ".csv"
    if not path.is_dir() or _find_file(path, "input", required=False) is not None:
        return False
    from ..io.dataset import PAIRS_FILE

    return (path / PAIRS_FILE).is_file() or any(
        _find_file(sub, "input", required=False) is not None
        for sub in path.iterdir()
        if sub.is_dir()
    )


def _train_fingerprints(train_data: dict) -> dict:
    """What identifies the training data: each file's size and hash (every scan's input
    and target, and its slice choice, for a data set)."""
    if "pairs" not in train_data:
        return {f"train_{k}": fingerprint(v) for k, v in train_data.items()}
    from ..io.dataset import read_pairs

    return {
        "train_scans": [
            [p.name, fingerprint(p.input), fingerprint(p.target), p.slices]
            for p in read_pairs(train_data["pairs"])
        ]
    }


def _train_slice_shape(train_data: dict) -> tuple[int, ...]:
    if "pairs" not in train_data:
        return _volume_shape(train_data["input"])[-2:]
    from ..io.dataset import read_pairs

    return _volume_shape(read_pairs(train_data["pairs"])[0].input)[-2:]


def _resolve_test(test: Any, out_dir: Path, test_slices: str | None = None) -> dict:
    """Paths of the test volumes (input, target, optional truth and body mask) and the
    test meta.json; of a data set of scans (:func:`_is_dataset`), every scan's files and
    measured slices (:func:`napari_dfct.experiment.volume_test.resolve_volume_test`)."""
    meta = None
    if isinstance(test, (str, os.PathLike)) and _is_dataset(Path(test)):
        return resolve_volume_test(Path(test), test_slices)
    if test_slices is not None:
        raise ValueError(
            f"test slices ({test_slices}) choose slices of the scans of a test data set (a "
            "folder with pairs.csv); this test set is one volume, measured on every slice"
        )
    if hasattr(test, "input") and hasattr(test, "target") and not isinstance(test, (str, Path)):
        meta = dict(getattr(test, "meta", None) or {})
        arrays = {
            "input": test.input,
            "target": test.target,
            "truth": getattr(test, "truth", None),
        }
        folder = out_dir / "data" / "test"
        for k, a in arrays.items():
            if a is not None:
                _save_array(folder / f"{k}.tif", a)
        if getattr(test, "mask", None) is not None:
            _save_array(folder / _mask_name(meta), test.mask, dtype=np.uint8)
        if meta:
            meta_path = folder / "meta.json"
            if meta_path.is_file() and read_json(meta_path) != json_safe(meta):
                raise ValueError(f"{meta_path} holds another test set; use another output folder")
            atomic_write_json(meta_path, meta)
        test = folder
    out: dict[str, Any]
    if isinstance(test, (str, os.PathLike)):
        folder = Path(test)
        from ..simulate import check_dataset

        check_dataset(folder)  # files written together (a `dfct simulate` folder)
        if not folder.is_dir():
            raise ValueError(f"test data folder {folder} does not exist")
        out = {
            "input": _find_file(folder, "input"),
            "target": _find_file(folder, "target"),
            "truth": _find_file(folder, "truth", required=False),
        }
        meta_path = folder / "meta.json"
        out["meta"] = read_json(meta_path, expect=dict) if meta_path.is_file() else None
        mask = folder / _mask_name(out["meta"])
        out["mask"] = mask if mask.is_file() else None
    elif isinstance(test, dict):
        out = {k: (Path(test[k]) if test.get(k) else None) for k in _TEST_KEYS}
        if out["input"] is None or out["target"] is None:
            raise ValueError("the test set needs an input and a target")
        meta = test.get("meta")
        if isinstance(meta, (str, os.PathLike)):
            meta = read_json(meta, expect=dict)
        out["meta"] = meta
    else:
        raise ValueError("test must be a folder or a dict of input/target/truth paths")
    for k in _TEST_KEYS:
        if out[k] is not None:
            if not Path(out[k]).is_file():
                raise ValueError(f"test {k} file {out[k]} does not exist")
            out[k] = str(Path(out[k]).resolve())
    return out


def _resolve_roi(meta: dict | None, roi: dict | None, n_slices: int) -> dict:
    """Merge the ROIs/line/slice of the test ``meta.json`` with explicit options
    (:meth:`napari_dfct.roi.ROISet.from_meta`): the representative slice's ROIs."""
    from ..roi import ROISet

    return ROISet.from_meta(meta, n_slices, **dict(roi or {})).to_dict()


def _resolve_rois(meta: dict | None, roi: dict | None, n_slices: int) -> list[dict]:
    """The ROIs of every test slice: slice ``k``'s own where ``meta.json`` has per-slice
    ROIs, explicit options first (:meth:`napari_dfct.roi.ROISet.from_meta`)."""
    from ..roi import ROISet

    options = {k: v for k, v in dict(roi or {}).items() if k != "slice"}
    return [
        ROISet.from_meta(meta, n_slices, **options, slice=k).to_dict() for k in range(n_slices)
    ]


def _to_slice(vol: np.ndarray, z: int) -> np.ndarray:
    vol = np.asarray(vol, dtype=np.float32)
    if vol.ndim == 2:
        return vol
    if vol.ndim != 3:
        raise ValueError(f"expected a 2-D or 3-D test image, got shape {vol.shape}")
    return np.ascontiguousarray(vol[z])


def _read_slice(path: str | None) -> np.ndarray | None:
    if not path:
        return None
    from ..io import read_volume

    data, _ = read_volume(path)
    return np.asarray(data, dtype=np.float32)


# --------------------------------------------------------------------------- run folders
ASIDE_MARK = ".incomplete-"
KEEP_ASIDE = 1
"""Moved-aside attempts kept per run: the newest. An older attempt of the same run (same
settings: the grid refuses others) holds nothing the newest lacks but its partial model;
its failure, if it had one, is in the grid log."""


def _move_aside(run_dir: Path) -> Path:
    """Rename an incomplete run folder to ``<name>.incomplete-<timestamp>`` (never delete;
    :func:`prune_aside` removes older attempts than the newest)."""
    base = run_dir.with_name(f"{run_dir.name}.incomplete-{timestamp()}")
    dest, k = base, 1
    while dest.exists():
        dest = base.with_name(f"{base.name}-{k}")
        k += 1
    os.replace(run_dir, dest)
    return dest


def _aside_order(path: Path) -> tuple:
    """Sort key of a moved-aside folder: its timestamp and counter, then its mtime."""
    stamp = path.name.rpartition(ASIDE_MARK)[2]
    day, _, rest = stamp.partition("-")
    clock, _, k = rest.partition("-")
    try:
        mtime = path.stat().st_mtime
    except OSError:
        mtime = 0.0
    return (day, clock, int(k) if k.isdigit() else 0, mtime)


def prune_aside(run_dir: str | os.PathLike, keep: int = KEEP_ASIDE) -> list[Path]:
    """Remove the moved-aside attempts of the run ``run_dir`` (``seed-k.incomplete-*``)
    but the newest ``keep``; return the removed folders (oldest first)."""
    import glob
    import shutil

    run_dir = Path(run_dir)
    pattern = f"{glob.escape(run_dir.name)}{ASIDE_MARK}*"
    try:
        folders = sorted((p for p in run_dir.parent.glob(pattern) if p.is_dir()), key=_aside_order)
    except OSError:
        return []
    removed = []
    for path in folders[: max(len(folders) - int(keep), 0)]:
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    return removed


# --------------------------------------------------------------------------- grid settings
def _train_dict(train_config: Any) -> dict:
    from ..train import TrainConfig

    if train_config is None:
        train_config = TrainConfig()
    elif isinstance(train_config, dict):
        train_config = TrainConfig.from_dict(train_config)
    d = dict(train_config.to_dict())
    return json_safe(d)


def _check_oracle_data(configs, train_data: dict) -> None:
    """Oracle configurations train on a simulated folder only: refused before any run."""
    oracles = [c.name for c in configs if getattr(c, "oracle", False)]
    if not oracles:
        return
    if "pairs" in train_data:
        raise ValueError(
            f"{oracles[0]}: an oracle loss trains on one simulated volume, "
            "not on a data set of scans (--pairs)"
        )
    from ..simulate import oracle_folder

    oracle_folder(train_data["input"])


def _comparable(settings: dict) -> dict:
    # the data are compared by content (a moved data folder is still the same data); the
    # training options as the options they mean, so a grid.json written before an option
    # existed (its default then is the old behaviour) still matches
    keys = ("data", "roi", "rois", "train", "test_slices")
    out = {k: settings.get(k) for k in keys}
    if isinstance(out["train"], dict):
        try:
            out["train"] = _train_dict(out["train"])
        except (TypeError, ValueError):
            pass
    return out


def _same_loss(a: dict, b: dict) -> bool:
    """Two saved loss configurations mean the same loss (fields added later take their
    defaults, which are the old behaviour)."""
    from ..losses import LossConfig

    try:
        return LossConfig.from_dict(a) == LossConfig.from_dict(b)
    except (TypeError, ValueError):
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def prepare_grid(
    train: Any,
    test: Any,
    out_dir: str | os.PathLike,
    configs: Iterable | None = None,
    seeds: Iterable[int] | str = (0,),
    train_config: Any = None,
    *,
    roi: dict | None = None,
    device: str | None = None,
    keep_state: bool = False,
    resume: bool = False,
    controls: bool = False,
    test_slices: str | None = None,
) -> tuple[dict, list[dict]]:
    """Write the grid's settings and test slice, and return them with one spec per run.

    Creates ``OUT/grid.json``, ``OUT/test-slice/*.tif`` and ``OUT/reference.json``. A grid
    folder made earlier with other data, ROIs or training options is refused
    (``ValueError``): results of different settings are never mixed. New configurations
    and seeds are added to an existing grid.

    Parameters
    ----------
    train, test, out_dir, configs, seeds, train_config, roi, device, test_slices
        See :func:`run_grid`.
    keep_state : bool
        Keep each run's resume files (optimizer state) after it finished.
    resume : bool
        Let each run resume an interrupted attempt that saved a training state.
    controls : bool
        Add each amplified configuration's scale-matched control (see :func:`add_controls`).

    Returns
    -------
    settings : dict
        The content of ``grid.json``.
    specs : list of dict
        One spec per (configuration, seed), seed by seed (every configuration of the
        first seed, then of the next), for :func:`run_one`.
    """
    from ..losses import LossConfig
    from ._util import parse_seeds

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if configs is None:
        configs = make_configs()
    configs = [
        LossConfig.from_name(c)
        if isinstance(c, str)
        else (LossConfig.from_dict(c) if isinstance(c, dict) else c)
        for c in configs
    ]
    seeds = parse_seeds(seeds)
    train_data = _resolve_train(train, out_dir)
    _check_oracle_data(configs, train_data)
    test_paths = _resolve_test(test, out_dir, test_slices)
    tdict = _train_dict(train_config)
    check_neighbours(train_data, test_paths, tdict.get("context", 0), tdict.get("dims", 2))
    run_device = device or tdict.get("device") or "auto"
    control_of: dict[str, str] = {}
    if controls:
        configs, control_of = add_controls(
            configs, _train_slice_shape(train_data), tdict.get("patch"), _volumes(train_data)
        )
    tensorboard = bool(tdict.get("tensorboard", False))  # a log: not a grid setting
    for k in _PER_RUN_KEYS:
        tdict.pop(k, None)

    roi, rois, volumes, test_files, test_data, chosen = _test_settings(test_paths, roi)
    data = {**_train_fingerprints(train_data), **test_data}
    settings = {
        "format": GRID_FORMAT,
        "train_data": train_data,
        "test": test_files,
        "data": data,
        "roi": roi,
        "rois": rois,
        "train": tdict,
        "device": run_device,
        "configs": {c.name: json_safe(c.to_dict()) for c in configs},
        "controls": control_of,
        "seeds": seeds,
        **chosen,
    }
    grid_file = out_dir / GRID_FILE
    if grid_file.is_file():
        _merge_settings(settings, read_json(grid_file, expect=dict), out_dir)
    settings.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S"))
    settings["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")

    slice_paths = _write_test_slice(out_dir, volumes, roi, rois, chosen)
    atomic_write_json(grid_file, settings)

    # seed by seed: a grid stopped part-way leaves whole seeds (every configuration and
    # control of a seed), which pair, rather than some configurations with every seed
    specs = []
    for s in seeds:
        for c in configs:
            specs.append(
                {
                    "name": c.name,
                    "seed": int(s),
                    "run_dir": str(out_dir / RUNS_DIR / c.name / f"seed-{s}"),
                    "loss": json_safe(c.to_dict()),
                    "train": tdict,
                    "device": run_device,
                    "threads": None,
                    "keep_state": bool(keep_state),
                    "tensorboard": tensorboard,
                    "resume": bool(resume),
                    "train_data": train_data,
                    "test_slice": {k: slice_paths.get(k) for k in ("input", "target", "truth")},
                    "test": test_files,
                    "roi": roi,
                    "rois": rois,
                }
            )
    return settings, specs


def read_test_set(paths: dict) -> dict[str, np.ndarray | None]:
    """The test volumes of ``paths`` (``input``, ``target``, ``truth``, ``mask``; the last
    two optional) as arrays: float32 images and a boolean mask (non-zero inside).

    ``ValueError`` when they are not 2-D or 3-D or their shapes differ (a 2-D mask may
    serve every slice of a volume).
    """
    volumes: dict[str, np.ndarray | None] = {}
    for k in _TEST_KEYS:
        data = _read_slice(paths.get(k))
        volumes[k] = data
    first = volumes["input"]
    if first is None or first.ndim not in (2, 3):
        shape = None if first is None else first.shape
        raise ValueError(f"expected a 2-D or 3-D test input, got shape {shape}")
    for k in ("target", "truth", "mask"):
        v = volumes[k]
        if v is None:
            continue
        if k == "mask" and v.ndim == 2 and v.shape == first.shape[-2:]:
            pass
        elif v.shape != first.shape:
            raise ValueError(f"test {k} has shape {v.shape}, the input {first.shape}")
        if k == "mask":
            volumes[k] = v != 0
    return volumes


def _test_settings(test_paths: dict, roi: dict | None) -> tuple:
    """The test set's representative ROIs, the ROIs of every test slice, the test volumes,
    its files and fingerprints for ``grid.json`` and, for a data set of volumes, the
    measured slices (``test_slices``; :mod:`.volume_test`)."""
    if "scans" in test_paths:
        return volume_test_settings(test_paths, roi)
    roi, rois, volumes = _test_set(test_paths, roi)
    test_files = {k: test_paths[k] for k in ("input", "target", "truth")}
    data = {f"test_{k}": fingerprint(v) if v else None for k, v in test_files.items()}
    if test_paths.get("mask"):  # only then: grids without a mask keep their settings
        test_files["mask"] = test_paths["mask"]
        data["test_mask"] = fingerprint(test_paths["mask"])
    return roi, rois, volumes, test_files, data, {}


def _test_set(test_paths: dict, roi: dict | None) -> tuple[dict, list[dict], dict]:
    """The representative slice's ROIs, the ROIs of every test slice and the test
    volumes."""
    volumes = read_test_set(test_paths)
    inp = volumes["input"]
    assert inp is not None  # read_test_set raises without one
    n_slices = 1 if inp.ndim == 2 else inp.shape[0]
    meta = test_paths.get("meta")
    z = _resolve_roi(meta, roi, n_slices)["slice"]
    rois = _resolve_rois(meta, roi, n_slices)
    return rois[z], rois, volumes


def _merge_settings(settings: dict, old: dict, out_dir: Path) -> None:
    """Merge the ``grid.json`` of an earlier start (``old``) into ``settings``.

    Refuses (``ValueError``) other data, ROIs or training options, and a configuration
    name with other loss settings; adds the earlier configurations, controls and seeds and
    keeps the creation time.
    """
    if "rois" not in old:
        raise ValueError(
            f"{out_dir} holds a grid measured on one test slice (an earlier format); runs "
            "measured on every test slice are not mixed with it: use another output folder"
        )
    a, b = _comparable(json_safe(old)), _comparable(json_safe(settings))
    diff = [k for k in a if json.dumps(a[k], sort_keys=True) != json.dumps(b[k], sort_keys=True)]
    if diff:
        raise ValueError(
            f"{out_dir} holds a grid made with other settings ({', '.join(diff)} differ); "
            "use another output folder to keep results of different settings apart"
        )
    merged = dict(old.get("configs", {}))
    for name, d in settings["configs"].items():
        if name in merged and not _same_loss(merged[name], d):
            raise ValueError(
                f"{out_dir} already has a configuration {name!r} with other "
                "loss settings (mode/normalisation); use another output folder"
            )
        merged[name] = d
    settings["configs"] = merged
    settings["controls"] = {**old.get("controls", {}), **settings["controls"]}
    settings["seeds"] = list(dict.fromkeys(list(old.get("seeds", [])) + settings["seeds"]))
    settings["created"] = old.get("created")


def _write_test_slice(
    out_dir: Path, volumes: dict, roi: dict, rois: list[dict], extra: dict | None = None
) -> dict:
    """Write the representative slice (``OUT/test-slice/*.tif``) and ``OUT/reference.json``
    (input, target and truth measured on every test slice, and ``extra``); return the
    slice paths."""
    from ..io import write_volume

    slice_dir = out_dir / TEST_SLICE_DIR
    slice_dir.mkdir(exist_ok=True)
    z = roi["slice"]
    slice_paths = {}
    images = {k: volumes[k] for k in ("input", "target", "truth") if volumes[k] is not None}
    for k, vol in images.items():
        slice_paths[k] = str(write_volume(slice_dir / f"{k}.tif", _to_slice(vol, z)))
    reference = {"slice": z, "roi": roi, "n_slices": len(rois), **(extra or {})}
    for k, vol in images.items():
        reference[k] = measure_slices(
            vol,
            rois,
            truth=volumes["truth"],
            target=volumes["target"],
            mask=volumes["mask"],
            representative=z,
        )
    atomic_write_json(out_dir / REFERENCE_FILE, reference)
    return slice_paths
