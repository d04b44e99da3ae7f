"""Model folders: safetensors weights + JSON metadata, written atomically.

A model folder holds

``model.safetensors``
    the weights (``safetensors.torch``), the best model of a training run;
``config.json``
    everything needed to rebuild and use the model: architecture kwargs (``"model"``),
    preset, loss configuration, intensity window, training parameters, package and torch
    versions, creation time, best epoch;
``history.json``
    one record per finished epoch (losses, learning rate, best so far, seconds);
``training-state.safetensors`` + ``training-state.json`` (optional)
    what resuming needs: the *current* weights, optimizer tensors (flattened, with a JSON
    index), scheduler, epoch, early-stopping counters and RNG states.

Nothing is ever pickled and nothing is read with ``torch.load``: loading a folder from an
untrusted source cannot run code. Every file is written to a temporary file in the same
folder, flushed to disk and moved into place with :func:`os.replace`, so an interrupted
save leaves the previous version intact.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._files import atomic_write_bytes, write_json

__all__ = [
    "CONFIG_FILE",
    "HISTORY_FILE",
    "STATE_FILE",
    "STATE_TENSORS_FILE",
    "WEIGHTS_FILE",
    "CheckpointError",
    "LoadedModel",
    "delete_training_state",
    "is_model_dir",
    "load_config",
    "load_history",
    "load_model",
    "load_training_state",
    "save_checkpoint",
    "save_training_state",
    "write_history",
]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
STATE_TENSORS_FILE = "training-state.safetensors"
STATE_FILE = "training-state.json"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A model folder is missing, incomplete, corrupt or does not match its config."""


@dataclass
class LoadedModel:
    """A model read back from a model folder.

    Attributes
    ----------
    model : torch.nn.Module
        The network, in eval mode, on the requested device.
    config : dict
        ``config.json`` (keys include ``"model"``, ``"preset"``, ``"loss"``, ``"window"``,
        ``"train"``, ``"best_epoch"``).
    history : list of dict
        ``history.json`` (empty when absent).
    path : pathlib.Path
        The folder.
    name : str
        A display name: the loss name when known, else the folder name.
    """

    model: torch.nn.Module
    config: dict
    history: list = field(default_factory=list)
    path: Path | None = None
    name: str = ""

    @property
    def window(self):
        """The :class:`~napari_dfct.data.IntensityWindow` of the config, or None."""
        from .data import IntensityWindow

        w = self.config.get("window")
        return IntensityWindow.from_dict(w) if w else None


# --------------------------------------------------------------------------- atomic io
# one atomic-write helper and one JSON rule for the package (non-finite floats -> null)
atomic_write_json = write_json


