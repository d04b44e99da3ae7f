"""The resume state of a training run: what it holds, its in-memory copy between writes,
and how often it goes to disk (:func:`napari_dfct.train.fit`).

The state (weights, optimiser, schedule, counters, RNG states: about three times the
model's size) goes to disk after the first epoch, after the last (the epoch limit or early
stopping), and otherwise when :data:`STATE_INTERVAL` seconds have passed since it was last
written; between those, a copy of the last finished epoch's state waits in memory and is
written when the run stops or fails (:func:`write_pending`). A run killed outright
resumes from at most that far back: its history is cut to the state's epoch and its best
weights are put back to the state's.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from ._rng import _rng_state

#: Seconds of training between two writes of the resume state to disk (it is also written
#: after the first and the last epoch, and when a run stops or fails). Writing it is
#: about 0.1 s for the ``small`` preset: after every epoch of a short epoch that is a
#: few per cent of the training time.
STATE_INTERVAL = 30.0


def epoch_state(run: Any) -> dict:
    """The resume state of the epoch just finished (live tensors, not copies)."""
    state = {
        "epoch": run.epoch,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "early_stopping": {
            "best_epoch": run.best_epoch,
            "best_val_loss": run.best_val,
            "bad_epochs": run.bad_epochs,
        },
        "rng": _rng_state(run.sampler),
    }
    if run.best_state is not None and run.best_epoch != run.epoch:
        state["best_model"] = run.best_state  # the state alone restores the whole run
    return state


def copy_tensors(obj: Any) -> Any:
    """``obj`` with every tensor replaced by a detached CPU copy (dicts, lists, tuples)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: copy_tensors(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(copy_tensors(v) for v in obj)
    return obj


def write_pending(run: Any) -> None:
    """Write the kept resume state of the last finished epoch, if one is waiting."""
    from .. import checkpoint as ckpt

    if run.pending_state is None or run.out_path is None:
        return
    state, run.pending_state = run.pending_state, None
    ckpt.save_training_state(run.out_path, state)


def due(run: Any) -> bool:
    """Whether this epoch's state goes to disk: the first save, the last epoch, or
    :data:`STATE_INTERVAL` seconds since the last write."""
    final = run.epoch >= run.config.epochs or run.bad_epochs >= run.config.patience
    return not run.saved or final or time.monotonic() - run.state_written >= STATE_INTERVAL


def written(run: Any, state: dict) -> None:
    """Record that ``state`` is on disk: nothing waits in memory."""
    run.state_written, run.pending_state = time.monotonic(), None


def keep(run: Any, state: dict) -> None:
    """Keep a copy of ``state`` in memory until the next write (or a stop or failure). The
    best model is already a private copy (replaced, never changed in place): not copied."""
    best = state.pop("best_model", None)
    run.pending_state = copy_tensors(state)
    if best is not None:
        run.pending_state["best_model"] = best


def match_param_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give every per-parameter state tensor of ``optimizer`` its parameter's strides.

    A loaded state holds contiguous tensors, while a channels-last model's parameters are
    not: torch's fused Adam walks a parameter and its moments as flat memory, so the two
    must share one layout, or resumed steps pair the wrong elements.
    """
    for param, per_param in optimizer.state.items():
        for key, value in per_param.items():
            if (
                isinstance(value, torch.Tensor)
                and value.shape == param.shape
                and value.stride() != param.stride()
            ):
                per_param[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
