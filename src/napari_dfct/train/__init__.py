"""The training loop: one generator used by the GUI, the CLI and the experiment grid.

:func:`fit` trains a residual U-Net on pairs of single-rotation inputs and multi-rotation
targets with the paper's protocol: Adam (lr 1e-3, coupled weight decay 0.1), StepLR
(step 3, gamma 0.9), batch 32, one random 128x128 patch per training slice and step, flips
and +-15 degree rotations, 20 % of the slices for validation, early stopping with patience
20, at most 100 epochs. Validation runs on *full-size* slices and records the plain and
the amplified loss; early stopping and the best checkpoint use the one chosen by
``TrainConfig.select`` (the plain one by default). The default recipe, ``stable``,
re-estimates BatchNorm's running statistics before every validation; ``paper`` does not
(:data:`RECIPES`, ``docs/training-stability.md``).

It is a generator: every finished epoch yields an :class:`EpochEvent` and the generator
``return``\\ s a :class:`FitResult` (``StopIteration.value``; :func:`run_fit` drives it for
you). A ``cancel`` flag is checked before every batch; a cancelled run keeps its best
checkpoint and the resume state of its last finished epoch, and ``fit(..., resume=True)``
continues it where it stopped, bit for bit on the CPU: on the same data (a fingerprint of
input and target in ``config.json``) with the same settings (only
:data:`RESUME_MAY_CHANGE` may differ; anything else is refused with one line).

The package: :mod:`~napari_dfct.train.config` (:class:`TrainConfig`, recipes, resuming),
:mod:`~napari_dfct.train.optim` (parameter groups, BatchNorm re-estimation),
:mod:`~napari_dfct.train.resources` (memory checked up front, time per epoch measured),
:mod:`~napari_dfct.train.window` (the default intensity window, one rule for the CLI and
the Train widget) and :mod:`~napari_dfct.train.loop` (:func:`fit` in named steps).

The package is also the public API's :func:`napari_dfct.api.train`: calling it,
``napari_dfct.train(inputs, targets, ...)``, trains a model (:mod:`napari_dfct._callable`).
"""

import importlib
from typing import TYPE_CHECKING

from .._callable import make_callable as _make_callable
from ..device import resolve_device
from .config import (
    DECAY_SCOPES,
    DEFAULT_RECIPE,
    RECIPE_NOTES,
    RECIPES,
    RESUME_MAY_CHANGE,
    SELECT_CHOICES,
    TrainConfig,
    check_resume,
    recipe_config,
    resume_config,
    resume_finished,
)

# The loop, the optimiser and the resource checks need torch: they load on first use
# (PEP 562), so that the configuration above, and with it the ``dfct`` command's help,
# does not import torch.
_LAZY = {
    "EpochEvent": "loop",
    "FitResult": "loop",
    "fit": "loop",
    "run_fit": "loop",
    "build_optimizer": "optim",
    "parameter_groups": "optim",
    "recalibrate_batchnorm": "optim",
    "scale_invariant_parameters": "optim",
    "EpochEstimate": "resources",
    "OutOfMemory": "resources",
    "check_memory": "resources",
    "default_window": "window",
    "intensity_histogram": "window",
    "training_split": "window",
}

if TYPE_CHECKING:
    from .loop import EpochEvent, FitResult, fit, run_fit
    from .optim import (
        build_optimizer,
        parameter_groups,
        recalibrate_batchnorm,
        scale_invariant_parameters,
    )
    from .resources import EpochEstimate, OutOfMemory, check_memory
    from .window import default_window, intensity_histogram, training_split


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DECAY_SCOPES",
    "DEFAULT_RECIPE",
    "RECIPES",
    "RECIPE_NOTES",
    "RESUME_MAY_CHANGE",
    "SELECT_CHOICES",
    "EpochEstimate",
    "EpochEvent",
    "FitResult",
    "OutOfMemory",
    "TrainConfig",
    "build_optimizer",
    "check_memory",
    "check_resume",
    "default_window",
    "fit",
    "intensity_histogram",
    "parameter_groups",
    "recalibrate_batchnorm",
    "recipe_config",
    "resolve_device",
    "resume_config",
    "resume_finished",
    "run_fit",
    "scale_invariant_parameters",
    "training_split",
]

# napari_dfct.train(...) calls napari_dfct.api.train: the package is also that function
_make_callable(__name__)
