"""Edge sharpness: the line profile across an edge, the erf fit and the FWHM of the LSF.

The line spread function (LSF) is the derivative of the edge spread function sampled
along a line (by default from the signal ROI centre to the background ROI centre); its
FWHM in pixels is the paper's resolution figure. :func:`fwhm` fits an erf to the profile
(the primary estimate) and cross-checks it with the half-maximum width of the smoothed
derivative.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import erf

from ._common import _NAN, _as_image2d, _fmt, _point

__all__ = ["FWHM_PER_SIGMA", "FWHMResult", "erf_edge", "fwhm", "line_profile"]

#: FWHM of a Gaussian in units of its standard deviation, ``2 * sqrt(2 * ln 2)``.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))

_SQRT2 = math.sqrt(2.0)
_TWO_OVER_SQRTPI = 2.0 / math.sqrt(math.pi)


def _profile_coordinates(start: np.ndarray, end: np.ndarray, linewidth: int) -> np.ndarray:
    """Sample coordinates of :func:`skimage.measure.profile_line`, vectorised.

    Same points, same order: ``n = ceil(length + 1)`` points from ``start`` to ``end``
    inclusive (spacing ``length / (n - 1) <= 1`` pixel), each with ``linewidth`` points
    across the line. Shape (2, n, linewidth).
    """
    d_row, d_col = end - start
    theta = math.atan2(d_row, d_col)
    n = int(math.ceil(math.hypot(d_row, d_col) + 1))
    line_row = np.linspace(start[0], end[0], n)
    line_col = np.linspace(start[1], end[1], n)
    col_width = (linewidth - 1) * math.sin(-theta) / 2
    row_width = (linewidth - 1) * math.cos(theta) / 2
    t = np.linspace(-1.0, 1.0, linewidth) if linewidth > 1 else np.zeros(1)
    perp_rows = line_row[:, None] + row_width * t[None, :]
    perp_cols = line_col[:, None] + col_width * t[None, :]
    return np.stack([perp_rows, perp_cols])


def line_profile(
    image2d: Any,
    start: Any,
    end: Any,
    *,
    linewidth: int = 1,
    order: int = 1,
    mode: str = "reflect",
    cval: float = 0.0,
    reduce_func=np.mean,
) -> tuple[np.ndarray, np.ndarray]:
    """Intensity profile along a line, with the distance of each sample in pixels.

    The samples are exactly those of :func:`skimage.measure.profile_line` with the same
    arguments (``ceil(length + 1)`` points, both ends included, spacing
    ``length / (n - 1)`` which is at most 1 pixel; ``linewidth`` points across, combined
    with ``reduce_func``); a test checks the equality. The coordinates are built without
    the per-point Python loop of ``profile_line``, and only a crop around the line is
    interpolated, so the cost does not grow with the image.

    Parameters
    ----------
    image2d : (M, N) array
    start, end : (row, col)
        Line end points in pixel coordinates (both included).
    linewidth : int, optional
        Width of the scan in pixels, perpendicular to the line.
    order : int, optional
        Spline interpolation order (1: bilinear).
    mode : str, optional
        ``scipy.ndimage.map_coordinates`` boundary mode. Explicit, and irrelevant when the
        line lies inside the image (which :func:`fwhm` requires).
    cval : float, optional
        Fill value for ``mode='constant'``.
    reduce_func : callable, optional
        Combines the ``linewidth`` samples across the line (called with ``axis=1``).

    Returns
    -------
    distance : (n,) float64
        Distance of each sample from ``start`` in pixels: ``arange(n) * length / (n - 1)``.
    profile : (n,) float64
    """
    arr = np.asarray(image2d)
    if arr.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {arr.shape}")
    p0 = _point(start, "line start")
    p1 = _point(end, "line end")
    linewidth = int(linewidth)
    if linewidth < 1:
        raise ValueError(f"linewidth must be >= 1, got {linewidth}")
    return _sample_line(
        arr, p0, p1, _profile_coordinates(p0, p1, linewidth), order, mode, cval, reduce_func
    )


def _sample_line(arr, p0, p1, coords, order, mode, cval, reduce_func):
    n = coords.shape[1]
    length = math.hypot(*(p1 - p0))
    spacing = length / (n - 1) if n > 1 else 0.0
    distance = np.arange(n, dtype=np.float64) * spacing
    # crop: only the pixels the interpolation can touch (plus the spline support)
    margin = int(order) + 1
    rows, cols = arr.shape
    lo_r = max(int(math.floor(coords[0].min())) - margin, 0)
    hi_r = min(int(math.ceil(coords[0].max())) + margin + 1, rows)
    lo_c = max(int(math.floor(coords[1].min())) - margin, 0)
    hi_c = min(int(math.ceil(coords[1].max())) + margin + 1, cols)
    at_border = lo_r == 0 or hi_r == rows or lo_c == 0 or hi_c == cols
    if at_border or hi_r <= lo_r or hi_c <= lo_c:
        # touching a border: boundary handling must see the real border, use the full image
        sub, off_r, off_c = arr, 0, 0
    else:
        sub, off_r, off_c = arr[lo_r:hi_r, lo_c:hi_c], lo_r, lo_c
    if sub.dtype == bool:
        sub = sub.astype(np.float64)
    shifted = coords.copy()
    shifted[0] -= off_r
    shifted[1] -= off_c
    pixels = ndi.map_coordinates(
        sub, shifted, prefilter=order > 1, order=order, mode=mode, cval=cval
    )
    pixels = np.flip(pixels, axis=1)  # as profile_line does
    if reduce_func is None:
        return distance, pixels
    try:
        prof = reduce_func(pixels, axis=1)
    except TypeError:
        prof = np.apply_along_axis(reduce_func, 1, pixels)
    return distance, np.asarray(prof, dtype=np.float64)


def erf_edge(x: Any, a: float, b: float, x0: float, sigma: float) -> np.ndarray:
    """Edge spread function of a Gaussian LSF: ``a + b * erf((x - x0) / (sqrt(2) sigma))``.

    Its derivative is a Gaussian of standard deviation ``sigma`` and height
    ``b * sqrt(2/pi) / sigma``; the FWHM is ``FWHM_PER_SIGMA * sigma``.
    """
    return a + b * erf((np.asarray(x, dtype=np.float64) - x0) / (_SQRT2 * sigma))


def _erf_jac(x: np.ndarray, a: float, b: float, x0: float, sigma: float) -> np.ndarray:
    u = (x - x0) / (_SQRT2 * sigma)
    g = _TWO_OVER_SQRTPI * np.exp(-u * u)
    jac = np.empty((x.size, 4))
    jac[:, 0] = 1.0
    jac[:, 1] = erf(u)
    jac[:, 2] = -b * g / (_SQRT2 * sigma)
    jac[:, 3] = -b * g * u / sigma
    return jac


def _gaussian_lsf(x: np.ndarray, b: float, x0: float, sigma: float) -> np.ndarray:
    """Derivative of :func:`erf_edge` with respect to x."""
    s = abs(sigma)
    return b * math.sqrt(2.0 / math.pi) / s * np.exp(-0.5 * ((x - x0) / s) ** 2)


@dataclass(frozen=True)
class FWHMResult:
    """Width of an edge measured along a line.

    Attributes
    ----------
    fwhm : float
        FWHM of the LSF in pixels from the erf fit, ``FWHM_PER_SIGMA * sigma``; NaN when
        undefined (see ``reason``).
    fwhm_stderr : float
        Its standard error from the fit covariance (residual-scaled).
    edge_position, edge_position_stderr : float
        Fitted edge centre ``x0``, in pixels from the line start.
    sigma, sigma_stderr : float
        Standard deviation (pixels) of the Gaussian LSF: the fitted width of the sampled
        profile, ``sigma_profile``, less (in quadrature) the blur of bilinear sampling,
        ``interpolation_variance`` (see below).
    amplitude, offset : float
        Fitted ``b`` and ``a`` of ``a + b * erf((x - x0) / (sqrt(2) sigma))``: the step
        across the edge is ``2 b``.
    distance : (n,) ndarray
        Sample positions along the line, in pixels from the start.
    profile : (n,) ndarray
        Sampled intensities (the edge spread function).
    derivative : (n,) ndarray
        The LSF: derivative of the Gaussian-smoothed profile with respect to distance,
        oriented so the edge peak is positive (empty when the profile is unusable).
    fit : (n,) ndarray
        The fitted erf evaluated at ``distance`` (NaN when the fit failed).
    lsf_fit : (n,) ndarray
        Derivative of the fitted erf (a Gaussian), same orientation as ``derivative``.
    halfmax_fwhm : float
        Cross-check: half-maximum width of ``derivative``, minus (in quadrature) the
        smoothing and the central-difference widening. Assumes a Gaussian LSF.
    halfmax_reason : str or None
    smoothing : float
        Standard deviation (pixels) of the Gaussian used for ``derivative``.
    spacing : float
        Sample spacing in pixels (``length / (n - 1)``).
    length : float
        Line length in pixels.
    start, end : tuple of float
        The line.
    sigma_profile : float
        The erf fit's width of the sampled profile (before the interpolation correction).
    interpolation_variance : float
        Variance (px^2) that bilinear sampling adds along the line: ``t (1 - t)`` per axis
        for a sample at fractional offset ``t``, projected on the line and averaged (0 for
        samples on pixel centres, about 1/6 otherwise). Subtracted from ``sigma_profile**2``
        and from the half-max cross-check; it matters only for sharp edges
        (``sigma`` of a few pixels).
    reason : str or None
        Why ``fwhm`` is NaN; None when it is valid.
    """

    fwhm: float
    fwhm_stderr: float
    edge_position: float
    edge_position_stderr: float
    sigma: float
    sigma_stderr: float
    amplitude: float
    offset: float
    distance: np.ndarray = field(repr=False)
    profile: np.ndarray = field(repr=False)
    derivative: np.ndarray = field(repr=False)
    fit: np.ndarray = field(repr=False)
    lsf_fit: np.ndarray = field(repr=False)
    halfmax_fwhm: float
    halfmax_reason: str | None
    smoothing: float
    spacing: float
    length: float
    start: tuple[float, float]
    end: tuple[float, float]
    sigma_profile: float = _NAN
    interpolation_variance: float = _NAN
    reason: str | None = None


def _empty() -> np.ndarray:
    return np.zeros(0, dtype=np.float64)


def _failed(
    reason: str,
    start,
    end,
    length=_NAN,
    spacing=_NAN,
    distance=None,
    profile=None,
    derivative=None,
    smoothing=_NAN,
    fit_params=None,
    perr=None,
    halfmax=(_NAN, None),
    interp_var=_NAN,
) -> FWHMResult:
    distance = _empty() if distance is None else distance
    profile = _empty() if profile is None else profile
    derivative = _empty() if derivative is None else derivative
    nanfit = np.full(distance.shape, np.nan)
    p = fit_params if fit_params is not None else (_NAN,) * 4
    e = perr if perr is not None else (_NAN,) * 4
    fit = erf_edge(distance, *p) if fit_params is not None else nanfit
    lsf = (
        _gaussian_lsf(distance, abs(p[1]), p[2], p[3]) if fit_params is not None else nanfit.copy()
    )
    return FWHMResult(
        fwhm=_NAN,
        fwhm_stderr=_NAN,
        edge_position=float(p[2]),
        edge_position_stderr=float(e[2]),
        sigma=abs(float(p[3])),
        sigma_stderr=float(e[3]),
        amplitude=float(p[1]),
        offset=float(p[0]),
        distance=distance,
        profile=profile,
        derivative=derivative,
        fit=fit,
        lsf_fit=lsf,
        halfmax_fwhm=halfmax[0],
        halfmax_reason=halfmax[1] or reason,
        smoothing=smoothing,
        spacing=spacing,
        length=length,
        start=(float(start[0]), float(start[1])),
        end=(float(end[0]), float(end[1])),
        sigma_profile=abs(float(p[3])),
        interpolation_variance=interp_var,
        reason=reason,
    )


def _halfmax_width(x: np.ndarray, y: np.ndarray, peak: int) -> tuple[float, str | None]:
    """Full width at half maximum of the peak of ``y`` at index ``peak`` (linear
    interpolation of the crossings)."""
    half = 0.5 * y[peak]
    if not half > 0:
        return _NAN, "LSF peak is not positive"
    i = peak
    while i > 0 and y[i] > half:
        i -= 1
    if y[i] > half:
        return _NAN, "LSF does not fall to half maximum before the line start"
    left = x[i] + (half - y[i]) * (x[i + 1] - x[i]) / (y[i + 1] - y[i])
    j = peak
    n = y.size
    while j < n - 1 and y[j] > half:
        j += 1
    if y[j] > half:
        return _NAN, "LSF does not fall to half maximum before the line end"
    right = x[j - 1] + (y[j - 1] - half) * (x[j] - x[j - 1]) / (y[j - 1] - y[j])
    return float(right - left), None


def fwhm(
    image2d: Any,
    start: Any,
    end: Any,
    *,
    linewidth: int = 1,
    smooth: float | None = None,
    fit_window: float | None = None,
    min_length: float = 5.0,
    mode: str = "reflect",
    locate_smooth: float = 2.0,
) -> FWHMResult:
    """FWHM (pixels) of the line spread function across an edge along a line.

    The profile is sampled along the line with bilinear interpolation (exactly the
    samples of ``skimage.measure.profile_line(image, start, end, linewidth, order=1,
    mode=mode, reduce_func=np.mean)``, see :func:`line_profile`): ``n = ceil(length + 1)``
    points, **spacing ``length / (n - 1)`` pixels** (at most 1), so every distance and
    width below is in pixels, not in samples.

    1. *Locate* the edge: the largest absolute derivative of the profile smoothed with a
       Gaussian of ``locate_smooth`` pixels.
    2. *Fit* (primary estimate): ``a + b * erf((x - x0) / (sqrt(2) sigma))`` by
       ``scipy.optimize.curve_fit`` (Levenberg-Marquardt, analytic Jacobian) to the whole
       profile, or to ``|x - x0| <= fit_window``. The LSF is then a Gaussian with
       ``FWHM = 2 sqrt(2 ln 2) sigma ~= 2.3548 sigma``; its standard error comes from the
       fit covariance scaled by the residual variance. Neighbouring samples share pixels
       through the interpolation, so the stated error is somewhat optimistic. Bilinear
       sampling between pixel centres blurs the profile slightly (variance ``t (1 - t)``
       at fractional offset ``t``, about 1/6 px^2 on average); this known variance is
       subtracted from ``sigma**2`` (``FWHMResult.interpolation_variance``).
    3. *Cross-check*: the half-maximum width ``W`` of the derivative of the profile
       smoothed with a Gaussian of ``s`` pixels, taken by central differences (which
       widen by a box of variance ``spacing**2 / 3``), corrected in quadrature:
       ``halfmax_fwhm = 2.3548 sqrt((W / 2.3548)**2 - s**2 - spacing**2 / 3 - v_interp)``.
       Exact for a
       Gaussian LSF; a plain half-max crossing on an unsmoothed noisy derivative is badly
       biased, hence the fit is the primary estimate.

    Parameters
    ----------
    image2d : (M, N) array
        One slice.
    start, end : (row, col)
        The line (pixel coordinates), e.g. from the signal ROI centre to the background
        ROI centre. The edge must lie inside it with some plateau on both sides.
    linewidth : int, optional
        Width of the scan (pixels) perpendicular to the line, averaged.
    smooth : float, optional
        Smoothing ``s`` (pixels) for ``derivative`` and the half-max cross-check; default
        ``max(1, sigma_fit / 2)`` (2 pixels when the fit failed).
    fit_window : float, optional
        Fit only samples within this distance (pixels) of the located edge.
    min_length : float, optional
        Shortest usable line, in pixels.
    mode : str, optional
        Boundary mode of the interpolation (irrelevant inside the image).
    locate_smooth : float, optional
        Smoothing (pixels) used only to locate the edge and start the fit.

    Returns
    -------
    FWHMResult
        With the sampled profile, its derivative and the fitted curves for plotting.
        ``fwhm`` is NaN with a ``reason`` for: a non-2-D image, a zero-length or too short
        line, a line leaving the image, NaNs on the profile, a flat profile, no
        significant edge, an edge at (or beyond) an end of the line, a fit that fails or
        whose width is not resolved (uncertainty larger than the value).

    Examples
    --------
    A vertical edge blurred by a Gaussian LSF of sigma 2 px (FWHM 2.3548 * 2 px):

    >>> import numpy as np
    >>> from scipy.special import erf
    >>> x = np.arange(100.0)
    >>> img = np.tile(1.0 + erf((x - 50.3) / (np.sqrt(2) * 2.0)), (60, 1))
    >>> res = fwhm(img, (30, 20), (30, 80))
    >>> round(res.fwhm, 2), res.reason
    (4.71, None)
    """
    p0 = _point(start, "line start")
    p1 = _point(end, "line end")
    sampled = _sample_edge_line(image2d, p0, p1, linewidth, min_length, mode)
    if isinstance(sampled, FWHMResult):
        return sampled
    x, prof, length, spacing, interp_var = sampled

    # 1. locate the edge, 2. fit the erf
    fitted = _fit_erf(x, prof, _initial_guess(x, prof, length, spacing, locate_smooth), fit_window)
    if isinstance(fitted, str):
        return _failed(fitted, p0, p1, length, spacing, x, prof)
    popt, perr = fitted
    a, b, x0, s_fit = popt

    # derivative (LSF) and half-max cross-check
    if smooth is not None:
        smoothing = float(smooth)
        if not np.isfinite(smoothing) or smoothing < 0:
            raise ValueError(f"smooth must be a non-negative number, got {smooth!r}")
    else:
        smoothing = max(1.0, 0.5 * s_fit) if 0 < s_fit < length else 2.0
    sm2 = (
        ndi.gaussian_filter1d(prof, smoothing / spacing, mode="nearest") if smoothing > 0 else prof
    )
    orient = 1.0 if b >= 0 else -1.0
    deriv = orient * np.gradient(sm2, x)
    halfmax = _halfmax_cross_check(x, deriv, x0, s_fit, smoothing, spacing, interp_var)

    reason, s, s_err = _judge_fit(popt, perr, spacing, length, interp_var)
    if reason is not None:
        return _failed(
            reason,
            p0,
            p1,
            length,
            spacing,
            x,
            prof,
            deriv,
            smoothing,
            popt,
            perr,
            halfmax,
            interp_var,
        )
    return FWHMResult(
        fwhm=FWHM_PER_SIGMA * s,
        fwhm_stderr=FWHM_PER_SIGMA * s_err,
        edge_position=x0,
        edge_position_stderr=perr[2],
        sigma=s,
        sigma_stderr=s_err,
        amplitude=b,
        offset=a,
        distance=x,
        profile=prof,
        derivative=deriv,
        fit=erf_edge(x, a, b, x0, s_fit),
        lsf_fit=_gaussian_lsf(x, abs(b), x0, s_fit),
        halfmax_fwhm=halfmax[0],
        halfmax_reason=halfmax[1],
        smoothing=smoothing,
        spacing=spacing,
        length=length,
        start=(float(p0[0]), float(p0[1])),
        end=(float(p1[0]), float(p1[1])),
        sigma_profile=s_fit,
        interpolation_variance=interp_var,
        reason=None,
    )


def _sample_edge_line(image2d, p0, p1, linewidth, min_length, mode):
    """The profile :func:`fwhm` fits: ``(distance, profile, length, spacing,
    interpolation_variance)``, or a failed :class:`FWHMResult` saying why there is none."""
    arr, why = _as_image2d(image2d)
    if arr is None:
        return _failed(str(why), p0, p1)
    if not (np.all(np.isfinite(p0)) and np.all(np.isfinite(p1))):
        return _failed("line end points are not finite", p0, p1)
    length = math.hypot(*(p1 - p0))
    if length == 0.0:
        return _failed("zero-length line", p0, p1, length=0.0)
    if length < min_length:
        return _failed(
            f"line too short ({_fmt(length)} px; needs at least {_fmt(min_length)})",
            p0,
            p1,
            length=length,
        )
    linewidth = int(linewidth)
    if linewidth < 1:
        raise ValueError(f"linewidth must be >= 1, got {linewidth}")
    rows, cols = arr.shape
    coords = _profile_coordinates(p0, p1, linewidth)
    eps = 1e-9
    if (
        coords[0].min() < -eps
        or coords[1].min() < -eps
        or coords[0].max() > rows - 1 + eps
        or coords[1].max() > cols - 1 + eps
    ):
        return _failed(
            f"line leaves the image ({_fmt(p0[0])}, {_fmt(p0[1])}) -> "
            f"({_fmt(p1[0])}, {_fmt(p1[1])}) in a {rows}x{cols} image",
            p0,
            p1,
            length=length,
        )
    x, prof = _sample_line(arr, p0, p1, coords, 1, mode, 0.0, np.mean)
    interp_var = _interpolation_variance(coords, p0, p1)
    n = x.size
    spacing = float(x[1] - x[0]) if n > 1 else 0.0
    if not np.all(np.isfinite(prof)):
        return _failed(
            f"profile contains {int(np.count_nonzero(~np.isfinite(prof)))} non-finite sample(s)",
            p0,
            p1,
            length,
            spacing,
            x,
            prof,
        )
    scale = float(np.max(np.abs(prof)))
    ptp = float(np.ptp(prof))
    if ptp <= 1e-12 * max(scale, 1e-300):
        return _failed("flat profile (no edge along the line)", p0, p1, length, spacing, x, prof)
    return x, prof, length, spacing, interp_var


def _initial_guess(x, prof, length, spacing, locate_smooth) -> list[float]:
    """Start of the erf fit ``[a, b, x0, sigma]``: the edge at the largest absolute
    derivative of the profile smoothed by ``locate_smooth`` pixels."""
    ls = max(float(locate_smooth), 0.0) / spacing
    sm = ndi.gaussian_filter1d(prof, ls, mode="nearest") if ls > 0 else prof
    d0 = np.gradient(sm, x)
    k = int(np.argmax(np.abs(d0)))
    sign = 1.0 if d0[k] >= 0 else -1.0
    x0_guess = float(x[k])
    left, right = prof[x <= x0_guess], prof[x >= x0_guess]
    lo, hi = float(np.mean(left)), float(np.mean(right))
    b_guess = (hi - lo) / 2.0
    if b_guess == 0.0 or np.sign(b_guess) != sign:
        b_guess = sign * float(np.ptp(prof)) / 2.0
    a_guess = (hi + lo) / 2.0
    w_guess, _ = _halfmax_width(x, sign * d0, k)
    var_guess = (
        (w_guess / FWHM_PER_SIGMA) ** 2 - (ls * spacing) ** 2 if np.isfinite(w_guess) else -1
    )
    sigma_guess = math.sqrt(var_guess) if var_guess > 0 else max(spacing, 1.0)
    sigma_guess = float(np.clip(sigma_guess, 0.5 * spacing, length / 4.0))
    return [a_guess, b_guess, x0_guess, sigma_guess]


def _fit_erf(x, prof, p_init, fit_window):
    """Levenberg-Marquardt fit of :func:`erf_edge` (analytic Jacobian) to the profile, or
    to ``|x - x0| <= fit_window``: ``((a, b, x0, sigma >= 0), standard errors)``, or the
    reason of the failure (a string)."""
    if fit_window is not None:
        sel = np.abs(x - p_init[2]) <= float(fit_window)
        if np.count_nonzero(sel) < 6:
            return "fit window holds fewer than 6 samples"
        xf, yf = x[sel], prof[sel]
    else:
        xf, yf = x, prof
    if xf.size < 6:
        return f"too few samples ({xf.size}) for the edge fit"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            popt, pcov = curve_fit(
                erf_edge,
                xf,
                yf,
                p0=p_init,
                jac=lambda xx, a, b, x0, s: _erf_jac(xx, a, b, x0, s),
                method="lm",
                maxfev=400,
            )
    except (RuntimeError, ValueError, FloatingPointError) as exc:
        return f"edge fit failed ({str(exc).splitlines()[0][:80]})"
    a, b, x0, s_fit = (float(v) for v in popt)
    perr = np.sqrt(np.diag(pcov)) if np.all(np.isfinite(pcov)) else np.full(4, np.nan)
    return (a, b, x0, abs(s_fit)), tuple(float(v) for v in perr)


def _judge_fit(popt, perr, spacing, length, interp_var) -> tuple[str | None, float, float]:
    """``(reason, sigma, sigma_stderr)`` of the LSF from an erf fit; ``reason`` is None
    when the width is resolved, else why it is not (and the widths are NaN)."""
    _, b, x0, s_fit = popt
    if not all(np.isfinite(perr)):
        if s_fit < spacing:
            # the fit collapsed to a step: its width has no gradient left
            return (
                f"edge sharper than the sampling resolves (sigma {_fmt(s_fit)} px)",
                _NAN,
                _NAN,
            )
        return "edge fit failed (parameter uncertainty undefined)", _NAN, _NAN
    if not s_fit > 0:
        return "edge fit failed (zero width)", _NAN, _NAN
    if abs(b) < 3.0 * perr[1]:
        return (
            (f"no significant edge along the line (step {_fmt(2 * b)} +/- {_fmt(2 * perr[1])})"),
            _NAN,
            _NAN,
        )
    margin = 2.0 * s_fit
    if x0 - margin < 0.0 or x0 + margin > length:
        return (
            (
                f"edge at the end of the line (edge at {_fmt(x0)} px, width sigma "
                f"{_fmt(s_fit)} px, line {_fmt(length)} px): extend the line across the "
                "edge"
            ),
            _NAN,
            _NAN,
        )
    var = s_fit * s_fit - interp_var
    if not var > 0:
        return (f"edge sharper than the sampling resolves (sigma {_fmt(s_fit)} px)", _NAN, _NAN)
    s = math.sqrt(var)
    s_err = perr[3] * s_fit / s
    if s_err > s:
        return f"edge width not resolved (sigma {_fmt(s)} +/- {_fmt(s_err)} px)", _NAN, _NAN
    return None, s, s_err


def _interpolation_variance(coords: np.ndarray, start: np.ndarray, end: np.ndarray) -> float:
    """Blur (variance, px^2 along the line) added by bilinear sampling.

    Linear interpolation at fractional offset ``t`` between two pixel centres returns
    ``f + t (1 - t) / 2 f'' + ...``, i.e. ``f`` blurred by a kernel of variance ``t (1 - t)``
    (to second order). Per axis, projected on the line direction ``u`` and averaged over
    the samples: ``mean(t_r (1 - t_r)) u_r**2 + mean(t_c (1 - t_c)) u_c**2``. Zero for
    samples on pixel centres (axis-aligned lines from integer points at unit spacing);
    at most 1/4, about 1/6 for arbitrary lines.
    """
    d = end - start
    norm = math.hypot(*d)
    if norm == 0:
        return 0.0
    u_r, u_c = d[0] / norm, d[1] / norm
    t_r = coords[0] - np.floor(coords[0])
    t_c = coords[1] - np.floor(coords[1])
    return float(np.mean(t_r * (1 - t_r)) * u_r * u_r + np.mean(t_c * (1 - t_c)) * u_c * u_c)


def _halfmax_cross_check(
    x, deriv, x0, sigma, smoothing, spacing, interp_var=0.0
) -> tuple[float, str | None]:
    """Half-max width of the smoothed derivative, corrected for smoothing and differencing."""
    if not (np.isfinite(x0) and np.isfinite(sigma)):
        return _NAN, "edge not located"
    win = max(3.0 * sigma, 2.0 * smoothing, 2.0 * spacing)
    near = np.flatnonzero(np.abs(x - x0) <= win)
    if near.size == 0:
        return _NAN, "edge outside the line"
    peak = int(near[np.argmax(deriv[near])])
    width, why = _halfmax_width(x, deriv, peak)
    if why:
        return _NAN, why
    var = (width / FWHM_PER_SIGMA) ** 2 - smoothing**2 - spacing**2 / 3.0 - interp_var
    if not var > 0:
        return _NAN, "half-max width is below the added smoothing"
    return FWHM_PER_SIGMA * math.sqrt(var), None
