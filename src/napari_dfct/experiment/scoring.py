"""Scoring one 2-D slice of the grid's test set: CNR, FWHM, PSNR and SSIM.

Used for the reference images (input, target, truth) when a grid is prepared and for the
prediction of every run.
"""

from __future__ import annotations

import numpy as np

from ._util import json_safe

__all__ = ["measure_slice"]


def measure_slice(image: np.ndarray, roi: dict, truth: np.ndarray | None = None,
                  target: np.ndarray | None = None) -> dict:
    """CNR, FWHM and (against ``truth`` / ``target``) PSNR and SSIM of one 2-D slice.

    :func:`napari_dfct.metrics.measure` with ``reference=truth`` (``psnr``, ``ssim``), plus
    ``psnr_target``/``ssim_target`` against the target (:func:`napari_dfct.metrics.psnr`,
    :func:`~napari_dfct.metrics.ssim`). PSNR/SSIM use the reference's range (max - min) as
    ``data_range``, so every image compared with one reference is scored on one scale.
    Non-finite values become None (strict JSON).
    """
    from .. import metrics

    image = np.asarray(image, dtype=np.float32)
    m = dict(metrics.measure(image, roi["signal_center"], roi["background_center"],
                             line=roi["line"], size=roi["roi_size"], reference=truth))
    if truth is None:
        m["psnr"] = m["ssim"] = None
    if target is None:
        m["psnr_target"] = m["ssim_target"] = None
    else:
        m["psnr_target"] = float(metrics.psnr(image, target))
        m["ssim_target"] = float(metrics.ssim(image, target))
    return json_safe(m)
