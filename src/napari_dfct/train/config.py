"""Training configuration: :class:`TrainConfig`, the named recipes and resuming.

Every :class:`TrainConfig` field with help text in its metadata (:func:`option_fields`) is
also a command-line option (:mod:`napari_dfct.commands._training`) and a field of the Train
widget's form (:mod:`napari_dfct.widgets._train_params`), so each default, choice, bound
and help text is written once, here; :meth:`TrainConfig.validate` checks the choices and
bounds from the same metadata.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..window import IntensityWindow

__all__ = [
    "DECAY_SCOPES",
    "DEFAULT_RECIPE",
    "RECIPES",
    "RECIPE_NOTES",
    "RESUME_MAY_CHANGE",
    "SELECT_CHOICES",
    "TrainConfig",
    "check_resume",
    "option_fields",
    "recipe_config",
    "resume_config",
    "resume_differences",
    "resume_finished",
]


def _default_loss():
    from ..loss_config import LossConfig

    return LossConfig()


#: Bounds a field's metadata may set: inclusive ``min``/``max``, exclusive
#: ``above``/``below``.
_BOUNDS = ("min", "max", "above", "below")


def _option(default, help_text: str, choices: tuple | None = None, **bounds):
    """A TrainConfig field that is also a command-line option and a Train-widget field:
    its help text, its choices, or its bounds (``min=1``, ``above=0``, ``max=...``,
    ``below=...``), which :meth:`TrainConfig.validate` checks."""
    unknown = set(bounds) - set(_BOUNDS)
    if unknown:
        raise TypeError(f"unknown bounds {sorted(unknown)}")
    meta: dict[str, Any] = {"help": help_text, **bounds}
    if choices is not None:
        meta["choices"] = tuple(choices)
    return field(default=default, metadata=meta)


def _range_text(meta) -> str:
    """``">= 1"``, ``"> 0"``, ``"in [0, 256]"``, ``"in (0, 1]"``: the bounds in words."""
    lo = ("[", meta["min"]) if "min" in meta else ("(", meta["above"]) if "above" in meta else None
    hi = ("]", meta["max"]) if "max" in meta else (")", meta["below"]) if "below" in meta else None
    if lo and hi:
        return f"in {lo[0]}{lo[1]}, {hi[1]}{hi[0]}"
    if lo:
        return f"{'>=' if lo[0] == '[' else '>'} {lo[1]}"
    assert hi is not None  # a bounded field has one bound at least
    return f"{'<=' if hi[0] == ']' else '<'} {hi[1]}"


def _check_option(f: Field, value) -> None:
    """Raise ValueError when ``value`` is not among the field's choices or bounds."""
    meta = f.metadata
    if "choices" in meta and value not in meta["choices"]:
        raise ValueError(f"{f.name} must be one of {', '.join(meta['choices'])}, got {value!r}")
    if not any(k in meta for k in _BOUNDS):
        return
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{f.name} must be a number, got {value!r}") from None
    ok = math.isfinite(v)
    ok = ok and ("min" not in meta or v >= meta["min"]) and ("max" not in meta or v <= meta["max"])
    ok = ok and ("above" not in meta or v > meta["above"])
    ok = ok and ("below" not in meta or v < meta["below"])
    if not ok:
        raise ValueError(f"{f.name} must be {_range_text(meta)}, got {value!r}")


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
        Shared clip window; None takes :func:`napari_dfct.window.window_from_percentiles` of
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
    base_channels : int
        Channels of the U-Net's first level (doubling at each level below); 0 takes the
        preset's (``paper`` 64, ``small`` 16, ``tiny`` 4).
    dims : int
        2 (slices, or 2.5-D with ``context``) or 3: a 3-D U-Net trained on
        ``patch_depth x patch x patch`` patches of consecutive slices of one scan
        (:mod:`napari_dfct.volume3d`).
    patch_depth : int
        Slices of a 3-D patch, and of the z-chunks a 3-D model predicts in.
    context : int
        ``K``: a 2.5-D model that sees the ``2K + 1`` neighbouring slices ``z - K .. z + K``
        of a scan as input channels and predicts slice ``z`` (0: a 2-D model); see
        :mod:`napari_dfct.context` (neighbours within one scan, reflected at its ends).
    model_kwargs : dict
        Overrides of the preset's architecture (passed to ``build_model``).

    Examples
    --------
    >>> from napari_dfct import TrainConfig
    >>> cfg = TrainConfig(preset="tiny", epochs=2, loss="l2+s-nonlinear")
    >>> cfg.loss.name, cfg.recipe, cfg.batch_size
    ('l2+s-nonlinear', 'stable', 32)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg  # what config.json holds
    True
    """

    loss: Any = field(default_factory=_default_loss)
    preset: str = _option(
        "paper",
        "model preset: paper (64 channels at the first level, for a GPU), small (16), "
        "tiny (4, for tests)",
        choices=("paper", "small", "tiny"),
    )
    epochs: int = _option(100, "at most this many epochs", min=1)
    patience: int = _option(20, "early-stopping patience in epochs", min=1)
    batch_size: int = _option(32, "patches per optimiser step", min=1)
    patch: int = _option(128, "patch side in pixels", min=1)
    patches_per_slice: int = _option(
        1, "patches per training slice per epoch (paper: 1; raise it for few slices)", min=1
    )
    lr: float = _option(1e-3, "learning rate", above=0)
    weight_decay: float = _option(
        0.1, "weight decay (coupled L2 with adam, decoupled with adamw)", min=0
    )
    optimizer: str = _option(
        "adam",
        "optimiser: adam (coupled L2 weight decay, the paper's) or adamw (decoupled)",
        choices=("adam", "adamw"),
    )
    step_size: int = _option(3, "StepLR step in epochs", min=1)
    gamma: float = _option(0.9, "StepLR factor", above=0, max=1)
    val_fraction: float = _option(
        0.2, "fraction of slices held out for validation", above=0, below=1
    )
    seed: int = 0
    device: str = "auto"
    window: IntensityWindow | None = None
    augment: bool = True
    amp: bool = True
    keep_state: bool = True
    tensorboard: bool = False
    model_kwargs: dict = field(default_factory=dict)
    base_channels: int = _option(
        0,
        "channels of the U-Net's first level, doubling at each level below (0: the "
        "preset's: paper 64, small 16, tiny 4; at most 128, where the paper's depth has "
        "125 M parameters)",
        min=0,
        max=128,
    )
    context: int = _option(
        0,
        "2.5-D context K: the model sees the 2K+1 neighbouring slices z-K..z+K of a scan "
        "as input channels and predicts slice z (0: a 2-D model); neighbours come from the "
        "same scan only, reflected at its ends, and every scan needs at least 2K+1 slices",
        min=0,
    )
    dims: int = _option(
        2,
        "dimensionality of the model: 2 (slices, with --context a 2.5-D model) or 3 (a 3-D "
        "U-Net on patches of patch-depth slices x patch x patch drawn inside one scan; "
        "losses per slice; docs/context.md)",
        min=2,
        max=3,
    )
    patch_depth: int = _option(
        8,
        "slices of a 3-D training patch (--dims 3 only): consecutive slices of one scan, "
        "never of two; every training scan needs at least this many, and prediction runs "
        "in overlapping z-chunks of this depth",
        min=2,
        max=256,
    )
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
        min=0,
    )
    select: str = _option(
        "plain",
        "model-selection criterion for early stopping and the "
        "best checkpoint: the plain (un-amplified) or the amplified "
        "validation loss",
        choices=("plain", "amplified"),
    )

    def __post_init__(self) -> None:
        from ..loss_config import coerce_config

        self.loss = coerce_config(self.loss)
        if isinstance(self.window, dict):
            self.window = IntensityWindow.from_dict(self.window)

    def validate(self) -> None:
        """Raise :class:`ValueError` for a value outside its field's choices or bounds
        (the field metadata, :func:`option_fields`), and for an architecture out of bounds."""
        from ..model import PRESETS, check_architecture

        for f in fields(self):
            if "help" in f.metadata:
                _check_option(f, getattr(self, f.name))
        if not isinstance(self.model_kwargs, dict):
            raise ValueError(f"model_kwargs must be a dict, got {self.model_kwargs!r}")
        check_architecture(**{**PRESETS[self.preset], **self.model_args()})

    def model_args(self) -> dict:
        """Keyword arguments of ``build_model(self.preset, ...)``: ``model_kwargs`` with
        ``base_channels``, ``context`` and ``dims`` when they are set."""
        args = dict(self.model_kwargs)
        if int(self.base_channels):
            args["base_channels"] = int(self.base_channels)
        if int(self.context):
            args["context"] = int(self.context)
        if int(self.dims) == 3:
            args["dims"] = 3
        return args

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


def option_fields() -> tuple[Field, ...]:
    """The :class:`TrainConfig` fields that are options: those with help text in their
    metadata (``help``; ``choices`` or bounds ``min``, ``max``, ``above``, ``below``), in
    field order: the command-line flags and the Train widget's fields."""
    return tuple(f for f in fields(TrainConfig) if "help" in f.metadata)


