"""ROI suggestion for simulated volumes: a lung (signal) and an air (background) square."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..roi import roi_size_for  # the rule's home is napari_dfct.roi; re-exported here
from .phantom import LABELS

__all__ = ["roi_size_for", "suggest_rois"]


def _feasible(mask2d: np.ndarray, roi_size: int, margin: int) -> np.ndarray:
    """Centres whose (roi_size + 2*margin) square lies fully inside ``mask2d``."""
    from scipy import ndimage  # on use: the dfct command's help does not load scipy

    half = roi_size // 2 + margin
    fp = 2 * half + 1
    ok = ndimage.minimum_filter(mask2d.astype(np.uint8), size=fp, mode="constant", cval=0)
    return ok.astype(bool)


def _nearest(ok: np.ndarray, point: Sequence[float]) -> tuple[int, int] | None:
    rows, cols = np.nonzero(ok)
    if rows.size == 0:
        return None
    d = (rows - point[0]) ** 2 + (cols - point[1]) ** 2
    i = int(np.argmin(d))
    return int(rows[i]), int(cols[i])


def suggest_rois(
    labels: np.ndarray, roi_size: int | None = None, margin: int | None = None
) -> dict:
    """Lung (signal) and air (background) ROI centres valid in every slice.

    The air ROI is the air square closest to the image centre, in an air cavity inside
    the body when one fits, else in the air outside the body; the lung ROI is the lung
    square closest to the air ROI (so the line between them crosses a lung-air edge).
    Squares of ``roi_size + 2 * margin`` must lie fully in the tissue in all slices; the
    ROI shrinks (by 2 px steps) when none fits.

    Parameters
    ----------
    labels : np.ndarray
        ``(Z, Y, X)`` or ``(Y, X)`` label map of :func:`thorax_phantom`.
    roi_size : int, optional
        ROI side; :func:`roi_size_for` by default.
    margin : int, optional
        Extra pixels of tissue required around each square (2, or 1 below 128 px).

    Returns
    -------
    dict
        ``signal_center``, ``background_center`` ([row, col] ints), ``line``
        ([[r0, c0], [r1, c1]]), ``roi_size`` and ``background_region`` (``"air_cavity"``
        or ``"air"``).
    """
    lab = np.asarray(labels)
    if lab.ndim == 2:
        lab = lab[None]
    size = lab.shape[-1]
    roi = roi_size_for(size) if roi_size is None else int(roi_size)
    if margin is None:
        margin = 2 if size >= 128 else 1
    lung = np.all(lab == LABELS["lung"], axis=0)
    cavity = np.all(lab == LABELS["air_cavity"], axis=0)
    outside = np.all(lab == LABELS["air"], axis=0)
    centre = ((lab.shape[-2] - 1) / 2.0, (lab.shape[-1] - 1) / 2.0)
    while roi >= 2:
        bg, region = _nearest(_feasible(cavity, roi, margin), centre), "air_cavity"
        if bg is None:
            bg, region = _nearest(_feasible(outside, roi, margin), centre), "air"
        sig = _nearest(_feasible(lung, roi, margin), bg) if bg is not None else None
        if bg is not None and sig is not None:
            return {
                "signal_center": [sig[0], sig[1]],
                "background_center": [bg[0], bg[1]],
                "line": [[sig[0], sig[1]], [bg[0], bg[1]]],
                "roi_size": int(roi),
                "background_region": region,
            }
        roi -= 2
    raise ValueError("no lung and air squares fit in this phantom; use a larger size")
