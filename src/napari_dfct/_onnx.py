"""ONNX Runtime for inference on the CPU (the optional extra ``onnx``): export, session, cache.

:func:`session` exports a network with ``torch.onnx.export`` (its TorchScript exporter,
which needs only the ``onnx`` package) to a temporary file at its first use, opens an ONNX
Runtime session on it (the CPU execution provider) and keeps the session in memory, keyed
by the network and the state of its weights: a changed weight makes a new export, a
network that is garbage-collected drops its session. The graph takes any batch size and
any height and width that are multiples of the network's ``multiple``;
:mod:`napari_dfct.infer` pads every input the way the network pads it itself, so the
traced graph never pads and one export serves every slice and tile size.

Every new session is checked against the network on a small input before it is used: a
larger difference than :data:`CHECK_TOLERANCE` (in the normalised intensity units the
network sees, i.e. fractions of the intensity window) counts as a failed export.

Threads: a session runs on as many threads as torch (``torch.get_num_threads()``; the
package caps it to the usable cores through ``OMP_NUM_THREADS``, :mod:`napari_dfct._threads`),
one operator at a time, and its idle threads sleep instead of spinning, as torch's
OpenMP threads do after a short spin: on a machine that other jobs share they take no
cores from them (and measured no slower, ``benchmarks/bench_infer.py``).

Nothing here imports onnx or onnxruntime before a session is asked for.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import threading
import warnings
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "BACKENDS",
    "CHECK_TOLERANCE",
    "ONNX_MIN_SLICES",
    "OnnxUnavailable",
    "cached",
    "missing",
    "note",
    "session",
]

log = logging.getLogger("napari_dfct.infer")

#: The values of ``backend`` (:func:`napari_dfct.infer.predict`, ``dfct predict --backend``).
BACKENDS = ("auto", "eager", "onnx")
#: ``backend="auto"`` exports to ONNX Runtime for this many slices or more: the first
#: export in a process (about 2 s, most of it loading the exporter) costs about what a
#: few slices of ``small`` at 800 x 800 save.
ONNX_MIN_SLICES = 8

#: The most a fresh session may differ from the network on its check input (normalised
#: units: a fraction of the intensity window), else it is not used.
CHECK_TOLERANCE = 1e-4

#: How to install what the backend needs.
INSTALL_HINT = "pip install 'napari-dfct[onnx]'"

_LOCK = threading.Lock()
_CACHE: weakref.WeakKeyDictionary[Any, tuple[tuple, OnnxSession]] = weakref.WeakKeyDictionary()
_FAILED: weakref.WeakKeyDictionary[Any, tuple[tuple, str]] = weakref.WeakKeyDictionary()
_NOTED: set[str] = set()


class OnnxUnavailable(RuntimeError):
    """ONNX Runtime cannot run this network: not installed, or the export failed."""


def missing() -> str | None:
    """None when ``onnxruntime`` and ``onnx`` can be imported, else what is missing."""
    names = [n for n in ("onnxruntime", "onnx") if importlib.util.find_spec(n) is None]
    return f"ONNX Runtime is not installed (missing: {', '.join(names)})" if names else None


def note(message: str) -> None:
    """Log ``message`` once per process (a fallback is said once, not per batch)."""
    with _LOCK:
        if message in _NOTED:
            return
        _NOTED.add(message)
    log.warning(message)


class OnnxSession:
    """An ONNX Runtime session of one exported network: ``(B, C, H, W)`` float32 tensor in
    (H, W multiples of the network's ``multiple``), float32 CPU tensor out."""

    def __init__(self, path: str, threads: int, example_shape: tuple[int, ...]):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3  # errors only
        self._session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self.threads = int(threads)
        self._example_shape = tuple(example_shape)
        self._shrink = ort.RunOptions()
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def release_memory(self) -> None:
        """Give the memory arena's free blocks back (a tiny run that shrinks it): the arena
        keeps its peak between runs, measured 2.4 GB after a batch of four 800 x 800
        slices of ``small``, which a session kept for the next prediction must not hold."""
        import numpy as np

        tiny = np.zeros(self._example_shape, dtype=np.float32)
        self._session.run(None, {self._input: tiny}, self._shrink)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import numpy as np
        import torch

        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self._session.run(None, {self._input: arr})[0])


