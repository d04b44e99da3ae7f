"""Inference: slices and volumes, batched, optionally tiled, back in the input's units.

:func:`predict` runs a trained model on a 2-D slice, on chosen slices of a volume, or on a
whole volume; :func:`predict_iter` streams ``(z, slice)`` pairs (for progress bars and
for a GUI that can stop between batches). Inputs are normalised with the model's
intensity window, predictions are mapped back with its inverse, and the result is float32
in the input's units.

Tiling
------
With ``tile=N`` (or automatically after an out-of-memory error at batch size 1) a slice is
processed as overlapping ``N x N`` tiles and blended. The image is first padded to a
multiple of ``2**depth`` exactly as the network pads internally, tiles start at multiples
of ``2**depth`` (so every tile sees the same pooling grid as the full image), and each
tile's blending weight is zero in the outer ``overlap // 4`` pixels of an inner edge,
rises along a cosine ramp over the next ``overlap // 2`` pixels and is one inside.
Pixels closer to a tile edge than the receptive radius of the network are affected by the
tile's zero padding; when ``overlap // 4`` is at least that radius
(:func:`receptive_radius`) every pixel with non-zero weight is computed from exactly the
same inputs as in the untiled pass, so tiled and untiled predictions agree to float
rounding. With smaller overlaps the ramp hides the (small) seams.

2.5-D context
-------------
A model with context ``K`` (``model.context``; :mod:`napari_dfct.model`) predicts slice
``z`` from the slices ``z - K .. z + K`` of the volume: each batch reads exactly the slices
its chosen slices need (predicting one slice reads ``2K + 1``), tiled in-plane as above.
At the first and last slices the missing neighbours are reflected about the end slice
(slice ``-1`` is slice ``1``: :mod:`napari_dfct.context`); the volume is taken as one
scan. The output has one slice per chosen slice, as for a 2-D model. A single 2-D image
has no neighbours and is refused.

3-D models
----------
A 3-D model (``model.dims == 3``) predicts the volume in z-chunks of its training depth
``d`` (``TrainConfig.patch_depth``, kept on the network as ``patch_depth``; 8 when
unknown) that overlap by ``d // 2`` slices and are blended with the in-plane ramps along
z (:func:`_chunk_plan`). The volume is first extended by ``d // 4`` reflected slices at
each end (slice ``-1`` is slice ``1``), so that its first and last slices sit inside a
chunk, away from the chunk's zero-padded faces, as the middle slices of a training patch
do; only a chunk's true slices count. Each chunk is tiled in-plane as above when ``tile``
is set (or after running out of memory). Predicting some slices computes only the chunks
that reach them (slice ``k`` alone reads at most ``2 d`` slices around it); each slice is
given as soon as the last chunk that reaches it is computed, so a whole volume streams
chunk by chunk.

Backends
--------
``backend="eager"`` runs the torch module, in channels-last memory format on CUDA and on
the CPU (there the weights too, given back in their own format afterwards; on a 2-core
x86_64 CPU 0.6-0.9x the time of the default format for an 800 x 800 slice, the output
within 1e-4 of the window: docs/performance.md, "CPU"). ``backend="onnx"`` runs
the network with ONNX Runtime on the CPU (the optional extra ``onnx``; exported at its first
use and kept in the disk cache of exports, :mod:`napari_dfct._onnx`), which measured faster
still; when onnxruntime is missing or the export fails it falls back to eager with one
logged line. ``backend="auto"`` (the default) takes ONNX Runtime on the CPU where it is
installed and the model's export is ready (in memory or in the disk cache: any number of
slices) or at least :data:`ONNX_MIN_SLICES` slices are asked for (an export costs about
as much as a few slices), else eager.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import _tiling
from ._onnx import BACKENDS, ONNX_MIN_SLICES
from ._onnx import _multiple as _multiple  # the network's padding multiple
from ._tiling import tile_starts
from .context import context_indices
from .data import IntensityWindow
from .device import autocast as _autocast
from .device import cancel_check as _cancel_check
from .device import free_memory as _free_device_memory
from .device import is_out_of_memory as _is_oom
from .device import prefers_channels_last as _prefers_channels_last
from .device import resolve_device

__all__ = [
    "BACKENDS",
    "ONNX_MIN_SLICES",
    "PredictionCancelled",
    "predict",
    "predict_iter",
    "receptive_radius",
    "tile_starts",
]


class PredictionCancelled(RuntimeError):
    """:func:`predict` was cancelled through its ``cancel`` flag."""


def receptive_radius(model: torch.nn.Module) -> int:
    """A conservative bound (pixels) on how far an output pixel sees into the input.

    For the residual U-Net of depth ``D`` (3x3 convolutions, 2x2 max pooling, x2
    bilinear upsampling): every level ``l < D`` contributes two convolutions, a pooling
    and an upsampling in the encoder/decoder (``7 * 2**l``), the bottleneck two
    convolutions (``2 * 2**D``): ``7 * (2**D - 1) + 2**(D + 1)``; 29 for depth 2 (preset
    ``tiny``) and 137 for depth 4 (``small`` and ``paper``).
    """
    d = int(getattr(model, "depth", 4))
    return 7 * (2**d - 1) + 2 ** (d + 1)


def _pad_like_model(x: torch.Tensor, m: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad (B, C, H, W) to a multiple of ``m`` the way :class:`ResidualUNet` does
    (:func:`napari_dfct._tiling.model_padding`)."""
    pad, mode = _tiling.model_padding(x.shape[-2], x.shape[-1], m)
    if not any(pad):
        return x, pad
    return F.pad(x, pad, mode=mode), pad


