"""One run of the grid: train one configuration with one seed, predict and measure.

:func:`run_one` is a top-level function of a small JSON-able spec
(:func:`napari_dfct.experiment.layout.prepare_grid`), so the same code runs in this
process, in a spawned worker or as a Slurm job. While it trains, the run folder holds a
``running.json`` heartbeat (rewritten after every epoch), so another start of the grid
leaves it alone (:func:`running_elsewhere`); ``metrics.json``, written atomically last,
marks the run as finished. The prediction is scored by :func:`measure_slice` (CNR, FWHM,
PSNR, SSIM; from :mod:`.scoring`, re-exported here).
"""

from __future__ import annotations

import os
import platform
import socket
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ._procs import pid_alive, process_start
from ._util import atomic_write_json, atomic_write_text, read_json
from .layout import METRICS_FILE, PREDICTION_FILE, RUNNING_FILE, _move_aside, read_test_set
from .scoring import measure_slice, measure_slices

__all__ = [
    "measure_slice",
    "run_one",
    "running_elsewhere",
]


# --------------------------------------------------------------------------- one run
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
        record = read_json(done, expect=dict)
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

        atomic_write_text(run_dir / "error.txt", traceback.format_exc())
        (run_dir / RUNNING_FILE).unlink(missing_ok=True)
        raise
    (run_dir / RUNNING_FILE).unlink(missing_ok=True)
    return record


def _heartbeat(run_dir: Path, started: float, epoch: int | None = None) -> None:
    """Write ``running.json``: who runs this folder, and when it last finished an epoch."""
    atomic_write_json(
        run_dir / RUNNING_FILE,
        {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pid_start": process_start(),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "slurm_array": (
                f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
                if "SLURM_ARRAY_JOB_ID" in os.environ and "SLURM_ARRAY_TASK_ID" in os.environ
                else None
            ),
            "started": started,
            "heartbeat": time.time(),
            "epoch": epoch,
        },
    )