def _metadata(name: str):
    return next(f.metadata for f in fields(TrainConfig) if f.name == name)


#: The widest first level ``base_channels`` may ask for (the paper's is 64).
MAX_BASE_CHANNELS = _metadata("base_channels")["max"]
#: Model-selection criteria: the plain (un-amplified) or the amplified validation loss.
SELECT_CHOICES = _metadata("select")["choices"]
#: Which parameters weight decay applies to (:func:`parameter_groups`).
DECAY_SCOPES = _metadata("decay_scope")["choices"]


#: The recipe used when none is named.
DEFAULT_RECIPE = "stable"

#: Named recipes: the :class:`TrainConfig` values that differ from its defaults.
RECIPES: dict[str, dict] = {
    "stable": {},
    "paper": {"bn_recalibrate": 0},
    # docs/reach-the-target.md: Adam's coupled weight decay held the models back; without
    # it, four times the optimiser steps helped further.
    "converge": {"weight_decay": 0.0, "patches_per_slice": 4},
    # a first model on a CPU in minutes (the bundled sample: about 10-20 s per epoch on 2
    # cores): stable's protocol on a smaller network, patch and batch, for fewer epochs
    "quick": {
        "preset": "small",
        "patch": 64,
        "batch_size": 8,
        "patches_per_slice": 4,
        "epochs": 20,
        "patience": 5,
    },
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
    "converge": "stable without weight decay (the coupled decay 0.1 held the models "
    "back) and with four times the patches per training slice per epoch (4 instead of "
    "1: four times the optimiser steps, the same epochs and learning-rate schedule); "
    "fits the data closer at four times the training time (docs/reach-the-target.md)",
    "quick": "Quick (CPU): stable on the small model preset with 64x64 patches, batch 8, "
    "4 patches per slice, at most 20 epochs and patience 5: a first model on a CPU in "
    "minutes (the sample: 10-20 s per epoch on 2 cores), to try settings before the "
    "paper's (hours on a CPU)",
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


def resume_finished(
    model_dir: str | Path, config: TrainConfig, label: Callable[[str], str | None] | None = None
) -> str | None:
    """One line when continuing the run saved in ``model_dir`` with ``config`` (its
    ``epochs`` and ``patience``) would train no epoch, saying how to extend it; None
    when epochs are left, or when there is no readable resume state (resuming says why).
    ``label`` names a field as the caller's interface does (the command line: ``--epochs``).

    The rule is :func:`~napari_dfct.train.fit`'s: a run stops at ``epochs``, and early
    when ``patience`` epochs in a row brought no improvement.
    """
    from .. import checkpoint as ckpt

    state = ckpt.training_state_summary(model_dir)
    if state is None:
        return None
    epoch, bad = state["epoch"], state["bad_epochs"]
    done = epoch >= config.epochs
    early = epoch > 0 and bad >= config.patience
    if not (done or early):
        return None
    name = Path(model_dir).name
    stalled = f"no improvement in its last {bad} epochs (patience {config.patience})"
    if done:
        limit = f"of {config.epochs}" if epoch == config.epochs else f"(epochs {config.epochs})"
        head = f"run {name!r} finished at epoch {epoch} {limit}"
        head += f", with {stalled}" if early else ""
    else:
        head = f"run {name!r} stopped early at epoch {epoch}: {stalled}"

    def named(field_name: str) -> str:
        return (label(field_name) if label else None) or field_name

    need = [f"{named('epochs')} above {epoch}"] * done
    need += [f"{named('patience')} above {bad}"] * early
    return f"{head}; nothing is left to train: raise {' and '.join(need)} to continue it"


#: The :class:`TrainConfig` fields a resumed run may change: none of them changes what
#: is trained (the limits, where it runs, what is kept and logged). Every other field,
#: present or added later, must equal the saved one (:func:`check_resume`).
RESUME_MAY_CHANGE = ("epochs", "patience", "device", "keep_state", "tensorboard")


def _comparable(value: Any) -> Any:
    """A value of a :class:`TrainConfig` field in a form that ``==`` compares by meaning
    (a loss and a window by their fields, a dict by its JSON)."""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def _shown(value: Any) -> str:
    """A field's value as a user would type it."""
    if isinstance(value, IntensityWindow):
        return f"{value.low!r},{value.high!r}"
    if hasattr(value, "name") and hasattr(value, "scheme"):  # a LossConfig
        return str(value.name)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, bool):
        return "on" if value else "off"
    return repr(value) if isinstance(value, float) else str(value)


