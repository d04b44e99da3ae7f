"""Loading model folders (never unpickling) and describing them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .._model_folder import display_name
from ..context import describe_context
from ._base import (
    CONFIG_FILE,
    HISTORY_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    _read_json,
    _read_safetensors,
    is_model_dir,
)


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
        from ..data import IntensityWindow

        w = self.config.get("window")
        return IntensityWindow.from_dict(w) if w else None


def load_config(model_dir: str | os.PathLike) -> dict:
    """``config.json`` of a model folder, validated to be a JSON object."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise CheckpointError(f"model folder not found: {folder}")
    cfg = _read_json(folder / CONFIG_FILE, "model config (config.json)")
    if not isinstance(cfg, dict):
        raise CheckpointError(f"model config is not a JSON object: {folder / CONFIG_FILE}")
    return cfg


def load_history(model_dir: str | os.PathLike, until: int | None = None) -> list[dict]:
    """``history.json`` of a model folder (empty list when absent); with ``until``, the
    records of epochs up to that one (a resumed run's past: the epochs of its resume
    state, not those of a later epoch written before a kill)."""
    path = Path(model_dir) / HISTORY_FILE
    if not path.exists():
        return []
    hist = _read_json(path, "training history (history.json)")
    if not isinstance(hist, list):
        raise CheckpointError(f"training history is not a JSON list: {path}")
    if until is not None:
        hist = [rec for rec in hist if int(rec.get("epoch", 0)) <= until]
    return hist


def _build_from_config(cfg: dict, folder: Path) -> torch.nn.Module:
    """The network ``config.json`` describes, its arguments checked before it is built
    (bounded sizes: a file cannot make the process allocate without limit)."""
    from ..model import ResidualUNet, check_architecture

    kwargs = cfg.get("model")
    if not isinstance(kwargs, dict):
        raise CheckpointError(
            f"config.json in {folder} has no architecture ('model' entry); "
            "it was not written by napari-dfct"
        )
    try:
        return ResidualUNet(**check_architecture(**kwargs))
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
    depth = (cfg.get("train") or {}).get("patch_depth")
    if getattr(model, "dims", 2) == 3 and isinstance(depth, int) and depth > 0:
        model.patch_depth = depth  # type: ignore[assignment] # its z-chunks (napari_dfct.infer)
    history = load_history(folder)
    if device == "auto":
        from ..device import resolve_device

        device = resolve_device("auto")
    model = model.to(device).eval()
    name = display_name(cfg, folder)
    return LoadedModel(model=model, config=cfg, history=history, path=folder, name=name)


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
    row(
        "loss",
        f"{name}  ({_scheme_text(loss)}; {loss.get('mode', 'paper')} mode"
        f"{', normalised weights' if loss.get('normalize') else ''})",
    )
    arch_text = ", ".join(
        f"{k} {v}" for k, v in arch.items() if k in ("base_channels", "depth", "context", "dims")
    )
    n_params = _parameter_count(arch)
    if n_params is not None:
        arch_text += f", {n_params:,} parameters"
    row("preset", f"{cfg.get('preset', '?')}" + (f"  ({arch_text})" if arch_text else ""))
    depth = train.get("patch_depth")
    depth = depth if isinstance(depth, int) and depth > 0 else None
    row("input", describe_context(arch.get("context", 0) or 0, arch.get("dims", 2) or 2, depth))
    if window:
        row(
            "window",
            f"[{float(window['low']):.6g}, {float(window['high']):.6g}]  "
            "(of the training data, input units)",
        )
    shape = cfg.get("data_shape")
    if shape:
        n_val = len((cfg.get("split") or {}).get("val", []))
        row(
            "data",
            " x ".join(str(s) for s in shape)
            + (f"  ({n_val} validation slices)" if n_val else ""),
        )
    if train:
        recipe = train.get("recipe")
        row("recipe", f"{recipe}" if recipe else "paper (saved before recipes existed)")
        row("select", f"{train.get('select', 'amplified')} validation loss")
        row(
            "train",
            f"patch {train.get('patch')}, batch {train.get('batch_size')}, "
            f"lr {float(train.get('lr', float('nan'))):g}, weight decay "
            f"{train.get('weight_decay')}, {train.get('optimizer')}, seed {train.get('seed')}",
        )
    epochs_run = cfg.get("epochs_run")
    if history:
        epochs_run = max(int(h.get("epoch", 0)) for h in history)
    max_epochs = train.get("epochs")
    row(
        "epochs",
        f"{epochs_run if epochs_run is not None else '?'}"
        + (f" of {max_epochs}" if max_epochs else "")
        + f", best epoch {cfg.get('best_epoch', '?')}",
    )
    best = cfg.get("best_val_loss")
    if best is not None:
        row("val loss", f"{float(best):.6g} (best epoch, {train.get('select', 'amplified')})")
    if cfg.get("created"):
        row("saved", str(cfg["created"]))
    return "\n".join(lines)


def _parameter_count(arch: dict) -> int | None:
    """Trainable parameters of a saved architecture, counted on torch's meta device (no
    memory); None when the architecture does not build."""
    import torch

    from ..model import build_model, count_parameters

    try:
        with torch.device("meta"):
            return count_parameters(build_model(**arch))
    except (TypeError, ValueError):
        return None


def _scheme_text(loss: dict) -> str:
    """The amplification scheme of a saved loss configuration, in words: the ``scheme``
    it was saved with (:meth:`LossConfig.to_dict`), else the one its fields give."""
    scheme = loss.get("scheme")
    if scheme is None:
        from ..loss_config import LossConfig

        try:
            scheme = LossConfig.from_dict(loss).scheme
        except ValueError:
            return "unknown amplification"
    return "no amplification" if scheme == "none" else str(scheme)