def running_elsewhere(run_dir: str | os.PathLike, stale_after: float = 1800.0) -> dict | None:
    """The ``running.json`` of a run folder if another process seems to be training it.

    A folder counts as running when its heartbeat (written at the start and after every
    epoch) is younger than ``stale_after`` seconds and, on this host, its process is alive.
    A crashed or killed run stops beating and is taken over after ``stale_after``; a run
    of this host whose process is gone is taken over at once: a pid that no longer exists,
    a zombie (an ended process nobody reaped) and a pid now used by a process that started
    at another time than the recorded one (``pid_start``) all count as gone
    (:func:`napari_dfct.experiment._procs.pid_alive`).
    """
    path = Path(run_dir) / RUNNING_FILE
    if not path.is_file() or (Path(run_dir) / METRICS_FILE).is_file():
        return None
    try:
        info = read_json(path, expect=dict)
        age = time.time() - float(info["heartbeat"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if age > stale_after:
        return None
    if info.get("host") == socket.gethostname() and not pid_alive(
        info.get("pid", -1), info.get("pid_start")
    ):
        return None
    info["age_s"] = age
    return info


def _can_resume(spec: dict) -> bool:
    """Whether ``spec`` asks to resume and its run folder holds a training state."""
    from ..checkpoint import has_training_state

    return bool(spec.get("resume")) and has_training_state(Path(spec["run_dir"]) / "model")


def _train_and_measure(spec, run_dir, started, moved, callback, resume):
    """Train, predict the test slice, measure it and write ``metrics.json`` (last)."""
    import torch

    from ..train import resolve_device

    config = _run_config(spec)
    device = resolve_device(config.device)
    result, seconds_train, resumed_from = _train(spec, run_dir, config, callback, resume)
    metrics, seconds_predict = _predict_and_measure(spec, run_dir, result, device)
    record = {
        "name": spec["name"],
        "seed": int(spec["seed"]),
        "loss": spec["loss"],
        **metrics,
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
    done = run_dir / METRICS_FILE
    atomic_write_json(done, record)  # LAST: the completion marker
    record = read_json(done, expect=dict)
    record["status"] = "trained"
    return record


def _run_config(spec: dict):
    """The :class:`napari_dfct.train.TrainConfig` of one run: the grid's options, the
    run's loss, seed, device, ``keep_state`` and ``tensorboard``."""
    from ..train import TrainConfig

    cfg = dict(spec["train"])
    cfg["loss"] = dict(spec["loss"])
    cfg["seed"] = int(spec["seed"])
    cfg["device"] = spec.get("device", "auto")
    cfg["keep_state"] = bool(spec.get("keep_state", False))
    cfg["tensorboard"] = bool(spec.get("tensorboard", False))
    return TrainConfig.from_dict(cfg)


def _train(spec: dict, run_dir: Path, config, callback, resume: bool):
    """Train one run into ``run_dir/model``.

    Returns the :class:`napari_dfct.train.FitResult`, the training time in seconds and the
    epoch a resumed run continued from (``None``: not resumed; -1: unknown).
    """
    from ..io import read_volume
    from ..train import run_fit

    if "pairs" in spec["train_data"]:  # a data set of many scans: the chosen slices
        from ..io.dataset import load_scans

        pairs = spec["train_data"]["pairs"]  # with each slice's neighbours for a context
        x, y = load_scans(pairs, patch=config.patch, context=config.context), None
    else:
        x, _ = read_volume(spec["train_data"]["input"])
        y, _ = read_volume(spec["train_data"]["target"])
        x, y = np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.float32)
    t0 = time.perf_counter()
    resumed_from = None
    if resume:
        from ..checkpoint import training_state_epoch

        resumed_from = training_state_epoch(run_dir / "model")
        if resumed_from is None:
            resumed_from = -1  # unknown: fit() checks the state itself
    oracle = None
    if config.loss.oracle and "input" in spec["train_data"]:
        from ..simulate import folder_angular

        oracle = folder_angular(spec["train_data"]["input"])
    val = [
        np.asarray(read_volume(spec["train_data"][k])[0], dtype=np.float32)
        if k in spec["train_data"]
        else None
        for k in ("val_input", "val_target")
    ]
    result = run_fit(
        x,
        y,
        config,
        out_dir=run_dir / "model",
        callback=callback,
        resume=resume,
        preview=False,
        oracle=oracle,
        val_input=val[0],
        val_target=val[1],
    )
    seconds_train = time.perf_counter() - t0
    if result.stopped == "cancelled":
        raise RuntimeError(f"training of {spec['name']} seed {spec['seed']} was cancelled")
    if result.model_dir is None:
        raise RuntimeError(
            f"training of {spec['name']} seed {spec['seed']} finished no epoch "
            "with a finite validation loss: no model to evaluate"
        )
    return result, seconds_train, resumed_from


def _predict_and_measure(spec: dict, run_dir: Path, result, device) -> tuple[dict, float]:
    """Predict every test slice with the trained model (of a data set of volumes, the
    measured slices, each scan from its own volume: :mod:`.volume_test`), write the
    representative slice's prediction (``prediction.tif``) and measure every slice with
    its own ROIs (:func:`measure_slices`: medians over the slices and ``per_slice``).
    Returns the metrics and the prediction time in seconds."""
    from ..checkpoint import load_model
    from ..infer import predict
    from ..io import write_volume

    if "rois" not in spec:  # a spec of a grid that measured one test slice
        spec = {
            **spec,
            "test": spec["test_slice"],
            "rois": [spec["roi"]],
            "roi": {**spec["roi"], "slice": 0},
        }
    loaded = load_model(result.model_dir or (run_dir / "model"), device=str(device))
    if "scans" in spec["test"]:  # a data set of volumes: each scan from its own slices
        from .volume_test import predict_measured

        test, seconds_predict = predict_measured(loaded, spec["test"], str(device))
        pred = test["prediction"]
        assert pred is not None  # predicted for every scan
    else:
        test = read_test_set(spec["test"])
        assert test["input"] is not None  # read_test_set raises without one
        t1 = time.perf_counter()
        pred = np.asarray(predict(loaded, test["input"], device=str(device)), dtype=np.float32)
        seconds_predict = time.perf_counter() - t1
    z = int(spec["roi"]["slice"])
    write_volume(run_dir / PREDICTION_FILE, pred if pred.ndim == 2 else pred[z])
    return measure_slices(
        pred,
        spec["rois"],
        truth=test["truth"],
        target=test["target"],
        mask=test["mask"],
        representative=z,
    ), seconds_predict


def _device_name(device) -> str:
    try:
        import torch

        if getattr(device, "type", str(device)) == "cuda":
            return torch.cuda.get_device_name(device)
    except Exception:  # noqa: BLE001 # pragma: no cover - informative only
        pass
    return platform.processor() or platform.machine()
