"""The checks before a training run starts: its configuration (the saved one when
resuming, refused when the given one differs), the model folder, resuming on the same data
(shape and fingerprint), an oracle loss's data and a separate validation set."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..context import check_context_slices
from .config import RESUME_MAY_CHANGE, TrainConfig, check_resume, resume_config
from .logs import check_tensorboard

#: The ``config.json`` entry that holds the fingerprint of the training data.
FINGERPRINT_KEY = "data_fingerprint"
#: How the fingerprint is computed (saved with it).
FINGERPRINT_METHOD = "sha256 of each slice stack's shape and float32 C-order bytes"
#: The ``config.json`` entry that holds the memory format the network was trained in
#: (``"channels_last"`` or ``"contiguous"``): the CPU's kernels round differently in the
#: two, so a resumed run keeps its own.
MEMORY_FORMAT_KEY = "memory_format"


def _as_volume(a: Any, name: str) -> np.ndarray:
    """``a`` as a float32 C-contiguous array (a tensor is copied to the CPU); one
    :class:`ValueError` line for what is not a numeric array."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a)
    except Exception as exc:
        raise ValueError(f"{name} is not an array: {exc}") from exc
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _context_starts(config, x_all, scans, fixed_split) -> tuple[int, ...]:
    """The first slice of every scan of the training volume (one scan; or the training
    volume and a separate validation volume appended to it: neighbours never cross from
    one to the other), each checked to hold the ``2K + 1`` slices of ``config.context``;
    for a data set of scans, that its slices carry their neighbours for that context."""
    k = int(config.context)
    if scans is not None:
        if k and int(getattr(scans, "context", 0)) != k:
            raise ValueError(
                f"context {k} needs every slice's {2 * k} neighbouring slices, which this "
                f"data set was read without: read it with load_scans(..., context={k})"
            )
        return (0,)
    if fixed_split is None:
        check_context_slices(len(x_all), k, "the volume")
        return (0,)
    n_train = len(fixed_split[0])
    check_context_slices(n_train, k, "the training volume")
    check_context_slices(len(x_all) - n_train, k, "the validation volume")
    return (0, n_train)


def data_fingerprint(x_all, y_all) -> dict:
    """The fingerprint of a training run's data: the SHA-256 of the input and of the
    target, each over the shape and the float32 bytes of its volume (or, for scans of
    several sizes, of every slice in order)."""

    def digest(arrays) -> str:
        h = hashlib.sha256()
        for a in arrays if isinstance(arrays, list) else [arrays]:
            a = np.ascontiguousarray(a, dtype=np.float32)
            h.update(repr(tuple(a.shape)).encode())
            h.update(a.tobytes())
        return h.hexdigest()

    out = {"method": FINGERPRINT_METHOD, "input": digest(x_all)}
    if y_all is not None:
        out["target"] = digest(y_all)
    return out


def _start_config(config, out_dir, resume) -> tuple[TrainConfig, dict | None, Path | None]:
    """Step 1: the run's configuration (a copy; the saved one when resuming)."""
    from .. import checkpoint as ckpt

    config = copy.deepcopy(config) if config is not None else None
    out_path = Path(out_dir) if out_dir is not None else None
    saved_cfg = None
    if resume:
        if out_path is None:
            raise ValueError("resume=True needs out_dir (the model folder of the stopped run)")
        saved = resume_config(out_path)
        if config is not None:  # the same run, or refused; only the limits etc. may change
            check_resume(saved, config, out_path)
            saved = dataclasses.replace(
                saved, **{n: getattr(config, n) for n in RESUME_MAY_CHANGE}
            )
        config = saved
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


