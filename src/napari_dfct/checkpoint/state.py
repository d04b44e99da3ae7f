"""The resume state: one safetensors file (tensors, with the rest as a JSON index in its
metadata) and a readable summary next to it."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._files import atomic_write_bytes, write_json
from ._base import (
    STATE_FILE,
    STATE_FORMAT_VERSION,
    STATE_TENSORS_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    _file_metadata,
    _header_metadata,
    _read_json,
    _state_dict_bytes,
)


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


#: The deepest nesting a training-state index may have (a real state nests about 8 deep).
MAX_STATE_DEPTH = 32
#: The array dtypes a training-state index may hold (kinds: bool, int, unsigned, float).
_ARRAY_KINDS = "biuf"


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor], depth: int = 0) -> Any:
    """Inverse of :func:`_flatten`; :class:`CheckpointError` (one line) for anything
    :func:`_flatten` cannot have written: nesting beyond :data:`MAX_STATE_DEPTH`, arrays of
    other dtypes, malformed references."""
    if depth > MAX_STATE_DEPTH:
        raise CheckpointError(f"training state is nested deeper than {MAX_STATE_DEPTH} levels")
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            key = obj["__tensor__"]
            if not isinstance(key, str) or key not in tensors:
                raise CheckpointError(f"training state refers to a missing tensor {key!r}")
            return tensors[key]
        if "__items__" in obj:
            return _unflatten_items(obj["__items__"], tensors, depth)
        if "__tuple__" in obj:
            if not isinstance(obj["__tuple__"], list):
                raise CheckpointError("training state holds a malformed tuple")
            return tuple(_unflatten(v, tensors, depth + 1) for v in obj["__tuple__"])
        if "__ndarray__" in obj:
            return _unflatten_array(obj)
        if "__float__" in obj:
            try:
                return float(obj["__float__"])
            except (TypeError, ValueError):
                raise CheckpointError(
                    f"training state holds a malformed number {obj['__float__']!r:.40}"
                ) from None
        return {k: _unflatten(v, tensors, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, tensors, depth + 1) for v in obj]
    return obj


def _unflatten_items(items: Any, tensors: dict[str, torch.Tensor], depth: int) -> dict:
    """A dict with keys that are not all strings (an optimizer's parameter indexes)."""
    if not isinstance(items, list) or not all(
        isinstance(kv, list) and len(kv) == 2 for kv in items
    ):
        raise CheckpointError("training state holds a malformed mapping")
    out = {}
    for k, v in items:
        key = _unflatten(k, tensors, depth + 1)
        parts = key if isinstance(key, tuple) else (key,)
        if not all(isinstance(e, str | int | float) for e in parts):
            raise CheckpointError(
                f"training state holds a mapping key of type {type(key).__name__}"
            )
        out[key] = _unflatten(v, tensors, depth + 1)
    return out


def _unflatten_array(obj: dict) -> np.ndarray:
    """A NumPy array of the index: numbers of a bool, integer or float dtype only."""
    try:
        dtype = np.dtype(obj.get("dtype"))
    except (TypeError, ValueError):
        raise CheckpointError(
            f"training state holds an array of an unknown dtype {obj.get('dtype')!r:.40}"
        ) from None
    if dtype.kind not in _ARRAY_KINDS:
        raise CheckpointError(
            f"training state holds an array of dtype {dtype}; only bool, integer and float "
            "arrays are read"
        )
    try:
        return np.asarray(obj["__ndarray__"], dtype=dtype)
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise CheckpointError(f"training state holds a malformed {dtype} array") from None


def save_training_state(model_dir: str | os.PathLike, state: dict) -> Path:
    """Save a resume state as one file, ``training-state.safetensors``, atomically.

    ``state`` is any nesting of dicts (keys may be ints, as in an optimizer state dict),
    lists, tuples, tensors, NumPy arrays and JSON scalars: the tensors are stored as
    tensors, the rest as a JSON index in the file's metadata. ``training-state.json``, a
    readable summary (epoch, early-stopping counters), follows; nothing reads it back.
    """
    folder = Path(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    index = _flatten(state, tensors)
    doc = {"format_version": STATE_FORMAT_VERSION, "tensors": len(tensors), "state": index}
    meta = {
        "napari_dfct": "training-state",
        "format_version": str(STATE_FORMAT_VERSION),
        "index": json.dumps(doc, allow_nan=False, separators=(",", ":")),
    }
    atomic_write_bytes(folder / STATE_TENSORS_FILE, _state_dict_bytes(tensors, metadata=meta))
    summary = {k: v for k, v in state.items() if k == "epoch"}
    summary.update(state.get("early_stopping") or {})
    write_json(
        folder / STATE_FILE,
        {
            "format_version": STATE_FORMAT_VERSION,
            "file": STATE_TENSORS_FILE,
            "note": f"a summary; the training state is {STATE_TENSORS_FILE}",
            "state": summary,
        },
    )
    return folder


def load_training_state(model_dir: str | os.PathLike) -> dict:
    """Read back :func:`save_training_state` (or the two-file state of older folders);
    :class:`CheckpointError` on any problem."""
    from safetensors.torch import load

    folder = Path(model_dir)
    path = folder / STATE_TENSORS_FILE
    what = "training state"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{what} is missing: {path}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {what}: {path}: {exc}") from None
    meta = _header_metadata(data, path, what)
    if "index" in meta:
        try:
            doc = json.loads(meta["index"])
        except (json.JSONDecodeError, TypeError) as exc:
            raise CheckpointError(f"{what} is corrupt: {path}: {exc}") from None
        except RecursionError:
            raise CheckpointError(
                f"{what} is corrupt: {path}: its index is nested too deeply"
            ) from None
    else:  # written before the state was one file: the index is training-state.json
        doc = _read_json(folder / STATE_FILE, what)
    if not isinstance(doc, dict) or "state" not in doc:
        raise CheckpointError(f"training state is malformed: {path}")
    try:
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{what} is corrupt: {path}: {exc}") from exc
    if doc.get("tensors", len(tensors)) != len(tensors):
        raise CheckpointError(
            f"training state in {folder} is inconsistent: {len(tensors)} tensors on disk, "
            f"{doc.get('tensors')!r:.40} in the index"
        )
    try:
        return _unflatten(doc["state"], tensors)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}: {path}") from None


def has_training_state(model_dir: str | os.PathLike) -> bool:
    """Whether ``model_dir`` holds a resume state (one file, or an older folder's pair)."""
    folder = Path(model_dir)
    path = folder / STATE_TENSORS_FILE
    if not path.is_file():
        return False
    try:
        meta = _file_metadata(path, "training state")
    except CheckpointError:
        return True  # there, but unreadable: resuming says why
    return "index" in meta or (folder / STATE_FILE).is_file()


def training_state_summary(model_dir: str | os.PathLike) -> dict | None:
    """The counters of the resume state in ``model_dir``, read from its file's header
    (no tensor is read): ``{"epoch", "best_epoch", "bad_epochs"}``; None when there is no
    state or it cannot be read (resuming it then says why)."""
    folder = Path(model_dir)
    if not has_training_state(folder):
        return None
    try:
        meta = _file_metadata(folder / STATE_TENSORS_FILE, "training state")
        if "index" in meta:
            doc = json.loads(meta["index"])
        else:  # written before the state was one file: the index is training-state.json
            doc = _read_json(folder / STATE_FILE, "training state")
        state = doc["state"]
        stopping = state["early_stopping"]
        return {
            "epoch": int(state["epoch"]),
            "best_epoch": int(stopping["best_epoch"]),
            "bad_epochs": int(stopping["bad_epochs"]),
        }
    except (CheckpointError, KeyError, TypeError, ValueError, RecursionError):
        return None


def training_state_epoch(model_dir: str | os.PathLike) -> int | None:
    """The epoch of the resume state in ``model_dir`` (None when there is none)."""
    if not has_training_state(model_dir):
        return None
    try:
        return int(load_training_state(model_dir)["epoch"])
    except (CheckpointError, KeyError, TypeError, ValueError):
        return None


def weights_epoch(model_dir: str | os.PathLike) -> int | None:
    """The epoch ``model.safetensors`` comes from (its metadata), or None when unknown."""
    try:
        value = _file_metadata(Path(model_dir) / WEIGHTS_FILE, "model weights").get("epoch")
        return None if value is None else int(value)
    except (CheckpointError, ValueError):
        return None


def delete_training_state(model_dir: str | os.PathLike) -> None:
    """Remove the resume files of a model folder (if any), the summary first."""
    for name in (STATE_FILE, STATE_TENSORS_FILE):
        try:
            (Path(model_dir) / name).unlink()
        except FileNotFoundError:
            pass
