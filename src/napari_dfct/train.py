"""The training loop: one generator used by the GUI, the CLI and the experiment grid.

:func:`fit` trains a residual U-Net on pairs of single-rotation inputs and multi-rotation
targets with the paper's recipe (:class:`TrainConfig` defaults): Adam (lr 1e-3, coupled
weight decay 0.1), StepLR (step 3, gamma 0.9), batch 32, one random 128x128 patch per
training slice and step, flips and +-15 degree rotations, 20 % of the slices for
validation, early stopping with patience 20 on the validation loss over *full-size*
validation slices (the same amplified loss, with A_S of the full slice), at most 100
epochs. The best model is saved as a checkpoint whenever the validation loss improves.

It is a generator: every finished epoch yields an :class:`EpochEvent` and the generator
``return``\\ s a :class:`FitResult` (``StopIteration.value``; :func:`run_fit` drives it for
you). A ``cancel`` flag is checked before every batch; a cancelled run keeps its best
checkpoint and the resume state of its last finished epoch, and ``fit(..., resume=True)``
continues it where it stopped, bit for bit on the CPU.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import (
    IntensityWindow,
    PatchSampler,
    split_slices,
    validate_pair,
    window_from_percentiles,
)
from .device import autocast as _autocast
from .device import cancel_check as _cancel_check
from .device import free_memory as _free_device_memory
from .device import is_out_of_memory as _is_oom
from .device import resolve_device

__all__ = [
    "EpochEvent",
    "FitResult",
    "OutOfMemory",
    "TrainConfig",
    "fit",
    "resolve_device",
    "recipe_config",
    "resume_config",
    "run_fit",
]


def _default_loss():
    from .losses import LossConfig

    return LossConfig()


def _option(default, help: str, choices: tuple | None = None):
    """A TrainConfig field that is also a command-line option (help text and choices)."""
    meta = {"help": help}
    if choices is not None:
        meta["choices"] = tuple(choices)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Training parameters; defaults follow the paper.

    Attributes
    ----------
    loss : LossConfig
        Pixel loss and amplification (:class:`napari_dfct.losses.LossConfig`).
    preset : str
        Model preset (``"paper"``, ``"small"``, ``"tiny"``).
    epochs, patience : int
        At most ``epochs`` epochs; stop after ``patience`` epochs without a better
        validation loss.
    batch_size, patch, patches_per_slice : int
        Patches per optimiser step, patch side, patches per training slice per epoch.
    lr, weight_decay : float
        Learning rate and weight decay (coupled L2 for ``"adam"``, decoupled for
        ``"adamw"``).
    optimizer : str
        ``"adam"`` or ``"adamw"``.
    step_size, gamma : int, float
        StepLR schedule (per epoch).
    val_fraction : float
        Fraction of slices held out for validation.
    seed : int
        Seeds the split, the initial weights and the patch sampler.
    device : str
        ``"auto"`` (CUDA, MPS, CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    window : IntensityWindow or None
        Shared clip window; None takes the 1st/99th percentiles of the training slices
        (input and target pooled).
    augment : bool
        Flips and rotations.
    amp : bool
        bf16 autocast (and channels_last) on CUDA; ignored elsewhere.
    keep_state : bool
        Keep the resume files after a run that finished (completed or early stopping);
        a cancelled run always keeps them.
    model_kwargs : dict
        Overrides of the preset's architecture (passed to ``build_model``).
    """

    loss: Any = field(default_factory=_default_loss)
    preset: str = _option("paper", "model preset", choices=("paper", "small", "tiny"))
    epochs: int = _option(100, "at most this many epochs")
    patience: int = _option(20, "early-stopping patience in epochs")
    batch_size: int = _option(32, "patches per optimiser step")
    patch: int = _option(128, "patch side in pixels")
    patches_per_slice: int = _option(1, "patches per training slice per epoch")
    lr: float = _option(1e-3, "learning rate")
    weight_decay: float = _option(0.1, "weight decay (coupled L2 with adam, decoupled with "
                                       "adamw)")
    optimizer: str = _option("adam", "optimiser (adam: coupled L2 decay, the paper's)",
                             choices=("adam", "adamw"))
    step_size: int = _option(3, "StepLR step in epochs")
    gamma: float = _option(0.9, "StepLR factor")
    val_fraction: float = _option(0.2, "fraction of slices held out for validation")
    seed: int = 0
    device: str = "auto"
    window: IntensityWindow | None = None
    augment: bool = True
    amp: bool = True
    keep_state: bool = True
    model_kwargs: dict = field(default_factory=dict)
    recipe: str = "stable"
    decay_scope: str = _option("all", "parameters weight decay applies to: all, no-norm (not "
                                      "BatchNorm gamma/beta nor biases), no-scale-invariant "
                                      "(not those, nor conv weights that feed a BatchNorm)",
                               choices=("all", "no-norm", "no-scale-invariant"))
    bn_recalibrate: int = _option(8, "re-estimate the BatchNorm running statistics on this "
                                     "many batches before every validation (0: off)")
    select: str = _option("plain", "model-selection criterion for early stopping and the "
                                   "best checkpoint: the plain (un-amplified) or the amplified "
                                   "validation loss", choices=("plain", "amplified"))

    def __post_init__(self) -> None:
        if isinstance(self.loss, dict):
            from .losses import LossConfig

            self.loss = LossConfig.from_dict(self.loss)
        elif isinstance(self.loss, str):
            from .losses import LossConfig

            self.loss = LossConfig.from_name(self.loss)
        if isinstance(self.window, dict):
            self.window = IntensityWindow.from_dict(self.window)

    def validate(self) -> None:
        """Raise :class:`ValueError` for out-of-range parameters."""
        from .model import PRESETS

        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose from {sorted(PRESETS)}")
        for name in ("epochs", "batch_size", "patch", "patches_per_slice", "step_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.patience) < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"learning rate must be positive, got {self.lr}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"weight decay must be >= 0, got {self.weight_decay}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.select not in SELECT_CHOICES:
            raise ValueError(f"select must be one of {', '.join(SELECT_CHOICES)}, "
                             f"got {self.select!r}")
        if self.decay_scope not in DECAY_SCOPES:
            raise ValueError(f"decay scope must be one of {', '.join(DECAY_SCOPES)}, "
                             f"got {self.decay_scope!r}")
        if int(self.bn_recalibrate) < 0:
            raise ValueError(f"bn_recalibrate must be >= 0, got {self.bn_recalibrate}")

    def to_dict(self) -> dict:
        """JSON-friendly dict (the loss and window as nested dicts)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["loss"] = self.loss.to_dict()
        d["window"] = self.window.to_dict() if self.window is not None else None
        d["model_kwargs"] = dict(self.model_kwargs)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(d).items() if k in names})


#: Model-selection criteria: the plain (un-amplified) or the amplified validation loss.
SELECT_CHOICES = ("plain", "amplified")
#: Which parameters weight decay applies to (:func:`parameter_groups`).
DECAY_SCOPES = ("all", "no-norm", "no-scale-invariant")


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


class OutOfMemory(RuntimeError):
    """The device ran out of memory; the message names a smaller batch size to try."""


# --------------------------------------------------------------------------- RNG state
def _rng_state(sampler: PatchSampler) -> dict:
    np_state = np.random.get_state()
    state = {
        "sampler": sampler.get_state(),
        "torch_cpu": torch.get_rng_state().tolist(),
        "numpy": {
            "name": np_state[0],
            "keys": np_state[1].tolist(),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch_cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["torch_cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: dict, sampler: PatchSampler) -> None:
    sampler.set_state(state["sampler"])
    torch.set_rng_state(torch.tensor(state["torch_cpu"], dtype=torch.uint8))
    ns = state["numpy"]
    np.random.set_state(
        (
            ns["name"],
            np.asarray(ns["keys"], dtype=np.uint32),
            ns["pos"],
            ns["has_gauss"],
            ns["cached_gaussian"],
        )
    )
    cuda = state.get("torch_cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in cuda])


# --------------------------------------------------------------------------- helpers
def _as_volume(a: Any, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a)
    except Exception as exc:
        raise ValueError(f"{name} is not an array: {exc}") from exc
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def scale_invariant_parameters(model: torch.nn.Module) -> set[int]:
    """``id`` of every conv weight whose output goes straight into a BatchNorm.

    Such a weight (a bias-free conv followed by BatchNorm in one ``nn.Sequential``) is
    *scale invariant*: the network's output does not change when it is multiplied by a
    positive constant (in training mode, and in eval mode once the running statistics have
    caught up).
    """
    ids: set[int] = set()
    for mod in model.modules():
        if isinstance(mod, torch.nn.Sequential):
            kids = list(mod.children())
            for a, b in zip(kids, kids[1:]):
                if (isinstance(a, torch.nn.modules.conv._ConvNd) and a.bias is None
                        and isinstance(b, torch.nn.modules.batchnorm._BatchNorm)):
                    ids.add(id(a.weight))
    return ids


def parameter_groups(model: torch.nn.Module, weight_decay: float, scope: str) -> list[dict]:
    """Optimizer parameter groups: which parameters weight decay applies to.

    ``scope``: ``"all"`` (every parameter, as ``Adam(model.parameters(), weight_decay=...)``),
    ``"no-norm"`` (not BatchNorm gamma/beta nor biases), ``"no-scale-invariant"`` (not
    those, nor the conv weights that feed a BatchNorm).
    """
    if scope == "all":
        return [{"params": [p for p in model.parameters() if p.requires_grad],
                 "weight_decay": weight_decay}]
    skip: set[int] = set()
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            skip.update(id(p) for p in mod.parameters(recurse=False))
        bias = getattr(mod, "bias", None)
        if isinstance(bias, torch.nn.Parameter):
            skip.add(id(bias))
    if scope == "no-scale-invariant":
        skip |= scale_invariant_parameters(model)
    elif scope != "no-norm":
        raise ValueError(f"unknown weight-decay scope {scope!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if id(p) not in skip], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) in skip], "weight_decay": 0.0},
    ]


def _build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    groups = parameter_groups(model, cfg.weight_decay, cfg.decay_scope)
    return cls(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


@torch.no_grad()
def recalibrate_batchnorm(model: torch.nn.Module, batches) -> int:
    """Re-estimate every BatchNorm's running statistics on the current weights.

    The running mean and variance are reset and replaced by the plain average over
    ``batches`` (an iterable of input tensors, (B, 1, P, P)), in training mode and without
    gradients; the model is left in eval mode. Returns the number of batches used.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    n = 0
    try:
        for xb in batches:
            model(xb)
            n += 1
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.eval()
    return n


def _model_config_dict(model: torch.nn.Module, cfg: TrainConfig) -> dict:
    from .model import model_config

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
) -> tuple[list[float], torch.Tensor | None]:
    """Mean of each loss over full validation slices; optionally keep one slice's
    prediction."""
    model.eval()
    totals = [torch.zeros((), dtype=torch.float64, device=device) for _ in loss_fns]
    kept = None
    n = x_val.shape[0]
    for start in range(0, n, batch):
        xb = x_val[start : start + batch].to(device, non_blocking=True).unsqueeze(1)
        yb = y_val[start : start + batch].to(device, non_blocking=True).unsqueeze(1)
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with _autocast(device, amp):
            pred = model(xb)
        pred = pred.float()
        for total, loss_fn in zip(totals, loss_fns):
            total += loss_fn(pred, yb).double() * xb.shape[0]
        if keep is not None and start <= keep < start + xb.shape[0]:
            kept = pred[keep - start, 0].detach().to("cpu", torch.float32)
    return [float(t.item()) / n for t in totals], kept


