"""ONNX Runtime for inference on the CPU (the optional extra ``onnx``): export, session, cache.

:func:`session` gives the ONNX Runtime session of a network (the CPU execution provider),
kept in memory per network and state of its weights: a changed weight makes a new
session, a network that is garbage-collected drops its session. A new session comes from
the disk cache of exports (:mod:`napari_dfct._onnx_cache`, in the package's cache folder)
when the network, its weights and the versions there match, else from an export with
``torch.onnx.export`` (its TorchScript exporter, which needs only the ``onnx`` package),
which is then written to the disk cache: the export is paid once per network and weights
on a machine, not once per process. :func:`ready` says whether a session can be had
without an export (in memory or on disk), which is when ``backend="auto"`` takes ONNX
Runtime even for one slice; :func:`warm` exports a saved model ahead of its first use.

The graph takes any batch size and any height and width that are multiples of the
network's ``multiple``; :mod:`napari_dfct.infer` pads every input the way the network pads
it itself, so the traced graph never pads and one export serves every slice and tile size.

Every new session is checked against the network on a small input before it is used,
whether exported or read from the disk cache: a larger difference than
:data:`CHECK_TOLERANCE` (in the normalised intensity units the network sees, i.e.
fractions of the intensity window) counts as a failed export, and a cached export that
fails it, cannot be read or does not load is exported again (one logged line), never used.

Threads: a session runs on as many threads as torch (``torch.get_num_threads()``; the
package caps it to the usable cores through ``OMP_NUM_THREADS``, :mod:`napari_dfct._threads`),
one operator at a time, and its idle threads sleep instead of spinning, as torch's
OpenMP threads do after a short spin: on a machine that other jobs share they take no
cores from them (and measured no slower, ``benchmarks/bench_infer.py``).

Nothing here imports onnx or onnxruntime before a session is asked for.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import sys
import threading
import time
import warnings
import weakref
from typing import TYPE_CHECKING, Any

from . import _onnx_cache

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
    "ready",
    "saved_key",
    "session",
    "warm",
]

log = logging.getLogger("napari_dfct.infer")

#: The values of ``backend`` (:func:`napari_dfct.infer.predict`, ``dfct predict --backend``).
BACKENDS = ("auto", "eager", "onnx")
#: ``backend="auto"`` exports to ONNX Runtime for this many slices or more when the export
#: is in neither the memory nor the disk cache: the first export in a process (about 2 s,
#: most of it loading the exporter) costs about what a few slices of ``small`` at
#: 800 x 800 save.
ONNX_MIN_SLICES = 8
#: The ONNX opset of the export.
OPSET = 17

#: The most a fresh session may differ from the network on its check input (normalised
#: units: a fraction of the intensity window), else it is not used.
CHECK_TOLERANCE = 1e-4

#: How to install what the backend needs.
INSTALL_HINT = "pip install 'napari-dfct[onnx]'"

#: The module and the name of the package's network class (what a saved model is).
_NETWORK = ("napari_dfct.model", "ResidualUNet")

_LOCK = threading.Lock()
_CACHE: weakref.WeakKeyDictionary[Any, tuple[tuple, OnnxSession]] = weakref.WeakKeyDictionary()
_FAILED: weakref.WeakKeyDictionary[Any, tuple[tuple, str]] = weakref.WeakKeyDictionary()
_DIGESTS: weakref.WeakKeyDictionary[Any, tuple[tuple, str]] = weakref.WeakKeyDictionary()
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

    def __init__(self, model: str | bytes, threads: int, example_shape: tuple[int, ...]):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3  # errors only
        self._session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
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

    def run(self, x: Any) -> Any:
        """The network's output for the NumPy array ``x`` (made float32 and contiguous)."""
        import numpy as np

        arr = np.ascontiguousarray(x, dtype=np.float32)
        return self._session.run(None, {self._input: arr})[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.from_numpy(self.run(x.detach().to("cpu", torch.float32).numpy()))


def _weights_key(model: torch.nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced or modified in place (its
    version counter: ``load_state_dict``, an optimiser step), but not when the module is
    only moved to another device or memory format and back."""
    tensors = [*model.parameters(), *model.buffers()]
    return tuple((id(t), t._version, tuple(t.shape)) for t in tensors)


def _key(model: torch.nn.Module, channels: int, threads: int) -> tuple:
    return (_weights_key(model), int(channels), int(threads), bool(model.training))


def cached(model: torch.nn.Module, channels: int | None = None) -> bool:
    """Whether a session for ``model`` (its current weights) is in memory, so using it
    costs neither an export nor a load."""
    import torch

    with _LOCK:
        hit = _CACHE.get(model)
    if hit is None:
        return False
    c = int(getattr(model, "in_channels", 1)) if channels is None else int(channels)
    return hit[0] == _key(model, c, torch.get_num_threads())


def _multiple(model: torch.nn.Module) -> int:
    """The multiple a network pads its input's height and width to."""
    return int(getattr(model, "multiple", 2 ** int(getattr(model, "depth", 4))))


def _example_shape(channels: int, multiple: int) -> tuple[int, int, int, int]:
    """The shape of the export's example input: one ``4 * multiple`` pixels square."""
    side = 4 * int(multiple)
    return (1, int(channels), side, side)


def _example(channels: int, multiple: int) -> torch.Tensor:
    """The input of the export and of the check: seeded, :func:`_example_shape`."""
    import torch

    gen = torch.Generator().manual_seed(0)
    return torch.rand(_example_shape(channels, multiple), generator=gen)


def _settings(channels: int, multiple: int) -> dict:
    """The export's settings, as its disk-cache key holds them."""
    return {
        "channels": int(channels),
        "multiple": int(multiple),
        "opset": OPSET,
        "example": list(_example_shape(channels, multiple)),
    }


def _disk_key(model: torch.nn.Module, channels: int, multiple: int) -> str:
    """The key of ``model``'s export in the disk cache (:func:`_onnx_cache.key`); the
    weights' digest is computed once per state of the weights."""
    wkey = _weights_key(model)
    with _LOCK:
        hit = _DIGESTS.get(model)
    if hit is not None and hit[0] == wkey:
        digest = hit[1]
    else:
        digest = _onnx_cache.weights_digest(model)
        with _LOCK:
            _DIGESTS[model] = (wkey, digest)
    settings = _settings(channels, multiple)
    return _onnx_cache.key(model, digest, settings, sys.modules[__name__])  # this exporter


def saved_key(architecture: dict, digest: str, torch_version: str) -> str:
    """:func:`_disk_key` of a saved :class:`napari_dfct.model.ResidualUNet` in eval mode,
    computed without torch: its ``model_config`` (``architecture``), the digest of its
    weights (:func:`napari_dfct._onnx_cache.digest_of` of the weights file) and the
    version of the installed torch (as ``torch.__version__`` would give it). Equal to
    :func:`_disk_key` of the loaded model (``tests/test_fast_predict.py``)."""
    spec = importlib.util.find_spec(_NETWORK[0])
    source = _onnx_cache.file_digest(spec.origin) if spec and spec.origin else ""
    channels = int(architecture.get("in_channels", 1))
    multiple = 2 ** int(architecture.get("depth", 4))
    return _onnx_cache.key_of(
        network=".".join(_NETWORK),
        source=source,
        architecture=architecture,
        training=False,
        digest=digest,
        settings=_settings(channels, multiple),
        exporter=_onnx_cache.file_digest(__file__),
        torch_version=torch_version,
    )


def ready(
    model: torch.nn.Module, channels: int | None = None, multiple: int | None = None
) -> bool:
    """Whether a session for ``model`` (its current weights) can be had without an export:
    in memory, or in the disk cache (its files exist; they are verified when loaded)."""
    if cached(model, channels):
        return True
    c = int(getattr(model, "in_channels", 1)) if channels is None else int(channels)
    m = _multiple(model) if multiple is None else int(multiple)
    try:
        return _onnx_cache.lookup(_disk_key(model, c, m))
    except Exception:  # noqa: BLE001 - a network the key cannot describe: not cached
        return False


def _export(model: torch.nn.Module, channels: int, multiple: int, f: Any) -> torch.Tensor:
    """Trace ``model`` at a small size with a dynamic batch, height and width into ``f``
    (a path or a binary file); return the example input (for the check)."""
    import torch

    example = _example(channels, multiple)
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():  # the tracer's notes on shape-dependent Python code
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            f,
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": axes, "y": axes},
            opset_version=OPSET,
            do_constant_folding=True,
        )
    return example


def _check(sess: OnnxSession, model: torch.nn.Module, example: torch.Tensor) -> float:
    """The largest difference between the session and ``model`` on ``example``."""
    import torch

    with torch.inference_mode(False), torch.no_grad():
        expected = model(example)
    return float((sess(example) - expected).abs().max())


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def _from_disk(
    model: torch.nn.Module, key: str, channels: int, multiple: int, threads: int
) -> OnnxSession | None:
    """The session of the cached export of ``key``, checked against ``model``; None when
    it is not cached, or when it is damaged (then removed, with one logged line)."""
    try:
        hit = _onnx_cache.read(key)
        if hit is None:
            return None
        data, _, graph = hit
        example = _example(channels, multiple)
        try:
            sess = OnnxSession(data, threads, tuple(example.shape))
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's parser and loader
            raise _onnx_cache.CacheDamaged(
                f"ONNX Runtime cannot load it ({type(exc).__name__}: {_first_line(exc)})"
            ) from None
        diff = _check(sess, model, example)
        if not diff <= CHECK_TOLERANCE:
            raise _onnx_cache.CacheDamaged(
                f"it differs from torch by {diff:.2g} (more than {CHECK_TOLERANCE:g})"
            )
    except _onnx_cache.CacheDamaged as exc:
        log.warning(
            "the cached ONNX export %s is damaged: %s; exporting the network again",
            _onnx_cache.folder() / f"{key}.json",
            exc,
        )
        _onnx_cache.discard(key)
        return None
    log.info("ONNX Runtime: the export %s from the disk cache (checked: %.1g)", graph, diff)
    return sess


def _to_disk(key: str, data: bytes, record: dict) -> None:
    """Store an export in the disk cache; a folder that cannot be written is noted once
    (every process then exports again), never an error."""
    try:
        graph = _onnx_cache.write(key, data, record)
    except OSError as exc:
        note(
            f"the ONNX export cannot be cached in {_onnx_cache.folder()} "
            f"({exc.strerror or exc}): every process exports the network again"
        )
        return
    log.info("ONNX Runtime: exported the network to %s", graph)


def _build(model: torch.nn.Module, channels: int, multiple: int, threads: int) -> OnnxSession:
    import torch

    absent = missing()
    if absent is not None:
        raise OnnxUnavailable(f"{absent}; {INSTALL_HINT}")
    try:
        key = _disk_key(model, channels, multiple)
    except Exception:  # noqa: BLE001 - a network the key cannot describe: no disk cache
        key = None
    if key is not None:
        sess = _from_disk(model, key, channels, multiple, threads)
        if sess is not None:
            return sess
    t0 = time.perf_counter()
    try:
        buffer = io.BytesIO()
        with torch.inference_mode(False), torch.no_grad():
            example = _export(model, channels, multiple, buffer)
        data = buffer.getvalue()
        sess = OnnxSession(data, threads, tuple(example.shape))
    except Exception as exc:  # noqa: BLE001 - any failure of the exporter or the runtime
        raise OnnxUnavailable(
            f"the export failed ({type(exc).__name__}: {_first_line(exc)})"
        ) from exc
    seconds = time.perf_counter() - t0
    diff = _check(sess, model, example)
    if not diff <= CHECK_TOLERANCE:
        raise OnnxUnavailable(
            f"the exported network differs from torch by {diff:.2g} (more than "
            f"{CHECK_TOLERANCE:g})"
        )
    if key is not None:
        record = {
            "check": {
                "max_diff": diff,
                "tolerance": CHECK_TOLERANCE,
                "input_shape": list(example.shape),
                "units": "fractions of the intensity window (the network's input units)",
            },
            "network": f"{type(model).__module__}.{type(model).__qualname__}",
            "export_seconds": round(seconds, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        _to_disk(key, data, record)
    return sess


def session(model: torch.nn.Module, channels: int, multiple: int) -> OnnxSession:
    """The ONNX Runtime session of ``model`` (in its current state) for inputs of
    ``channels`` channels whose height and width are multiples of ``multiple``: from the
    memory cache, else the disk cache, else exported (and written to the disk cache).

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


def warm(model: torch.nn.Module) -> bool:
    """Put ``model``'s export in the disk cache ahead of its first prediction (nothing when
    it is there already); True when it is there afterwards. Never raises: a network ONNX
    Runtime cannot run is only noted, and is then predicted with torch as before."""
    c, m = int(getattr(model, "in_channels", 1)), _multiple(model)
    try:
        session(model, c, m)
        return _onnx_cache.lookup(_disk_key(model, c, m))
    except OnnxUnavailable as exc:
        note(f"ONNX Runtime cannot run this model: {exc}")
    except Exception:  # noqa: BLE001 - a network the key cannot describe: not cached
        pass
    return False
