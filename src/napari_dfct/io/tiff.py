"""Reading TIFF files (``tifffile``).

Reading rules
-------------
* TIFF (``tifffile``): 2-D images, 3-D stacks and multi-page files. The voxel size comes
  from ImageJ metadata (resolution tags + ``spacing``), OME-XML (``PhysicalSize*``) or
  plain resolution tags (converted to mm for inch/centimetre units) and becomes the layer
  ``scale``. Plain resolution tags carry no slice spacing: a 3-D stack then assumes
  isotropic voxels (``metadata["z_spacing_assumed"] = True``).
* Before any image data are read, :func:`open_tiff` checks the file's structure
  (:mod:`~napari_dfct.io._tiff_check`): a file whose directories, tag values or strips end
  beyond its last byte, whose pages are fewer than its ImageJ/OME/tifffile metadata
  declare, or whose declared size exceeds the available memory is refused with one line.
* Samples stored as planes (``S`` before ``Y``) of floating-point data are slices: plain
  ``tifffile.imwrite`` stores a float stack of 3 or 4 slices as planar RGB(A). Integer
  samples, and interleaved samples of any type, are a colour image and are refused.

TIFF files are written by :mod:`napari_dfct.io.write`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ._common import _as_image, _check_file, _check_fits, _check_form, _display, _Image, _stem
from ._tiff_check import check_layout, check_pages

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


def _not_readable(path: Path, exc: Exception) -> ValueError:
    return ValueError(
        f"{_display(path)} is not a readable TIFF file ({type(exc).__name__}: {exc})."
    )


def open_tiff(path: Path):
    """An open :class:`tifffile.TiffFile` of ``path`` once its structure passed the checks
    of :mod:`~napari_dfct.io._tiff_check` (the caller closes it).

    Raises
    ------
    ValueError
        A file that is not a TIFF, or whose pages, strips or declared images end beyond
        its last byte (one line, naming the file and what is wrong).
    """
    import tifffile

    n_chain = check_layout(path)
    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:  # tifffile.TiffFileError, struct.error, OSError, ...
        raise _not_readable(path, exc) from exc
    try:
        check_pages(tif, path, n_chain)
    except ValueError:
        tif.close()
        raise
    except Exception as exc:
        tif.close()
        raise _not_readable(path, exc) from exc
    return tif


def _image_axes(series) -> str:
    """The axis codes of ``series``, with samples stored as planes of floating-point data
    (tifffile writes a float stack of 3 or 4 slices as planar RGB) taken as slices.

    Colour images hold integer samples; interleaved samples (``...YXS``) stay colour.
    """
    axes = series.axes
    planar = "S" in axes and "Y" in axes and axes.index("S") < axes.index("Y")
    if planar and series.dtype.kind == "f":
        return axes.replace("S", "Z")
    return axes


def _choose(tif, series) -> tuple | None:
    """``(series to read, shape, axes, scale, metadata)`` of the image in ``tif``, or
    None when its series are not one image or one stack of equally sized slices."""
    if len(series) == 1:
        axes = _image_axes(series[0])
        scale, meta = _tiff_scale(tif, series[0], axes)
        return series[:1], tuple(series[0].shape), axes, scale, meta
    if len(series[0].shape) == 2 and len({(s.shape, s.dtype) for s in series}) == 1:
        # pages written one by one: a stack of equally sized slices
        scale2d, meta = _tiff_scale(tif, series[0], series[0].axes)
        scale = (scale2d[-1] if meta.get("z_spacing_assumed") else 1.0, *scale2d)
        return series, (len(series), *series[0].shape), "Z" + series[0].axes, scale, meta
    return None


def _read_tiff(path: Path) -> list[_Image]:
    _check_file(path)
    with open_tiff(path) as tif:
        try:
            series = tif.series
            shapes = [s.shape for s in series]
            chosen = _choose(tif, series) if shapes else None
        except Exception as exc:  # tifffile.TiffFileError, struct.error, OSError, ...
            raise _not_readable(path, exc) from exc
        if not shapes:
            raise ValueError(f"{_display(path)} is not a readable TIFF file: it holds no images.")
        if chosen is None:
            desc = ", ".join(str(s) for s in shapes[:6]) + (", ..." if len(shapes) > 6 else "")
            raise ValueError(
                f"{_display(path)} holds {len(shapes)} images of different shapes ({desc}); "
                "expected one 2-D image or one stack of equally sized slices."
            )
        parts, shape, axes, scale, meta = chosen
        # the declared form and size, before anything is allocated
        _check_form(_display(path), shape, parts[0].dtype, axes)
        _check_fits(_display(path), math.prod(shape), parts[0].dtype, copies=int(len(parts) > 1))
        try:
            arrays = [s.asarray() for s in parts]
        except MemoryError:
            raise
        except Exception as exc:  # tifffile.TiffFileError, struct.error, OSError, ...
            raise _not_readable(path, exc) from exc
    array = np.stack(arrays) if len(parts) > 1 else arrays[0]
    data, scale, limits = _as_image(array, path, scale=scale, axes=axes)
    if data.ndim < 3:
        meta.pop("z_spacing_assumed", None)
    metadata = {"source": str(path), "format": "tiff", **meta}
    return [_Image(data, _stem(path), scale, metadata, limits)]