def _blend_weight(starts_r, starts_c, r0, c0, tile_h, tile_w, overlap) -> torch.Tensor:
    """:func:`napari_dfct._tiling.blend_weight` as a tensor."""
    return torch.from_numpy(
        _tiling.blend_weight(starts_r, starts_c, r0, c0, tile_h, tile_w, overlap)
    )


def _channels_last(device: torch.device) -> bool:
    """Whether the eager network runs in channels-last memory format on ``device``."""
    return _prefers_channels_last(device)


def _check_backend(backend: str, device: torch.device) -> str:
    """The backend's name (one of :data:`BACKENDS`); ValueError for an unknown one and for
    ``"onnx"`` on a device other than the CPU."""
    name = backend.strip().lower() if isinstance(backend, str) else backend
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: choose {', '.join(BACKENDS)}")
    if name == "onnx" and device.type != "cpu":
        raise ValueError(
            f"backend 'onnx' runs on the CPU, not on {device.type.upper()}: choose the "
            "device cpu, or the backend auto or eager"
        )
    return name


def _choose_backend(name: str, device: torch.device, n_slices: int, net) -> str:
    """``"eager"`` or ``"onnx"`` for a checked backend name (the module docstring)."""
    from . import _onnx

    if name == "eager" or device.type != "cpu":
        return "eager"
    absent = _onnx.missing()
    if absent is not None:
        if name == "onnx":
            _onnx.note(
                f"backend 'onnx': {absent}; {_onnx.INSTALL_HINT}; predicting with the "
                "eager backend"
            )
        return "eager"
    if name == "auto" and n_slices < ONNX_MIN_SLICES and not _onnx.ready(net):
        return "eager"
    return "onnx"


def _is_channels_last(model: torch.nn.Module) -> bool:
    weights = [p for p in model.parameters() if p.ndim == 4]
    return all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)


