"""Rectangular ROIs and the contrast-to-noise ratio (CNR) between two of them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._common import _NAN, _as_image2d, _fmt, _point, _size2

__all__ = ["CNRResult", "ROIStats", "cnr", "cnr_stderr", "roi_bounds", "roi_stats"]


@dataclass(frozen=True)
class ROIStats:
    """Statistics of one rectangular ROI.

    Attributes
    ----------
    mean, std : float
        Mean and standard deviation of the ROI's pixels (``std`` with the ``ddof`` of the
        call, 1 by default); NaN when undefined.
    n : int
        Number of pixels used (0 when the ROI is unusable).
    center : tuple of float
        The requested centre (row, col).
    bounds : tuple of int or None
        ``(row_start, row_stop, col_start, col_stop)`` of the pixel block (stop
        exclusive), also when the block reaches outside the image; None if undefined.
    m3, m4 : float
        Third and fourth central sample moments (used by :func:`cnr_stderr`).
    reason : str or None
        Why the statistics are NaN, None when they are valid.
    """

    mean: float
    std: float
    n: int
    center: tuple[float, float]
    bounds: tuple[int, int, int, int] | None
    m3: float = _NAN
    m4: float = _NAN
    reason: str | None = None

    @property
    def var(self) -> float:
        return self.std * self.std


def roi_bounds(center: Any, size: Any = 30) -> tuple[int, int, int, int]:
    """Pixel block of a rectangular ROI centred on ``center``.

    Pixel ``(i, j)`` belongs to the ROI iff ``r - h/2 <= i < r + h/2`` and
    ``c - w/2 <= j < c + w/2``: pixel centres inside the half-open rectangle of height
    ``h`` and width ``w`` centred on ``(r, c)``. The block always has exactly
    ``round(h) x round(w)`` pixels (for integer sizes), whatever the fractional part of
    the centre. This matches a napari rectangle whose corners are ``(r -/+ h/2, c -/+ w/2)``.

    Parameters
    ----------
    center : (row, col)
        ROI centre in pixel coordinates (pixel ``i`` is centred on coordinate ``i``).
    size : int or (int, int)
        Side length, or (height, width), in pixels. Non-integers are rounded.

    Returns
    -------
    (row_start, row_stop, col_start, col_stop) : tuple of int
        Stop exclusive; may lie outside the image (the caller checks).
    """
    r, c = _point(center, "ROI centre")
    h, w = _size2(size)
    h, w = int(round(h)), int(round(w))
    r0 = int(math.ceil(r - h / 2.0))
    c0 = int(math.ceil(c - w / 2.0))
    return r0, r0 + h, c0, c0 + w


def roi_stats(
    image2d: Any, center: Any, size: Any = 30, *, ddof: int = 1, name: str = "ROI"
) -> ROIStats:
    """Mean, standard deviation and pixel count of one rectangular ROI.

    Parameters
    ----------
    image2d : (M, N) array
        One slice.
    center : (row, col)
        ROI centre (pixel coordinates). See :func:`roi_bounds` for which pixels count.
    size : int or (int, int), optional
        Side length (or height, width) in pixels; at least 2 each way.
    ddof : int, optional
        Delta degrees of freedom of the standard deviation: 1 (default) gives the
        unbiased sample variance ``sum((x - mean)**2) / (n - 1)``; 0 the population form.
    name : str, optional
        Used in reasons ("signal ROI ...").

    Returns
    -------
    ROIStats
        NaN statistics with a reason when the ROI reaches outside the image (no clipping,
        no wrapping), contains non-finite pixels, is smaller than 2x2, or the image is
        not 2-D.
    """
    ctr = _point(center, f"{name} centre")
    ctr_t = (float(ctr[0]), float(ctr[1]))
    arr, why = _as_image2d(image2d)
    if arr is None:
        return ROIStats(_NAN, _NAN, 0, ctr_t, None, reason=why)
    if not np.all(np.isfinite(ctr)):
        return ROIStats(_NAN, _NAN, 0, ctr_t, None, reason=f"{name} centre is not finite")
    h, w = _size2(size)
    if not (np.isfinite(h) and np.isfinite(w)) or round(h) < 2 or round(w) < 2:
        return ROIStats(
            _NAN,
            _NAN,
            0,
            ctr_t,
            None,
            reason=f"{name} is too small ({_fmt(h)}x{_fmt(w)} px; needs at least 2x2)",
        )
    bounds = roi_bounds(ctr, (h, w))
    r0, r1, c0, c1 = bounds
    rows, cols = arr.shape
    if r0 < 0 or c0 < 0 or r1 > rows or c1 > cols:
        return ROIStats(
            _NAN,
            _NAN,
            0,
            ctr_t,
            bounds,
            reason=(
                f"{name} ({r1 - r0}x{c1 - c0} px at ({_fmt(ctr[0])}, {_fmt(ctr[1])})) "
                f"extends outside the image ({rows}x{cols})"
            ),
        )
    block = np.asarray(arr[r0:r1, c0:c1], dtype=np.float64)
    n = block.size
    finite = np.isfinite(block)
    if not finite.all():
        bad = int(n - np.count_nonzero(finite))
        return ROIStats(
            _NAN, _NAN, 0, ctr_t, bounds, reason=f"{name} contains {bad} non-finite pixel(s)"
        )
    if n - ddof <= 0:
        return ROIStats(
            _NAN, _NAN, 0, ctr_t, bounds, reason=f"{name} has too few pixels ({n}) for ddof={ddof}"
        )
    mean = float(block.mean())
    dev = block - mean
    dev2 = dev * dev
    ss = float(dev2.sum())
    std = math.sqrt(ss / (n - ddof))
    m3 = float((dev2 * dev).mean())
    m4 = float((dev2 * dev2).mean())
    return ROIStats(mean, std, n, ctr_t, bounds, m3=m3, m4=m4, reason=None)


@dataclass(frozen=True)
class CNRResult:
    """Contrast-to-noise ratio of a signal and a background ROI.

    Attributes
    ----------
    cnr : float
        ``(mu_s - mu_b) / sqrt(sigma_s**2 + sigma_b**2)``; the sign is kept (negative when
        the signal ROI is darker). NaN when undefined.
    stderr : float
        Standard error of ``cnr`` (delta method, see :func:`cnr_stderr`).
    signal, background : ROIStats
    reason : str or None
    ddof : int
        Degrees-of-freedom correction used for the standard deviations.
    """

    cnr: float
    stderr: float
    signal: ROIStats
    background: ROIStats
    reason: str | None = None
    ddof: int = 1


def cnr_stderr(signal: ROIStats, background: ROIStats) -> float:
    """Standard error of the CNR by the delta method (first-order error propagation).

    With ``d = m_s - m_b``, ``V = v_s + v_b`` (sample variances) and ``CNR = d / sqrt(V)``,
    the gradient is ``dCNR/dm_s = 1/sqrt(V)``, ``dCNR/dm_b = -1/sqrt(V)``,
    ``dCNR/dv_k = -d / (2 V**1.5)``. For ``n`` independent pixels of one ROI with central
    moments ``mu2, mu3, mu4``: ``Var(m) = mu2/n``, ``Var(v) = (mu4 - mu2**2 (n-3)/(n-1)) / n``
    and ``Cov(m, v) = mu3/n`` (exact for the unbiased sample variance); the two ROIs are
    independent. For Gaussian pixels this reduces to

    ``Var(CNR) ~= (v_s/n_s + v_b/n_b) / V + CNR**2 (v_s**2/(n_s-1) + v_b**2/(n_b-1)) / (2 V**2)``.

    Sample moments stand in for the true ones. The formula assumes uncorrelated pixels;
    CT noise is spatially correlated (the reconstruction filter and interpolation), so on
    real slices it is a lower bound on the repeat-to-repeat spread.

    Returns
    -------
    float
        NaN when either ROI is unusable or both variances are zero.
    """
    if signal.reason or background.reason:
        return _NAN
    V = signal.var + background.var
    if not V > 0:
        return _NAN
    d = signal.mean - background.mean
    sq = math.sqrt(V)
    g_m = 1.0 / sq
    g_v = -d / (2.0 * V * sq)
    total = 0.0
    for st, sign in ((signal, 1.0), (background, -1.0)):
        n = st.n
        var_mean = st.var / n
        var_var = max((st.m4 - st.var**2 * (n - 3) / (n - 1)) / n, 0.0)
        cov_mv = st.m3 / n
        total += g_m * g_m * var_mean + g_v * g_v * var_var + 2.0 * sign * g_m * g_v * cov_mv
    return math.sqrt(max(total, 0.0))


def cnr(
    image2d: Any,
    signal_center: Any,
    background_center: Any,
    size: Any = 30,
    *,
    background_size: Any = None,
    ddof: int = 1,
) -> CNRResult:
    """Contrast-to-noise ratio between two rectangular ROIs of a slice.

    ``CNR = (mu_signal - mu_background) / sqrt(sigma_signal**2 + sigma_background**2)``,
    the definition of the paper (lung tissue as signal, air as background), with the sign
    kept.

    Parameters
    ----------
    image2d : (M, N) array
        One slice; any real dtype (computed in float64).
    signal_center, background_center : (row, col)
        ROI centres in pixel coordinates.
    size : int or (int, int), optional
        Side length (or height, width) of the signal ROI in pixels, default 30 (the paper's
        30x30 squares). See :func:`roi_bounds` for which pixels belong to an ROI.
    background_size : int or (int, int), optional
        Size of the background ROI; defaults to ``size``.
    ddof : int, optional
        The standard deviations are ``sqrt(sum((x - mean)**2) / (n - ddof))``;
        ``ddof=1`` (default) is the unbiased sample variance.

    Returns
    -------
    CNRResult
        ``cnr``, its standard error (:func:`cnr_stderr`), both ROIs' mean, std and pixel
        count, and a ``reason`` when the CNR is NaN: an ROI reaches outside the image, an
        ROI holds NaN/inf, both ROIs have zero noise, or the image is not 2-D.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(0.0, 1.0, (100, 100))
    >>> img[:, 50:] += 3.0
    >>> res = cnr(img, (50, 75), (50, 25))
    >>> bool(1.8 < res.cnr < 2.4), res.signal.n
    (True, 900)
    """
    bsize = size if background_size is None else background_size
    sig = roi_stats(image2d, signal_center, size, ddof=ddof, name="signal ROI")
    bg = roi_stats(image2d, background_center, bsize, ddof=ddof, name="background ROI")
    reasons = [r for r in (sig.reason, bg.reason) if r]
    if sig.reason and sig.reason == bg.reason:  # e.g. "image is not 2-D": say it once
        reasons = [sig.reason]
    if reasons:
        return CNRResult(_NAN, _NAN, sig, bg, "; ".join(reasons), ddof)
    V = sig.var + bg.var
    if not V > 0:
        return CNRResult(
            _NAN, _NAN, sig, bg, "zero noise in both ROIs (standard deviations are 0)", ddof
        )
    value = (sig.mean - bg.mean) / math.sqrt(V)
    return CNRResult(float(value), cnr_stderr(sig, bg), sig, bg, None, ddof)