@torch.no_grad()
def _predict_one(model, x2d: torch.Tensor, device, amp, channels_last) -> torch.Tensor:
    model.eval()
    xb = x2d.to(device).reshape(1, 1, *x2d.shape[-2:])
    if channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    with _autocast(device, amp):
        pred = model(xb)
    return pred.float()[0, 0].to("cpu")


# --------------------------------------------------------------------------- fit
def fit(
    input: np.ndarray,
    target: np.ndarray,
    config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    *,
    cancel: threading.Event | Callable[[], bool] | None = None,
    resume: bool = False,
    preview_index: int | None = None,
    preview: bool = True,
) -> Generator[EpochEvent, None, FitResult]:
    """Train a residual U-Net; yield an :class:`EpochEvent` per epoch, return a :class:`FitResult`.

    Parameters
    ----------
    input, target : numpy.ndarray
        float32 (Z, Y, X) volumes of the same shape, Z >= 2, finite. Slices are split into
        training and validation sets (``config.val_fraction``, seeded).
    config : TrainConfig, optional
        Training parameters (paper defaults).
    out_dir : path, optional
        Model folder: the best model (``model.safetensors`` + ``config.json``) is saved
        whenever the validation loss improves, ``history.json`` and the resume state after
        every epoch. None keeps everything in memory (``FitResult.model``).
    cancel : threading.Event or callable, optional
        Checked before every batch; when set, the run stops within one batch and returns
        ``stopped="cancelled"`` (the best checkpoint so far stays).
    resume : bool
        Continue the run saved in ``out_dir`` (weights, optimizer, scheduler, epoch,
        early-stopping counters and RNG states). Data, loss, model, window, split and seed
        come from the saved config; ``config.epochs`` and ``config.patience`` may raise the
        limits (``config=None`` keeps the saved ones).
    preview_index : int, optional
        Slice (index into the volume) to preview; default: the first validation slice.
    preview : bool
        Put a prediction of the preview slice (input units) into each event.

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
        Bad inputs or parameters, or a resume without a saved state.
    OutOfMemory
        The device ran out of memory (a :class:`RuntimeError`; the message names a smaller
        batch size).
    FloatingPointError
        The training loss became NaN or infinite.
    """
    config, saved_cfg, out_path = _start_config(config, out_dir, resume)
    x_all = _as_volume(input, "input")
    y_all = _as_volume(target, "target")
    validate_pair(x_all, y_all, patch=config.patch)
    _check_resumed_shape(saved_cfg, out_path, x_all.shape)
    run = _Run(config=config, out_path=out_path, preview=bool(preview))
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
            yield event
            if run.bad_epochs >= config.patience:
                stopped = "early_stopping"
        return _finish(run, stopped)
    finally:
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
    train_idx: np.ndarray | None = None
    val_idx: np.ndarray | None = None
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

    def release(self) -> None:
        self.model = self.optimizer = self.scheduler = self.sampler = None
        self.loss_fn = self.plain_fn = self.x_val = self.y_val = self.preview_x = None
        self.best_state = None


