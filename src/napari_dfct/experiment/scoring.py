"""Scoring the grid's test set: every test slice, and the run's value as the median.

A grid's test volume holds several slices, e.g. 16 independent simulated specimens. Each
image to score (a run's prediction, or the input, target and truth for
``reference.json``) is measured on **every** test slice with that slice's own ROIs
(:func:`measure_slice`); the value of each metric is the **median over the slices** with
a finite value (:func:`aggregate`), and the per-slice values are kept (``per_slice``).

Metrics per slice: the classic CNR, FWHM and whole-slice PSNR/SSIM against the truth and
the target; with a truth, the error CNR; with a truth and a body mask, PSNR, SSIM and RMSE
inside the body (:mod:`napari_dfct.metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ._util import json_safe, to_float

__all__ = ["SLICE_KEYS", "aggregate", "measure_slice", "measure_slices"]

#: Per-slice values kept in ``per_slice`` and summarised by their median over slices.
SLICE_KEYS = (
    "cnr",
    "cnr_stderr",
    "fwhm",
    "fwhm_stderr",
    "error_cnr",
    "psnr",
    "ssim",
    "psnr_body",
    "ssim_body",
    "rmse_body",
    "psnr_target",
    "ssim_target",
    "signal_mean",
    "signal_std",
    "background_mean",
    "background_std",
    "signal_error_std",
    "background_error_std",
)


def measure_slice(
    image: np.ndarray,
    roi: dict,
    truth: np.ndarray | None = None,
    target: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> dict:
    """All metrics of one 2-D slice.

    :func:`napari_dfct.metrics.measure` with ``reference=truth`` (``psnr``, ``ssim``,
    ``error_cnr``) and ``mask`` (``psnr_body``, ``ssim_body``, ``rmse_body``), plus
    ``psnr_target``/``ssim_target`` against the target (:func:`napari_dfct.metrics.psnr`,
    :func:`~napari_dfct.metrics.ssim`). PSNR/SSIM use the reference's range (max - min;
    inside the mask for the body metrics) as ``data_range``, so every image compared with
    one reference is scored on one scale. Non-finite values become None (strict JSON).
    """
    from .. import metrics

    image = np.asarray(image, dtype=np.float32)
    m = dict(
        metrics.measure(
            image,
            roi["signal_center"],
            roi["background_center"],
            line=roi["line"],
            size=roi["roi_size"],
            reference=truth,
            mask=mask if truth is not None else None,
        )
    )
    if truth is None:
        m["psnr"] = m["ssim"] = None
    if target is None:
        m["psnr_target"] = m["ssim_target"] = None
    else:
        m["psnr_target"] = float(metrics.psnr(image, target))
        m["ssim_target"] = float(metrics.ssim(image, target))
    return json_safe(m)


def aggregate(per_slice: Sequence[dict], keys: Sequence[str] = SLICE_KEYS) -> dict:
    """The median over slices of each of ``keys``, over the slices where it is finite.

    Returns ``{key: median}`` (NaN where no slice has a finite value) plus
    ``"slices_undefined"``: ``{key: number of slices without a finite value}`` for the
    keys that have some (an empty dict when every value is defined). Left-out slices are
    not imputed: a metric that fails on the hardest slices has a median over the others,
    and ``slices_undefined`` says so.
    """
    out: dict = {}
    undefined = {}
    for key in keys:
        vals = np.array([to_float(e.get(key)) for e in per_slice], dtype=np.float64)
        finite = vals[np.isfinite(vals)]
        out[key] = float(np.median(finite)) if finite.size else math.nan
        if finite.size < vals.size:
            undefined[key] = int(vals.size - finite.size)
    out["slices_undefined"] = undefined
    return out


def _slice_of(volume: np.ndarray | None, k: int) -> np.ndarray | None:
    if volume is None:
        return None
    volume = np.asarray(volume)
    return volume if volume.ndim == 2 else volume[k]


def measure_slices(
    images: np.ndarray,
    rois: Sequence[dict] | dict,
    truth: np.ndarray | None = None,
    target: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    representative: int | None = None,
) -> dict:
    """Measure every slice of ``images`` with its own ROIs; medians and per-slice values.

    Parameters
    ----------
    images : (N, H, W) or (H, W) array
        The image to score on each test slice (a 2-D image is one slice).
    rois : list of dict, or dict
        One ROI dict per slice (:meth:`napari_dfct.roi.ROISet.to_dict`), or one for all.
    truth, target, mask : array, optional
        Same shape as ``images`` (a 2-D ``mask`` applies to every slice).
    representative : int, optional
        The slice shown in figures (recorded as ``"slice"``).

    Returns
    -------
    dict
        The median of each of :data:`SLICE_KEYS` over the slices (:func:`aggregate`),
        ``slices_undefined``, ``"n_slices"``, ``"slice"`` and ``"per_slice"``: one dict
        per slice with ``"slice"`` (its index), the values of :data:`SLICE_KEYS` and the
        slice's ``"reason"``. Strict JSON (non-finite values are None).
    """
    images = np.asarray(images, dtype=np.float32)
    n = 1 if images.ndim == 2 else images.shape[0]
    roi_list = [rois] * n if isinstance(rois, dict) else list(rois)
    if len(roi_list) != n:
        raise ValueError(f"{len(roi_list)} ROI sets for {n} test slices")
    per_slice = []
    for k in range(n):
        m = measure_slice(
            images if images.ndim == 2 else images[k],
            roi_list[k],
            truth=_slice_of(truth, k),
            target=_slice_of(target, k),
            mask=_slice_of(mask, k),
        )
        entry = {"slice": k, **{key: m.get(key) for key in SLICE_KEYS}, "reason": m.get("reason")}
        per_slice.append(entry)
    record = aggregate(per_slice)
    record.update(n_slices=n, slice=representative, per_slice=per_slice)
    return json_safe(record)