def resume_differences(saved: TrainConfig, given: TrainConfig) -> list[tuple[str, str, str]]:
    """``(field, saved value, given value)`` for every :class:`TrainConfig` field other
    than :data:`RESUME_MAY_CHANGE` where ``given`` differs from ``saved`` (values as
    text). A ``given`` window of None is no difference: it means the saved one."""
    out = []
    for f in fields(TrainConfig):
        if f.name in RESUME_MAY_CHANGE:
            continue
        a, b = getattr(saved, f.name), getattr(given, f.name)
        if f.name == "window" and b is None:
            continue
        if _comparable(a) != _comparable(b):
            out.append((f.name, _shown(a), _shown(b)))
    return out


def check_resume(
    saved: TrainConfig,
    given: TrainConfig,
    model_dir: str | Path,
    label: Callable[[str], str | None] | None = None,
) -> None:
    """Refuse to continue the run saved in ``model_dir`` (``saved``) with settings that
    differ (``given``): one :class:`ValueError` line naming each differing option with
    both values, and the options that may change.

    ``label`` names a field as the user knows it (a command-line flag); None omits it
    from the list of what may change (and a difference then shows the field's name).
    """
    diffs = resume_differences(saved, given)
    if not diffs:
        return
    label = label or (lambda name: name)
    changed = "; ".join(f"{label(n) or n} was {a}, now {b}" for n, a, b in diffs)
    may = [x for x in (label(n) for n in RESUME_MAY_CHANGE) if x]
    raise ValueError(
        f"cannot resume {model_dir}: {changed}; only {', '.join(may[:-1])} and {may[-1]} "
        "may change (train a new model for other settings)"
    )