def _start_config(config, out_dir, resume) -> tuple[TrainConfig, dict | None, Path | None]:
    """Step 1: the run's configuration (a copy; the saved one when resuming)."""
    from . import checkpoint as ckpt

    config = copy.deepcopy(config) if config is not None else None
    out_path = Path(out_dir) if out_dir is not None else None
    saved_cfg = None
    if resume:
        if out_path is None:
            raise ValueError("resume=True needs out_dir (the model folder of the stopped run)")
        config = resume_config(
            out_path, **({} if config is None else {
                "epochs": config.epochs, "patience": config.patience,
                "device": config.device, "keep_state": config.keep_state}))
        saved_cfg = ckpt.load_config(out_path)
    if config is None:
        config = TrainConfig()
    config.validate()
    return config, saved_cfg, out_path


def _check_resumed_shape(saved_cfg: dict | None, out_path, shape) -> None:
    if saved_cfg is None:
        return
    saved_shape = saved_cfg.get("data_shape")
    if saved_shape is not None and [int(v) for v in saved_shape] != list(shape):
        raise ValueError(
            f"cannot resume {out_path}: it was trained on data of shape "
            f"{tuple(saved_shape)}, got {tuple(shape)}"
        )


def _plan(run: _Run, x_all: np.ndarray, y_all: np.ndarray, preview_index) -> None:
    """Step 2: split, preview slice, intensity window and device."""
    config = run.config
    n = x_all.shape[0]
    run.shape = tuple(int(v) for v in x_all.shape)
    run.train_idx, run.val_idx = split_slices(n, config.val_fraction, config.seed)
    if preview_index is None:
        preview_index = int(run.val_idx[0])
    if not 0 <= int(preview_index) < n:
        raise ValueError(f"preview_index {preview_index} is out of range for {n} slices")
    run.preview_index = int(preview_index)
    if config.window is None:
        config.window = window_from_percentiles(x_all[run.train_idx], y_all[run.train_idx])
    run.window = config.window
    run.device = resolve_device(config.device)
    run.use_amp = bool(config.amp) and run.device.type == "cuda"
    run.channels_last = run.device.type == "cuda"


