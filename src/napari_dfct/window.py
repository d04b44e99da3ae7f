"""The intensity window shared by input and target, and its default from percentiles.

The paper clips input and ground truth with the *same* intensity window, to emphasise the
streaks, and scales the result to [0, 1] (:class:`IntensityWindow`);
:func:`window_from_percentiles` is the default window of a training set. This module
imports neither torch nor Qt, so a configuration (:class:`napari_dfct.train.TrainConfig`)
and the ``dfct`` command use it without loading torch; :class:`IntensityWindow` still
accepts torch tensors where torch is loaded. :mod:`napari_dfct.data` re-exports both names.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_WINDOW_MARGIN",
    "DEFAULT_WINDOW_PERCENTILES",
    "IntensityWindow",
    "window_from_percentiles",
]


def _is_tensor(x: Any) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch: a tensor exists only
    once torch is loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


@dataclass
class IntensityWindow:
    """An intensity window shared by input and target.

    ``normalize`` clips to ``[low, high]`` and scales linearly to ``[0, 1]``;
    ``denormalize`` maps model outputs back to the input's units (without clipping, so a
    prediction outside [0, 1] stays outside ``[low, high]``).

    Parameters
    ----------
    low, high : float
        Window limits in the input's units; ``high > low``, both finite.
    """

    low: float
    high: float

    def __post_init__(self) -> None:
        self.low = float(self.low)
        self.high = float(self.high)
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"intensity window must be finite, got [{self.low}, {self.high}]")
        if not self.high > self.low:
            raise ValueError(f"intensity window needs high > low, got [{self.low}, {self.high}]")

    @property
    def width(self) -> float:
        """``high - low``."""
        return self.high - self.low

    def normalize(self, x: Any) -> Any:
        """Clip ``x`` to ``[low, high]`` and scale to ``[0, 1]``.

        Parameters
        ----------
        x : numpy.ndarray or torch.Tensor or float
            Values in the input's units.

        Returns
        -------
        Same type as ``x``; NumPy arrays come back as float32.
        """
        if _is_tensor(x):
            return (x.clamp(self.low, self.high) - self.low) / self.width
        if np.isscalar(x):
            return (min(max(float(x), self.low), self.high) - self.low) / self.width  # type: ignore[arg-type]  # a scalar
        arr = np.asarray(x, dtype=np.float32)
        out = np.clip(arr, np.float32(self.low), np.float32(self.high))
        out -= np.float32(self.low)
        out /= np.float32(self.width)
        return out

    def denormalize(self, y: Any) -> Any:
        """Map values in ``[0, 1]`` model units back to the input's units.

        Parameters
        ----------
        y : numpy.ndarray or torch.Tensor or float

        Returns
        -------
        Same type as ``y``; NumPy arrays come back as float32.
        """
        if _is_tensor(y):
            return y * self.width + self.low
        if np.isscalar(y):
            return float(y) * self.width + self.low  # type: ignore[arg-type]  # a scalar
        arr = np.asarray(y, dtype=np.float32)
        return (arr * np.float32(self.width) + np.float32(self.low)).astype(np.float32)

    def to_dict(self) -> dict:
        """JSON-friendly ``{"low": ..., "high": ...}``."""
        return {"low": self.low, "high": self.high}

    @classmethod
    def from_dict(cls, d: dict) -> IntensityWindow:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(low=float(d["low"]), high=float(d["high"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an intensity window: {d!r}") from exc


#: Percentiles (lower, upper) of the default window of :func:`window_from_percentiles`.
DEFAULT_WINDOW_PERCENTILES = (0.1, 99.9)
#: How far the default window reaches beyond those percentiles, as a fraction of their
#: distance on each side.
DEFAULT_WINDOW_MARGIN = 0.2


def window_from_percentiles(
    *volumes: np.ndarray,
    lower: float | None = None,
    upper: float | None = None,
    margin: float | None = None,
    max_samples: int = 4_000_000,
) -> IntensityWindow:
    """Intensity window from percentiles of the pooled values of ``volumes``.

    The default (neither ``lower`` nor ``upper`` given) is the 0.1st to 99.9th
    percentile, widened by 20 % of that distance on each side
    (:data:`DEFAULT_WINDOW_PERCENTILES`, :data:`DEFAULT_WINDOW_MARGIN`). It clips the
    extreme tails of the streaks but not the lung: on the simulator's data (128 and 256
    px, one acquisition or independent specimens, default and benchmark presets, four
    seeds each) it clips at most 0.04 % of the input's lung-ROI pixels of the data it is
    computed from and at most 0.4 % of those of another test set. Training without an
    explicit window (``dfct train`` without ``--window``) uses this default; the former
    default, the 1st to 99th percentile without margin, clipped 10 to 34 % of the lung
    ROI there, so models trained with it saw a cut lung. Given percentiles are used as
    they are (no margin unless ``margin`` is given).

    Parameters
    ----------
    *volumes : numpy.ndarray
        One or more arrays (e.g. the training input and target); pooled.
    lower, upper : float, optional
        Percentiles (0-100) for ``low`` and ``high``; a missing one takes its default.
    margin : float, optional
        Widen the window by this fraction of ``high - low`` on each side (>= 0). Default:
        :data:`DEFAULT_WINDOW_MARGIN` when neither percentile is given, else 0.
    max_samples : int
        Large data are subsampled with a regular stride to at most this many values
        (deterministic).

    Returns
    -------
    IntensityWindow
        A constant image gets the window ``[v, v + 1]``.
    """
    if not volumes:
        raise ValueError("window_from_percentiles needs at least one array")
    if margin is None:
        margin = DEFAULT_WINDOW_MARGIN if lower is None and upper is None else 0.0
    lower = DEFAULT_WINDOW_PERCENTILES[0] if lower is None else lower
    upper = DEFAULT_WINDOW_PERCENTILES[1] if upper is None else upper
    if not 0.0 <= lower < upper <= 100.0:
        raise ValueError(f"need 0 <= lower < upper <= 100, got {lower}, {upper}")
    if not margin >= 0:
        raise ValueError(f"the window margin must be >= 0, got {margin}")
    flat = []
    total = sum(int(np.asarray(v).size) for v in volumes)
    stride = max(1, total // max_samples)
    for v in volumes:
        a = np.asarray(v, dtype=np.float32).ravel()[::stride]
        flat.append(a[np.isfinite(a)])
    values = np.concatenate(flat)
    if values.size == 0:
        raise ValueError("cannot compute an intensity window: no finite values")
    low, high = np.percentile(values, [lower, upper])
    if not high > low:
        low, high = float(values.min()), float(values.max())
    if not high > low:
        high = low + 1.0
    elif margin > 0:
        width = float(high) - float(low)
        low, high = float(low) - margin * width, float(high) + margin * width
    return IntensityWindow(float(low), float(high))
