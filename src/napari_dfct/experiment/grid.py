"""The paper's experiment grid: one training run per (loss configuration, seed).

Layout of a grid folder ``OUT``::

    OUT/grid.json                   settings shared by every run (data, ROIs, training options)
    OUT/grid-log.jsonl              one line per event (trained, skipped, failed, moved aside)
    OUT/test-slice/                 the test slice: input.tif, target.tif (truth.tif), 2-D float32
    OUT/reference.json              metrics of input / target / truth on the test slice
    OUT/runs/<config>/seed-<k>/     one run: spec.json, model/ (checkpoint), prediction.tif,
                                    metrics.json (written atomically LAST: the completion marker)
    OUT/report/                     tables and figures (:func:`napari_dfct.experiment.grid_report`)

Restarting a grid skips every run whose ``metrics.json`` exists. A run folder without it
(a crash, a killed job, a Slurm time-out) is moved aside to
``seed-<k>.incomplete-<timestamp>`` and the run is done again from scratch, or, with
``resume=True``, continued from the training state saved after its last epoch: nothing
finished is overwritten and nothing partial is deleted. A run whose ``running.json``
heartbeat is fresh (another process is training it) and a run of an earlier Slurm
submission still in the queue are left alone.

Every run goes through :func:`run_one`, a top-level function of a small JSON-able spec, so
the same code runs in this process, in a pool of spawned processes (``executor="local"``,
``jobs > 1``), or as a Slurm job array through submitit (``executor="slurm"``).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import multiprocessing as mp
import os
import platform
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._util import atomic_write_json, json_safe, read_json, timestamp

__all__ = [
    "EXECUTORS",
    "add_controls",
    "GRID_FILE",
    "GridRunError",
    "LOG_FILE",
    "SlurmOptions",
    "fingerprint",
    "grid_status",
    "make_configs",
    "measure_slice",
    "prepare_grid",
    "queued_runs",
    "read_log",
    "run_grid",
    "run_one",
    "running_elsewhere",
]

GRID_FILE = "grid.json"
LOG_FILE = "grid-log.jsonl"
REFERENCE_FILE = "reference.json"
METRICS_FILE = "metrics.json"
PREDICTION_FILE = "prediction.tif"
RUNNING_FILE = "running.json"
TEST_SLICE_DIR = "test-slice"
RUNS_DIR = "runs"
EXECUTORS = ("local", "slurm", "submitit-local")

#: Training options that belong to one run rather than to the grid (never compared).
_PER_RUN_KEYS = ("loss", "seed", "device", "keep_state")


class GridRunError(RuntimeError):
    """Some runs of a grid failed (the others finished; start the grid again to redo them)."""


# --------------------------------------------------------------------------- configurations
def make_configs(
    losses: Sequence[str] = ("l1", "l2"),
    schemes: Sequence[str] = ("none", "S", "F", "S+F", "F+S"),
    profiles: Sequence[str] = ("linear", "nonlinear"),
    *,
    mode: str = "paper",
    normalize: bool = False,
    names: Sequence[str] | None = None,
) -> list:
    """The loss configurations of a grid (:class:`napari_dfct.losses.LossConfig`).

    Parameters
    ----------
    losses, schemes, profiles : sequence of str
        Passed to :func:`napari_dfct.losses.paper_configs` (the baseline appears once per
        loss, so the defaults give the paper's 18 configurations).
    mode : {"paper", "spectral"}
        Frequency-weighting mode, applied to every configuration.
    normalize : bool
        Rescale the amplification weights to mean 1.
    names : sequence of str, optional
        Explicit configuration names (``"l2"``, ``"l2+s+f-nonlinear"``); when given, they
        replace the product of ``losses``, ``schemes`` and ``profiles``.

    Returns
    -------
    list of LossConfig
        Without duplicates, in grid order.
    """
    from ..losses import LossConfig, paper_configs

    if names:
        configs = [LossConfig.from_name(str(n).strip(), mode=mode, normalize=normalize)
                   for n in names]
    else:
        schemes = [_canonical_scheme(s) for s in schemes]
        configs = paper_configs(losses=tuple(str(x).strip().lower() for x in losses),
                                schemes=tuple(schemes),
                                profiles=tuple(str(p).strip().lower() for p in profiles),
                                mode=mode, normalize=normalize)
    out, seen = [], set()
    for c in configs:
        if c.name not in seen:
            seen.add(c.name)
            out.append(c)
    if not out:
        raise ValueError("the selection gives no loss configuration")
    return out


def add_controls(configs: Sequence, shape: Sequence[int], patch: int | None
                 ) -> tuple[list, dict[str, str]]:
    """Append each amplified configuration's scale-matched control to ``configs``.

    The control is the plain loss times the configuration's effective loss scale on
    ``patch``-sized patches of ``shape`` slices
    (:func:`napari_dfct.losses.scale_matched_control`, e.g. ``l2@1.47``), placed right after
    the first configuration it controls for. Returns the new list and ``{configuration:
    control}`` for every configuration that has one.
    """
    from ..losses import scale_matched_control

    h, w = int(shape[0]), int(shape[1])
    p = min(int(patch), h, w) if patch else None
    names = {c.name for c in configs}
    out, control_of = [], {}
    for c in configs:
        out.append(c)
        ctrl = scale_matched_control(c, (h, w), p)
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
    table = {"NONE": "none", "BASELINE": "none", "S": "S", "F": "F", "S+F": "S+F", "SF": "S+F",
             "F+S": "F+S", "FS": "F+S"}
    if key not in table:
        raise ValueError(f"unknown amplification scheme {s!r}: use none, S, F, S+F or F+S")
    return table[key]


# --------------------------------------------------------------------------- data resolution
_SUFFIXES = (".tif", ".tiff", ".npy")


def _find_file(folder: Path, stem: str, required: bool = True) -> Path | None:
    for suffix in _SUFFIXES:
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    if required:
        raise ValueError(f"{folder} has no {stem}.tif (expected a `dfct simulate` folder)")
    return None


def _is_pair_of_arrays(obj: Any) -> bool:
    return isinstance(obj, (tuple, list)) and len(obj) in (2, 3) and all(
        isinstance(a, np.ndarray) for a in obj
    )


def _save_array(path: Path, data: np.ndarray) -> Path:
    """Save ``data`` to ``path`` unless the file exists: equal content is reused, other
    content is refused (never overwritten)."""
    from ..io import write_volume

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}-{os.getpid()}-{time.monotonic_ns()}{path.suffix}")
    write_volume(tmp, np.asarray(data, dtype=np.float32))
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
    if isinstance(train, (str, os.PathLike)):
        folder = Path(train)
        if not folder.is_dir():
            raise ValueError(f"training data folder {folder} does not exist")
        return {"input": str(_find_file(folder, "input").resolve()),
                "target": str(_find_file(folder, "target").resolve())}
    if isinstance(train, dict):
        paths = {k: Path(train[k]) for k in ("input", "target")}
    elif isinstance(train, (tuple, list)) and len(train) == 2:
        paths = {"input": Path(train[0]), "target": Path(train[1])}
    else:
        raise ValueError("train must be a folder, (input, target) paths or (input, target) arrays")
    for k, p in paths.items():
        if not p.is_file():
            raise ValueError(f"training {k} file {p} does not exist")
    return {k: str(p.resolve()) for k, p in paths.items()}


def _resolve_test(test: Any, out_dir: Path) -> dict:
    """Paths of the test volumes (input, target, optional truth) and the test meta.json."""
    meta = None
    if hasattr(test, "input") and hasattr(test, "target") and not isinstance(test, (str, Path)):
        meta = dict(getattr(test, "meta", None) or {})
        arrays = {"input": test.input, "target": test.target,
                  "truth": getattr(test, "truth", None)}
        folder = out_dir / "data" / "test"
        for k, a in arrays.items():
            if a is not None:
                _save_array(folder / f"{k}.tif", a)
        if meta:
            meta_path = folder / "meta.json"
            if meta_path.is_file() and read_json(meta_path) != json_safe(meta):
                raise ValueError(f"{meta_path} holds another test set; use another output "
                                 "folder")
            atomic_write_json(meta_path, meta)
        test = folder
    if isinstance(test, (str, os.PathLike)):
        folder = Path(test)
        if not folder.is_dir():
            raise ValueError(f"test data folder {folder} does not exist")
        out = {"input": _find_file(folder, "input"), "target": _find_file(folder, "target"),
               "truth": _find_file(folder, "truth", required=False)}
        meta_path = folder / "meta.json"
        out["meta"] = read_json(meta_path) if meta_path.is_file() else None
    elif isinstance(test, dict):
        out = {k: (Path(test[k]) if test.get(k) else None) for k in ("input", "target", "truth")}
        if out["input"] is None or out["target"] is None:
            raise ValueError("the test set needs an input and a target")
        meta = test.get("meta")
        if isinstance(meta, (str, os.PathLike)):
            meta = read_json(meta)
        out["meta"] = meta
    else:
        raise ValueError("test must be a folder or a dict of input/target/truth paths")
    for k in ("input", "target", "truth"):
        if out[k] is not None:
            if not Path(out[k]).is_file():
                raise ValueError(f"test {k} file {out[k]} does not exist")
            out[k] = str(Path(out[k]).resolve())
    return out


def _resolve_roi(meta: dict | None, roi: dict | None, n_slices: int) -> dict:
    """Merge the ROIs/line/slice of the test ``meta.json`` with explicit options."""
    from ._util import parse_line, parse_point

    meta = dict(meta or {})
    roi = {k: v for k, v in dict(roi or {}).items() if v is not None}
    signal = roi.get("signal_center", meta.get("signal_center"))
    background = roi.get("background_center", meta.get("background_center"))
    if signal is None or background is None:
        raise ValueError(
            "the test set has no ROIs: give the signal and background ROI centres "
            "(--signal R,C --background R,C) or use a test folder with a meta.json"
        )
    signal, background = parse_point(signal), parse_point(background)
    line = roi.get("line")
    if line is None:
        # an explicit ROI moves the default line with it (the convention: signal -> background)
        line = meta.get("line") if "signal_center" not in roi and "background_center" not in roi \
            else None
    line = parse_line(line) if line is not None else [list(signal), list(background)]
    size = int(roi.get("roi_size", meta.get("roi_size", 30)))
    if size < 2:
        raise ValueError(f"ROI size must be at least 2 pixels, got {size}")
    z = roi.get("slice", meta.get("slice"))
    z = n_slices // 2 if z is None else int(z)
    if not -n_slices <= z < n_slices:
        raise ValueError(f"test slice {z} is outside the test volume ({n_slices} slices)")
    z = z % n_slices
    return {"signal_center": signal, "background_center": background, "line": line,
            "roi_size": size, "slice": z}


def _to_slice(vol: np.ndarray, z: int) -> np.ndarray:
    vol = np.asarray(vol, dtype=np.float32)
    if vol.ndim == 2:
        return vol
    if vol.ndim != 3:
        raise ValueError(f"expected a 2-D or 3-D test image, got shape {vol.shape}")
    return np.ascontiguousarray(vol[z])


# --------------------------------------------------------------------------- metrics
def measure_slice(image: np.ndarray, roi: dict, truth: np.ndarray | None = None,
                  target: np.ndarray | None = None) -> dict:
    """CNR, FWHM and (against ``truth`` / ``target``) PSNR and SSIM of one 2-D slice.

    :func:`napari_dfct.metrics.measure` with ``reference=truth`` (``psnr``, ``ssim``), plus
    ``psnr_target``/``ssim_target`` against the target (:func:`napari_dfct.metrics.psnr`,
    :func:`~napari_dfct.metrics.ssim`). PSNR/SSIM use the reference's range (max - min) as
    ``data_range``, so every image compared with one reference is scored on one scale.
    Non-finite values become None (strict JSON).
    """
    from .. import metrics

    image = np.asarray(image, dtype=np.float32)
    m = dict(metrics.measure(image, roi["signal_center"], roi["background_center"],
                             line=roi["line"], size=roi["roi_size"], reference=truth))
    if truth is None:
        m["psnr"] = m["ssim"] = None
    if target is None:
        m["psnr_target"] = m["ssim_target"] = None
    else:
        m["psnr_target"] = float(metrics.psnr(image, target))
        m["ssim_target"] = float(metrics.ssim(image, target))
    return json_safe(m)


# --------------------------------------------------------------------------- one run
def _move_aside(run_dir: Path) -> Path:
    """Rename an incomplete run folder to ``<name>.incomplete-<timestamp>`` (never delete)."""
    base = run_dir.with_name(f"{run_dir.name}.incomplete-{timestamp()}")
    dest, k = base, 1
    while dest.exists():
        dest = base.with_name(f"{base.name}-{k}")
        k += 1
    os.replace(run_dir, dest)
    return dest


def _read_slice(path: str | None) -> np.ndarray | None:
    if not path:
        return None
    from ..io import read_volume

    data, _ = read_volume(path)
    return np.asarray(data, dtype=np.float32)


def run_one(spec: dict, callback: Callable | None = None) -> dict:
    """Train one configuration with one seed, predict the test slice and measure it.

    A top-level function of a small JSON-able ``spec`` (see :func:`prepare_grid`), so it
    runs in this process, in a spawned worker or as a Slurm job. Writes into
    ``spec["run_dir"]``: ``spec.json``, ``model/`` (the checkpoint), ``prediction.tif``
    (the 2-D float32 prediction of the test slice) and finally ``metrics.json``, atomically,
    as the completion marker. If ``metrics.json`` already exists the run is not repeated.
    A folder left by an interrupted attempt is moved aside first.

    Parameters
    ----------
    spec : dict
        One run's description (paths, loss and training options, ROIs, device, threads).
    callback : callable, optional
        Called with every :class:`napari_dfct.train.EpochEvent` (in-process runs only).

    Returns
    -------
    dict
        The content of ``metrics.json``, plus ``"status"``: ``"trained"`` or ``"skipped"``.
    """
    run_dir = Path(spec["run_dir"])
    done = run_dir / METRICS_FILE
    if done.is_file():
        record = read_json(done)
        record["status"] = "skipped"
        return record

    threads = spec.get("threads")
    import torch

    if threads:
        torch.set_num_threads(int(threads))

    moved = None
    resume = _can_resume(spec)
    if run_dir.exists() and not resume:
        moved = str(_move_aside(run_dir))
    run_dir.mkdir(parents=True, exist_ok=resume)
    started = time.time()
    atomic_write_json(run_dir / "spec.json", spec)
    _heartbeat(run_dir, started)

    def on_epoch(event):
        _heartbeat(run_dir, started, event.epoch)
        if callback is not None:
            callback(event)

    try:
        record = _train_and_measure(spec, run_dir, started, moved, on_epoch, resume)
    except BaseException:
        # keep the reason next to the partial run (the folder is moved aside on restart)
        import traceback

        (run_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        (run_dir / RUNNING_FILE).unlink(missing_ok=True)
        raise
    (run_dir / RUNNING_FILE).unlink(missing_ok=True)
    return record


def _heartbeat(run_dir: Path, started: float, epoch: int | None = None) -> None:
    """Write ``running.json``: who runs this folder, and when it last finished an epoch."""
    atomic_write_json(run_dir / RUNNING_FILE, {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_array": (f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
                        if "SLURM_ARRAY_JOB_ID" in os.environ
                        and "SLURM_ARRAY_TASK_ID" in os.environ else None),
        "started": started,
        "heartbeat": time.time(),
        "epoch": epoch,
    })


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError, ValueError, TypeError):
        return True
    return True


def running_elsewhere(run_dir: str | os.PathLike, stale_after: float = 1800.0) -> dict | None:
    """The ``running.json`` of a run folder if another process seems to be training it.

    A folder counts as running when its heartbeat (written at the start and after every
    epoch) is younger than ``stale_after`` seconds and, on this host, its process is alive.
    A crashed or killed run stops beating and is taken over after ``stale_after``; a run
    of this host whose process is gone is taken over at once.
    """
    path = Path(run_dir) / RUNNING_FILE
    if not path.is_file() or (Path(run_dir) / METRICS_FILE).is_file():
        return None
    try:
        info = read_json(path)
        age = time.time() - float(info["heartbeat"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if age > stale_after:
        return None
    if info.get("host") == socket.gethostname() and not _pid_alive(info.get("pid", -1)):
        return None
    info["age_s"] = age
    return info


def _can_resume(spec: dict) -> bool:
    """Whether ``spec`` asks to resume and its run folder holds a training state."""
    from ..checkpoint import STATE_FILE

    return bool(spec.get("resume")) and (Path(spec["run_dir"]) / "model" / STATE_FILE).is_file()


def _train_and_measure(spec, run_dir, started, moved, callback, resume):
    import torch

    from ..checkpoint import load_model
    from ..infer import predict
    from ..io import read_volume, write_volume
    from ..train import TrainConfig, resolve_device, run_fit

    done = run_dir / METRICS_FILE

    cfg = dict(spec["train"])
    cfg["loss"] = dict(spec["loss"])
    cfg["seed"] = int(spec["seed"])
    cfg["device"] = spec.get("device", "auto")
    cfg["keep_state"] = bool(spec.get("keep_state", False))
    config = TrainConfig.from_dict(cfg)
    device = resolve_device(config.device)

    x, _ = read_volume(spec["train_data"]["input"])
    y, _ = read_volume(spec["train_data"]["target"])
    t0 = time.perf_counter()
    resumed_from = None
    if resume:
        from ..checkpoint import STATE_FILE

        try:
            resumed_from = int(read_json(run_dir / "model" / STATE_FILE)["state"]["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            resumed_from = -1  # unknown: fit() checks the state itself
    result = run_fit(np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.float32), config,
                     out_dir=run_dir / "model", callback=callback, resume=resume, preview=False)
    seconds_train = time.perf_counter() - t0
    if result.stopped == "cancelled":
        raise RuntimeError(f"training of {spec['name']} seed {spec['seed']} was cancelled")
    if result.model_dir is None:
        raise RuntimeError(f"training of {spec['name']} seed {spec['seed']} finished no epoch "
                           "with a finite validation loss: no model to evaluate")

    test = spec["test_slice"]
    image = _read_slice(test["input"])
    truth = _read_slice(test.get("truth"))
    target = _read_slice(test.get("target"))
    loaded = load_model(result.model_dir or (run_dir / "model"), device=str(device))
    t1 = time.perf_counter()
    pred = np.asarray(predict(loaded, image, device=str(device)), dtype=np.float32)
    seconds_predict = time.perf_counter() - t1
    write_volume(run_dir / PREDICTION_FILE, pred)

    record = {
        "name": spec["name"],
        "seed": int(spec["seed"]),
        "loss": spec["loss"],
        **measure_slice(pred, spec["roi"], truth=truth, target=target),
        "epochs_run": int(result.epochs_run),
        "best_epoch": int(result.best_epoch),
        "best_val_loss": float(result.best_val_loss),
        "stopped": str(result.stopped),
        "seconds_train": seconds_train,
        "seconds_predict": seconds_predict,
        "seconds": time.time() - started,
        "device": str(device),
        "device_name": _device_name(device),
        "torch_threads": torch.get_num_threads(),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "model_dir": "model",
        "prediction": PREDICTION_FILE,
        "moved_aside": moved,
        "resumed_from_epoch": resumed_from,
    }
    atomic_write_json(done, record)  # LAST: the completion marker
    record = read_json(done)
    record["status"] = "trained"
    return record


def _device_name(device) -> str:
    try:
        import torch

        if getattr(device, "type", str(device)) == "cuda":
            return torch.cuda.get_device_name(device)
    except Exception:  # pragma: no cover - informative only
        pass
    return platform.processor() or platform.machine()


# --------------------------------------------------------------------------- grid settings
@dataclasses.dataclass
class SlurmOptions:
    """Resources of each run when the grid goes through submitit.

    Attributes
    ----------
    partition : str or None
        Slurm partition (``None``: the cluster's default).
    gpus_per_job, cpus_per_job : int
        Resources of each array task.
    time : int
        Time limit of each run, in minutes.
    mem : float or None
        Memory per run, in GB (``None``: the cluster's default).
    array_parallelism : int
        At most this many runs at a time.
    folder : str or None
        Where submitit keeps job scripts, pickled calls and logs (default ``OUT/slurm``).
    setup : list of str
        Shell lines run before each job (``module load cuda``, ``source venv/bin/activate``).
    extra : dict
        More submitit Slurm parameters without the ``slurm_`` prefix (``account``, ``qos``,
        ``constraint``, ``exclude``...).
    """

    partition: str | None = None
    gpus_per_job: int = 1
    cpus_per_job: int = 8
    time: int = 240
    mem: float | None = None
    array_parallelism: int = 32
    folder: str | None = None
    setup: list = dataclasses.field(default_factory=list)
    extra: dict = dataclasses.field(default_factory=dict)


def _train_dict(train_config: Any) -> dict:
    from ..train import TrainConfig

    if train_config is None:
        train_config = TrainConfig()
    elif isinstance(train_config, dict):
        train_config = TrainConfig.from_dict(train_config)
    d = dict(train_config.to_dict())
    return json_safe(d)


def _comparable(settings: dict) -> dict:
    # the data are compared by content (a moved data folder is still the same data)
    keys = ("data", "roi", "train")
    return {k: settings.get(k) for k in keys}


def fingerprint(path: str | os.PathLike, chunk: int = 1 << 20) -> dict:
    """Size and SHA-256 of a file (of its first and last 64 MiB beyond 1 GiB)."""
    import hashlib

    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if size <= (1 << 30):
            for block in iter(lambda: fh.read(chunk), b""):
                h.update(block)
        else:  # pragma: no cover - large files
            h.update(fh.read(64 << 20))
            fh.seek(size - (64 << 20))
            h.update(fh.read(64 << 20))
    return {"bytes": size, "sha256": h.hexdigest()}


def prepare_grid(train: Any, test: Any, out_dir: str | os.PathLike,
                 configs: Iterable | None = None, seeds: Iterable[int] | str = (0,),
                 train_config: Any = None, *,
                 roi: dict | None = None, device: str | None = None, keep_state: bool = False,
                 resume: bool = False, controls: bool = False) -> tuple[dict, list[dict]]:
    """Write the grid's settings and test slice, and return them with one spec per run.

    Creates ``OUT/grid.json``, ``OUT/test-slice/*.tif`` and ``OUT/reference.json``. A grid
    folder made earlier with other data, ROIs or training options is refused
    (``ValueError``): results of different settings are never mixed. New configurations
    and seeds are added to an existing grid.

    Parameters
    ----------
    train, test, out_dir, configs, seeds, train_config, roi, device
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
        One spec per (configuration, seed), in grid order, for :func:`run_one`.
    """
    from ..io import write_volume
    from ..losses import LossConfig
    from ._util import parse_seeds

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if configs is None:
        configs = make_configs()
    configs = [LossConfig.from_name(c) if isinstance(c, str)
               else (LossConfig.from_dict(c) if isinstance(c, dict) else c) for c in configs]
    seeds = parse_seeds(seeds)
    train_data = _resolve_train(train, out_dir)
    test_paths = _resolve_test(test, out_dir)
    tdict = _train_dict(train_config)
    run_device = device or tdict.get("device") or "auto"
    control_of: dict[str, str] = {}
    if controls:
        configs, control_of = add_controls(configs, _volume_shape(train_data["input"])[-2:],
                                           tdict.get("patch"))
    for k in _PER_RUN_KEYS:
        tdict.pop(k, None)

    test_in = _read_slice(test_paths["input"])
    n_slices = 1 if test_in.ndim == 2 else test_in.shape[0]
    roi = _resolve_roi(test_paths.get("meta"), roi, n_slices)
    z = roi["slice"]
    slices = {"input": _to_slice(test_in, z)}
    for k in ("target", "truth"):
        if test_paths[k]:
            slices[k] = _to_slice(_read_slice(test_paths[k]), z)
            if slices[k].shape != slices["input"].shape:
                raise ValueError(f"test {k} slice has shape {slices[k].shape}, the input "
                                 f"{slices['input'].shape}")
    settings = {
        "format": "napari-dfct-grid/1",
        "train_data": train_data,
        "test": {k: test_paths[k] for k in ("input", "target", "truth")},
        "data": {
            **{f"train_{k}": fingerprint(v) for k, v in train_data.items()},
            **{f"test_{k}": fingerprint(test_paths[k]) if test_paths[k] else None
               for k in ("input", "target", "truth")},
        },
        "roi": roi,
        "train": tdict,
        "device": run_device,
        "configs": {c.name: json_safe(c.to_dict()) for c in configs},
        "controls": control_of,
        "seeds": seeds,
    }
    grid_file = out_dir / GRID_FILE
    if grid_file.is_file():
        old = read_json(grid_file)
        a, b = _comparable(json_safe(old)), _comparable(json_safe(settings))
        diff = [k for k in a
                if json.dumps(a[k], sort_keys=True) != json.dumps(b[k], sort_keys=True)]
        if diff:
            raise ValueError(
                f"{out_dir} holds a grid made with other settings ({', '.join(diff)} differ); "
                "use another output folder to keep results of different settings apart"
            )
        merged = dict(old.get("configs", {}))
        for name, d in settings["configs"].items():
            if name in merged and json.dumps(merged[name], sort_keys=True) != json.dumps(
                    d, sort_keys=True):
                raise ValueError(f"{out_dir} already has a configuration {name!r} with other "
                                 "loss settings (mode/normalisation); use another output folder")
            merged[name] = d
        settings["configs"] = merged
        settings["controls"] = {**old.get("controls", {}), **control_of}
        settings["seeds"] = list(dict.fromkeys(list(old.get("seeds", [])) + seeds))
        settings["created"] = old.get("created")
    settings.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S"))
    settings["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")

    slice_dir = out_dir / TEST_SLICE_DIR
    slice_dir.mkdir(exist_ok=True)
    slice_paths = {}
    for k, img in slices.items():
        slice_paths[k] = str(write_volume(slice_dir / f"{k}.tif", img))
    reference = {"slice": z, "roi": roi}
    for k, img in slices.items():
        reference[k] = measure_slice(img, roi, truth=slices.get("truth"),
                                     target=slices.get("target"))
    atomic_write_json(out_dir / REFERENCE_FILE, reference)
    atomic_write_json(grid_file, settings)

    specs = []
    for c in configs:
        for s in seeds:
            specs.append({
                "name": c.name,
                "seed": int(s),
                "run_dir": str(out_dir / RUNS_DIR / c.name / f"seed-{s}"),
                "loss": json_safe(c.to_dict()),
                "train": tdict,
                "device": run_device,
                "threads": None,
                "keep_state": bool(keep_state),
                "resume": bool(resume),
                "train_data": train_data,
                "test_slice": {k: slice_paths.get(k) for k in ("input", "target", "truth")},
                "roi": roi,
            })
    return settings, specs


def grid_status(out_dir: str | os.PathLike) -> dict:
    """Which runs of a grid are done, incomplete (folder without metrics.json) or missing.

    Returns
    -------
    dict
        ``{"done": [(name, seed)], "incomplete": [...], "missing": [...],
        "aside": [paths of moved-aside attempts]}`` for the configurations and seeds listed
        in ``grid.json``, plus any finished run found on disk.
    """
    out_dir = Path(out_dir)
    settings = read_json(out_dir / GRID_FILE)
    status = {"done": [], "incomplete": [], "missing": [], "aside": []}
    expected = [(n, int(s)) for n in settings.get("configs", {})
                for s in settings.get("seeds", [])]
    runs = out_dir / RUNS_DIR
    found = set()
    if runs.is_dir():
        for cdir in sorted(p for p in runs.iterdir() if p.is_dir()):
            for rdir in sorted(p for p in cdir.iterdir() if p.is_dir()):
                if ".incomplete-" in rdir.name:
                    status["aside"].append(str(rdir))
                    continue
                if not rdir.name.startswith("seed-"):
                    continue
                try:
                    seed = int(rdir.name[5:])
                except ValueError:
                    continue
                found.add((cdir.name, seed))
                key = "done" if (rdir / METRICS_FILE).is_file() else "incomplete"
                status[key].append((cdir.name, seed))
    status["missing"] = [k for k in expected if k not in found]
    return status


_ACTIVE_SLURM_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING",
                        "SUSPENDED", "RESIZING", "READY", "REQUEUE_HOLD", "REQUEUE_FED"}


def queued_runs(out_dir: str | os.PathLike, pending: Iterable[tuple[str, int]] | None = None
                ) -> tuple[dict, list[str]]:
    """Runs of earlier Slurm submissions (``OUT/submitted-*.json``) still queued or running.

    Asks Slurm (``sacct``, through submitit) once for all earlier arrays.

    Parameters
    ----------
    out_dir : path
        The grid folder.
    pending : iterable of (name, seed), optional
        Only these runs are looked up (default: all submitted ones).

    Returns
    -------
    active : dict
        ``{(name, seed): {"job_id", "state"}}`` for the runs in an active Slurm state
        (pending, running, requeued...).
    unknown : list of str
        Job ids whose state Slurm did not report (``sacct`` missing or the job too old).
    """
    out_dir = Path(out_dir)
    wanted = None if pending is None else {(str(n), int(s)) for n, s in pending}
    items = []
    for path in sorted(out_dir.glob("submitted-*.json")):
        try:
            doc = read_json(path)
        except (OSError, ValueError):
            continue
        if doc.get("executor") != "slurm":
            continue
        for item in doc.get("jobs", []):
            key = (str(item["name"]), int(item["seed"]))
            if wanted is None or key in wanted:
                items.append((key, str(item["job_id"]), doc.get("folder", str(out_dir))))
    if not items:
        return {}, []
    try:
        import submitit
    except ImportError:  # pragma: no cover
        return {}, [job_id for _, job_id, _ in items]
    jobs = [(key, submitit.SlurmJob(folder=folder, job_id=job_id))
            for key, job_id, folder in items]
    jobs[0][1].get_info(mode="force")  # one sacct call for every registered array
    active, unknown = {}, []
    for key, job in jobs:
        info = job.watcher.get_info(job.job_id, mode="cache")
        state = str(info.get("State") or "UNKNOWN").split()[0].upper()
        if state in _ACTIVE_SLURM_STATES:
            active[key] = {"job_id": job.job_id, "state": state}
        elif state == "UNKNOWN":
            unknown.append(job.job_id)
    return active, unknown


# --------------------------------------------------------------------------- logging
def _log(out_dir: Path, event: dict) -> None:
    event = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **event}
    with open(out_dir / LOG_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(json_safe(event), allow_nan=False) + "\n")


def read_log(out_dir: str | os.PathLike) -> list[dict]:
    """The events of ``OUT/grid-log.jsonl`` (trained, skipped, failed, moved-aside, submitted)."""
    path = Path(out_dir) / LOG_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _fmt(v, spec=".3g") -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return "n/a" if not np.isfinite(v) else format(v, spec)


def _short_error(exc: BaseException) -> str:
    """One line for an exception (submitit's FailedJobError carries a whole traceback)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else ""
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}"


def _summary_line(rec: dict) -> str:
    return (f"{rec['name']:<22} seed {rec['seed']:<3} CNR {_fmt(rec.get('cnr'))}"
            f"  FWHM {_fmt(rec.get('fwhm'))}  PSNR {_fmt(rec.get('psnr'))}"
            f"  SSIM {_fmt(rec.get('ssim'))}  epochs {rec.get('epochs_run')}"
            f" (best {rec.get('best_epoch')}, {rec.get('stopped')})"
            f"  {_fmt(rec.get('seconds'), '.0f')} s on {rec.get('device')}")


# --------------------------------------------------------------------------- executors
def _init_worker(gpu_queue, threads: int | None) -> None:  # pragma: no cover - subprocess
    """Pool initializer: pin this worker to one GPU and bound its CPU threads."""
    if gpu_queue is not None:
        try:
            gpu = gpu_queue.get_nowait()
        except Exception:
            gpu = None
        if gpu is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(int(threads))


def _cuda_count(device: str) -> int:
    if not (device == "auto" or device.startswith("cuda")):
        return 0
    if "," not in device and ":" in device:
        return 0  # an explicit device index: leave it alone
    try:
        import torch

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover
        return 0


def _visible_gpus(n_gpu: int) -> list[str]:
    """The GPU ids to hand to workers: this process's ``CUDA_VISIBLE_DEVICES`` if set."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [g.strip() for g in env.split(",") if g.strip()] if env else []
    return ids[:n_gpu] if ids else [str(i) for i in range(n_gpu)]


def _run_local(specs, jobs, on_done, bar):
    if jobs <= 1:
        for spec in specs:
            label = f"{spec['name']} s{spec['seed']}"

            def callback(ev, label=label):
                if bar is not None:
                    bar.set_postfix_str(
                        f"{label} epoch {ev.epoch}/{ev.epochs} val {ev.val_loss:.4g}",
                        refresh=True)

            try:
                rec = run_one(spec, callback=callback)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001 - reported, the grid goes on
                on_done(spec, None, exc)
            else:
                on_done(spec, rec, None)
        return
    ctx = mp.get_context("spawn")
    device = str(specs[0].get("device", "auto")) if specs else "auto"
    n_gpu = _cuda_count(device)
    queue = None
    threads = max(1, (os.cpu_count() or 1) // jobs)
    if n_gpu > 1:
        gpus = _visible_gpus(n_gpu)
        queue = ctx.Queue()
        for i in range(jobs):
            queue.put(gpus[i % len(gpus)])
    pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                  initargs=(queue, threads))
    try:
        futures = {pool.submit(run_one, spec): spec for spec in specs}
        for fut in cf.as_completed(futures):
            spec = futures[fut]
            try:
                rec = fut.result()
            except Exception as exc:  # noqa: BLE001 - incl. a worker killed (BrokenProcessPool)
                on_done(spec, None, exc)
            else:
                on_done(spec, rec, None)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    else:
        pool.shutdown(wait=True)


def _run_submitit(specs, cluster, slurm: SlurmOptions, out_dir: Path, wait: bool, on_done,
                  poll: float = 2.0):
    try:
        import submitit
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ValueError("the slurm executor needs submitit: pip install 'napari-dfct[slurm]'") \
            from exc
    folder = Path(slurm.folder) if slurm.folder else out_dir / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params: dict[str, Any] = {
        "name": "dfct-grid",
        "timeout_min": int(slurm.time),
        "gpus_per_node": int(slurm.gpus_per_job),
        "cpus_per_task": int(slurm.cpus_per_job),
        "tasks_per_node": 1,
        "nodes": 1,
    }
    if slurm.mem:
        params["mem_gb"] = float(slurm.mem)
    if cluster == "slurm":
        params["slurm_array_parallelism"] = int(slurm.array_parallelism)
        if slurm.partition:
            params["slurm_partition"] = slurm.partition
        if slurm.setup:
            params["slurm_setup"] = list(slurm.setup)
        for key, value in (slurm.extra or {}).items():
            params[f"slurm_{key}"] = value
    try:
        executor.update_parameters(**params)
    except (ValueError, TypeError, NameError) as exc:  # submitit: NameError on unknown names
        raise ValueError(f"bad Slurm parameters: {str(exc).splitlines()[0]}") from None
    specs = [dict(s, threads=int(slurm.cpus_per_job) if slurm.cpus_per_job else None)
             for s in specs]
    jobs = executor.map_array(run_one, specs)
    submitted = [{"name": s["name"], "seed": s["seed"], "job_id": str(j.job_id)}
                 for s, j in zip(specs, jobs)]
    atomic_write_json(out_dir / f"submitted-{timestamp()}.json",
                      {"executor": cluster, "folder": str(folder), "jobs": submitted})
    for item in submitted:
        _log(out_dir, {"status": "submitted", **item})
    if not wait:
        return jobs
    pending = list(zip(specs, jobs))
    while pending:
        still = []
        for spec, job in pending:
            if not job.done():
                still.append((spec, job))
                continue
            try:
                rec = job.result()
            except Exception as exc:  # noqa: BLE001
                on_done(spec, None, exc)
            else:
                on_done(spec, rec, None)
        pending = still
        if pending:
            time.sleep(poll)
    return jobs


def run_grid(train: Any, test: Any, out_dir: str | os.PathLike, configs: Iterable | None = None,
             seeds: Iterable[int] | str = (0,), train_config: Any = None, executor: str = "local",
             jobs: int = 1, *, roi: dict | None = None, device: str | None = None,
             slurm: SlurmOptions | dict | None = None, wait: bool = True, report: bool = True,
             progress: bool = True, print_fn: Callable[[str], None] | None = None,
             keep_state: bool = False, resume: bool = False,
             stale_after: float = 1800.0, controls: bool = False) -> Path:
    """Train and evaluate every (configuration, seed) of a grid; skip finished runs.

    Parameters
    ----------
    train : path, (input, target) paths or arrays, or Simulation
        The training pair: a ``dfct simulate`` folder (``input.tif``, ``target.tif``), two
        volume files, two float32 (Z, Y, X) arrays (saved under ``OUT/data/train``), or a
        :class:`napari_dfct.simulate.Simulation`.
    test : path, dict or Simulation
        The held-out test set: a folder with ``input.tif``, ``target.tif``, optional
        ``truth.tif`` and ``meta.json`` (ROIs, line, slice), a dict of such paths, or a
        Simulation (saved under ``OUT/data/test``).
    out_dir : path
        The grid folder (created; an existing one is continued).
    configs : iterable of LossConfig or names, optional
        Default: the paper's 18 (:func:`make_configs`).
    seeds : iterable of int or str
        ``[0, 1]``, ``"0-9"``...
    train_config : TrainConfig or dict, optional
        Training options shared by every run; ``loss`` and ``seed`` are set per run.
    executor : {"local", "slurm", "submitit-local"}
        ``local``: this process (``jobs == 1``) or a pool of ``jobs`` spawned processes (one
        GPU each when several exist); ``slurm``: a submitit job array; ``submitit-local``:
        submitit's local executor (the same submission path, on this machine).
    jobs : int
        Parallel runs of the local executor.
    roi : dict, optional
        ``signal_center``, ``background_center``, ``line``, ``roi_size``, ``slice``,
        overriding the test set's ``meta.json``.
    device : str, optional
        Device of every run (default: the training config's).
    slurm : SlurmOptions or dict, optional
        Resources for the submitit executors.
    wait : bool
        For submitit executors: wait for the jobs (and report), or return after submission.
    report : bool
        Write the report (:func:`grid_report`) at the end.
    progress : bool
        Show a tqdm progress bar (stderr) and a summary line per finished run.
    print_fn : callable, optional
        Where summary lines go (default: ``tqdm.write`` to stderr).
    keep_state : bool
        Keep each finished run's resume files (the optimizer state: about twice the model's
        size per run, so off by default).
    resume : bool
        A run folder without ``metrics.json`` whose model folder holds a training state
        (saved after every epoch) continues from its last epoch
        (:func:`napari_dfct.train.fit` with ``resume=True``) instead of being moved aside
        and redone. Off by default: an interrupted run is redone from scratch.
    stale_after : float
        Seconds after which an unfinished run folder whose ``running.json`` heartbeat
        stopped counts as dead (see :func:`running_elsewhere`); younger ones are left
        alone, so two grids on one folder never train the same run twice at once.
    controls : bool
        Also train each amplified configuration's scale-matched control (the plain loss
        times the configuration's effective loss scale, e.g. ``l2@1.47``;
        :func:`add_controls`).

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    ValueError
        Bad data, options, or an output folder made with other settings.
    GridRunError
        Some runs failed (after all the others have finished); they are listed in
        ``OUT/grid-log.jsonl`` and each failed run folder holds an ``error.txt``.
    """
    from tqdm.auto import tqdm

    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    jobs = int(jobs)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    out_dir = Path(out_dir).resolve()
    settings, specs = prepare_grid(train, test, out_dir, configs, seeds, train_config, roi=roi,
                                   device=device, keep_state=keep_state, resume=resume,
                                   controls=controls)
    unfinished = [(s["name"], s["seed"]) for s in specs
                  if not (Path(s["run_dir"]) / METRICS_FILE).is_file()]
    queued, unknown = queued_runs(out_dir, unfinished)
    todo, skipped, busy = [], 0, []
    for spec in specs:
        run_dir = Path(spec["run_dir"])
        if (run_dir / METRICS_FILE).is_file():
            skipped += 1
            _log(out_dir, {"status": "skipped", "name": spec["name"], "seed": spec["seed"]})
            continue
        info = running_elsewhere(run_dir, stale_after)
        q = queued.get((spec["name"], spec["seed"]))
        if info is not None:
            why = (f"is being trained elsewhere (host {info.get('host')}, pid "
                   f"{info.get('pid')}, last heartbeat {info['age_s']:.0f} s ago)")
            busy.append((spec, why))
            _log(out_dir, {"status": "running-elsewhere", "name": spec["name"],
                           "seed": spec["seed"], "host": info.get("host"),
                           "pid": info.get("pid"), "heartbeat_age_s": info["age_s"]})
            continue
        if q is not None:
            busy.append((spec, f"is {q['state'].lower()} as Slurm job {q['job_id']}"))
            _log(out_dir, {"status": "queued", "name": spec["name"], "seed": spec["seed"],
                           **q})
            continue
        if run_dir.exists() and not _can_resume(spec):
            dest = _move_aside(run_dir)
            _log(out_dir, {"status": "moved-aside", "name": spec["name"], "seed": spec["seed"],
                           "to": str(dest)})
        todo.append(spec)

    bar = tqdm(total=len(specs) - len(busy), initial=skipped, desc="grid", unit="run",
               file=sys.stderr, disable=not progress, dynamic_ncols=True)
    say = print_fn or (lambda s: tqdm.write(s, file=sys.stderr))
    if progress and skipped:
        say(f"{skipped} of {len(specs)} runs already finished in {out_dir}: skipped")
    if progress and unknown:
        say(f"could not ask Slurm about {len(unknown)} earlier job(s) (e.g. {unknown[0]}); if "
            "they are still queued, their runs will be trained twice")
    if progress:
        for spec, why in busy:
            say(f"{spec['name']} seed {spec['seed']} {why}: left alone")
    failures: list[tuple[dict, BaseException]] = []

    def on_done(spec, rec, exc):
        if exc is not None:
            failures.append((spec, exc))
            _log(out_dir, {"status": "failed", "name": spec["name"], "seed": spec["seed"],
                           "error": _short_error(exc)})
            if progress:
                say(f"{spec['name']:<22} seed {spec['seed']:<3} FAILED: {_short_error(exc)} "
                    f"(see {Path(spec['run_dir']) / 'error.txt'})")
        else:
            _log(out_dir, {"status": rec.get("status", "trained"), "name": rec["name"],
                           "seed": rec["seed"], "cnr": rec.get("cnr"), "fwhm": rec.get("fwhm"),
                           "epochs_run": rec.get("epochs_run"), "seconds": rec.get("seconds")})
            if progress:
                say(_summary_line(rec))
        bar.update(1)

    try:
        if todo:
            if executor == "local":
                _run_local(todo, jobs, on_done, bar)
            else:
                if not isinstance(slurm, SlurmOptions):
                    slurm = SlurmOptions(**(slurm or {}))
                cluster = "slurm" if executor == "slurm" else "local"
                _run_submitit(todo, cluster, slurm, out_dir, wait, on_done)
                if not wait:
                    bar.close()
                    if progress:
                        say(f"submitted {len(todo)} runs; when they have finished, run "
                            f"`dfct grid-report {out_dir}`")
                    return out_dir
    finally:
        bar.close()
    if report:
        from .report import grid_report

        grid_report(out_dir)
    if failures:
        names = ", ".join(f"{s['name']} seed {s['seed']}" for s, _ in failures)
        raise GridRunError(f"{len(failures)} run(s) failed: {names} (see {out_dir / LOG_FILE}); "
                           "start the grid again to redo them")
    return out_dir
