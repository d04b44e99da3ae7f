"""Truth-based metrics: the error CNR, and PSNR, SSIM and RMSE inside a body mask.

Where a streak-free truth exists (simulations), two weaknesses of the classic metrics can
be removed:

* The classic CNR divides the ROI contrast by the ROIs' standard deviations, which hold
  the lung's real texture as well as the streaks and the noise. Smoothing real texture
  lowers them and raises the CNR. The **error CNR** divides the same contrast by the
  standard deviations of the *error* ``e = image - reference`` in the two ROIs:

  ``error_cnr = (mu_signal - mu_background) / sqrt(var(e_signal) + var(e_background))``

  with the means of the image, ``ddof=1`` as in :func:`napari_dfct.metrics.cnr`. Texture
  that the reference has and the image keeps is not error; texture removed by smoothing
  is. It is the paper's CNR with the texture taken out of the noise term.
* Whole-slice PSNR and SSIM are dominated by the air around the body. The ``*_body``
  metrics compare the image with the reference only inside a body mask (``body.tif`` of a
  ``dfct simulate`` folder): the mean squared error is taken over the mask's pixels, and
  the data range is the reference's ``max - min`` **inside the mask**.

SSIM inside the mask: the SSIM map is computed on the **full slice** (scikit-image,
7x7 uniform window, the body data range) and averaged over the mask's pixels, leaving out
the 3-pixel image border as scikit-image's mean SSIM does. So every body pixel is scored
with its real neighbourhood (the windows at the body's outline see the air next to it: the
outline counts as structure), and with a mask that covers the whole slice ``ssim_body``
equals :func:`napari_dfct.metrics.ssim` with the same data range (a test checks this). The
alternative, SSIM of the mask's bounding box, would score air pixels inside the box and
drop the windows' context at the box's edge.

Degenerate data never raises: the value is NaN and a reason says why (mismatched shapes,
an empty mask, a constant reference inside the mask, non-finite pixels). Identical images
give ``inf`` (error CNR with a non-zero contrast, PSNR) and RMSE 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._common import _NAN, _as_image2d
from .cnr import ROIStats, roi_stats

__all__ = ["ErrorCNRResult", "body_metrics", "error_cnr", "psnr_body", "rmse_body", "ssim_body"]

_SSIM_WINDOW = 7


# --------------------------------------------------------------------------------------
# error CNR
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ErrorCNRResult:
    """The error CNR of a slice against a reference.

    Attributes
    ----------
    error_cnr : float
        ``(mu_s - mu_b) / sqrt(var(e_s) + var(e_b))``, sign kept; ``+-inf`` when both
        errors have zero variance and the contrast is not zero; NaN when undefined.
    signal, background : ROIStats
        Statistics of the image in the two ROIs (their means give the contrast).
    signal_error, background_error : ROIStats
        Statistics of ``image - reference`` in the two ROIs (their variances are the
        noise term).
    reason : str or None
        Why ``error_cnr`` is NaN; None when it is defined.
    ddof : int
        Degrees-of-freedom correction of the variances.
    """

    error_cnr: float
    signal: ROIStats
    background: ROIStats
    signal_error: ROIStats
    background_error: ROIStats
    reason: str | None = None
    ddof: int = 1

    @property
    def contrast(self) -> float:
        """``mu_signal - mu_background`` of the image."""
        return self.signal.mean - self.background.mean


def error_cnr(
    image2d: Any,
    reference2d: Any,
    signal_center: Any,
    background_center: Any,
    size: Any = 30,
    *,
    background_size: Any = None,
    ddof: int = 1,
) -> ErrorCNRResult:
    """Contrast-to-noise ratio with the error against a reference as the noise.

    ``error_cnr = (mu_signal - mu_background) / sqrt(var(e_signal) + var(e_background))``
    where the means are the image's in the two ROIs and ``e = image - reference``; the
    variances are ``sum((e - mean(e))**2) / (n - ddof)`` per ROI (``ddof=1``: the same
    convention as :func:`napari_dfct.metrics.cnr`). A constant error inside an ROI (an
    offset) does not count; only its fluctuations do.

    Parameters
    ----------
    image2d, reference2d : (M, N) array
        The slice and the streak-free reference (e.g. the simulation's truth), same shape.
    signal_center, background_center : (row, col)
        ROI centres (pixels); see :func:`napari_dfct.metrics.roi_bounds`.
    size, background_size : int or (int, int), optional
        ROI sizes as in :func:`napari_dfct.metrics.cnr` (default 30; the background ROI
        defaults to ``size``).
    ddof : int, optional
        Degrees-of-freedom correction of the variances (default 1).

    Returns
    -------
    ErrorCNRResult
        NaN with a reason for mismatched shapes, an ROI outside the image or holding
        non-finite pixels, a non-2-D input, or zero contrast with zero error.

    Examples
    --------
    A contrast of 3 against an error of standard deviation 1 in both ROIs:

    >>> import numpy as np
    >>> truth = np.zeros((100, 100))
    >>> truth[:, 50:] = 3.0
    >>> img = truth + np.random.default_rng(0).normal(0.0, 1.0, truth.shape)
    >>> res = error_cnr(img, truth, (50, 75), (50, 25))
    >>> bool(1.8 < res.error_cnr < 2.4), res.signal.n
    (True, 900)
    """
    bsize = size if background_size is None else background_size
    sig = roi_stats(image2d, signal_center, size, ddof=ddof, name="signal ROI")
    bg = roi_stats(image2d, background_center, bsize, ddof=ddof, name="background ROI")
    arr, why = _as_image2d(image2d)
    ref, why_ref = _as_image2d(reference2d)
    if arr is None or ref is None or arr.shape != ref.shape:
        if arr is None:
            reason = why
        elif ref is None:
            reason = f"reference: {why_ref}"
        else:
            reason = f"reference shape {ref.shape} differs from image shape {arr.shape}"
        empty = ROIStats(_NAN, _NAN, 0, sig.center, None, reason=reason)
        empty_b = ROIStats(_NAN, _NAN, 0, bg.center, None, reason=reason)
        return ErrorCNRResult(_NAN, sig, bg, empty, empty_b, reason, ddof)
    err = np.subtract(arr, ref, dtype=np.float64)
    se = roi_stats(err, signal_center, size, ddof=ddof, name="signal ROI of the error")
    be = roi_stats(err, background_center, bsize, ddof=ddof, name="background ROI of the error")
    reasons = list(dict.fromkeys(r for r in (sig.reason, bg.reason) if r))
    # the error's reasons only add what the image's do not say (a NaN in the reference)
    reasons += [r for r, own in ((se.reason, sig.reason), (be.reason, bg.reason)) if r and not own]
    if reasons:
        return ErrorCNRResult(_NAN, sig, bg, se, be, "; ".join(reasons), ddof)
    contrast = sig.mean - bg.mean
    V = se.var + be.var
    if not V > 0:
        if contrast == 0:
            return ErrorCNRResult(
                _NAN, sig, bg, se, be, "zero contrast and zero error in both ROIs", ddof
            )
        return ErrorCNRResult(math.copysign(math.inf, contrast), sig, bg, se, be, None, ddof)
    return ErrorCNRResult(float(contrast / math.sqrt(V)), sig, bg, se, be, None, ddof)


# --------------------------------------------------------------------------------------
# metrics inside a body mask
# --------------------------------------------------------------------------------------
def _body_pair(image2d, reference2d, mask2d, data_range):
    """``(image, reference, mask, data_range, None)`` or ``(None, ..., reason)``."""
    fail = (None, None, None, None)
    arr, why = _as_image2d(image2d)
    if arr is None:
        return (*fail, why)
    ref, why = _as_image2d(reference2d)
    if ref is None:
        return (*fail, f"reference: {why}")
    if arr.shape != ref.shape:
        return (*fail, f"reference shape {ref.shape} differs from image shape {arr.shape}")
    if mask2d is None:
        return (*fail, "no body mask")
    m, why = _as_image2d(mask2d)
    if m is None:
        return (*fail, f"body mask: {why}")
    if m.shape != arr.shape:
        return (*fail, f"body mask shape {m.shape} differs from image shape {arr.shape}")
    m = np.asarray(m != 0)
    if not m.any():
        return (*fail, "body mask is empty")
    dtype = np.float32 if arr.dtype == ref.dtype == np.float32 else np.float64
    arr = np.asarray(arr, dtype=dtype)
    ref = np.asarray(ref, dtype=dtype)
    if not np.isfinite(arr).all():
        return (*fail, "image contains non-finite pixels")
    if not np.isfinite(ref).all():
        return (*fail, "reference contains non-finite pixels")
    if data_range is None:
        inside = ref[m]
        data_range = float(inside.max()) - float(inside.min())
    data_range = float(data_range)
    if not (data_range > 0 and np.isfinite(data_range)):
        return (*fail, "reference is constant inside the body mask (data range 0)")
    return arr, ref, m, data_range, None


def _rmse(arr, ref, m) -> float:
    diff = np.subtract(arr[m], ref[m], dtype=np.float64)
    return float(np.sqrt(np.mean(diff * diff)))


def _psnr_from_rmse(rmse: float, dr: float) -> float:
    return math.inf if rmse == 0.0 else float(20.0 * np.log10(dr / rmse))


def _ssim_masked(arr, ref, m, dr) -> tuple[float, str | None]:
    from skimage.metrics import structural_similarity

    if min(arr.shape) < _SSIM_WINDOW:
        return _NAN, f"image smaller than the SSIM window ({_SSIM_WINDOW} px)"
    _, smap = structural_similarity(ref, arr, data_range=dr, win_size=_SSIM_WINDOW, full=True)
    pad = (_SSIM_WINDOW - 1) // 2
    inner = np.zeros_like(m)
    inner[pad : m.shape[0] - pad, pad : m.shape[1] - pad] = m[
        pad : m.shape[0] - pad, pad : m.shape[1] - pad
    ]
    if not inner.any():
        return _NAN, f"body mask lies within the {pad}-pixel image border"
    return float(np.mean(smap[inner], dtype=np.float64)), None


def body_metrics(
    image2d: Any, reference2d: Any, mask2d: Any, data_range: float | None = None
) -> dict[str, Any]:
    """PSNR, SSIM and RMSE inside a body mask, with reasons.

    Parameters
    ----------
    image2d, reference2d : (M, N) array
        The slice and the reference (e.g. the simulation's truth), same shape.
    mask2d : (M, N) array
        The body mask: non-zero pixels belong to the body (``body.tif`` is uint8 0/1).
    data_range : float, optional
        Default: ``max - min`` of the reference inside the mask.

    Returns
    -------
    dict
        ``{"psnr_body", "ssim_body", "rmse_body", "body_reason", "ssim_body_reason"}``:
        ``body_reason`` says why all three are NaN (None when defined);
        ``ssim_body_reason`` an SSIM-only failure (a slice smaller than the window).
    """
    arr, ref, m, dr, why = _body_pair(image2d, reference2d, mask2d, data_range)
    if why:
        return {
            "psnr_body": _NAN,
            "ssim_body": _NAN,
            "rmse_body": _NAN,
            "body_reason": why,
            "ssim_body_reason": why,
        }
    rmse = _rmse(arr, ref, m)
    s, sr = _ssim_masked(arr, ref, m, dr)
    return {
        "psnr_body": _psnr_from_rmse(rmse, dr),
        "ssim_body": s,
        "rmse_body": rmse,
        "body_reason": None,
        "ssim_body_reason": sr,
    }


def psnr_body(
    image2d: Any,
    reference2d: Any,
    mask2d: Any,
    data_range: float | None = None,
    *,
    return_reason: bool = False,
):
    """PSNR (dB) inside a body mask: ``10 log10(data_range**2 / MSE)`` with the MSE over
    the mask's pixels and ``data_range`` the reference's ``max - min`` inside the mask
    unless given. ``inf`` for images identical inside the mask; NaN (with a reason, with
    ``return_reason=True``) when undefined."""
    arr, ref, m, dr, why = _body_pair(image2d, reference2d, mask2d, data_range)
    value = _NAN if why else _psnr_from_rmse(_rmse(arr, ref, m), dr)
    return (value, why) if return_reason else value


def rmse_body(image2d: Any, reference2d: Any, mask2d: Any, *, return_reason: bool = False):
    """Root-mean-square error against the reference over the mask's pixels (image units);
    0 for images identical inside the mask, NaN (with a reason) when undefined."""
    arr, ref, m, _, why = _body_pair(image2d, reference2d, mask2d, 1.0)
    value = _NAN if why else _rmse(arr, ref, m)
    return (value, why) if return_reason else value


def ssim_body(
    image2d: Any,
    reference2d: Any,
    mask2d: Any,
    data_range: float | None = None,
    *,
    return_reason: bool = False,
):
    """SSIM inside a body mask: the SSIM map of the full slice (7x7 uniform window,
    ``data_range`` the reference's ``max - min`` inside the mask unless given) averaged
    over the mask's pixels outside the 3-pixel image border (see the module docstring)."""
    arr, ref, m, dr, why = _body_pair(image2d, reference2d, mask2d, data_range)
    value, why = (_NAN, why) if why else _ssim_masked(arr, ref, m, dr)
    return (value, why) if return_reason else value