def _build(run: _Run, x_all: np.ndarray, y_all: np.ndarray) -> None:
    """Step 3: model, loss, optimiser, schedule, patch sampler and validation tensors."""
    from .losses import AmplifiedLoss
    from .model import build_model

    config, device = run.config, run.device
    n, h, w = run.shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build_model(config.preset, **config.model_kwargs)
    model = model.to(device)
    if run.channels_last:
        model = model.to(memory_format=torch.channels_last)
    run.model = model
    run.loss_fn = AmplifiedLoss(config.loss).to(device)
    run.plain_fn = AmplifiedLoss(config.loss.plain).to(device)
    run.optimizer = _build_optimizer(model, config)
    run.scheduler = torch.optim.lr_scheduler.StepLR(
        run.optimizer, step_size=config.step_size, gamma=config.gamma
    )
    # A_S of the full slice (None when S is off), cropped with every patch
    a_s = run.loss_fn.full_spatial_weight((h, w), device=device)
    xn = run.window.normalize(x_all)
    yn = run.window.normalize(y_all)
    run.sampler = PatchSampler(
        xn[run.train_idx], yn[run.train_idx], a_s, patch=config.patch,
        patches_per_slice=config.patches_per_slice, augment=config.augment,
        seed=config.seed + 1, device=device,
    )
    run.x_val = torch.from_numpy(xn[run.val_idx]).to(run.sampler.storage)
    run.y_val = torch.from_numpy(yn[run.val_idx]).to(run.sampler.storage)
    run.preview_x = torch.from_numpy(xn[run.preview_index])
    if run.preview_index in set(run.val_idx.tolist()):
        run.keep = int(np.searchsorted(run.val_idx, run.preview_index))
    run.val_batch = max(1, (config.batch_size * config.patch * config.patch) // (h * w))
    run.model_cfg = {
        "name": config.loss.name,
        "preset": config.preset,
        "model": _model_config_dict(model, config),
        "loss": config.loss.to_dict(),
        "window": run.window.to_dict(),
        "train": config.to_dict(),
        "split": {"train": run.train_idx.tolist(), "val": run.val_idx.tolist()},
        "data_shape": [int(n), int(h), int(w)],
    }


def _restore(run: _Run) -> None:
    """Step 3b: weights, optimiser, schedule, counters and RNG states of a stopped run."""
    from . import checkpoint as ckpt

    out_path = run.out_path
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
    run.history = [rec for rec in ckpt.load_history(out_path)
                   if int(rec.get("epoch", 0)) <= run.epoch]
    if run.best_epoch > 0:
        best_model = ckpt.load_model(out_path, device="cpu").model
        run.best_state = {k: v.detach().clone() for k, v in best_model.state_dict().items()}


def _oom_message(run: _Run) -> str:
    c = run.config
    return (f"out of {run.device.type.upper()} memory at batch size {c.batch_size} with "
            f"{c.patch}x{c.patch} patches (preset {c.preset!r}); try batch size "
            f"{max(1, c.batch_size // 2)}")


def _train_one_epoch(run: _Run, check_cancel) -> tuple[float, int] | None:
    """Step 4: one epoch of optimiser steps; None when cancelled (within one batch)."""
    config, device, model = run.config, run.device, run.model
    model.train()
    running = torch.zeros((), dtype=torch.float64, device=device)
    seen = steps = 0
    for xb, yb, wb in run.sampler.epoch(config.batch_size):
        if check_cancel():
            return None
        if run.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        oom = False
        try:
            with _autocast(device, run.use_amp):
                pred = model(xb)
            loss = run.loss_fn(pred.float(), yb, wb)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()
        except Exception as exc:
            if not _is_oom(exc):
                raise
            oom = True
        if oom:
            # raised outside the handler: no traceback keeps the activations alive
            pred = loss = xb = yb = wb = None
            raise OutOfMemory(_oom_message(run))
        running += loss.detach().double() * xb.shape[0]
        seen += xb.shape[0]
        steps += 1
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
        recalibrate_batchnorm(run.model, (
            (xb.contiguous(memory_format=torch.channels_last) if run.channels_last else xb)
            for xb, _, _ in run.sampler.extra_batches(
                config.bn_recalibrate, config.batch_size,
                seed=config.seed * 1_000_003 + run.epoch)))
    oom = False
    try:
        (val_plain, val_amp), kept = _validate(
            run.model, (run.plain_fn, run.loss_fn), run.x_val, run.y_val, run.val_batch,
            device, run.use_amp, run.channels_last, run.keep if run.preview else None)
        if run.preview and run.keep is None:
            kept = _predict_one(run.model, run.preview_x, device, run.use_amp,
                                run.channels_last)
    except Exception as exc:
        if not _is_oom(exc):
            raise
        oom = True
    if oom:
        _, h, w = run.shape
        raise OutOfMemory(
            f"out of {device.type.upper()} memory validating full {h}x{w} slices "
            f"(preset {config.preset!r}); try a smaller preset, or the device cpu")
    val_loss = val_plain if config.select == "plain" else val_amp
    improved = math.isfinite(val_loss) and val_loss < run.best_val
    if improved:
        run.best_val, run.best_epoch, run.bad_epochs = val_loss, run.epoch, 0
        run.best_state = {k: v.detach().to("cpu", copy=True)
                          for k, v in run.model.state_dict().items()}
    else:
        run.bad_epochs += 1
    preview = None
    if run.preview and kept is not None:
        preview = run.window.denormalize(kept.numpy())
    return EpochEvent(
        epoch=run.epoch, epochs=int(config.epochs), train_loss=train_loss,
        val_loss=float(val_loss), lr=lr, best_epoch=run.best_epoch,
        best_val_loss=float(run.best_val), improved=bool(improved), seconds=0.0,
        preview=preview, steps=steps,
        preview_index=run.preview_index if run.preview else None,
        val_plain=float(val_plain), val_amplified=float(val_amp),
    )


def _save_epoch(run: _Run, improved: bool) -> None:
    """Step 6: best checkpoint (when improved), history and the resume state."""
    from . import checkpoint as ckpt

    if run.out_path is None:
        return
    run.model_cfg["best_epoch"] = run.best_epoch
    run.model_cfg["best_val_loss"] = run.best_val
    run.model_cfg["epochs_run"] = run.epoch
    if improved:
        ckpt.save_checkpoint(run.out_path, run.model, run.model_cfg, run.history)
    else:
        ckpt.write_history(run.out_path, run.history)
    ckpt.save_training_state(run.out_path, {
        "epoch": run.epoch,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "early_stopping": {"best_epoch": run.best_epoch, "best_val_loss": run.best_val,
                           "bad_epochs": run.bad_epochs},
        "rng": _rng_state(run.sampler),
    })


def _finish(run: _Run, stopped: str) -> FitResult:
    """Step 7: drop the resume state if asked, and return the best model."""
    from . import checkpoint as ckpt

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
        best_epoch=run.best_epoch, best_val_loss=float(run.best_val), epochs_run=run.epoch,
        stopped=stopped, history=run.history, model=best_model, window=run.window,
        config=run.model_cfg,
    )


