"""``dfct predict`` without torch: a saved 2-D model whose ONNX export is in the disk cache
runs in ONNX Runtime on NumPy arrays, and the command never imports torch (about 1.5 s of
every command on a laptop).

:func:`load` gives a :class:`FastModel` only when the command's own rules
(:mod:`napari_dfct.infer`, "Backends") would run ONNX Runtime, and only then:

* the backend is ``auto`` or ``onnx`` (with an export in the disk cache, ``auto`` takes
  ONNX Runtime for any number of slices, ``onnx`` always), and onnxruntime and onnx are
  installed (:func:`napari_dfct._onnx.missing`);
* the device is ``cpu``, or ``auto`` where :func:`napari_dfct.device.auto_is_cpu` is sure
  that ``auto`` means the CPU (a torch built without CUDA and ROCm, or a Linux machine
  without any trace of a GPU; never on macOS, where ``auto`` may pick MPS);
* the model is a 2-D :class:`napari_dfct.model.ResidualUNet` (no context, not 3-D) whose
  ``config.json`` gives its arguments as plain integers and booleans;
* the disk cache (:mod:`napari_dfct._onnx_cache`) holds an export under the key that
  :func:`napari_dfct._onnx._disk_key` gives the loaded model, computed here without torch
  (:func:`napari_dfct._onnx.saved_key`: the weights read with ``safetensors.numpy``, the
  network's and the exporter's sources read from their files, torch's version from the
  package metadata), and its record and graph pass :func:`napari_dfct._onnx_cache.read`
  (size and SHA-256), and ONNX Runtime loads the graph.

Anything else gives None and the command runs as before, with torch; so does a failure of
ONNX Runtime during the prediction (:class:`Unavailable`, before anything is written). A
cached export was checked against torch when it was made (within
:data:`napari_dfct._onnx.CHECK_TOLERANCE` of the intensity window) with the same weights,
network source, exporter, torch, onnx and onnxruntime that its key names, so it is used
here without a second check (the torch path repeats that check on the check input).

A hit also proves the weights file loads: the key covers the name, dtype, shape and bytes
of every tensor in it, and an export is only cached for a network that holds exactly
those tensors and reproduced torch's output (finite weights). Prediction follows
:func:`napari_dfct.infer.predict_iter` for a 2-D model on the ``onnx`` backend: the
model's intensity window, batches of ``batch_size`` slices padded as the network pads, or
one slice at a time in tiles of ``tile`` pixels blended as :mod:`napari_dfct._tiling` says.

Nothing here imports torch.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import _onnx, _onnx_cache, _tiling
from ._files import read_json
from ._model_folder import CONFIG_FILE, WEIGHTS_FILE, display_name
from ._threads import default_threads
from .window import IntensityWindow

__all__ = ["FastModel", "Unavailable", "architecture", "load", "weights_digest"]

#: NumPy dtypes of the weights whose torch name is ``"torch." + dtype.name``.
_DTYPES = frozenset(
    {"bool", "float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8"}
)
#: The integer arguments of :class:`napari_dfct.model.ResidualUNet` and their defaults.
_INTS = {"base_channels": 64, "depth": 4, "in_channels": None, "out_channels": 1}


class Unavailable(RuntimeError):
    """ONNX Runtime failed here: the command predicts with torch instead."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def architecture(kwargs: Any) -> dict | None:
    """``napari_dfct.model.model_config`` of the 2-D network that the ``"model"`` entry of
    a ``config.json`` describes, when it gives only plain integers and booleans; None for a
    context or 3-D model and for anything else (loading with torch then decides)."""
    known = {*_INTS, "bilinear", "zero_init", "context", "dims"}
    if not isinstance(kwargs, dict) or set(kwargs) - known:
        return None
    if any(n in kwargs and not _is_int(kwargs[n]) for n in (*_INTS, "context", "dims")):
        return None
    if any(n in kwargs and not isinstance(kwargs[n], bool) for n in ("bilinear", "zero_init")):
        return None
    if kwargs.get("context", 0) != 0 or kwargs.get("dims", 2) != 2:
        return None
    out = {n: kwargs.get(n, default) for n, default in _INTS.items()}
    if out["in_channels"] is None:
        out["in_channels"] = out["out_channels"]
    out["bilinear"] = kwargs.get("bilinear", True)
    return out


