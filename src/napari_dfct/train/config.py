"""Training configuration: :class:`TrainConfig`, the named recipes and resuming.

Every :class:`TrainConfig` field with help text in its metadata is also a command-line
option (:mod:`napari_dfct.commands._training`) and a Train-widget default, so each default
is written once, here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..data import IntensityWindow

__all__ = [
    "DECAY_SCOPES",
    "DEFAULT_RECIPE",
    "RECIPES",
    "RECIPE_NOTES",
    "SELECT_CHOICES",
    "TrainConfig",
    "recipe_config",
    "resume_config",
]


def _default_loss():
    from ..losses import LossConfig

    return LossConfig()


def _option(default, help_text: str, choices: tuple | None = None):
    """A TrainConfig field that is also a command-line option (help text and choices)."""
    meta: dict[str, Any] = {"help": help_text}
    if choices is not None:
        meta["choices"] = tuple(choices)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Training parameters; the defaults are the default recipe (``stable``: the paper's
    protocol with BatchNorm statistics re-estimated before every validation); see
    :data:`RECIPES` and :func:`recipe_config`.

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
        Shared clip window; None takes :func:`napari_dfct.data.window_from_percentiles` of
        the training slices (input and target pooled: the 0.1/99.9 percentiles widened by
        20 % on each side, which clips at most 1 % of the lung on the simulator's data).
    augment : bool
        Flips and rotations.
    amp : bool
        bf16 autocast (and channels_last) on CUDA; ignored elsewhere.
    keep_state : bool
        Keep the resume files after a run that finished (completed or early stopping);
        a cancelled run always keeps them.
    tensorboard : bool
        Also write TensorBoard event files (losses, learning rate, a preview image per
        epoch) to ``<model folder>/tensorboard``; needs the ``tensorboard`` package.
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
    weight_decay: float = _option(0.1, "weight decay (coupled L2 with adam, decoupled with adamw)")
    optimizer: str = _option(
        "adam", "optimiser (adam: coupled L2 decay, the paper's)", choices=("adam", "adamw")
    )
    step_size: int = _option(3, "StepLR step in epochs")
    gamma: float = _option(0.9, "StepLR factor")
    val_fraction: float = _option(0.2, "fraction of slices held out for validation")
    seed: int = 0
    device: str = "auto"
    window: IntensityWindow | None = None
    augment: bool = True
    amp: bool = True
    keep_state: bool = True
    tensorboard: bool = False
    model_kwargs: dict = field(default_factory=dict)
    recipe: str = "stable"
    decay_scope: str = _option(
        "all",
        "parameters weight decay applies to: all, no-norm (not "
        "BatchNorm gamma/beta nor biases), no-scale-invariant "
        "(not those, nor conv weights that feed a BatchNorm)",
        choices=("all", "no-norm", "no-scale-invariant"),
    )
    bn_recalibrate: int = _option(
        8,
        "re-estimate the BatchNorm running statistics on this "
        "many batches before every validation (0: off)",
    )
    select: str = _option(
        "plain",
        "model-selection criterion for early stopping and the "
        "best checkpoint: the plain (un-amplified) or the amplified "
        "validation loss",
        choices=("plain", "amplified"),
    )

    def __post_init__(self) -> None:
        if isinstance(self.loss, dict):
            from ..losses import LossConfig

            self.loss = LossConfig.from_dict(self.loss)
        elif isinstance(self.loss, str):
            from ..losses import LossConfig

            self.loss = LossConfig.from_name(self.loss)
        if isinstance(self.window, dict):
            self.window = IntensityWindow.from_dict(self.window)

    def validate(self) -> None:
        """Raise :class:`ValueError` for out-of-range parameters."""
        from ..model import PRESETS

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
            raise ValueError(
                f"select must be one of {', '.join(SELECT_CHOICES)}, got {self.select!r}"
            )
        if self.decay_scope not in DECAY_SCOPES:
            raise ValueError(
                f"decay scope must be one of {', '.join(DECAY_SCOPES)}, got {self.decay_scope!r}"
            )
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


def resume_config(
    model_dir: str | Path,
    *,
    epochs: int | None = None,
    patience: int | None = None,
    device: str | None = None,
    keep_state: bool | None = None,
) -> TrainConfig:
    """The :class:`TrainConfig` of the stopped run in ``model_dir``, ready to continue.

    Data, loss, model, window, split and seed are the saved ones; ``epochs`` and
    ``patience`` may raise the limits, ``device`` and ``keep_state`` replace the saved ones.

    Raises
    ------
    ValueError
        Nothing to resume there (no saved training state), or a config that cannot be
        resumed (a :class:`napari_dfct.checkpoint.CheckpointError` for unreadable files).
    """
    from .. import checkpoint as ckpt

    folder = Path(model_dir)
    if not ckpt.has_training_state(folder):
        raise ValueError(
            f"nothing to resume in {folder}: it holds no saved training state (the run "
            "finished without keeping it, or never finished an epoch)"
        )
    saved = ckpt.load_config(folder)
    if not isinstance(saved.get("train"), dict):
        raise ValueError(
            f"cannot resume from {folder}: its config.json holds no training settings"
        )
    try:
        config = TrainConfig.from_dict(saved["train"])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot resume from {folder}: {exc}") from None
    if saved["train"].get("recipe") is None:
        config.recipe = "paper"  # saved before recipes existed: the paper's protocol
        config.bn_recalibrate = 0
    if saved["train"].get("select") is None:
        config.select = "amplified"  # saved before the plain criterion existed
    for name, value in (
        ("epochs", epochs),
        ("patience", patience),
        ("device", device),
        ("keep_state", keep_state),
    ):
        if value is not None:
            setattr(config, name, type(getattr(config, name))(value))
    return config