def _check_resumed_data(saved_cfg: dict | None, out_path, shape, fingerprint: dict) -> None:
    """Resuming: the data must be those the run was trained on (its shape, and its
    fingerprint when ``config.json`` holds one: folders saved before it was recorded
    are compared by shape only)."""
    if saved_cfg is None:
        return
    saved_shape = saved_cfg.get("data_shape")
    if saved_shape is not None and [int(v) for v in saved_shape] != list(shape):
        raise ValueError(
            f"cannot resume {out_path}: it was trained on data of shape "
            f"{tuple(saved_shape)}, got {tuple(shape)}"
        )
    saved = saved_cfg.get(FINGERPRINT_KEY)
    if not isinstance(saved, dict) or saved.get("method") != fingerprint["method"]:
        return
    parts = [k for k in ("input", "target") if saved.get(k) != fingerprint.get(k)]
    if not parts:
        return
    now = (fingerprint.get("input"), fingerprint.get("target"))
    if len(parts) == 2 and (saved.get("input"), saved.get("target")) == now[::-1]:
        raise ValueError(
            f"cannot resume {out_path}: the input and the target are swapped (it was "
            "trained with them the other way round)"
        )
    which = "; ".join(
        f"the {k} differs: sha256 {str(saved.get(k))[:12]} in its config.json, "
        f"{str(fingerprint.get(k))[:12]} now"
        for k in parts
    )
    raise ValueError(f"cannot resume {out_path}: it was trained on other data ({which})")


def _record_resumed(out_path, model_cfg: dict) -> None:
    """Resuming: ``config.json`` takes the run's settings as they are now (the epochs,
    patience and device may have changed), the data's fingerprint and the memory format
    (a folder saved before they were recorded gains them), in one atomic write, before the
    first new epoch."""
    from .. import checkpoint as ckpt

    cfg = ckpt.load_config(out_path)
    new = {**cfg, "train": model_cfg["train"], FINGERPRINT_KEY: model_cfg[FINGERPRINT_KEY]}
    new[MEMORY_FORMAT_KEY] = model_cfg[MEMORY_FORMAT_KEY]
    if _as_json(new) != _as_json(cfg):
        ckpt.atomic_write_json(Path(out_path) / ckpt.CONFIG_FILE, new)


def _as_json(d: dict) -> str:
    from .._files import json_safe

    return json.dumps(json_safe(d), sort_keys=True)


def _data_shape(x_all) -> tuple[int, int, int]:
    """(slices, rows, cols); for slices of several sizes, the largest rows and cols."""
    if isinstance(x_all, list):
        return (len(x_all), max(a.shape[0] for a in x_all), max(a.shape[1] for a in x_all))
    n, h, w = x_all.shape
    return int(n), int(h), int(w)


def _with_validation_set(x_all, y_all, val_input, val_target):
    """The training volume with a separate validation set appended, and the split that
    trains on the first slices and validates on the appended ones."""
    if val_input is None or val_target is None:
        raise ValueError("a separate validation set needs both its input and its target")
    vx, vy = (np.ascontiguousarray(v, dtype=np.float32) for v in (val_input, val_target))
    vx, vy = (v[None] if v.ndim == 2 else v for v in (vx, vy))
    if vx.ndim != 3 or vx.shape != vy.shape:
        raise ValueError(
            f"validation input and target must be volumes of one shape, got "
            f"{tuple(vx.shape)} and {tuple(vy.shape)}"
        )
    if not (np.isfinite(vx).all() and np.isfinite(vy).all()):
        raise ValueError("the validation set holds NaN or infinite values")
    if vx.shape[1:] != x_all.shape[1:]:
        raise ValueError(
            f"validation slices are {vx.shape[1]}x{vx.shape[2]}, training slices "
            f"{x_all.shape[1]}x{x_all.shape[2]}: give a validation set of the same size"
        )
    n, k = len(x_all), len(vx)
    split = (np.arange(n), np.arange(n, n + k))
    return np.concatenate([x_all, vx]), np.concatenate([y_all, vy]), split


def _resume_memory_format(run, saved_cfg: dict) -> None:
    """Resuming on the CPU: the run goes on in the memory format it was trained in, so it
    continues bit for bit (a folder saved before the format was recorded was trained in
    the default one, as training on the CPU then was)."""
    import torch

    if run.device.type != "cpu":
        return
    fmt = saved_cfg.get(MEMORY_FORMAT_KEY, "contiguous")
    run.channels_last = fmt == "channels_last"
    run.model_cfg[MEMORY_FORMAT_KEY] = "channels_last" if run.channels_last else "contiguous"
    memory_format = torch.channels_last if run.channels_last else torch.contiguous_format
    run.model.to(memory_format=memory_format)
