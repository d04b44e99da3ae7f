"""The checks before a training run starts: its configuration (the saved one when
resuming), the model folder, resuming on the same data, and an oracle loss's data."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from .config import TrainConfig, resume_config
from .logs import check_tensorboard


def _start_config(config, out_dir, resume) -> tuple[TrainConfig, dict | None, Path | None]:
    """Step 1: the run's configuration (a copy; the saved one when resuming)."""
    from .. import checkpoint as ckpt

    config = copy.deepcopy(config) if config is not None else None
    out_path = Path(out_dir) if out_dir is not None else None
    saved_cfg = None
    if resume:
        if out_path is None:
            raise ValueError("resume=True needs out_dir (the model folder of the stopped run)")
        config = resume_config(
            out_path,
            **(
                {}
                if config is None
                else {
                    "epochs": config.epochs,
                    "patience": config.patience,
                    "device": config.device,
                    "keep_state": config.keep_state,
                }
            ),
        )
        saved_cfg = ckpt.load_config(out_path)
    if config is None:
        config = TrainConfig()
    config.validate()
    if config.tensorboard:
        if out_path is None:
            raise ValueError("TensorBoard logging needs a model folder (out_dir)")
        check_tensorboard()
    if out_path is not None:
        # before any work: a new run never lands on a model, and the folder is writable
        if resume:
            ckpt.check_writable(out_path)
        else:
            ckpt.check_new_run_dir(out_path)
        ckpt.clean_stale(out_path)
    return config, saved_cfg, out_path


def _check_oracle(config, oracle, scans, shape) -> np.ndarray | None:
    """The known angular parts an oracle loss needs, checked (None for other losses)."""
    if not config.loss.oracle:
        return None
    if scans is not None:
        raise ValueError(
            f"{config.loss.name}: an oracle loss trains on one simulated "
            "volume, not on a data set of scans"
        )
    if oracle is None:
        raise ValueError(
            f"{config.loss.name} takes the angular part of its directional weight from "
            "the simulator's truth: train on a folder written by `dfct simulate` (the "
            "truth is read from its meta.json), or pass oracle=slice_angular(simulation)"
        )
    g = np.asarray(oracle, dtype=np.float32)
    if g.ndim != 2 or g.shape[0] != shape[0] or not np.all(np.isfinite(g)):
        raise ValueError(
            f"oracle must be finite (Z, n_bins) angular parts with Z = "
            f"{shape[0]} slices, got shape {g.shape}"
        )
    return g


def _check_resumed_shape(saved_cfg: dict | None, out_path, shape) -> None:
    if saved_cfg is None:
        return
    saved_shape = saved_cfg.get("data_shape")
    if saved_shape is not None and [int(v) for v in saved_shape] != list(shape):
        raise ValueError(
            f"cannot resume {out_path}: it was trained on data of shape "
            f"{tuple(saved_shape)}, got {tuple(shape)}"
        )


def _data_shape(x_all) -> tuple[int, int, int]:
    """(slices, rows, cols); for slices of several sizes, the largest rows and cols."""
    if isinstance(x_all, list):
        return (len(x_all), max(a.shape[0] for a in x_all), max(a.shape[1] for a in x_all))
    n, h, w = x_all.shape
    return int(n), int(h), int(w)
