"""Writing DFCT volumes: TIFF and NumPy files, and the napari writers.

``write_tiff(path, data, attributes)`` and ``write_npy(path, data, attributes)``
    npe2 single-layer image writers.

The CLI uses :func:`write_volume`, which shares the same code.

Writing rules
-------------
Data are written as ``float32``, atomically (a temporary file in the target folder, then
:func:`os.replace`; see :func:`napari_dfct._files.atomic_write`). TIFF files are ImageJ
hyperstacks whose resolution tags and ``spacing`` hold the layer scale, so that reading
them back restores it; volumes too big for a classic TIFF are written as BigTIFF OME-TIFF
with ``PhysicalSize*`` instead. ``.npy`` files hold the array only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write
from ._common import TIFF_EXTENSIONS, _as_image, _display

#: Above this many bytes a TIFF is written as BigTIFF (OME-TIFF) instead of ImageJ TIFF,
#: whose classic TIFF offsets stop at 4 GiB.
BIGTIFF_THRESHOLD = 2**32 - 2**25

_PINT_TO_IMAGEJ = {
    "millimeter": "mm",
    "centimeter": "cm",
    "micrometer": "micron",
    "nanometer": "nm",
    "meter": "m",
    "inch": "inch",
}


def _check_target(path: Path) -> None:
    """Refuse to write ``path`` when its folder is missing or it is a folder itself."""
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(
            f"Cannot write {_display(path)}: the folder {_display(folder)} does not exist."
        )
    if path.is_dir():
        raise ValueError(f"Cannot write {_display(path)}: it is a folder.")


def _scale_for(data: np.ndarray, scale) -> tuple[float, ...]:
    if scale is None:
        return (1.0,) * data.ndim
    try:
        scale = tuple(float(s) for s in scale)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Invalid scale {scale!r}: expected numbers.") from exc
    if len(scale) > data.ndim:
        scale = scale[-data.ndim :]
    elif len(scale) < data.ndim:
        scale = (1.0,) * (data.ndim - len(scale)) + scale
    if not all(math.isfinite(s) and s > 0 for s in scale):
        raise ValueError(f"Invalid scale {scale}: every voxel size must be a positive number.")
    return scale


def _prepare(path: Path, data, scale) -> tuple[np.ndarray, tuple[float, ...]]:
    """Validate data to write; return float32 data and the scale of its kept axes."""
    if hasattr(data, "compute") and not isinstance(data, np.ndarray):
        data = data.compute()  # dask arrays
    full = np.asarray(data)
    arr, kept_scale, _ = _as_image(
        full,
        f"The data to write to {path}",
        scale=_scale_for(full, scale),
        warn_nonfinite=False,
    )
    return arr, kept_scale


def _write_tiff(path: Path, data: np.ndarray, scale: tuple[float, ...], unit: str | None) -> Path:
    import tifffile

    sx, sy = scale[-1], scale[-2]
    sz = scale[0] if data.ndim == 3 else None
    _check_target(path)
    with atomic_write(path) as fh:
        if data.nbytes > BIGTIFF_THRESHOLD:
            md: dict[str, Any] = {
                "axes": "ZYX" if data.ndim == 3 else "YX",
                "PhysicalSizeX": sx,
                "PhysicalSizeY": sy,
            }
            if sz is not None:
                md["PhysicalSizeZ"] = sz
            if unit:
                for ax in "XYZ":
                    md[f"PhysicalSize{ax}Unit"] = unit
            tifffile.imwrite(fh, data, ome=True, bigtiff=True, metadata=md)
        else:
            md = {"axes": "ZYX" if data.ndim == 3 else "YX"}
            if sz is not None:
                md["spacing"] = sz
            if unit:
                md["unit"] = unit
            tifffile.imwrite(fh, data, imagej=True, resolution=(1.0 / sx, 1.0 / sy), metadata=md)
    return path


def _write_npy(path: Path, data: np.ndarray) -> Path:
    _check_target(path)
    with atomic_write(path) as fh:
        np.save(fh, data, allow_pickle=False)
    return path


def _with_suffix(path: Path, default: str) -> Path:
    return path if path.suffix else path.with_name(path.name + default)


def write_volume(path, data, *, scale=None, unit: str | None = None) -> Path:
    """Write a 2-D/3-D image as float32, by extension (``.tif``, ``.tiff``, ``.npy``).

    Parameters
    ----------
    path : str or Path
        Target file; its folder must exist. The file is replaced atomically.
    data : array_like
        Grayscale (Y, X) or (Z, Y, X) data (singleton axes are squeezed).
    scale : sequence of float, optional
        Voxel size per axis, kept by TIFF (ImageJ resolution + spacing); ``.npy`` files
        hold the data only.
    unit : str, optional
        Unit of ``scale`` written to TIFF metadata (e.g. ``"mm"``).

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in TIFF_EXTENSIONS + (".npy",):
        raise ValueError(
            f"Cannot write {_display(path)}: unsupported extension {ext or '(none)'!r}; "
            "use .tif, .tiff or .npy."
        )
    arr, scale = _prepare(path, data, scale)
    if ext == ".npy":
        return _write_npy(path, arr)
    return _write_tiff(path, arr, scale, unit)


def _layer_unit(attributes: dict) -> str | None:
    meta = attributes.get("metadata") or {}
    unit = meta.get("unit") if isinstance(meta, dict) else None
    if unit:
        return str(unit)
    units = attributes.get("units")
    if units:
        names = {str(u) for u in units}
        if len(names) == 1:
            name = names.pop()
            if name != "pixel":
                return _PINT_TO_IMAGEJ.get(name, name)
    return None


def _layer_array(data, attributes: dict):
    if attributes.get("rgb"):
        raise ValueError("Cannot save an RGB layer: DFCT files hold grayscale data only.")
    if attributes.get("multiscale") and isinstance(data, list | tuple):
        data = data[0]
    return data


def write_tiff(path: str, data: Any, attributes: dict) -> list[str]:
    """npe2 writer: save one image layer as a float32 ImageJ TIFF keeping its scale.

    Returns
    -------
    list of str
        The written path (``.tif`` is appended when ``path`` has no extension).
    """
    attributes = attributes or {}
    target = _with_suffix(Path(path), ".tif")
    data = _layer_array(data, attributes)
    out = write_volume(target, data, scale=attributes.get("scale"), unit=_layer_unit(attributes))
    return [str(out)]


def write_npy(path: str, data: Any, attributes: dict) -> list[str]:
    """npe2 writer: save one image layer as a float32 ``.npy`` file (data only).

    Returns
    -------
    list of str
        The written path (``.npy`` is appended when ``path`` has no extension).
    """
    attributes = attributes or {}
    target = _with_suffix(Path(path), ".npy")
    data = _layer_array(data, attributes)
    out = write_volume(target, data, scale=attributes.get("scale"))
    return [str(out)]