def _read_json(path: Path, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{what} is missing: {path}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{what} is corrupt (not valid JSON): {path}: {exc}") from exc
    except OSError as exc:
        raise CheckpointError(f"cannot read {what}: {path}: {exc}") from exc


def _state_dict_bytes(tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> bytes:
    from safetensors.torch import save

    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return save(clean, metadata=metadata)


def _read_safetensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    if not path.is_file():
        raise CheckpointError(f"{what} is missing: {path}")
    try:
        data = path.read_bytes()
        return load(data)
    except CheckpointError:
        raise
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(
            f"{what} is corrupt or not a safetensors file: {path}: {exc}"
        ) from exc


# --------------------------------------------------------------------------- metadata
def _versions() -> dict:
    from . import __version__

    return {
        "napari_dfct": __version__,
        "torch": torch.__version__.split("+")[0],
        "numpy": np.__version__,
    }


def _model_config(model: torch.nn.Module) -> dict | None:
    try:
        from .model import model_config
    except ImportError:  # pragma: no cover - model module missing
        return None
    try:
        return model_config(model)
    except Exception:
        return None


def is_model_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` holds ``model.safetensors`` and ``config.json``."""
    p = Path(path)
    return (p / WEIGHTS_FILE).is_file() and (p / CONFIG_FILE).is_file()


# --------------------------------------------------------------------------- save
def save_checkpoint(
    model_dir: str | os.PathLike,
    model: torch.nn.Module,
    config: dict,
    history: list[dict] | None = None,
    *,
    state: dict | None = None,
) -> Path:
    """Save a model folder atomically.

    Parameters
    ----------
    model_dir : path
        The folder (created if needed).
    model : torch.nn.Module
        Its ``state_dict`` goes to ``model.safetensors``.
    config : dict
        JSON-serialisable metadata. ``"model"`` (architecture kwargs) is filled from
        :func:`napari_dfct.model.model_config` when absent; ``"versions"``, ``"created"``
        and ``"format_version"`` are added.
    history : list of dict, optional
        Written to ``history.json`` (previews and other arrays must be left out).
    state : dict, optional
        Resume state, written with :func:`save_training_state`.

    Returns
    -------
    pathlib.Path
        The folder.
    """
    folder = Path(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = dict(config)
    if "model" not in cfg:
        mc = _model_config(model)
        if mc is not None:
            cfg["model"] = mc
    cfg.setdefault("format_version", FORMAT_VERSION)
    cfg["versions"] = _versions()
    cfg["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    sd = model.state_dict()
    atomic_write_bytes(
        folder / WEIGHTS_FILE,
        _state_dict_bytes(sd, metadata={"format": "pt", "napari_dfct": "model"}),
    )
    atomic_write_json(folder / CONFIG_FILE, cfg)
    if history is not None:
        write_history(folder, history)
    if state is not None:
        save_training_state(folder, state)
    return folder


def write_history(model_dir: str | os.PathLike, history: list[dict]) -> Path:
    """Write ``history.json`` atomically (arrays and ``preview`` entries are dropped)."""
    clean = []
    for rec in history:
        clean.append(
            {
                k: v
                for k, v in dict(rec).items()
                if k != "preview" and not isinstance(v, np.ndarray | torch.Tensor)
            }
        )
    return atomic_write_json(Path(model_dir) / HISTORY_FILE, clean)


# ------------------------------------------------------------- nested state <-> flat
def _flatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors by references into ``tensors``; keep the rest JSON-able."""
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _flatten(v, tensors) for k, v in obj.items()}
        items = [[_flatten(k, tensors), _flatten(v, tensors)] for k, v in obj.items()]
        return {"__items__": items}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_flatten(v, tensors) for v in obj]
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a training state")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            key = obj["__tensor__"]
            if key not in tensors:
                raise CheckpointError(f"training state refers to a missing tensor {key!r}")
            return tensors[key]
        if "__items__" in obj:
            return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        if "__ndarray__" in obj:
            return np.asarray(obj["__ndarray__"], dtype=obj.get("dtype"))
        if "__float__" in obj:
            return float(obj["__float__"])
        return {k: _unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_training_state(model_dir: str | os.PathLike, state: dict) -> Path:
    """Save a resume state: tensors to safetensors, the rest (with an index) to JSON.

    ``state`` is any nesting of dicts (keys may be ints, as in an optimizer state dict),
    lists, tuples, tensors, NumPy arrays and JSON scalars. The tensor file is written
    first, so ``training-state.json`` never refers to tensors that are not on disk.
    """
    folder = Path(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    index = _flatten(state, tensors)
    atomic_write_bytes(
        folder / STATE_TENSORS_FILE,
        _state_dict_bytes(tensors, metadata={"napari_dfct": "training-state"}),
    )
    atomic_write_json(
        folder / STATE_FILE,
        {"format_version": FORMAT_VERSION, "tensors": len(tensors), "state": index},
    )
    return folder


def load_training_state(model_dir: str | os.PathLike) -> dict:
    """Read back :func:`save_training_state`; :class:`CheckpointError` on any problem."""
    folder = Path(model_dir)
    doc = _read_json(folder / STATE_FILE, "training state")
    if not isinstance(doc, dict) or "state" not in doc:
        raise CheckpointError(f"training state is malformed: {folder / STATE_FILE}")
    tensors = _read_safetensors(folder / STATE_TENSORS_FILE, "training-state tensors")
    if len(tensors) != int(doc.get("tensors", len(tensors))):
        raise CheckpointError(
            f"training state in {folder} is inconsistent: {len(tensors)} tensors on disk, "
            f"{doc.get('tensors')} in the index"
        )
    return _unflatten(doc["state"], tensors)


def delete_training_state(model_dir: str | os.PathLike) -> None:
    """Remove the resume files of a model folder (if any)."""
    for name in (STATE_FILE, STATE_TENSORS_FILE):
        try:
            (Path(model_dir) / name).unlink()
        except FileNotFoundError:
            pass


# --------------------------------------------------------------------------- load
def load_config(model_dir: str | os.PathLike) -> dict:
    """``config.json`` of a model folder, validated to be a JSON object."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise CheckpointError(f"model folder not found: {folder}")
    cfg = _read_json(folder / CONFIG_FILE, "model config (config.json)")
    if not isinstance(cfg, dict):
        raise CheckpointError(f"model config is not a JSON object: {folder / CONFIG_FILE}")
    return cfg


def load_history(model_dir: str | os.PathLike) -> list[dict]:
    """``history.json`` of a model folder (empty list when absent)."""
    path = Path(model_dir) / HISTORY_FILE
    if not path.exists():
        return []
    hist = _read_json(path, "training history (history.json)")
    if not isinstance(hist, list):
        raise CheckpointError(f"training history is not a JSON list: {path}")
    return hist


def _build_from_config(cfg: dict, folder: Path) -> torch.nn.Module:
    from .model import ResidualUNet

    kwargs = cfg.get("model")
    if not isinstance(kwargs, dict):
        raise CheckpointError(
            f"config.json in {folder} has no architecture ('model' entry); "
            "it was not written by napari-dfct"
        )
    try:
        return ResidualUNet(**kwargs)
    except Exception as exc:
        raise CheckpointError(
            f"cannot build the network described in {folder / CONFIG_FILE}: {exc}"
        ) from exc


def _check_and_load(model: torch.nn.Module, sd: dict[str, torch.Tensor], folder: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = sorted(
        f"{k}: file {tuple(sd[k].shape)} vs config {tuple(expected[k].shape)}"
        for k in set(sd) & set(expected)
        if tuple(sd[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            parts.append(f"{len(wrong)} with the wrong shape (e.g. {wrong[0]})")
        raise CheckpointError(
            f"weights in {folder / WEIGHTS_FILE} do not match the architecture in "
            f"config.json: " + "; ".join(parts)
        )
    for k, v in sd.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"weights in {folder / WEIGHTS_FILE} contain NaN/inf ({k})")
    model.load_state_dict(sd, strict=True)


def load_model(model_dir: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model folder written by :func:`save_checkpoint`.

    Parameters
    ----------
    model_dir : path
        The folder.
    device : str or torch.device
        Where the network goes (``"auto"`` picks CUDA, MPS, then CPU).

    Returns
    -------
    LoadedModel
        Network in eval mode, config, history, path, name.

    Raises
    ------
    CheckpointError
        Missing files, corrupt JSON or safetensors, weights that do not match the
        architecture in the config.
    """
    folder = Path(model_dir)
    if not folder.exists():
        raise CheckpointError(f"model folder not found: {folder}")
    if not folder.is_dir():
        raise CheckpointError(f"not a model folder (expected a directory): {folder}")
    if not (folder / WEIGHTS_FILE).is_file():
        raise CheckpointError(
            f"{folder} is not a napari-dfct model folder: {WEIGHTS_FILE} is missing"
        )
    cfg = load_config(folder)
    model = _build_from_config(cfg, folder)
    sd = _read_safetensors(folder / WEIGHTS_FILE, f"model weights ({WEIGHTS_FILE})")
    _check_and_load(model, sd, folder)
    history = load_history(folder)
    if device == "auto":
        from .device import resolve_device

        device = resolve_device("auto")
    model = model.to(device).eval()
    name = cfg.get("name") or (cfg.get("loss") or {}).get("name") or folder.name
    return LoadedModel(model=model, config=cfg, history=history, path=folder, name=str(name))


# ------------------------------------------------------------------- run folders, summary
def new_run_dir(parent: str | os.PathLike, name: str | None, loss_name: str,
                now: _dt.datetime | None = None) -> Path:
    """The folder of a new training run: ``parent / name``, created parent included.

    Parameters
    ----------
    parent : path
        Where model folders go (created if missing).
    name : str, optional
        The run name; empty or None: ``<loss_name>-<YYYYmmdd>-<HHMMSS>``.
    loss_name : str
        The loss configuration's name, for the default run name.
    now : datetime.datetime, optional
        The time stamp of the default name (the current local time by default).

    Returns
    -------
    pathlib.Path
        The run folder (not created: training creates it).

    Raises
    ------
    ValueError
        The folder already holds a model (a new run never overwrites one), or ``parent``
        cannot be created.
    """
    base = Path(parent).expanduser()
    run = str(name or "").strip()
    if not run:
        run = f"{loss_name}-{(now or _dt.datetime.now()).strftime('%Y%m%d-%H%M%S')}"
    out = base / run
    if is_model_dir(out):
        raise ValueError(
            f"{out} already holds a model; write the new run to another folder, or resume "
            "this one"
        )
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"cannot create the output folder {base}: {err}") from None
    return out


def describe_model(folder: str | os.PathLike) -> str:
    """A plain-text summary of a model folder's ``config.json`` and ``history.json``.

    Parameters
    ----------
    folder : path
        A model folder.

    Returns
    -------
    str
        One ``label  text`` line each: model, folder, loss, preset, intensity window, data,
        recipe, selection criterion and training parameters, epochs run, best epoch and
        validation loss, creation time.

    Raises
    ------
    CheckpointError
        The folder is not a readable model folder (a :class:`ValueError`).
    """
    folder = Path(folder)
    if not is_model_dir(folder):
        raise CheckpointError(
            f"{folder} is not a model folder (no {WEIGHTS_FILE} and {CONFIG_FILE})"
        )
    cfg = load_config(folder)
    history = load_history(folder)
    loss = cfg.get("loss") or {}
    train = cfg.get("train") or {}
    arch = cfg.get("model") or {}
    window = cfg.get("window") or {}
    lines: list[str] = []

    def row(label: str, text: str) -> None:
        lines.append(f"{label:<9}{text}")

    row("model", folder.name)
    row("folder", str(folder))
    name = cfg.get("name") or loss.get("name") or "?"
    row("loss", f"{name}  ({_scheme_text(loss)}; {loss.get('mode', 'paper')} mode"
        f"{', normalised weights' if loss.get('normalize') else ''})")
    arch_text = ", ".join(f"{k} {v}" for k, v in arch.items() if k in ("base_channels", "depth"))
    row("preset", f"{cfg.get('preset', '?')}" + (f"  ({arch_text})" if arch_text else ""))
    if window:
        row("window", f"[{float(window['low']):.6g}, {float(window['high']):.6g}]  "
            "(of the training data, input units)")
    shape = cfg.get("data_shape")
    if shape:
        n_val = len((cfg.get("split") or {}).get("val", []))
        row("data", " x ".join(str(s) for s in shape)
            + (f"  ({n_val} validation slices)" if n_val else ""))
    if train:
        recipe = train.get("recipe")
        row("recipe", f"{recipe}" if recipe else "paper (saved before recipes existed)")
        row("select", f"{train.get('select', 'amplified')} validation loss")
        row("train", f"patch {train.get('patch')}, batch {train.get('batch_size')}, "
            f"lr {float(train.get('lr', float('nan'))):g}, weight decay "
            f"{train.get('weight_decay')}, {train.get('optimizer')}, seed {train.get('seed')}")
    epochs_run = cfg.get("epochs_run")
    if history:
        epochs_run = max(int(h.get("epoch", 0)) for h in history)
    max_epochs = train.get("epochs")
    row("epochs", f"{epochs_run if epochs_run is not None else '?'}"
        + (f" of {max_epochs}" if max_epochs else "")
        + f", best epoch {cfg.get('best_epoch', '?')}")
    best = cfg.get("best_val_loss")
    if best is not None:
        row("val loss", f"{float(best):.6g} (best epoch, {train.get('select', 'amplified')})")
    if cfg.get("created"):
        row("saved", str(cfg["created"]))
    return "\n".join(lines)


def _scheme_text(loss: dict) -> str:
    """The amplification scheme of a saved loss configuration, in words."""
    s, f = loss.get("spatial", "none"), loss.get("frequency", "none")
    if s != "none" and f != "none":
        return "S+F" if loss.get("order", "sf") == "sf" else "F+S"
    if s != "none":
        return "S"
    if f != "none":
        return "F"
    return "no amplification"
