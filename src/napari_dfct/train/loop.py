"""The training loop, :func:`fit`, in named steps (the package docstring of
:mod:`napari_dfct.train` describes what it does)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..context import context_stack
from ..data import IntensityWindow, PatchSampler, centre_slice, validate_pair
from ..device import autocast as _autocast
from ..device import cancel_check as _cancel_check
from ..device import free_memory as _free_device_memory
from ..device import is_out_of_memory as _is_oom
from ..device import prefers_channels_last, resolve_device
from ..scans import GroupedSampler, ScanSlices
from ._rng import _set_rng_state
from ._state import due as _state_due
from ._state import epoch_state, match_param_layouts, write_pending
from ._state import keep as _keep_state
from ._state import written as _state_written
from .config import TrainConfig
from .logs import TensorBoardLog
from .optim import build_optimizer as _build_optimizer
from .optim import recalibrate_batchnorm
from .progress import BatchProgress, BatchTicker
from .resources import EpochEstimate, OutOfMemory, StepTimer, check_memory, oom_message
from .start import (
    FINGERPRINT_KEY,
    MEMORY_FORMAT_KEY,
    _as_volume,
    _check_oracle,
    _check_resumed_data,
    _context_starts,
    _data_shape,
    _record_resumed,
    _resume_memory_format,
    _start_config,
    _with_validation_set,
    data_fingerprint,
)
from .volume import build_volume_data, predict_preview
from .window import training_split, training_window

__all__ = ["EpochEstimate", "EpochEvent", "FitResult", "OutOfMemory", "fit", "run_fit"]


@dataclass
class EpochEvent:
    """What :func:`fit` yields after every epoch.

    ``preview`` is the prediction (denormalised, float32 (Y, X)) on the preview slice, or
    None when no preview was requested. ``val_loss`` is the selection criterion
    (``TrainConfig.select``): ``val_plain`` (the un-amplified loss, the default) or
    ``val_amplified`` (the training loss's configuration on full validation slices).
    """

    epoch: int
    epochs: int
    train_loss: float
    val_loss: float
    lr: float
    best_epoch: int
    best_val_loss: float
    improved: bool
    seconds: float
    preview: np.ndarray | None = None
    steps: int = 0
    preview_index: int | None = None
    val_plain: float = math.nan
    val_amplified: float = math.nan

    def to_dict(self) -> dict:
        """JSON-friendly record (without the preview)."""
        d = asdict(self)
        d.pop("preview")
        return d


@dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes
    ----------
    model_dir : pathlib.Path or None
        The model folder (None when ``out_dir`` was None).
    best_epoch, best_val_loss : int, float
        The best epoch (0 when none finished) and its validation loss.
    epochs_run : int
        The last finished epoch (counting epochs before a resume).
    stopped : str
        ``"completed"``, ``"early_stopping"`` or ``"cancelled"``.
    history : list of dict
        Per-epoch records (without previews).
    model : torch.nn.Module or None
        The best network (CPU, eval mode), when an epoch finished.
    window : IntensityWindow or None
        The intensity window used.
    config : dict
        The model config as saved in ``config.json``.
    """

    model_dir: Path | None
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    stopped: str
    history: list[dict]
    model: torch.nn.Module | None = None
    window: IntensityWindow | None = None
    config: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers
def _model_config_dict(model: torch.nn.Module, cfg: TrainConfig) -> dict:
    from ..model import model_config

    return model_config(model)


@torch.no_grad()
def _validate(
    model: torch.nn.Module,
    loss_fns: tuple[torch.nn.Module, ...],
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    batch: int,
    device: torch.device,
    amp: bool,
    channels_last: bool,
    keep: int | None,
    g_val: torch.Tensor | None = None,
) -> tuple[list[float], torch.Tensor | None]:
    """Mean of each loss over full validation slices; optionally keep one slice's
    prediction. ``x_val`` (N, C, H, W) and ``y_val`` (N, H, W) may be lists of stacks
    (slices of several sizes, ``keep`` None): every slice counts once. ``g_val``: the
    slices' known angular parts (an oracle loss)."""
    if isinstance(x_val, list):
        sums, count = [0.0] * len(loss_fns), 0
        for xg, yg in zip(x_val, y_val):
            means, _ = _validate(model, loss_fns, xg, yg, batch, device, amp, channels_last, None)
            slices = int(xg.shape[0]) * (int(xg.shape[2]) if xg.ndim == 5 else 1)  # 3-D chunks
            sums = [t + m * slices for t, m in zip(sums, means)]
            count += slices
        return [t / count for t in sums], None
    model.eval()
    totals = [torch.zeros((), dtype=torch.float64, device=device) for _ in loss_fns]
    kept = None
    n = x_val.shape[0]
    for start in range(0, n, batch):
        xb = x_val[start : start + batch].to(device, non_blocking=True)
        yb = y_val[start : start + batch].to(device, non_blocking=True).unsqueeze(1)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with _autocast(device, amp):
            pred = model(xb)
        pred = pred.float()
        g = None if g_val is None else g_val[start : start + batch].to(device)
        for total, loss_fn in zip(totals, loss_fns):
            total += loss_fn(pred, yb, input=centre_slice(xb), angular=g).double() * len(xb)
        if keep is not None and start <= keep < start + xb.shape[0]:
            kept = pred[keep - start, 0].detach().to("cpu", torch.float32)
    return [float(t.item()) / n for t in totals], kept


# --------------------------------------------------------------------------- fit
def fit(
    input: np.ndarray | ScanSlices,
    target: np.ndarray | None,
    config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    *,
    cancel: threading.Event | Callable[[], bool] | None = None,
    resume: bool = False,
    preview_index: int | None = None,
    preview: bool = True,
    on_estimate: Callable[[EpochEstimate], Any] | None = None,
    on_batch: Callable[[BatchProgress], Any] | None = None,
    oracle: np.ndarray | None = None,
    val_input: np.ndarray | None = None,
    val_target: np.ndarray | None = None,
) -> Generator[EpochEvent, None, FitResult]:
    """Train a residual U-Net; yield an :class:`EpochEvent` per epoch, return a :class:`FitResult`.

    Parameters
    ----------
    input, target : numpy.ndarray
        float32 (Z, Y, X) volumes of the same shape, Z >= 2, finite. Slices are split into
        training and validation sets (``config.val_fraction``, seeded). Or ``input`` a
        :class:`napari_dfct.scans.ScanSlices` (2-D slices of several scans, any sizes;
        ``target`` None): whole scans are held out for validation. With
        ``config.context`` K > 0 (a 2.5-D model) every slice's input is its ``2K + 1``
        neighbouring slices of the same scan, reflected at the scan's ends
        (:mod:`napari_dfct.context`): a volume is one scan, and a ``ScanSlices`` must
        carry its slices' neighbours (``load_scans(..., context=K)``).
    config : TrainConfig, optional
        Training parameters (paper defaults).
    out_dir : path, optional
        Model folder: the best model (``model.safetensors`` + ``config.json``) is saved
        whenever the validation loss improves, ``history.json`` and ``history.csv``
        after every epoch, the resume state as :mod:`napari_dfct.train._state` says
        (TensorBoard files in ``tensorboard/`` with ``config.tensorboard``). None keeps
        everything in memory (``FitResult.model``).
    cancel : threading.Event or callable, optional
        Checked before every batch; when set, the run stops within one batch and returns
        ``stopped="cancelled"`` (the best checkpoint so far stays).
    resume : bool
        Continue the run saved in ``out_dir`` (weights, optimizer, scheduler, epoch,
        early-stopping counters and RNG states) on the same data (shape and fingerprint)
        with the same settings: ``config`` may differ from the saved one only in
        :data:`~napari_dfct.train.config.RESUME_MAY_CHANGE` (``epochs`` and ``patience``
        raise the limits; a ``window`` of None means the saved one); ``config=None`` keeps
        the saved settings.
    preview_index : int, optional
        Slice (index into the volume) to preview; default: the first validation slice.
    preview : bool
        Put a prediction of the preview slice (input units) into each event.
    on_estimate : callable, optional
        Called once, after the first two optimiser steps of this call, with an
        :class:`EpochEstimate` (measured, not guessed) of the time per epoch.
    on_batch : callable, optional
        Called with a :class:`~napari_dfct.train.progress.BatchProgress` (batches within
        the epoch, time left) after an epoch's first step, then at most every 0.5 s.
    oracle : numpy.ndarray, optional
        ``(Z, n_bins)`` known angular parts ``G`` of every slice's streaks
        (:func:`napari_dfct.simulate.slice_angular`): required by, and only used by, an
        ``oracle`` directional loss, whose patches then carry them through the
        augmentation (:func:`napari_dfct.data.augment_angular`).
    val_input, val_target : numpy.ndarray, optional
        A separate validation set (float32 (Z, Y, X), the training slices' size): every
        slice of ``input`` then trains and these slices validate, instead of a fraction of
        ``input`` (``config.val_fraction`` is not used). Not with a data set of scans or an
        oracle loss.

    Yields
    ------
    EpochEvent

    Returns
    -------
    FitResult
        As the generator's return value (``StopIteration.value``).

    Raises
    ------
    ValueError
        Bad inputs or parameters, or a resume without a saved state, on other data or with
        other settings (one line naming what differs); ``out_dir`` holds a
        model or other files (a new run), or cannot be written to (checked before any
        work; a :class:`napari_dfct.checkpoint.CheckpointError`).
    OutOfMemory
        The device ran out of memory, or a batch's activations would not fit in the
        available memory (checked before training; a :class:`RuntimeError`; the message
        names a smaller batch size).
    OSError
        A model file could not be written (a full disk): the folder keeps its last
        complete state.
    FloatingPointError
        The training loss became NaN or infinite.
    """
    config, saved_cfg, out_path = _start_config(config, out_dir, resume)
    scans = input if isinstance(input, ScanSlices) else None
    x_all: np.ndarray | list[np.ndarray]
    y_all: np.ndarray | list[np.ndarray]
    if scans is not None:  # slices of many scans, any sizes: split by scan
        scans.validate(patch=config.patch)
        x_all = [_as_volume(a, "input") for a in scans.inputs]
        y_all = [_as_volume(a, "target") for a in scans.targets]
    else:
        x_all = _as_volume(input, "input")
        y_all = _as_volume(target, "target")
        validate_pair(x_all, y_all, patch=config.patch)
    fixed_split = None
    if val_input is not None or val_target is not None:
        x_all, y_all, fixed_split = _with_validation_set(x_all, y_all, val_input, val_target)
        if scans is not None or config.loss.oracle:
            raise ValueError(
                "a separate validation set goes with one training volume and a loss "
                "without an oracle (a data set of scans holds out whole scans itself)"
            )
    starts = _context_starts(config, x_all, scans, fixed_split)
    fingerprint = data_fingerprint(x_all, y_all)
    _check_resumed_data(saved_cfg, out_path, _data_shape(x_all), fingerprint)
    oracle = _check_oracle(config, oracle, scans, _data_shape(x_all))
    run = _Run(
        config=config,
        out_path=out_path,
        preview=bool(preview),
        on_estimate=on_estimate,
        ticker=None if on_batch is None else BatchTicker(on_batch),
        scans=scans,
        oracle=oracle,
        fixed_split=fixed_split,
        fingerprint=fingerprint,
        starts=starts,
    )
    _plan(run, x_all, y_all, preview_index)
    check_cancel = _cancel_check(cancel)

    # The CPU kernels used here are deterministic for a fixed thread count, so seeded CPU
    # runs reproduce without the process-wide `torch.use_deterministic_algorithms`
    # switch, which would also import torch's compiler stack (about a second holding the
    # GIL: a visible stall when training runs in a napari worker thread).
    try:
        _build(run, x_all, y_all)
        del x_all, y_all
        if resume:
            _restore(run)
            _record_resumed(out_path, run.model_cfg)
        stopped = "completed"
        if run.bad_epochs >= config.patience and run.epoch > 0:
            stopped = "early_stopping"
        while stopped == "completed" and run.epoch < config.epochs:
            t0 = time.perf_counter()
            lr = float(run.optimizer.param_groups[0]["lr"])
            trained = _train_one_epoch(run, check_cancel)
            if trained is None or check_cancel():
                stopped = "cancelled"
                break
            train_loss, steps = trained
            run.epoch += 1
            event = _validate_and_select(run, train_loss, lr, steps)
            event.seconds = time.perf_counter() - t0
            run.history.append(event.to_dict())
            _save_epoch(run, event.improved)
            _log_epoch(run, event)
            yield event
            if run.bad_epochs >= config.patience:
                stopped = "early_stopping"
        return _finish(run, stopped)
    finally:
        # an error or a closed generator: the last finished epoch's state goes to disk
        write_pending(run)
        # drop every device tensor held by the run (a traceback may keep this frame)
        device = run.device
        run.release()
        _free_device_memory(device)


@dataclass
class _Run:
    """Everything one :func:`fit` call holds, passed between its named steps."""

    config: TrainConfig
    out_path: Path | None
    preview: bool
    device: torch.device = torch.device("cpu")
    use_amp: bool = False
    channels_last: bool = False
    window: IntensityWindow | None = None
    train_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    val_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    preview_index: int = 0
    shape: tuple[int, int, int] = (0, 0, 0)
    model: Any = None
    optimizer: Any = None
    scheduler: Any = None
    sampler: Any = None
    loss_fn: Any = None
    plain_fn: Any = None
    x_val: Any = None
    y_val: Any = None
    preview_x: Any = None
    keep: int | None = None
    val_batch: int = 1
    model_cfg: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    epoch: int = 0
    best_epoch: int = 0
    best_val: float = math.inf
    bad_epochs: int = 0
    best_state: dict | None = None
    saved: bool = False
    state_written: float = 0.0
    pending_state: dict | None = None
    on_estimate: Any = None
    ticker: BatchTicker | None = None
    tensorboard: Any = None
    preview_norm: Any = None
    scans: Any = None
    fixed_split: tuple[np.ndarray, np.ndarray] | None = None
    oracle: Any = None
    g_val: Any = None
    fingerprint: dict | None = None
    starts: tuple = (0,)  # the first slice of every scan of a volume (context neighbours)
    preview_z: int | None = None  # a 3-D model: the preview slice within preview_x

    def release(self) -> None:
        self.model = self.optimizer = self.scheduler = self.sampler = None
        self.loss_fn = self.plain_fn = self.x_val = self.y_val = self.preview_x = None
        self.best_state = self.preview_norm = self.oracle = self.g_val = None
        self.pending_state = None
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None


def _plan(run: _Run, x_all, y_all, preview_index) -> None:
    """Step 2: split (by scan for a data set of scans), preview slice, intensity window
    and device."""
    config = run.config
    n = len(x_all)
    run.shape = _data_shape(x_all)
    if run.fixed_split is not None:  # a separate validation set, after the training slices
        run.train_idx, run.val_idx = run.fixed_split
    else:
        run.train_idx, run.val_idx = training_split(
            run.scans if run.scans is not None else x_all,
            config.val_fraction,
            config.seed,
            config.dims,
        )
    if preview_index is None:
        preview_index = int(run.val_idx[0])
    if not 0 <= int(preview_index) < n:
        raise ValueError(f"preview_index {preview_index} is out of range for {n} slices")
    run.preview_index = int(preview_index)
    if config.window is None:  # the one rule, also shown by the Train widget
        config.window = training_window(x_all, y_all, run.train_idx)
    run.window = config.window
    run.device = resolve_device(config.device)
    run.use_amp = bool(config.amp) and run.device.type == "cuda"
    run.channels_last = prefers_channels_last(run.device)
    check_memory(config, run.device)


def _build(
    run: _Run, x_all: np.ndarray | list[np.ndarray], y_all: np.ndarray | list[np.ndarray]
) -> None:
    """Step 3: model, loss, optimiser, schedule, patch sampler and validation tensors."""
    from ..losses import AmplifiedLoss
    from ..model import build_model

    config, device, window = run.config, run.device, run.window
    assert window is not None  # chosen by _plan
    n, h, w = run.shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build_model(config.preset, **config.model_args())
    if config.dims == 3:  # the z-chunks it predicts in (napari_dfct.infer); 5-D tensors
        model.patch_depth = int(config.patch_depth)
        run.channels_last = False  # (channels_last is a 4-D memory format)
    model = model.to(device)
    if run.channels_last:
        # torch's stubs lack Module.to's memory_format overload (documented, and working)
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    run.model = model
    run.loss_fn = AmplifiedLoss(config.loss).to(device)
    run.plain_fn = AmplifiedLoss(config.loss.plain).to(device)
    run.optimizer = _build_optimizer(model, config)
    run.scheduler = torch.optim.lr_scheduler.StepLR(
        run.optimizer, step_size=config.step_size, gamma=config.gamma
    )
    if config.dims == 3:  # patches of consecutive slices of one scan
        build_volume_data(run, x_all, y_all)
    elif isinstance(x_all, list):
        assert isinstance(y_all, list)  # both from one ScanSlices
        _build_scans(run, x_all, y_all)
    else:
        assert isinstance(y_all, np.ndarray)  # both volumes
        # A_S of the full slice (None when S is off), cropped with every patch
        a_s = run.loss_fn.full_spatial_weight((h, w), device=device)
        xn = window.normalize(x_all)
        yn = window.normalize(y_all)
        k = config.context  # (N, 2K + 1, H, W) inputs: neighbours within one scan
        run.sampler = PatchSampler(
            context_stack(xn, run.train_idx, k, run.starts),
            yn[run.train_idx],
            a_s,
            patch=config.patch,
            patches_per_slice=config.patches_per_slice,
            augment=config.augment,
            seed=config.seed + 1,
            device=device,
            angular=None if run.oracle is None else run.oracle[run.train_idx],
        )
        if run.oracle is not None:
            run.g_val = torch.from_numpy(run.oracle[run.val_idx]).to(run.sampler.storage)
        run.x_val = torch.from_numpy(context_stack(xn, run.val_idx, k, run.starts))
        run.x_val = run.x_val.to(run.sampler.storage)
        run.y_val = torch.from_numpy(yn[run.val_idx]).to(run.sampler.storage)
        run.preview_x = torch.from_numpy(context_stack(xn, [run.preview_index], k, run.starts)[0])
        if run.preview_index in set(run.val_idx.tolist()):
            run.keep = int(np.searchsorted(run.val_idx, run.preview_index))
    run.val_batch = max(1, (config.batch_size * config.patch * config.patch) // (h * w))
    run.model_cfg = {
        "name": config.loss.name,
        "preset": config.preset,
        "model": _model_config_dict(model, config),
        "loss": config.loss.to_dict(),
        "window": window.to_dict(),
        "train": config.to_dict(),
        "split": {"train": run.train_idx.tolist(), "val": run.val_idx.tolist()},
        "data_shape": [int(n), int(h), int(w)],
        FINGERPRINT_KEY: run.fingerprint,
        MEMORY_FORMAT_KEY: "channels_last" if run.channels_last else "contiguous",
    }
    if run.scans is not None:
        sc = run.scans
        run.model_cfg["dataset"] = {
            "scans": list(sc.names),
            "val_scans": sorted({sc.names[int(sc.scans[i])] for i in run.val_idx}),
            "slices": [[str(name), int(z)] for name, z in sc.origins],
            "slice_shapes": [list(a.shape) for a in x_all],
        }


def _build_scans(run: _Run, x_all: list[np.ndarray], y_all: list[np.ndarray]) -> None:
    """Step 3, for slices of many scans (any sizes): a grouped sampler, validation slices
    stacked by size (a list of (N, H, W) tensors)."""
    config, device, window = run.config, run.device, run.window
    assert window is not None  # chosen by _plan
    xn = [window.normalize(a) for a in x_all]
    yn = [window.normalize(a) for a in y_all]
    xc = run.scans.model_inputs(xn, window, config.context)  # (C, H, W) each
    run.sampler = GroupedSampler(
        [xc[i] for i in run.train_idx],
        [yn[i] for i in run.train_idx],
        lambda shape: run.loss_fn.full_spatial_weight(shape, device=device),
        patch=config.patch,
        patches_per_slice=config.patches_per_slice,
        augment=config.augment,
        seed=config.seed + 1,
        device=device,
    )
    run.x_val, run.y_val = [], []
    val = [int(i) for i in run.val_idx]
    for shape in dict.fromkeys(xn[i].shape for i in val):
        members = [i for i in val if xn[i].shape == shape]
        run.x_val.append(
            torch.from_numpy(np.stack([xc[i] for i in members])).to(run.sampler.storage)
        )
        run.y_val.append(
            torch.from_numpy(np.stack([yn[i] for i in members])).to(run.sampler.storage)
        )
    run.preview_x = torch.from_numpy(xc[run.preview_index])
    run.keep = None  # the preview slice is predicted on its own


def _restore(run: _Run) -> None:
    """Step 3b: weights, optimiser, schedule, counters and RNG states of a stopped run."""
    from .. import checkpoint as ckpt

    out_path = run.out_path
    assert out_path is not None  # a resumed run has a folder (_start_config)
    st = ckpt.load_training_state(out_path)
    try:
        run.model.load_state_dict(st["model"])
        run.optimizer.load_state_dict(st["optimizer"])
        run.scheduler.load_state_dict(st["scheduler"])
        run.epoch = int(st["epoch"])
        es = st["early_stopping"]
        run.best_epoch = int(es["best_epoch"])
        run.best_val = math.inf if es["best_val_loss"] is None else float(es["best_val_loss"])
        run.bad_epochs = int(es["bad_epochs"])
        _set_rng_state(st["rng"], run.sampler)
    except (KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise ckpt.CheckpointError(f"cannot resume from {out_path}: {exc}") from exc
    run.saved = True
    _resume_memory_format(run, ckpt.load_config(out_path))
    match_param_layouts(run.optimizer)  # after the model's memory format is settled
    run.history = ckpt.load_history(out_path, until=run.epoch)
    if run.best_epoch == 0:
        return
    if "best_model" in st:
        best = st["best_model"]
    elif run.best_epoch == run.epoch:
        best = st["model"]
    else:  # a state saved before it held the best weights: they are the folder's
        best = ckpt.load_model(out_path, device="cpu").model.state_dict()
    run.best_state = {k: v.detach().to("cpu", copy=True) for k, v in best.items()}
    exported = (ckpt.weights_epoch(out_path), ckpt.load_config(out_path).get("best_epoch"))
    if exported != (run.best_epoch, run.best_epoch):
        # killed after new weights (or their config) were written but before their
        # state: put the state's best model back, so the folder matches the run it
        # continues
        _set_best_fields(run)
        ckpt.save_run(out_path, run.model_cfg, run.history, weights=run.best_state)


def _train_one_epoch(run: _Run, check_cancel) -> tuple[float, int] | None:
    """Step 4: one epoch of optimiser steps; None when cancelled (within one batch)."""
    config, device, model = run.config, run.device, run.model
    model.train()
    running = torch.zeros((), dtype=torch.float64, device=device)
    seen = steps = 0
    timer = StepTimer(run) if run.on_estimate is not None else None
    if run.ticker is not None:
        run.ticker.start_epoch(
            run.epoch + 1, config.epochs, run.sampler.steps_per_epoch(config.batch_size)
        )
    for batch in run.sampler.epoch(config.batch_size):
        xb, yb, wb = batch
        if check_cancel():
            return None
        if run.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        oom = False
        try:
            with _autocast(device, run.use_amp):
                pred = model(xb)
            if timer is not None:
                timer.forward_done()
            loss = run.loss_fn(pred.float(), yb, wb, input=centre_slice(xb), angular=batch.g)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
        except Exception as exc:
            if not _is_oom(exc):
                raise
            oom = True
        if oom:
            # raised outside the handler: no traceback keeps the activations alive
            pred = loss = xb = yb = wb = batch = None
            raise OutOfMemory(oom_message(run.config, run.device))
        running += loss.detach().double() * xb.shape[0]
        seen += xb.shape[0]
        steps += 1
        if timer is not None and timer.step(int(xb.shape[0])):
            timer = None
        if run.ticker is not None:
            run.ticker.step()
    train_loss = float(running.item()) / max(seen, 1)
    if not math.isfinite(train_loss):
        lr = float(run.optimizer.param_groups[0]["lr"])
        raise FloatingPointError(
            f"training diverged in epoch {run.epoch + 1} (loss {train_loss}); "
            f"try a smaller learning rate than {lr:g}"
        )
    run.scheduler.step()
    return train_loss, steps


def _validate_and_select(run: _Run, train_loss: float, lr: float, steps: int) -> EpochEvent:
    """Step 5: (re-estimate BatchNorm statistics,) validate, update the best model."""
    config, device = run.config, run.device
    if config.bn_recalibrate > 0:
        recalibrate_batchnorm(
            run.model,
            (
                (xb.contiguous(memory_format=torch.channels_last) if run.channels_last else xb)
                for xb, _, _ in run.sampler.extra_batches(
                    config.bn_recalibrate,
                    config.batch_size,
                    seed=config.seed * 1_000_003 + run.epoch,
                )
            ),
        )
    oom = False
    want_preview = run.preview or bool(config.tensorboard)
    try:
        (val_plain, val_amp), kept = _validate(
            run.model,
            (run.plain_fn, run.loss_fn),
            run.x_val,
            run.y_val,
            run.val_batch,
            device,
            run.use_amp,
            run.channels_last,
            run.keep if want_preview else None,
            run.g_val,
        )
        if want_preview and run.keep is None:
            kept = predict_preview(
                run.model, run.preview_x, device, run.use_amp, run.channels_last, run.preview_z
            )
    except Exception as exc:
        if not _is_oom(exc):
            raise
        oom = True
    if oom:
        _, h, w = run.shape
        raise OutOfMemory(
            f"out of {device.type.upper()} memory validating full {h}x{w} slices "
            f"(preset {config.preset!r}); try a smaller preset, or the device cpu"
        )
    val_loss = val_plain if config.select == "plain" else val_amp
    improved = math.isfinite(val_loss) and val_loss < run.best_val
    if improved:
        run.best_val, run.best_epoch, run.bad_epochs = val_loss, run.epoch, 0
        run.best_state = {
            k: v.detach().to("cpu", copy=True) for k, v in run.model.state_dict().items()
        }
    else:
        run.bad_epochs += 1
    preview = None
    run.preview_norm = kept.numpy() if want_preview and kept is not None else None
    if run.preview and kept is not None and run.window is not None:
        preview = run.window.denormalize(kept.numpy())
    return EpochEvent(
        epoch=run.epoch,
        epochs=int(config.epochs),
        train_loss=train_loss,
        val_loss=float(val_loss),
        lr=lr,
        best_epoch=run.best_epoch,
        best_val_loss=float(run.best_val),
        improved=bool(improved),
        seconds=0.0,
        preview=preview,
        steps=steps,
        preview_index=run.preview_index if run.preview else None,
        val_plain=float(val_plain),
        val_amplified=float(val_amp),
    )


def _save_epoch(run: _Run, improved: bool) -> None:
    """Step 6: best checkpoint (when improved), history and the resume state (on disk when
    :func:`~napari_dfct.train._state.due`, else kept in memory)."""
    from .. import checkpoint as ckpt

    if run.out_path is None:
        return
    _set_best_fields(run)
    state = epoch_state(run)
    write_state = _state_due(run)
    # weights, config, history, then the state; the first save of a new run writes them
    # all into a hidden folder and renames it into place
    ckpt.save_run(
        run.out_path,
        run.model_cfg,
        run.history,
        state if write_state else None,
        weights=run.model.state_dict() if improved else None,
        new=not run.saved,
    )
    run.saved = True
    _state_written(run, state) if write_state else _keep_state(run, state)


def _log_epoch(run: _Run, event: EpochEvent) -> None:
    """Step 6b: TensorBoard (when asked): losses, learning rate, the preview slice."""
    if not run.config.tensorboard or run.out_path is None:
        return
    from .. import checkpoint as ckpt

    if run.tensorboard is None:
        run.tensorboard = TensorBoardLog(run.out_path / ckpt.TENSORBOARD_DIR)
    run.tensorboard.log(event, run.preview_norm, run.preview_index)
    run.preview_norm = None


def _set_best_fields(run: _Run) -> None:
    run.model_cfg["best_epoch"] = run.best_epoch
    run.model_cfg["best_val_loss"] = run.best_val
    run.model_cfg["epochs_run"] = run.epoch


def _finish(run: _Run, stopped: str) -> FitResult:
    """Step 7: drop the resume state if asked, and return the best model."""
    from .. import checkpoint as ckpt

    if stopped == "cancelled":
        write_pending(run)  # resume continues after the last finished epoch
    run.pending_state = None
    if run.out_path is not None and stopped != "cancelled" and not run.config.keep_state:
        ckpt.delete_training_state(run.out_path)
    best_model = None
    if run.best_state is not None:
        run.model.load_state_dict(run.best_state)
        best_model = run.model.to("cpu", memory_format=torch.contiguous_format).eval()
    run.model_cfg["best_epoch"] = run.best_epoch
    run.model_cfg["best_val_loss"] = run.best_val
    return FitResult(
        model_dir=run.out_path if (run.out_path is not None and run.best_epoch > 0) else None,
        best_epoch=run.best_epoch,
        best_val_loss=float(run.best_val),
        epochs_run=run.epoch,
        stopped=stopped,
        history=run.history,
        model=best_model,
        window=run.window,
        config=run.model_cfg,
    )


def run_fit(*args, callback: Callable[[EpochEvent], Any] | None = None, **kwargs) -> FitResult:
    """Drive :func:`fit` to the end, calling ``callback(event)`` per epoch; return the result."""
    gen = fit(*args, **kwargs)
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(event)
