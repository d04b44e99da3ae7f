"""Reading DICOM files, lists of files and folders of slices (``pydicom``).

pydicom (the ``dicom`` extra) is imported only when a DICOM file is read; recognising a
DICOM file (:func:`is_dicom_file`) needs only its signature.

Reading rules
-------------
* DICOM (``pydicom``, the ``dicom`` extra): a single file, a list of files or a folder
  holding one series. Slices are sorted by ``ImagePositionPatient`` projected on the slice
  normal (the cross product of the two ``ImageOrientationPatient`` direction cosines),
  falling back to ``InstanceNumber``. ``RescaleSlope``/``RescaleIntercept`` are applied
  per slice (CT data come out in Hounsfield units). ``PixelSpacing`` and the spacing of
  the sorted slice positions give ``scale = (z, row, col)`` in mm. A folder that holds
  several series (several ``SeriesInstanceUID``) is an error that lists them: pass
  ``series=`` to :func:`~napari_dfct.io.read_volume`/:func:`read_dicom`, or give each
  series its own folder. No patient-identifying attribute is copied into the layer
  metadata.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ._common import (
    DICOM_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    LayerData,
    MissingDependencyError,
    _as_image,
    _check_file,
    _display,
    _Image,
    _stem,
)

#: How many extension-less files of a folder :func:`~napari_dfct.io.napari_get_reader`
#: sniffs for the DICOM signature before giving up (keeps the check cheap on large folders).
_SNIFF_LIMIT = 64

_DICOM_HINT = "Install the DICOM support with `pip install napari-dfct[dicom]` (it adds pydicom)."


def _import_pydicom(source):
    try:
        import pydicom
    except ImportError as exc:
        raise MissingDependencyError(
            f"Cannot read {_display(source)}: reading DICOM needs pydicom, which is not "
            f"installed. {_DICOM_HINT}"
        ) from exc
    return pydicom


def is_dicom_file(path) -> bool:
    """Whether ``path`` is a file with the DICOM signature or a DICOM extension.

    Only the 4 bytes after the 128-byte preamble are read; pydicom is not needed.
    """
    p = Path(path)
    if p.name.startswith("."):
        return False
    if p.suffix.lower() in DICOM_EXTENSIONS:
        return p.is_file()
    return _has_dicom_magic(p)


def _has_dicom_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _folder_files(folder: Path) -> list[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise ValueError(f"Cannot list folder {_display(folder)}: {exc}.") from exc
    return [p for p in entries if not p.name.startswith(".") and p.is_file()]


def _folder_has_dicom(folder: Path) -> bool:
    try:
        files = _folder_files(folder)
    except ValueError:
        return False
    if any(p.suffix.lower() in DICOM_EXTENSIONS for p in files):
        return True
    others = [p for p in files if p.suffix.lower() not in SUPPORTED_EXTENSIONS]
    return any(_has_dicom_magic(p) for p in others[:_SNIFF_LIMIT])


def _dcmread(pydicom, path: Path):
    _check_file(path)
    try:
        ds = pydicom.dcmread(str(path), force=True)
    except Exception as exc:  # InvalidDicomError, struct errors, EOF, ...
        raise ValueError(
            f"{_display(path)} is not a readable DICOM file ({type(exc).__name__}: {exc})."
        ) from exc
    return ds


def _float(value, default: float | None = None) -> float | None:
    if value is None or value == "":
        return default
    try:
        if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return default


def _floats(value, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        vals = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if len(vals) != n or not all(math.isfinite(v) for v in vals):
        return None
    return vals


def _str(value) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _pixel_spacing(ds) -> tuple[float, ...] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        ps = _floats(ds.get(keyword), 2)
        if ps and ps[0] > 0 and ps[1] > 0:
            return ps
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        try:
            ps = _floats(shared[0].PixelMeasuresSequence[0].PixelSpacing, 2)
        except (AttributeError, IndexError):
            ps = None
        if ps and ps[0] > 0 and ps[1] > 0:
            return ps
    return None


def _rescale(ds) -> tuple[float, float]:
    slope = _float(ds.get("RescaleSlope"), None)
    intercept = _float(ds.get("RescaleIntercept"), None)
    if slope is None and intercept is None:
        shared = ds.get("SharedFunctionalGroupsSequence")
        if shared:
            try:
                pvt = shared[0].PixelValueTransformationSequence[0]
                slope = _float(pvt.get("RescaleSlope"), None)
                intercept = _float(pvt.get("RescaleIntercept"), None)
            except (AttributeError, IndexError):
                pass
    if slope is None or slope == 0:
        slope = 1.0
    return slope, intercept if intercept is not None else 0.0


def _pixels(ds, path: Path) -> np.ndarray:
    if "PixelData" not in ds:
        raise ValueError(f"{_display(path)} is a DICOM file without image data.")
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if spp > 1 or not photometric.startswith("MONOCHROME"):
        raise ValueError(
            f"{_display(path)} is a colour DICOM image ({photometric}, {spp} samples per "
            "pixel); DFCT data must be grayscale."
        )
    try:
        arr = ds.pixel_array
    except Exception as exc:
        syntax = ""
        meta = getattr(ds, "file_meta", None)
        if meta is not None and "TransferSyntaxUID" in meta:
            ts = meta.TransferSyntaxUID
            syntax = f" (transfer syntax {getattr(ts, 'name', ts)})"
        raise ValueError(
            f"Cannot decode the pixel data of {_display(path)}{syntax}: {exc}. Compressed "
            "DICOM needs a decoder plugin for pydicom, e.g. `pip install pylibjpeg "
            "pylibjpeg-libjpeg pylibjpeg-openjpeg` or `pip install python-gdcm`."
        ) from exc
    return np.asarray(arr)


def _series_key(ds) -> str:
    return _str(ds.get("SeriesInstanceUID")) or "<no SeriesInstanceUID>"


def _describe_series(key: str, members: list) -> str:
    ds = members[0][1]
    number = _str(ds.get("SeriesNumber"))
    desc = _str(ds.get("SeriesDescription"))
    modality = _str(ds.get("Modality")) or "?"
    label = f"#{number} " if number else ""
    label += f"'{desc}'" if desc else "(no description)"
    return f"{label} [{modality}, {len(members)} image(s), SeriesInstanceUID {key}]"


def _dicom_metadata(ds, source, n_files: int) -> dict:
    modality = _str(ds.get("Modality"))
    rescale_type = _str(ds.get("RescaleType")) or ("HU" if modality == "CT" else None)
    return {
        "source": str(source),
        "format": "dicom",
        "modality": modality,
        "series_description": _str(ds.get("SeriesDescription")),
        "series_number": _str(ds.get("SeriesNumber")),
        "series_instance_uid": _str(ds.get("SeriesInstanceUID")),
        "study_description": _str(ds.get("StudyDescription")),
        "manufacturer": _str(ds.get("Manufacturer")),
        "rescale_type": rescale_type,
        "unit": "mm",
        "n_files": n_files,
    }


def _window(ds) -> tuple[float, float] | None:
    center = _float(ds.get("WindowCenter"))
    width = _float(ds.get("WindowWidth"))
    if center is None or width is None or not width > 0:
        return None
    return center - width / 2.0, center + width / 2.0


def _sort_slices(members: list, source) -> tuple[list, float, dict]:
    """Sort (path, dataset) pairs along the slice normal; return them and the spacing."""
    info: dict[str, Any] = {}
    orientations = [_floats(ds.get("ImageOrientationPatient"), 6) for _, ds in members]
    positions = [_floats(ds.get("ImagePositionPatient"), 3) for _, ds in members]
    if all(o is not None for o in orientations) and all(p is not None for p in positions):
        iop = np.asarray(orientations, dtype=float)
        if np.abs(iop - iop[0]).max() > 1e-3:
            raise ValueError(
                f"The DICOM slices of {_display(source)} have different orientations "
                "(ImageOrientationPatient); they do not form one volume."
            )
        row, col = iop[0, :3], iop[0, 3:]
        normal = np.cross(row, col)
        norm = np.linalg.norm(normal)
        if norm < 1e-6:
            raise ValueError(
                f"{_display(source)}: ImageOrientationPatient {orientations[0]} is degenerate."
            )
        normal /= norm
        proj = np.asarray(positions, dtype=float) @ normal
        order = np.argsort(proj, kind="stable")
        proj = proj[order]
        members = [members[i] for i in order]
        info["slice_order"] = "ImagePositionPatient"
        info["image_orientation"] = [float(v) for v in iop[0]]
        info["slice_normal"] = [float(v) for v in normal]
        info["slice_positions"] = [float(v) for v in proj]
        info["origin"] = [float(v) for v in positions[order[0]]]
        steps = np.diff(proj)
        if steps.min() < 1e-4:
            dup = int(np.count_nonzero(steps < 1e-4))
            raise ValueError(
                f"{_display(source)}: {dup + 1} or more DICOM slices share the same position "
                "(several acquisitions, echoes or time points in one series, or duplicated "
                "files); keep one image per position."
            )
        spacing = float(np.median(steps))
        if steps.max() - steps.min() > max(0.01 * spacing, 1e-3):
            warnings.warn(
                f"{_display(source)}: the DICOM slice spacing varies from "
                f"{steps.min():.4g} to {steps.max():.4g} mm (missing slices?); the layer "
                f"uses the median, {spacing:.4g} mm.",
                UserWarning,
                stacklevel=4,
            )
        info["slice_spacing_source"] = "ImagePositionPatient"
        return members, spacing, info
    numbers = [_float(ds.get("InstanceNumber")) for _, ds in members]
    known = [n for n in numbers if n is not None]
    if len(members) > 1 and len(known) < len(numbers):
        raise ValueError(
            f"{_display(source)}: the DICOM slices have neither ImagePositionPatient/"
            "ImageOrientationPatient nor InstanceNumber, so their order is unknown."
        )
    if len(members) > 1:
        by_number = sorted(range(len(members)), key=lambda i: known[i])
        members = [members[i] for i in by_number]
        info["slice_order"] = "InstanceNumber"
        info["slice_spacing_source"] = "SpacingBetweenSlices/SliceThickness"
    return members, _nominal_spacing(members[0][1]), info


def _nominal_spacing(ds) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        v = _float(ds.get(keyword))
        if v is not None and v > 0:
            return abs(v)
    return 1.0


def _dicom_image(members: list, source, name: str) -> _Image:
    """Build one image from (path, dataset) pairs of one series."""
    scale: tuple[float, ...]
    first_path, first = members[0]
    if len(members) == 1:
        # one file: a 2-D slice or a multi-frame volume
        raw = _pixels(first, first_path)
        slope, intercept = _rescale(first)
        values = raw.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        ps = _pixel_spacing(first)
        meta = _dicom_metadata(first, source, 1)
        meta.update(rescale_slope=slope, rescale_intercept=intercept)
        if ps is None:
            ps = (1.0, 1.0)
            meta["unit"] = None
            meta["pixel_spacing_missing"] = True
        if values.ndim == 3:
            scale = (_nominal_spacing(first), *ps)
            meta["n_frames"] = int(values.shape[0])
        else:
            scale = ps
            pos = _floats(first.get("ImagePositionPatient"), 3)
            if pos is not None:
                meta["origin"] = list(pos)
        data, scale, limits = _as_image(values, source, scale=scale, axes="ZYX"[-values.ndim :])
        window = _window(first)
        if window is not None:
            meta["window"] = list(window)
            limits = limits or window
        return _Image(data, name, scale, meta, limits)

    members, dz, info = _sort_slices(members, source)
    first_path, first = members[0]
    shape = None
    slopes, intercepts = [], []
    slices = []
    for path, ds in members:
        raw = _pixels(ds, path)
        if raw.ndim != 2:
            raise ValueError(
                f"{_display(path)} is a multi-frame DICOM file inside a series; open it on "
                "its own."
            )
        if shape is None:
            shape = raw.shape
        elif raw.shape != shape:
            raise ValueError(
                f"The DICOM slices of {_display(source)} differ in size ({shape} in "
                f"{first_path.name}, {raw.shape} in {path.name}); they do not form one volume."
            )
        slope, intercept = _rescale(ds)
        slopes.append(slope)
        intercepts.append(intercept)
        slices.append(raw.astype(np.float32) * np.float32(slope) + np.float32(intercept))
    volume = np.stack(slices)
    del slices
    ps = _pixel_spacing(first)
    meta = _dicom_metadata(first, source, len(members))
    if ps is None:
        ps = (1.0, 1.0)
        meta["pixel_spacing_missing"] = True
    same = len(set(slopes)) == 1 and len(set(intercepts)) == 1
    meta["rescale_slope"] = slopes[0] if same else slopes
    meta["rescale_intercept"] = intercepts[0] if same else intercepts
    meta.update(info)
    meta["files"] = [p.name for p, _ in members]
    data, scale, limits = _as_image(volume, source, scale=(dz, *ps), axes="ZYX")
    window = _window(first)
    if window is not None:
        meta["window"] = list(window)
        limits = limits or window
    return _Image(data, name, scale, meta, limits)


def read_dicom(path, *, series: str | None = None) -> LayerData:
    """Read a DICOM file, a list of DICOM files or a folder holding one series.

    Parameters
    ----------
    path : str, Path or sequence of them
        One file (2-D slice or multi-frame volume), several files of one series, or a
        folder (its top-level files; hidden files and non-DICOM files are ignored, and
        so are DICOM objects without pixel data such as ``DICOMDIR``).
    series : str, optional
        The ``SeriesInstanceUID`` to read when the files hold several series.

    Returns
    -------
    LayerData
        ``(data, kwargs, "image")``: float32 data in rescaled units (Hounsfield units
        for CT), ``kwargs["scale"]`` the voxel size in mm as (z, row, col) or (row, col).

    Raises
    ------
    ValueError
        Unreadable files, several series without ``series=``, slices that do not form
        one volume (different size or orientation, duplicated positions), colour or
        undecodable pixel data.
    MissingDependencyError
        When pydicom is not installed.
    """
    return _read_dicom(path, series=series).layer_data()


def _read_dicom(path, *, series: str | None = None) -> _Image:
    pydicom = _import_pydicom(path if isinstance(path, str | os.PathLike) else path[0])
    if isinstance(path, str | os.PathLike):
        p = Path(path)
        if p.is_dir():
            files = [f for f in _folder_files(p) if is_dicom_file(f)]
            if not files:
                raise ValueError(f"The folder {_display(p)} holds no DICOM files.")
            source, name = p, p.name or str(p)
        else:
            files, source, name = [p], p, _stem(p)
    else:
        files = [Path(f) for f in path]
        if not files:
            raise ValueError("No DICOM files given.")
        source = files[0].parent if len(files) > 1 else files[0]
        name = (files[0].parent.name or _stem(files[0])) if len(files) > 1 else _stem(files[0])

    datasets = []
    no_pixels = []
    for f in files:
        ds = _dcmread(pydicom, f)
        if "PixelData" not in ds and len(files) > 1:
            no_pixels.append(f.name)
            continue
        datasets.append((f, ds))
    if not datasets:
        raise ValueError(
            f"{_display(source)} holds DICOM files but none with image data "
            f"({', '.join(no_pixels[:5])}{', ...' if len(no_pixels) > 5 else ''})."
        )

    groups: dict[str, list] = {}
    for f, ds in datasets:
        groups.setdefault(_series_key(ds), []).append((f, ds))
    if series is not None:
        if series not in groups:
            found = "; ".join(_describe_series(k, v) for k, v in groups.items())
            raise ValueError(f"{_display(source)} has no DICOM series {series!r}; found {found}.")
        members = groups[series]
    elif len(groups) > 1:
        found = "; ".join(_describe_series(k, v) for k, v in groups.items())
        raise ValueError(
            f"{_display(source)} holds {len(groups)} DICOM series: {found}. Open one series "
            "at a time: put each series in its own folder or select the files of one series "
            "(or pass series=<SeriesInstanceUID> to read_volume)."
        )
    else:
        members = next(iter(groups.values()))
    image = _dicom_image(members, source, name)
    if no_pixels:
        image.metadata["skipped_without_pixels"] = no_pixels
    return image