def _weights_key(model: torch.nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced or modified in place (its
    version counter: ``load_state_dict``, an optimiser step), but not when the module is
    only moved to another device or memory format and back."""
    tensors = [*model.parameters(), *model.buffers()]
    return tuple((id(t), t._version, tuple(t.shape)) for t in tensors)


def _key(model: torch.nn.Module, channels: int, threads: int) -> tuple:
    return (_weights_key(model), int(channels), int(threads), bool(model.training))


def cached(model: torch.nn.Module, channels: int | None = None) -> bool:
    """Whether a session for ``model`` (its current weights) is ready, so using it costs
    no export."""
    import torch

    with _LOCK:
        hit = _CACHE.get(model)
    if hit is None:
        return False
    c = int(getattr(model, "in_channels", 1)) if channels is None else int(channels)
    return hit[0] == _key(model, c, torch.get_num_threads())


def _export(model: torch.nn.Module, channels: int, multiple: int, path: str) -> torch.Tensor:
    """Trace ``model`` at a small size with a dynamic batch, height and width; return the
    example input (for the check)."""
    import torch

    side = 4 * int(multiple)
    gen = torch.Generator().manual_seed(0)
    example = torch.rand((1, int(channels), side, side), generator=gen)
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():  # the tracer's notes on shape-dependent Python code
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            path,
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": axes, "y": axes},
            opset_version=17,
            do_constant_folding=True,
        )
    return example


def _build(model: torch.nn.Module, channels: int, multiple: int, threads: int) -> OnnxSession:
    import torch

    absent = missing()
    if absent is not None:
        raise OnnxUnavailable(f"{absent}; {INSTALL_HINT}")
    try:
        with tempfile.TemporaryDirectory(prefix="dfct-onnx-") as folder:
            path = os.path.join(folder, "model.onnx")
            with torch.inference_mode(False), torch.no_grad():
                example = _export(model, channels, multiple, path)
                expected = model(example)
            sess = OnnxSession(path, threads, tuple(example.shape))
    except Exception as exc:  # noqa: BLE001 - any failure of the exporter or the runtime
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise OnnxUnavailable(f"the export failed ({type(exc).__name__}: {first})") from exc
    diff = float((sess(example) - expected).abs().max())
    if not diff <= CHECK_TOLERANCE:
        raise OnnxUnavailable(
            f"the exported network differs from torch by {diff:.2g} (more than "
            f"{CHECK_TOLERANCE:g})"
        )
    return sess


def session(model: torch.nn.Module, channels: int, multiple: int) -> OnnxSession:
    """The ONNX Runtime session of ``model`` (in its current state) for inputs of
    ``channels`` channels whose height and width are multiples of ``multiple``; exported
    at the first use and cached in memory.

    Raises
    ------
    OnnxUnavailable
        onnxruntime or onnx is not installed, the export failed, or the exported network
        does not reproduce torch's output within :data:`CHECK_TOLERANCE`.
    """
    import torch

    threads = torch.get_num_threads()
    key = _key(model, channels, threads)
    with _LOCK:
        hit = _CACHE.get(model)
        failed = _FAILED.get(model)
    if hit is not None and hit[0] == key:
        return hit[1]
    if failed is not None and failed[0] == key:  # not exported again for every batch
        raise OnnxUnavailable(failed[1])
    try:
        sess = _build(model, channels, multiple, threads)
    except OnnxUnavailable as exc:
        with _LOCK:
            _FAILED[model] = (key, str(exc))
        raise
    with _LOCK:
        _CACHE[model] = (key, sess)
    return sess