#: The recipe used when none is named.
DEFAULT_RECIPE = "stable"

#: Named recipes: the :class:`TrainConfig` values that differ from its defaults.
RECIPES: dict[str, dict] = {
    "stable": {},
    "paper": {"bn_recalibrate": 0},
}

#: One line per recipe: what it is, and every difference from the paper's protocol.
RECIPE_NOTES: dict[str, str] = {
    "stable": "the paper's protocol (same optimiser, schedule and weight updates), except "
              "that BatchNorm's running statistics are re-estimated on the current weights "
              "(8 batches of training patches) before every validation, so that validation "
              "and the saved model use statistics that match the weights: no validation "
              "spikes",
    "paper": "the paper's protocol exactly: Adam lr 1e-3 with coupled weight decay 0.1, "
             "StepLR(3, 0.9), batch 32, 128x128 patches, patience 20, at most 100 epochs; "
             "BatchNorm's running statistics are the usual moving averages (momentum 0.1)",
}


def recipe_config(name: str = DEFAULT_RECIPE, **overrides) -> TrainConfig:
    """A :class:`TrainConfig` of recipe ``name`` with ``overrides`` applied on top."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {sorted(RECIPES)}")
    return TrainConfig(**{**RECIPES[name], "recipe": name, **overrides})


def resume_config(model_dir: str | Path, *, epochs: int | None = None,
                  patience: int | None = None, device: str | None = None,
                  keep_state: bool | None = None) -> TrainConfig:
    """The :class:`TrainConfig` of the stopped run in ``model_dir``, ready to continue.

    Data, loss, model, window, split and seed are the saved ones; ``epochs`` and
    ``patience`` may raise the limits, ``device`` and ``keep_state`` replace the saved ones.

    Raises
    ------
    ValueError
        Nothing to resume there (no saved training state), or a config that cannot be
        resumed (a :class:`napari_dfct.checkpoint.CheckpointError` for unreadable files).
    """
    from . import checkpoint as ckpt

    folder = Path(model_dir)
    if not (folder / ckpt.STATE_FILE).exists():
        raise ValueError(
            f"nothing to resume in {folder}: it holds no saved training state (the run "
            "finished without keeping it, or never finished an epoch)"
        )
    saved = ckpt.load_config(folder)
    if not isinstance(saved.get("train"), dict):
        raise ValueError(f"cannot resume from {folder}: its config.json holds no training "
                         "settings")
    try:
        config = TrainConfig.from_dict(saved["train"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot resume from {folder}: {exc}") from None
    if saved["train"].get("recipe") is None:
        config.recipe = "paper"  # saved before recipes existed: the paper's protocol
        config.bn_recalibrate = 0
    if saved["train"].get("select") is None:
        config.select = "amplified"  # saved before the plain criterion existed
    for name, value in (("epochs", epochs), ("patience", patience), ("device", device),
                        ("keep_state", keep_state)):
        if value is not None:
            setattr(config, name, type(getattr(config, name))(value))
    return config


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
