"""Reading TIFF files (``tifffile``).

Reading rules
-------------
* TIFF (``tifffile``): 2-D images, 3-D stacks and multi-page files. The voxel size comes
  from ImageJ metadata (resolution tags + ``spacing``), OME-XML (``PhysicalSize*``) or
  plain resolution tags (converted to mm for inch/centimetre units) and becomes the layer
  ``scale``. Plain resolution tags carry no slice spacing: a 3-D stack then assumes
  isotropic voxels (``metadata["z_spacing_assumed"] = True``).

TIFF files are written by :mod:`napari_dfct.io.write`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ._common import _as_image, _check_file, _display, _Image, _stem

_RESUNIT_TO_MM = {2: 25.4, 3: 10.0}  # INCH, CENTIMETER


def _rational(value) -> float | None:
    try:
        if isinstance(value, tuple | list):
            num, den = value
            return float(num) / float(den) if den else None
        return float(value)
    except (TypeError, ValueError):  # pragma: no cover - malformed tag
        return None


def _resolution(page) -> tuple[float | None, float | None, int]:
    tags = page.tags
    xres = _rational(tags["XResolution"].value) if "XResolution" in tags else None
    yres = _rational(tags["YResolution"].value) if "YResolution" in tags else None
    unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    return xres, yres, unit


def _ome_sizes(xml: str) -> tuple[dict, str | None]:
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return {}, None
    for elem in root.iter():
        if elem.tag.endswith("}Pixels") or elem.tag == "Pixels":
            sizes = {}
            for ax in "XYZ":
                v = elem.get(f"PhysicalSize{ax}")
                if v is not None:
                    try:
                        f = float(v)
                    except ValueError:
                        continue
                    if f > 0 and math.isfinite(f):
                        sizes[ax] = f
            unit = elem.get("PhysicalSizeXUnit") or ("µm" if sizes else None)
            return sizes, unit
    return {}, None


def _tiff_scale(tif, series, axes: str) -> tuple[tuple[float, ...], dict]:
    """Scale (one entry per axis of ``series``) and metadata from TIFF tags."""
    meta: dict[str, Any] = {}
    sizes: dict[str, float] = {}  # physical size per axis code among X, Y, Z
    page = series.pages[0] if len(series.pages) else tif.pages[0]
    if getattr(tif, "is_ome", False) and tif.ome_metadata:
        sizes, unit = _ome_sizes(tif.ome_metadata)
        if sizes:
            meta["unit"] = unit
            meta["scale_source"] = "ome"
    if not sizes and getattr(tif, "is_imagej", False):
        ij = tif.imagej_metadata or {}
        xres, yres, _ = _resolution(page)
        if xres and yres and xres > 0 and yres > 0:
            sizes = {"X": 1.0 / xres, "Y": 1.0 / yres}
            spacing = _rational(ij.get("spacing", 1.0)) or 1.0
            sizes["Z"] = spacing if spacing > 0 else 1.0
            unit = ij.get("unit")
            meta["unit"] = None if unit in (None, "", "pixel") else str(unit)
            meta["scale_source"] = "imagej"
    if not sizes:
        xres, yres, resunit = _resolution(page)
        plain_default = resunit == 1 and xres == 1 and yres == 1
        if xres and yres and xres > 0 and yres > 0 and not plain_default:
            factor = _RESUNIT_TO_MM.get(resunit, 1.0)
            sizes = {"X": factor / xres, "Y": factor / yres}
            meta["unit"] = "mm" if resunit in _RESUNIT_TO_MM else None
            meta["scale_source"] = "resolution"
            meta["z_spacing_assumed"] = True
            sizes["Z"] = sizes["X"]
    scale = []
    y_seen = False
    for code in axes:
        if code == "X":
            scale.append(sizes.get("X", 1.0))
        elif code == "Y":
            scale.append(sizes.get("Y", 1.0))
            y_seen = True
        elif not y_seen and code in "ZIQ":
            scale.append(sizes.get("Z", 1.0))
        else:
            scale.append(1.0)
    return tuple(scale), meta


def _read_tiff(path: Path) -> list[_Image]:
    import tifffile

    _check_file(path)
    array = None
    shapes: list[tuple] = []
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series
            shapes = [s.shape for s in series]
            if len(series) == 1:
                array, axes = series[0].asarray(), series[0].axes
                scale, meta = _tiff_scale(tif, series[0], axes)
            elif len(shapes[0]) == 2 and len({(s.shape, s.dtype) for s in series}) == 1:
                # pages written one by one: a stack of equally sized slices
                array = np.stack([s.asarray() for s in series])
                axes = "Z" + series[0].axes
                scale2d, meta = _tiff_scale(tif, series[0], series[0].axes)
                scale = (scale2d[-1] if meta.get("z_spacing_assumed") else 1.0, *scale2d)
    except MemoryError:
        raise
    except Exception as exc:  # tifffile.TiffFileError, struct.error, OSError, ...
        raise ValueError(
            f"{_display(path)} is not a readable TIFF file ({type(exc).__name__}: {exc})."
        ) from exc
    if not shapes:
        raise ValueError(f"{_display(path)} is not a readable TIFF file: it holds no images.")
    if array is None:
        desc = ", ".join(str(s) for s in shapes[:6]) + (", ..." if len(shapes) > 6 else "")
        raise ValueError(
            f"{_display(path)} holds {len(shapes)} images of different shapes ({desc}); "
            "expected one 2-D image or one stack of equally sized slices."
        )
    data, scale, limits = _as_image(array, path, scale=scale, axes=axes)
    if data.ndim < 3:
        meta.pop("z_spacing_assumed", None)
    metadata = {"source": str(path), "format": "tiff", **meta}
    return [_Image(data, _stem(path), scale, metadata, limits)]
