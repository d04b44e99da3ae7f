"""Padding, tiles and their blending, in NumPy: the one home of the rules that
:mod:`napari_dfct.infer` (torch) and :mod:`napari_dfct._fast_predict` (ONNX Runtime,
without torch) share.

An image is padded to a multiple ``m`` of the network (``2**depth``) exactly as the network
pads internally (:func:`model_padding`), tiles start at multiples of ``m``
(:func:`tile_starts`), and each tile's blending weight (:func:`blend_weight`) is zero in
the outer ``overlap // 4`` pixels of an inner edge, rises along a cosine ramp over the next
``overlap // 2`` pixels and is one inside (the module docstring of :mod:`napari_dfct.infer`
says why). :func:`tiled` runs a forward function over the tiles of a batch and blends them.

Nothing here imports torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["blend_weight", "model_padding", "pad_like_model", "ramp", "tile_starts", "tiled"]


def model_padding(h: int, w: int, m: int) -> tuple[tuple[int, int, int, int], str]:
    """The padding ``(left, right, top, bottom)`` that takes ``(h, w)`` to multiples of
    ``m`` the way :class:`napari_dfct.model.ResidualUNet` pads (split evenly, the odd pixel
    at the end), and its mode: ``"reflect"``, or ``"replicate"`` when the image is too
    small to reflect."""
    ph, pw = (-int(h)) % m, (-int(w)) % m
    top, left = ph // 2, pw // 2
    pad = (left, pw - left, top, ph - top)
    mode = "reflect" if max(pad[0], pad[1]) < w and max(pad[2], pad[3]) < h else "replicate"
    return pad, mode


def pad_like_model(x: np.ndarray, m: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Pad the last two axes of ``x`` as :func:`model_padding` says; the padded array and
    the padding ``(left, right, top, bottom)``."""
    pad, mode = model_padding(x.shape[-2], x.shape[-1], m)
    if not any(pad):
        return x, pad
    left, right, top, bottom = pad
    widths = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
    return np.pad(x, widths, mode="reflect" if mode == "reflect" else "edge"), pad


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles covering ``range(length)``.

    Consecutive tiles overlap by at least ``overlap`` pixels, every start is a multiple of
    ``align`` (``length`` and ``tile`` must be multiples of ``align``), the first is 0
    and the last is ``length - tile``.
    """
    if tile >= length:
        return [0]
    step = max(tile - overlap, align)
    n = math.ceil((length - tile) / step) + 1
    last = length - tile
    starts = []
    for i in range(n):
        s = round(i * last / (n - 1) / align) * align if n > 1 else 0
        starts.append(int(min(s, last)))
    return sorted(set(starts))


def ramp(length: int, margin: int, ramp: int, lead: bool, trail: bool) -> np.ndarray:
    """A tile's weights along one axis (float64): zero in the first ``margin`` pixels of a
    leading (``lead``) and the last of a trailing (``trail``) inner edge, a cosine rise over
    the next ``ramp`` pixels, one inside."""
    i = np.arange(length, dtype=np.float64)
    cosine = 0.5 - 0.5 * np.cos(math.pi * (i - margin + 0.5) / max(ramp, 1))
    rise = np.where(i < margin, 0.0, np.where(i < margin + ramp, cosine, 1.0))
    w = np.ones(length, dtype=np.float64)
    if lead:
        w = w * rise
    if trail:
        w = w * rise[::-1]
    return w


def blend_weight(
    starts_r: list[int], starts_c: list[int], r0: int, c0: int, th: int, tw: int, overlap: int
) -> np.ndarray:
    """The float32 ``(th, tw)`` blending weight of the tile at ``(r0, c0)`` among tiles
    starting at ``starts_r`` x ``starts_c`` that overlap by ``overlap``."""
    margin = overlap // 4
    width = max(overlap - 2 * margin, 1)
    wr = ramp(th, margin, width, r0 > starts_r[0], r0 < starts_r[-1])
    wc = ramp(tw, margin, width, c0 > starts_c[0], c0 < starts_c[-1])
    return (wr[:, None] * wc[None, :]).astype(np.float32)


def tiled(
    x: np.ndarray,
    forward: Callable[[np.ndarray], np.ndarray],
    multiple: int,
    tile: int,
    overlap: int,
    batch_size: int,
) -> np.ndarray:
    """``forward`` over overlapping tiles of ``x`` (``(B, C, H, W)`` float32), blended.

    ``x`` is padded like the network pads, tiles of at most ``tile`` pixels (a multiple of
    ``multiple``) start at multiples of ``multiple``; ``forward`` takes ``(k B, C, th, tw)``
    (``k`` tiles of the whole batch, ``k B <= max(batch_size, B)``) and returns
    ``(k B, C_out, th, tw)``. Returns float32 ``(B, C_out, H, W)``.
    """
    m = int(multiple)
    xp, (left, _, top, _) = pad_like_model(x, m)
    hp, wp = xp.shape[-2:]
    th = max(m, min(int(tile), hp) // m * m)
    tw = max(m, min(int(tile), wp) // m * m)
    ov = int(overlap)
    rs, cs = tile_starts(hp, th, ov, m), tile_starts(wp, tw, ov, m)
    acc: np.ndarray | None = None
    norm = np.zeros((hp, wp), dtype=np.float32)
    jobs = [(r, c) for r in rs for c in cs]
    b = x.shape[0]
    per = max(1, int(batch_size) // max(b, 1))
    for k in range(0, len(jobs), per):
        chunk = jobs[k : k + per]
        tiles = np.concatenate([xp[..., r : r + th, c : c + tw] for r, c in chunk], 0)
        out = np.asarray(forward(np.ascontiguousarray(tiles)), dtype=np.float32)
        if acc is None:
            acc = np.zeros((b, out.shape[1], hp, wp), dtype=np.float32)
        for j, (r, c) in enumerate(chunk):
            wgt = blend_weight(rs, cs, r, c, th, tw, ov)
            acc[..., r : r + th, c : c + tw] += out[j * b : (j + 1) * b] * wgt
            norm[r : r + th, c : c + tw] += wgt
    assert acc is not None  # at least one tile
    h, w = x.shape[-2:]
    return (acc / norm)[..., top : top + h, left : left + w]
