"""2.5-D context: which slices a context model sees, one rule for training and inference.

A model with context ``K`` (:class:`napari_dfct.model.ResidualUNet`, ``context=K``)
predicts slice ``z`` of a scan from its ``2K + 1`` slices ``z - K .. z + K``, stacked as
input channels in that order (channel ``K`` is slice ``z`` itself).

* **Within one scan.** Neighbours are taken from the scan the slice belongs to, never
  from another scan or specimen: a data set of many scans (``--pairs``) reads each
  scan's neighbours from its own volume, and a volume made of several parts (a training
  volume followed by a separate validation volume) reflects at every part's border.
* **Reflected at the ends.** A neighbour beyond the first or last slice of a scan is
  reflected about that end slice, without repeating it (``numpy.pad``'s ``reflect``):
  slice ``-1`` is slice ``1``, slice ``n`` is slice ``n - 2``. A scan of one slice has
  only itself to offer; training refuses scans of fewer than ``2K + 1`` slices
  (:func:`check_context_slices`), where the edge slices would see reflections of
  reflections.

This module uses NumPy only: readers (:mod:`napari_dfct.io.dataset`), the patch sampler
(:mod:`napari_dfct.data`), training and inference (:mod:`napari_dfct.infer`) share it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "check_context_slices",
    "check_one_scan_folder",
    "check_one_scan_record",
    "context_indices",
    "context_stack",
    "describe_context",
    "slice_names",
    "reflect_index",
]


def reflect_index(i: np.ndarray | int, n: int) -> np.ndarray:
    """Slice indices ``i`` (any integers) reflected into ``range(n)`` about the end slices
    without repeating them (period ``2 (n - 1)``; all 0 for ``n = 1``)."""
    i = np.asarray(i, dtype=np.int64)
    n = int(n)
    if n < 1:
        raise ValueError(f"a scan needs at least one slice, got {n}")
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    j = np.mod(i, period)
    return np.where(j > n - 1, period - j, j)


def context_indices(
    index: Sequence[int] | np.ndarray | int,
    n: int,
    context: int,
    starts: Sequence[int] = (0,),
) -> np.ndarray:
    """The slices a context-``K`` model reads to predict slices ``index`` of a volume of
    ``n`` slices: ``(len(index), 2K + 1)`` int64, row ``r`` holding ``z - K .. z + K``
    for ``z = index[r]``, reflected within the part (scan) ``z`` belongs to.

    Parameters
    ----------
    index : int or sequence of int
        Slices to predict, ``0 <= z < n``.
    n : int
        Slices of the volume.
    context : int
        ``K >= 0``.
    starts : sequence of int
        The first slice of every scan of the volume, ascending, beginning with 0 (one
        scan: ``(0,)``).
    """
    k = int(context)
    if k < 0:
        raise ValueError(f"context must be >= 0, got {context}")
    z = np.atleast_1d(np.asarray(index, dtype=np.int64))
    if z.size and (z.min() < 0 or z.max() >= n):
        raise ValueError(f"slice index out of range for a volume of {n} slices")
    bounds = np.asarray([*starts, n], dtype=np.int64)
    if bounds[0] != 0 or np.any(np.diff(bounds) < 1):
        raise ValueError(f"scan starts must ascend from 0 within {n} slices, got {list(starts)}")
    part = np.searchsorted(bounds, z, side="right") - 1
    lo, size = bounds[part], bounds[part + 1] - bounds[part]
    offsets = np.arange(-k, k + 1, dtype=np.int64)
    out = np.empty((z.size, 2 * k + 1), dtype=np.int64)
    for r in range(z.size):
        out[r] = lo[r] + reflect_index(z[r] - lo[r] + offsets, int(size[r]))
    return out


def context_stack(
    volume: np.ndarray,
    index: Sequence[int] | np.ndarray,
    context: int,
    starts: Sequence[int] = (0,),
) -> np.ndarray:
    """The inputs of slices ``index`` of ``volume`` (``(Z, Y, X)``) for a context-``K``
    model: ``(len(index), 2K + 1, Y, X)`` (:func:`context_indices`; ``(N, 1, Y, X)`` for
    ``K = 0``), a copy in ``volume``'s dtype."""
    rows = context_indices(index, len(volume), context, starts)
    out = np.asarray(volume[rows.reshape(-1)])
    return out.reshape(rows.shape[0], rows.shape[1], *out.shape[1:])


