"""The intensity window of a training run when none is given, and a histogram to show it.

One rule, used by :func:`~napari_dfct.train.fit` (``dfct train`` without ``--window``)
and shown by the Train widget: the window is
:func:`napari_dfct.data.window_from_percentiles` of the input **and** target slices of
the training split (validation slices, or scans, left out), the split being the run's own
(``val_fraction``, ``seed``; by scan for a :class:`~napari_dfct.scans.ScanSlices`).
"""

from __future__ import annotations

import numpy as np

from ..data import IntensityWindow, split_slices, window_from_percentiles
from ..scans import ScanSlices, split_by_scan

__all__ = ["default_window", "intensity_histogram", "training_split", "training_window"]


def training_split(
    input, val_fraction: float = 0.2, seed: int = 0, dims: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """The (training, validation) slice indices a run with these settings uses: by scan
    for a :class:`ScanSlices`, by slice for a (Z, Y, X) volume; for a 3-D model
    (``dims = 3``) a volume's last slices validate as one block
    (:func:`napari_dfct.volume3d.block_split`)."""
    if isinstance(input, ScanSlices):
        return split_by_scan(input.scans, val_fraction, seed)
    if int(dims) == 3:
        from ..volume3d import block_split

        return block_split(len(input), val_fraction)
    return split_slices(len(input), val_fraction, seed)


def training_window(x_all, y_all, train_idx) -> IntensityWindow:
    """The default window of the training slices ``train_idx`` of ``x_all`` and ``y_all``
    (stacked volumes or lists of 2-D slices)."""
    if isinstance(x_all, list | tuple):
        return window_from_percentiles(
            *(x_all[i] for i in train_idx), *(y_all[i] for i in train_idx)
        )
    return window_from_percentiles(x_all[train_idx], y_all[train_idx])


def default_window(
    input, target=None, *, val_fraction: float = 0.2, seed: int = 0, dims: int = 2
) -> IntensityWindow:
    """The window :func:`~napari_dfct.train.fit` computes for this data and split.

    Parameters
    ----------
    input, target : numpy.ndarray
        (Z, Y, X) volumes; or ``input`` a :class:`ScanSlices` and ``target`` None.
    val_fraction, seed, dims : float, int, int
        The run's ``TrainConfig.val_fraction``, ``seed`` and ``dims`` (a 3-D model's
        volume is split into two blocks, :func:`training_split`).
    """
    if isinstance(input, ScanSlices):
        train_idx, _ = training_split(input, val_fraction, seed)
        return training_window(list(input.inputs), list(input.targets), train_idx)
    x = np.asarray(input, dtype=np.float32)
    y = np.asarray(target, dtype=np.float32)
    train_idx, _ = training_split(x, val_fraction, seed, dims)
    return training_window(x, y, train_idx)


def intensity_histogram(
    *arrays,
    bins: int = 96,
    max_samples: int = 1_000_000,
    value_range: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, edges)`` of the pooled finite values of ``arrays``, subsampled with a
    regular stride to at most ``max_samples`` values; the range defaults to the 0.01st to
    99.99th percentile (the far tails of streaks would squeeze the rest into a few bins)."""
    total = sum(int(np.size(a)) for a in arrays)
    if total == 0:
        raise ValueError("no values to histogram")
    stride = max(1, total // max_samples)
    parts = [np.asarray(a, dtype=np.float32).ravel()[::stride] for a in arrays]
    values = np.concatenate(parts)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("no finite values to histogram")
    if value_range is None:
        lo, hi = np.percentile(values, [0.01, 99.99])
        value_range = (float(lo), float(hi)) if hi > lo else (float(lo) - 0.5, float(lo) + 0.5)
    counts, edges = np.histogram(values, bins=int(bins), range=value_range)
    return counts, edges
