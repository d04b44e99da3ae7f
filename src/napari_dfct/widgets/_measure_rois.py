"""The ROIs that come with the data of an image layer, generic ROIs for data that bring
none, and the ROI layer's display (used by the Measure widget)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .. import roi

__all__ = ["data_rois", "default_roi_data"]


def default_roi_data(
    shape2d, scale=(1.0, 1.0), translate=(0.0, 0.0), size: int = roi.DEFAULT_ROI_SIZE
):
    """Generic ROI shapes near the centre of a slice, in that slice's data coordinates,
    for data that bring no ROIs of their own.

    Two ``size`` x ``size`` squares left and right of the centre, a sixth of the width
    apart from it, and the line between their centres. Returns ``(data, shape_types,
    features)`` for :meth:`napari.viewer.Viewer.add_shapes`.
    """
    rows, cols = int(shape2d[0]), int(shape2d[1])
    size = int(max(2, min(size, rows // 3, cols // 4)))
    cr, cc = (rows - 1) / 2.0, (cols - 1) / 2.0
    off = max(cols / 6.0, size * 0.75)
    return roi.ROISet((cr, cc - off), (cr, cc + off), roi_size=size).shapes()


def _geometry_key(*parts) -> tuple[float, ...]:
    """Points and sizes as one hashable cache-key part (exact values)."""
    return tuple(float(v) for p in parts for v in np.ravel(np.asarray(p, np.float64)))


def _source_path(layer) -> str | None:
    src = layer.metadata.get("source")
    if isinstance(src, list | tuple):
        src = src[0] if src else None
    if not src:
        src = getattr(getattr(layer, "source", None), "path", None)
    return str(src) if src else None


def data_rois(layer, z: int | None = None) -> tuple[roi.ROISet | None, str]:
    """The ROIs that come with the data of an image ``layer``, and where they come from.

    The sample's simulation record (``layer.metadata["dfct"]``), else the ``meta.json``
    next to the file the layer was read from (``metadata["source"]`` or napari's
    ``layer.source.path``), read by :class:`napari_dfct.roi.ROISet` (with per-slice ROIs,
    those of slice ``z`` of a volume). ``(None, "")`` when the data bring no ROIs.
    """
    meta, where = layer.metadata.get("dfct"), "the sample's ROIs"
    if not isinstance(meta, dict) or "signal_center" not in meta:
        path = _source_path(layer)
        if path is None:
            return None, ""
        try:
            meta, meta_path = roi.read_meta(Path(path))
        except (ValueError, OSError):
            return None, ""
        where = f"ROIs of {meta_path}"
    if not meta:
        return None, ""
    data = layer.data[0] if layer.multiscale else layer.data
    size = int(data.shape[-1])
    if data.ndim >= 3 and z is not None and isinstance(meta.get("rois"), list):
        try:  # the ROIs of the slice on view
            rois = roi.ROISet.from_meta(meta, int(data.shape[0]), image_size=size, slice=z)
            return rois, f"{where} (slice {rois.slice})"
        except (ValueError, TypeError):
            pass
    try:
        return roi.ROISet.from_meta(meta, image_size=size), where
    except (ValueError, TypeError):
        return None, ""


def _roi_layer_kwargs(features) -> dict[str, Any]:
    """Display of the ROI layer: the sample's colours (one home for them)."""
    from .._sample_data import ROI_COLORS

    return {"edge_color": [ROI_COLORS[r] for r in features["role"]], "face_color": "transparent"}