def weights_digest(path: Path) -> str:
    """:func:`napari_dfct._onnx_cache.weights_digest` of the network a weights file loads
    into, read with ``safetensors.numpy``; ValueError for a dtype NumPy cannot name as
    torch does (bf16)."""
    from safetensors.numpy import load_file

    arrays = load_file(str(path))

    def tensors():
        for name, arr in arrays.items():
            if arr.dtype.name not in _DTYPES:
                raise ValueError(f"weights of dtype {arr.dtype}")
            flat = np.ascontiguousarray(arr).reshape(-1)
            yield name, f"torch.{arr.dtype.name}", tuple(arr.shape), flat.view(np.uint8).data

    return _onnx_cache.digest_of(tensors())


def _device_is_cpu(device: str) -> bool:
    from .device import auto_is_cpu

    name = str(device or "auto").strip().lower()
    return name == "cpu" or (name == "auto" and auto_is_cpu())


@dataclass
class FastModel:
    """A saved 2-D model and the ONNX Runtime session of its cached export."""

    name: str
    window: IntensityWindow | None
    multiple: int
    session: Any  # napari_dfct._onnx.OnnxSession

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """The network on ``(B, C, H, W)`` float32, padded as it pads itself and cropped."""
        h, w = x.shape[-2:]
        xp, (left, _, top, _) = _tiling.pad_like_model(x, self.multiple)
        try:
            y = self.session.run(xp)
        except Exception as exc:  # noqa: BLE001 - the runtime's own errors, memory included
            raise Unavailable(f"ONNX Runtime failed ({type(exc).__name__})") from exc
        return y[..., top : top + h, left : left + w]

    def predict_iter(
        self,
        volume: np.ndarray,
        index: Sequence[int],
        *,
        batch_size: int = 4,
        tile: int | None = None,
        overlap: int = 32,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Predictions ``(z, slice)`` of slices ``index`` of ``volume`` (``(Z, Y, X)``,
        finite: the caller checked), float32 in the input's units, as
        :func:`napari_dfct.infer.predict_iter` gives them. :class:`Unavailable` when ONNX
        Runtime fails, or for arguments whose error message is the torch path's."""
        if volume.ndim != 3 or volume.dtype.kind not in "fiub" or int(overlap) < 0:
            raise Unavailable("arguments for the torch path's checks")
        bs, h, w = int(batch_size), *volume.shape[1:]
        pos = 0
        while pos < len(index):
            chunk = list(index[pos : pos + (1 if tile else bs)])
            x = np.asarray(volume[chunk], dtype=np.float32)
            xn = self.window.normalize(x) if self.window is not None else x
            xb = np.ascontiguousarray(xn).reshape(len(chunk), 1, h, w)
            if tile:
                y = _tiling.tiled(xb, self._forward, self.multiple, tile, overlap, bs)
            else:
                y = self._forward(xb)
            pred = y[:, 0]
            if self.window is not None:
                pred = self.window.denormalize(pred)
            for j, z in enumerate(chunk):
                yield z, np.ascontiguousarray(pred[j], dtype=np.float32)
            pos += len(chunk)


def load(model_dir: str | Path, device: str, backend: str) -> FastModel | None:
    """The :class:`FastModel` of a model folder when ``dfct predict --device device
    --backend backend`` may run it without torch (the module docstring), else None."""
    if backend not in ("auto", "onnx") or not _device_is_cpu(device):
        return None
    if _onnx.missing() is not None:
        return None
    folder = Path(model_dir)
    try:
        cfg = read_json(folder / CONFIG_FILE, dict)
        arch = architecture(cfg.get("model"))
        if arch is None:
            return None
        w = cfg.get("window")
        window = IntensityWindow.from_dict(w) if w else None
        torch_version = importlib.metadata.version("torch")
        key = _onnx.saved_key(arch, weights_digest(folder / WEIGHTS_FILE), torch_version)
        hit = _onnx_cache.read(key)
    except Exception:  # noqa: BLE001 - unreadable, damaged, unusual: the torch path decides
        return None
    if hit is None:
        return None
    m = 2 ** int(arch["depth"])
    shape = _onnx._example_shape(arch["in_channels"], m)
    try:
        session = _onnx.OnnxSession(hit[0], default_threads(), shape)
    except Exception:  # noqa: BLE001 - ONNX Runtime's loader: the torch path re-exports
        return None
    check = (hit[1].get("check") or {}).get("max_diff")
    _onnx.log.info(
        "ONNX Runtime: the export %s from the disk cache, without torch (checked at export: %s)",
        hit[2],
        f"{check:.1g}" if isinstance(check, float | int) else "?",
    )
    return FastModel(display_name(cfg, folder), window, m, session)