class _Runner:
    """Forward passes with the device, backend, autocast and memory-format settings."""

    def __init__(
        self, model: torch.nn.Module, device: torch.device, amp: bool, backend: str = "eager"
    ):
        self.model = model
        self.device = device
        self.amp = bool(amp) and device.type == "cuda"
        self.channels_last = _channels_last(device)
        self.backend = backend  # "eager" or "onnx" (_choose_backend)
        self._converted = False  # the weights were put in channels-last format here
        self._session: Any = None  # the ONNX Runtime session this runner used

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend == "onnx":
            y = self._onnx(x)
            if y is not None:
                return y
        return self._eager(x)

    @torch.inference_mode()
    def _eager(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            cpu = self.device.type == "cpu"
            if cpu and not self._converted and not _is_channels_last(self.model):
                # the weights too: a channels-last input alone is hardly faster on a CPU
                self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
                self._converted = True
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(self.device, self.amp):
            y = self.model(x)
        return y.float()

    def release(self) -> None:
        """Give the weights their default memory format back, if this runner changed it,
        and ONNX Runtime's memory arena its free blocks."""
        if self._session is not None:
            with contextlib.suppress(Exception):  # never masks what the prediction raised
                self._session.release_memory()
            self._session = None
        if self._converted:
            self.model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
            self._converted = False

    def _onnx(self, x: torch.Tensor) -> torch.Tensor | None:
        """ONNX Runtime's forward of ``x`` (padded and cropped as the network does), or
        None after falling back to eager for good."""
        from . import _onnx

        m = _multiple(self.model)
        try:
            sess = _onnx.session(self.model, int(x.shape[1]), m)
        except _onnx.OnnxUnavailable as exc:
            _onnx.note(f"ONNX Runtime cannot run this model: {exc}; using the eager backend")
            self.backend = "eager"
            return None
        h, w = x.shape[-2:]
        xp, (left, _, top, _) = _pad_like_model(x.to("cpu", torch.float32), m)
        self._session = sess
        try:
            y = sess(xp)
        except Exception as exc:  # noqa: BLE001 - the runtime's own errors, memory included
            _onnx.note(
                f"ONNX Runtime failed on a batch of shape {tuple(xp.shape)} "
                f"({type(exc).__name__}); using the eager backend"
            )
            self.backend = "eager"
            return None
        return y[..., top : top + h, left : left + w]

    def tiled(self, x: torch.Tensor, tile: int, overlap: int, batch_size: int) -> torch.Tensor:
        """Tiled forward of (B, C, H, W) (:func:`napari_dfct._tiling.tiled`); returns
        (B, 1, H, W) float32 on the CPU."""

        def forward(tiles: np.ndarray) -> np.ndarray:
            return self(torch.from_numpy(tiles)).to("cpu").numpy()

        out = _tiling.tiled(x.numpy(), forward, _multiple(self.model), tile, overlap, batch_size)
        return torch.from_numpy(out)


def _resolve_model(model: Any, window: IntensityWindow | dict | None, device: torch.device):
    from .checkpoint import LoadedModel, load_model

    if isinstance(model, str | os.PathLike):
        model = load_model(Path(model), device="cpu")
    if isinstance(model, LoadedModel):
        if window is None:
            window = model.window
        net = model.model
    elif isinstance(model, torch.nn.Module):
        net = model
    else:
        raise ValueError(
            "model must be a LoadedModel, a model folder or a torch module, got "
            f"{type(model).__name__}"
        )
    if isinstance(window, dict):
        window = IntensityWindow.from_dict(window)
    home = next((p.device for p in net.parameters()), torch.device("cpu"))
    net = net.to(device).eval()
    return net, window, home


def _parse_slices(slices, n: int) -> list[int]:
    if slices is None:
        return list(range(n))
    if isinstance(slices, int | np.integer):
        slices = [int(slices)]
    out = []
    for s in slices:
        i = int(s)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise ValueError(f"slice index {s} is out of range for a volume of {n} slices")
        out.append(i)
    return out


def predict_iter(
    model: Any,
    volume: np.ndarray,
    slices: Sequence[int] | int | None = None,
    *,
    window: IntensityWindow | dict | None = None,
    batch_size: int = 4,
    tile: int | None = None,
    overlap: int = 32,
    device: str | torch.device = "auto",
    amp: bool = True,
    cancel: Any = None,
    backend: str = "auto",
) -> Iterator[tuple[int, np.ndarray]]:
    """Stream predictions ``(z, slice)`` for slices of a volume (or one 2-D image, z = 0).

    Parameters
    ----------
    model : LoadedModel or path or torch.nn.Module
        A loaded model folder (its intensity window is used), a folder path, or a bare
        network (then ``window`` normalises; None feeds the values unchanged).
    volume : numpy.ndarray
        (Z, Y, X) or (Y, X).
    slices : sequence of int or int, optional
        Slice indices (negative counts from the end); default all.
    window : IntensityWindow or dict, optional
        Overrides the model's window.
    batch_size : int
        Slices (or tiles) per forward pass.
    tile : int, optional
        Tile side; None runs whole slices (and falls back to tiles after running out of
        memory at batch size 1).
    overlap : int
        Tile overlap in pixels (see the module docstring).
    device : str or torch.device
        ``"auto"``: CUDA, MPS, CPU.
    amp : bool
        bf16 autocast on CUDA.
    cancel : threading.Event or callable, optional
        Checked before every batch; when set the iterator stops.
    backend : str
        ``"auto"``, ``"eager"`` or ``"onnx"`` (:data:`BACKENDS`; the module docstring).

    Yields
    ------
    (int, numpy.ndarray)
        Slice index and float32 (Y, X) prediction in the input's units.

    Notes
    -----
    With a context model (``model.context`` K > 0) slice ``z`` is predicted from slices
    ``z - K .. z + K``, reflected at the ends of the volume (slice ``-1`` is slice ``1``);
    a 2-D image (or a volume of one slice) has no neighbours and is refused.
    """
    arr = np.asarray(volume)
    if arr.ndim == 2:
        if slices is not None:
            raise ValueError("slices cannot be given for a 2-D image")
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"expected a 2-D slice or a 3-D volume, got shape {arr.shape}")
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"image must be numeric, got dtype {arr.dtype}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if tile is not None and int(tile) < 1:
        raise ValueError(f"tile must be positive, got {tile}")
    if int(overlap) < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    index = _parse_slices(slices, arr.shape[0])
    dev = resolve_device(device)
    name = _check_backend(backend, dev)
    net, win, home = _resolve_model(model, window, dev)
    k = int(getattr(net, "context", 0))
    if k and arr.shape[0] < 2:
        net.to(home)
        raise ValueError(
            f"the model sees {k} neighbouring slice{'s' * (k > 1)} on each side of the one "
            "it predicts (context): give it the volume, not a single slice"
        )
    if int(getattr(net, "dims", 2)) == 3:  # a 3-D model: z-chunks
        try:
            yield from _predict_chunks(
                net, arr, index, win, dev, amp, tile, overlap, batch_size, _cancel_check(cancel)
            )
        finally:
            if home != dev:
                net.to(home)
            _free_device_memory(dev)
        return
    run = _Runner(net, dev, amp, _choose_backend(name, dev, len(index), net))
    check = _cancel_check(cancel)
    bs = int(batch_size)
    cur_tile = int(tile) if tile is not None else None
    h, w = arr.shape[1:]
    pos = 0
    try:
        while pos < len(index):
            if check():
                return
            chunk = index[pos : pos + (1 if cur_tile else bs)]
            rows = context_indices(chunk, arr.shape[0], k)  # (B, 2K + 1): z - K .. z + K
            x = np.asarray(arr[rows.reshape(-1)], dtype=np.float32)
            if not np.isfinite(x).all():
                read = sorted({int(z) for z in rows.flat}) if k else chunk
                raise ValueError(f"slice(s) {read} contain NaN or infinite values")
            xn = win.normalize(x) if win is not None else x
            xt = torch.from_numpy(np.ascontiguousarray(xn)).reshape(*rows.shape, h, w)
            oom = False
            try:
                if cur_tile:
                    y = run.tiled(xt, cur_tile, overlap, bs)
                else:
                    y = run(xt).to("cpu")
            except Exception as exc:
                if not _is_oom(exc):
                    raise
                oom = True
            if oom:
                # outside the handler, so the failed pass's tensors are already released
                _free_device_memory(dev)
                if bs > 1 and not cur_tile:
                    bs = max(1, bs // 2)
                    continue
                next_tile = (cur_tile or 2 ** math.ceil(math.log2(max(h, w)))) // 2
                if next_tile < 64:
                    raise MemoryError(
                        f"out of {dev.type.upper()} memory even with {2 * next_tile}px tiles; "
                        "choose the device cpu"
                    ) from None
                cur_tile = next_tile
                continue
            pred = y[:, 0].numpy()
            if win is not None:
                pred = win.denormalize(pred)
            for j, z in enumerate(chunk):
                yield z, np.ascontiguousarray(pred[j], dtype=np.float32)
            pos += len(chunk)
    finally:
        # the caller's model goes back where it was (a model kept in a session must not
        # hold device memory between predictions), then the cache is emptied
        run.release()
        del run
        if home != dev:
            net.to(home)
        net = None
        _free_device_memory(dev)


def _chunk_plan(n: int, depth: int) -> tuple[int, int, list[int], int]:
    """A 3-D model's z-chunks of a volume of ``n`` slices: ``(ends, chunk, starts,
    overlap)``: ``ends`` reflected slices added at each end, chunks of ``chunk`` slices
    starting at ``starts`` of the extended volume, overlapping by ``overlap``."""
    d = max(int(depth), 1)
    ends, overlap = d // 4, d // 2
    length = int(n) + 2 * ends
    chunk = min(d, length)
    return ends, chunk, tile_starts(length, chunk, overlap), overlap


def _forward_3d(net, x: torch.Tensor, dev, amp: bool, tile: int | None, overlap: int, bs: int):
    """``net`` on ``(1, 1, Z, H, W)``, whole or in in-plane tiles blended as for 2-D;
    float32 ``(Z, H, W)`` on the CPU."""

    @torch.inference_mode()
    def run(t: torch.Tensor) -> torch.Tensor:
        with _autocast(dev, bool(amp) and dev.type == "cuda"):
            return net(t.to(dev, non_blocking=True)).float().to("cpu")

    if not tile:
        return run(x)[0, 0]
    m = _multiple(net)
    xp, (left, _, top, _) = _pad_like_model(x[0], m)  # (1, Z, H, W): pads H and W
    xp = xp[0]
    hp, wp = xp.shape[-2:]
    th, tw = (max(m, min(int(tile), s) // m * m) for s in (hp, wp))
    rs, cs = tile_starts(hp, th, overlap, m), tile_starts(wp, tw, overlap, m)
    acc = torch.zeros(xp.shape, dtype=torch.float32)
    norm = torch.zeros((hp, wp), dtype=torch.float32)
    jobs = [(r, c) for r in rs for c in cs]
    for k in range(0, len(jobs), max(1, int(bs))):
        chunk = jobs[k : k + max(1, int(bs))]
        out = run(torch.stack([xp[:, r : r + th, c : c + tw] for r, c in chunk]).unsqueeze(1))
        for j, (r, c) in enumerate(chunk):
            wgt = _blend_weight(rs, cs, r, c, th, tw, overlap)
            acc[:, r : r + th, c : c + tw] += out[j, 0] * wgt
            norm[r : r + th, c : c + tw] += wgt
    h, w = x.shape[-2:]
    return (acc / norm)[:, top : top + h, left : left + w]


def _predict_chunks(net, arr, index, win, dev, amp, tile, overlap, bs, check):
    """Predictions ``(z, slice)`` of a 3-D model for the slices ``index`` of ``arr``, in
    ``index``'s order, from the z-chunks that reach them (see the module docstring)."""
    from .context import reflect_index

    n, h, w = arr.shape
    if n < 2:
        raise ValueError("a 3-D model predicts volumes: give it the volume, not a single slice")
    depth = getattr(net, "patch_depth", None) or _default_patch_depth()
    ends, size, starts, ov = _chunk_plan(n, depth)
    margin = ov // 4
    wanted = sorted(set(index))
    acc = {z: np.zeros((h, w), np.float64) for z in wanted}
    norm = dict.fromkeys(wanted, 0.0)
    cur_tile = int(tile) if tile is not None else None
    plan: list[tuple] = []  # the chunks that reach a wanted slice
    last: dict[int, int] = {}  # each wanted slice's last chunk in plan
    for s in starts:
        wz = _tiling.ramp(size, margin, max(ov - 2 * margin, 1), s > starts[0], s < starts[-1])
        real = np.arange(s, s + size) - ends  # slice of each chunk position (-1: reflected)
        used = [j for j in range(size) if 0 <= real[j] < n and real[j] in acc and wz[j] > 0]
        if used:
            last.update({int(real[j]): len(plan) for j in used})
            plan.append((wz, real, used))
    done = 0  # index[:done] yielded: each slice as soon as its last chunk is in
    left = collections.Counter(index)
    for c, (wz, real, used) in enumerate(plan):
        if check():
            return
        zs = reflect_index(real, n)
        x = np.asarray(arr[zs], dtype=np.float32)
        if not np.isfinite(x).all():
            raise ValueError(f"slice(s) {sorted(set(zs.tolist()))} contain NaN or infinite values")
        xn = win.normalize(x) if win is not None else x
        xt = torch.from_numpy(np.ascontiguousarray(xn))[None, None]
        while True:
            try:
                y = _forward_3d(net, xt, dev, amp, cur_tile, int(overlap), bs).numpy()
                break
            except Exception as exc:
                if not _is_oom(exc):
                    raise
            _free_device_memory(dev)  # outside the handler: the failed pass is released
            cur_tile = (cur_tile or 2 ** math.ceil(math.log2(max(h, w)))) // 2
            if cur_tile < 64:
                raise MemoryError(
                    f"out of {dev.type.upper()} memory even with {2 * cur_tile}px tiles; "
                    "choose the device cpu"
                )
        for j in used:
            acc[int(real[j])] += float(wz[j]) * y[j]
            norm[int(real[j])] += float(wz[j])
        while done < len(index) and last[index[done]] <= c:
            z = index[done]
            pred = (acc[z] / norm[z]).astype(np.float32)
            yield z, np.ascontiguousarray(win.denormalize(pred) if win is not None else pred)
            done += 1
            left[z] -= 1
            if not left[z]:  # asked for no more: its sums are released
                del acc[z]


def _default_patch_depth() -> int:
    """The training depth of a 3-D network that does not record its own."""
    from .train.config import TrainConfig

    return int(TrainConfig().patch_depth)


def predict(
    model: Any,
    image: np.ndarray,
    *,
    window: IntensityWindow | dict | None = None,
    slices: Sequence[int] | int | None = None,
    batch_size: int = 4,
    tile: int | None = None,
    overlap: int = 32,
    device: str | torch.device = "auto",
    cancel: Any = None,
    amp: bool = True,
    progress: Callable[[int, int], Any] | None = None,
    backend: str = "auto",
) -> np.ndarray:
    """Predict a 2-D slice or (slices of) a volume; float32 in the input's units.

    Parameters
    ----------
    model, window, batch_size, tile, overlap, device, cancel, amp, backend
        As for :func:`predict_iter`.
    image : numpy.ndarray
        (Y, X) or (Z, Y, X).
    slices : sequence of int or int, optional
        For a volume: which slices (in this order); default all.
    progress : callable, optional
        ``progress(done, total)`` after every slice.

    Returns
    -------
    numpy.ndarray
        (Y, X) for a 2-D image, (len(slices), Y, X) for a volume.

    Raises
    ------
    PredictionCancelled
        When ``cancel`` was set before all slices were done.
    """
    arr = np.asarray(image)
    two_d = arr.ndim == 2
    if two_d and slices is not None:
        raise ValueError("slices cannot be given for a 2-D image")
    n = 1 if two_d else (arr.shape[0] if arr.ndim == 3 else 0)
    index = _parse_slices(slices, n) if arr.ndim == 3 else [0]
    # (another number of dimensions: predict_iter raises before writing anything)
    shape = (len(index), *arr.shape[-2:]) if arr.ndim in (2, 3) else (0, 0, 0)
    out = np.empty(shape, dtype=np.float32)
    done = 0
    for k, (_, y) in enumerate(
        predict_iter(
            model,
            arr,
            slices if not two_d else None,
            window=window,
            batch_size=batch_size,
            tile=tile,
            overlap=overlap,
            device=device,
            amp=amp,
            cancel=cancel,
            backend=backend,
        )
    ):
        out[k] = y
        done += 1
        if progress is not None:
            progress(done, len(index))
    if done < len(index):
        raise PredictionCancelled(f"prediction cancelled after {done} of {len(index)} slices")
    return out[0] if two_d else out
