"""What every part of a model folder shares: file names, the error type, JSON and
safetensors reading, versions."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._model_folder import CONFIG_FILE as CONFIG_FILE
from .._model_folder import WEIGHTS_FILE as WEIGHTS_FILE

HISTORY_FILE = "history.json"
#: The same history as a table, one row per epoch (written with ``history.json``).
HISTORY_CSV_FILE = "history.csv"
#: The folder of TensorBoard event files (``TrainConfig.tensorboard``).
TENSORBOARD_DIR = "tensorboard"
STATE_TENSORS_FILE = "training-state.safetensors"
STATE_FILE = "training-state.json"
#: Every file a model folder may hold.
RUN_FILES = (
    WEIGHTS_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    HISTORY_CSV_FILE,
    STATE_TENSORS_FILE,
    STATE_FILE,
)
FORMAT_VERSION = 1
STATE_FORMAT_VERSION = 2


class CheckpointError(ValueError):
    """A model folder is missing, incomplete, corrupt or does not match its config."""


def _read_json(path: Path, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{what} is missing: {path}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{what} is corrupt (not valid JSON): {path}: {exc}") from None
    except RecursionError:
        raise CheckpointError(f"{what} is corrupt (nested too deeply): {path}") from None
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
    from .. import __version__

    return {
        "napari_dfct": __version__,
        "torch": torch.__version__.split("+")[0],
        "numpy": np.__version__,
    }


def _model_config(model: torch.nn.Module) -> dict | None:
    try:
        from ..model import model_config
    except ImportError:  # pragma: no cover - model module missing
        return None
    try:
        return model_config(model)
    except Exception:  # noqa: BLE001 - a model model_config cannot describe: no config
        return None


def is_model_dir(path: str | os.PathLike) -> bool:
    """True when ``path`` holds ``model.safetensors`` and ``config.json``."""
    p = Path(path)
    return (p / WEIGHTS_FILE).is_file() and (p / CONFIG_FILE).is_file()


def _header_metadata(data: bytes, path: Path, what: str) -> dict:
    """The ``__metadata__`` of a safetensors file's header (``data``: its first bytes)."""
    try:
        n = int.from_bytes(data[:8], "little")
        if len(data) < 8 + n:
            raise ValueError("truncated header")
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
        meta = header.get("__metadata__") or {}
        if not isinstance(meta, dict):
            raise ValueError("metadata is not an object")
        return meta
    except (ValueError, UnicodeDecodeError, AttributeError) as exc:
        raise CheckpointError(
            f"{what} is corrupt or not a safetensors file: {path}: {exc}"
        ) from None


def _file_metadata(path: Path, what: str) -> dict:
    """The metadata of a safetensors file, reading its header only."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else 0
            if not 0 < n <= 100_000_000:
                raise CheckpointError(f"{what} is corrupt or not a safetensors file: {path}")
            data = head + fh.read(n)
    except FileNotFoundError:
        raise CheckpointError(f"{what} is missing: {path}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {what}: {path}: {exc}") from None
    return _header_metadata(data, path, what)
