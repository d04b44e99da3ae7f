"""Reference metrics: PSNR and SSIM of a slice against a streak-free reference slice."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import _NAN, _as_image2d

__all__ = ["psnr", "reference_metrics", "ssim"]


def _reference_pair(image2d, reference2d, data_range):
    """Validate an (image, reference) pair once: ``(image, reference, data_range, None)``
    or ``(None, None, None, reason)``. Float32 pairs stay float32 (SSIM is then faster and
    agrees with float64 to ~1e-10); anything else becomes float64."""
    arr, why = _as_image2d(image2d)
    if arr is None:
        return None, None, None, why
    ref, why = _as_image2d(reference2d)
    if ref is None:
        return None, None, None, f"reference: {why}"
    if arr.shape != ref.shape:
        return (
            None,
            None,
            None,
            f"reference shape {ref.shape} differs from image shape {arr.shape}",
        )
    dtype = np.float32 if arr.dtype == ref.dtype == np.float32 else np.float64
    arr = np.asarray(arr, dtype=dtype)
    ref = np.asarray(ref, dtype=dtype)
    if not np.isfinite(arr).all():
        return None, None, None, "image contains non-finite pixels"
    if not np.isfinite(ref).all():
        return None, None, None, "reference contains non-finite pixels"
    if data_range is None:
        data_range = float(ref.max()) - float(ref.min())
    data_range = float(data_range)
    if not data_range > 0 or not np.isfinite(data_range):
        return None, None, None, "reference is constant (data range 0)"
    return arr, ref, data_range, None


def _psnr(arr, ref, dr) -> float:
    diff = np.subtract(arr, ref, dtype=np.float64)
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(dr * dr / mse))


def _ssim(arr, ref, dr, **kwargs) -> tuple[float, str | None]:
    from skimage.metrics import structural_similarity

    win = kwargs.get("win_size") or 7
    if min(arr.shape) < win:
        return _NAN, f"image smaller than the SSIM window ({win} px)"
    return float(structural_similarity(ref, arr, data_range=dr, **kwargs)), None


def psnr(
    image2d: Any, reference2d: Any, data_range: float | None = None, *, return_reason: bool = False
):
    """Peak signal-to-noise ratio (dB) of a slice against a reference slice.

    ``10 log10(data_range**2 / MSE)``, as ``skimage.metrics.peak_signal_noise_ratio``
    (a test checks the agreement), with ``data_range = max(reference) - min(reference)``
    unless given; the MSE is accumulated in float64.

    Returns
    -------
    float, or (float, str or None) with ``return_reason=True``
        ``inf`` for identical images; NaN (with a reason) for mismatched shapes, non-2-D
        input, non-finite pixels or a constant reference.
    """
    arr, ref, dr, why = _reference_pair(image2d, reference2d, data_range)
    value = _NAN if why else _psnr(arr, ref, dr)
    return (value, why) if return_reason else value


def ssim(
    image2d: Any,
    reference2d: Any,
    data_range: float | None = None,
    *,
    return_reason: bool = False,
    **kwargs,
):
    """Structural similarity of a slice against a reference slice.

    ``skimage.metrics.structural_similarity`` (7x7 uniform window by default; ``kwargs``
    are passed on) with ``data_range = max(reference) - min(reference)`` unless given.

    Returns
    -------
    float, or (float, str or None) with ``return_reason=True``
        1 for identical images; NaN (with a reason) for mismatched shapes, images smaller
        than the window, non-2-D input, non-finite pixels or a constant reference.
    """
    arr, ref, dr, why = _reference_pair(image2d, reference2d, data_range)
    value, why = (_NAN, why) if why else _ssim(arr, ref, dr, **kwargs)
    return (value, why) if return_reason else value


def reference_metrics(
    image2d: Any, reference2d: Any, data_range: float | None = None
) -> dict[str, Any]:
    """PSNR and SSIM against a reference, with reasons: ``{"psnr", "ssim", "psnr_reason",
    "ssim_reason"}``. The pair is validated once. These read the whole slice and do not
    depend on the ROIs, so interactive callers cache them per (layer, slice, reference)."""
    arr, ref, dr, why = _reference_pair(image2d, reference2d, data_range)
    if why:
        return {"psnr": _NAN, "ssim": _NAN, "psnr_reason": why, "ssim_reason": why}
    s, sr = _ssim(arr, ref, dr)
    return {"psnr": _psnr(arr, ref, dr), "ssim": s, "psnr_reason": None, "ssim_reason": sr}