def slice_names(context: int) -> list[str]:
    """The names of a context-``K`` model's input channels, in channel order:
    ``["z-1", "z", "z+1"]`` for ``K = 1`` (``["z"]`` for ``K = 0``)."""
    k = int(context)
    return [f"z{d:+d}" if d else "z" for d in range(-k, k + 1)]


def describe_context(context: int, dims: int = 2, patch_depth: int | None = None) -> str:
    """The input of a model in words: ``"2-D (one slice)"`` for context 0,
    ``"2.5-D, context 1 (3 slices: z-1, z, z+1)"`` for a context-``K`` model, and for a
    3-D model (``dims = 3``) its training depth, the z-chunks it predicts in:
    ``"3-D, patch depth 8 (a volume, in z-chunks of 8 slices)"``."""
    if int(dims) == 3:
        if patch_depth is None:  # not recorded: napari_dfct.infer takes the default depth
            return "3-D (a volume, in z-chunks of the default patch depth)"
        d = int(patch_depth)
        return f"3-D, patch depth {d} (a volume, in z-chunks of {d} slices)"
    k = int(context)
    if not k:
        return "2-D (one slice)"
    names = slice_names(k)
    shown = ", ".join(names) if k <= 2 else f"{names[0]} .. {names[-1]}"
    return f"2.5-D, context {k} ({2 * k + 1} slices: {shown})"


def check_one_scan_folder(folder, context: int, dims: int = 2) -> None:
    """Refuse (one :class:`ValueError` line) a context model, or a 3-D model
    (``dims = 3``), on a ``dfct simulate --specimens N`` folder: its slices are
    independent specimens (``meta.json``: ``"acquisition": "independent"``), not
    neighbouring slices of one scan. Folders without that record pass."""
    import json
    from pathlib import Path

    k = int(context)
    meta = Path(folder) / "meta.json" if folder is not None else None
    if not (k or int(dims) == 3) or meta is None or not meta.is_file():
        return
    try:
        record = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # not a simulated set's record: nothing to learn from it
    check_one_scan_record(record, k, str(folder), dims)


def check_one_scan_record(record, context: int, what: str, dims: int = 2) -> None:
    """Refuse (one :class:`ValueError` line) a context model, or a 3-D model
    (``dims = 3``), on data whose simulation record (a ``meta.json``, or a sample layer's
    ``metadata["dfct"]``) says its slices are independent specimens (``"acquisition":
    "independent"``); anything else passes."""
    k = int(context)
    acquisition = record.get("acquisition") if isinstance(record, dict) else None
    if (k or int(dims) == 3) and acquisition == "independent":
        raise ValueError(
            f"{what} holds independent specimens, one slice each: "
            f"{f'context {k}' if k else 'a 3-D model'} needs "
            "neighbouring slices of one scan (dfct simulate OUT --specimens N --slices Z "
            "writes volumes of specimens)"
        )


def check_context_slices(n: int, context: int, what: str = "the volume") -> None:
    """Refuse (one :class:`ValueError` line) a scan of ``n`` slices too short to train a
    context-``K`` model: it needs ``2K + 1`` slices at least."""
    k = int(context)
    if k > 0 and int(n) < 2 * k + 1:
        raise ValueError(
            f"context {k} needs scans of at least {2 * k + 1} slices (a model input is "
            f"{2 * k + 1} neighbouring slices of one scan); {what} has {int(n)}: use a "
            "smaller context, or volumes of more slices"
        )
