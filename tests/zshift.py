"""The z-shift task of the context and 3-D tests: independent noise slices whose target at
slice z is the input at slice z - 1. No 2-D model can beat the target's variance,
(1/12) / width**2 in the window's units; a model that reads slice z - 1 can reach zero."""

from __future__ import annotations

from napari_dfct.train import TrainConfig, run_fit

#: The settings both tests train with; each adds its own batch, patches and model kind.
SETTINGS = dict(
    loss="l2",
    preset="tiny",
    epochs=3,
    patch=16,
    lr=0.02,
    weight_decay=0.0,
    step_size=100,
    bn_recalibrate=2,
    device="cpu",
)


def loss_in_units_of_the_bound(x, y, **settings) -> float:
    """The best validation loss of a run on ``x -> y``, divided by the 2-D bound."""
    res = run_fit(x, y, TrainConfig(**{**SETTINGS, **settings}), None)
    width = res.window.high - res.window.low
    return res.best_val_loss / ((1 / 12) / width**2)
