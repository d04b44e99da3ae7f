"""Readers and writers for DFCT volumes: TIFF, NumPy and DICOM.

Everything here is plain Python + NumPy: the module imports neither napari nor Qt. The
napari plugin contributions (see ``napari.yaml``) are

``napari_get_reader(path)``
    the npe2 reader getter: returns :func:`read_layers` for supported paths, else ``None``;
``write_tiff(path, data, attributes)`` and ``write_npy(path, data, attributes)``
    npe2 single-layer image writers.

The CLI uses :func:`read_volume` and :func:`write_volume`, which share the same code.

Reading rules
-------------
* Every image is returned as ``float32`` with shape ``(Y, X)`` or ``(Z, Y, X)``. Singleton
  axes are squeezed; 1-D, more than 3-D, colour (RGB/RGBA, multi-channel), complex,
  non-numeric and empty data raise :class:`ValueError` with a message that names the file
  and the problem. Non-finite values (NaN/Inf) are kept, with a :class:`UserWarning` giving
  their count.
* TIFF (``tifffile``): 2-D images, 3-D stacks and multi-page files. The voxel size comes
  from ImageJ metadata (resolution tags + ``spacing``), OME-XML (``PhysicalSize*``) or
  plain resolution tags (converted to mm for inch/centimetre units) and becomes the layer
  ``scale``. Plain resolution tags carry no slice spacing: a 3-D stack then assumes
  isotropic voxels (``metadata["z_spacing_assumed"] = True``).
* NumPy: ``.npy`` gives one layer named after the file stem; ``.npz`` gives one layer per
  array, named ``<stem>:<key>`` (arrays that are not images are skipped with a warning).
  Files are always loaded with ``allow_pickle=False``.
* DICOM (``pydicom``, the ``dicom`` extra): a single file, a list of files or a folder
  holding one series. Slices are sorted by ``ImagePositionPatient`` projected on the slice
  normal (the cross product of the two ``ImageOrientationPatient`` direction cosines),
  falling back to ``InstanceNumber``. ``RescaleSlope``/``RescaleIntercept`` are applied
  per slice (CT data come out in Hounsfield units). ``PixelSpacing`` and the spacing of
  the sorted slice positions give ``scale = (z, row, col)`` in mm. A folder that holds
  several series (several ``SeriesInstanceUID``) is an error that lists them: pass
  ``series=`` to :func:`read_volume`/:func:`read_dicom`, or give each series its own
  folder. No patient-identifying attribute is copied into the layer metadata.

Writing rules
-------------
Data are written as ``float32``, atomically (a temporary file in the target folder, then
:func:`os.replace`). TIFF files are ImageJ hyperstacks whose resolution tags and
``spacing`` hold the layer scale, so that reading them back restores it; volumes too big
for a classic TIFF are written as BigTIFF OME-TIFF with ``PhysicalSize*`` instead.
``.npy`` files hold the array only.
"""

from __future__ import annotations

import math
import os
import secrets
import warnings
import zipfile
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DICOM_EXTENSIONS",
    "MissingDependencyError",
    "NUMPY_EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
    "TIFF_EXTENSIONS",
    "is_dicom_file",
    "napari_get_reader",
    "read_dicom",
    "read_layers",
    "read_volume",
    "write_npy",
    "write_tiff",
    "write_volume",
]

TIFF_EXTENSIONS = (".tif", ".tiff")
NUMPY_EXTENSIONS = (".npy", ".npz")
DICOM_EXTENSIONS = (".dcm", ".dicom", ".ima")
SUPPORTED_EXTENSIONS = TIFF_EXTENSIONS + NUMPY_EXTENSIONS + DICOM_EXTENSIONS

#: Above this many bytes a TIFF is written as BigTIFF (OME-TIFF) instead of ImageJ TIFF,
#: whose classic TIFF offsets stop at 4 GiB.
BIGTIFF_THRESHOLD = 2**32 - 2**25

#: How many extension-less files of a folder :func:`napari_get_reader` sniffs for the
#: DICOM signature before giving up (keeps the check cheap on large folders).
_SNIFF_LIMIT = 64

_DICOM_HINT = "Install the DICOM support with `pip install napari-dfct[dicom]` (it adds pydicom)."

LayerData = tuple  # (data, kwargs, "image")


class MissingDependencyError(ImportError, ValueError):
    """An optional dependency needed to read a file is not installed.

    It is both an :class:`ImportError` and a :class:`ValueError`, so callers that report
    bad input as ``ValueError`` (the CLI, the napari reader) show its message as is.
    """


# --------------------------------------------------------------------------------------
# The image record shared by all readers
# --------------------------------------------------------------------------------------
@dataclass
class _Image:
    data: np.ndarray  # float32, (Y, X) or (Z, Y, X)
    name: str
    scale: tuple[float, ...]
    metadata: dict = field(default_factory=dict)
    contrast_limits: tuple[float, float] | None = None

    def layer_data(self) -> LayerData:
        kwargs: dict[str, Any] = {
            "name": self.name,
            "scale": self.scale,
            "metadata": self.metadata,
            "colormap": "gray",
        }
        if self.contrast_limits is not None:
            kwargs["contrast_limits"] = self.contrast_limits
        return (self.data, kwargs, "image")


def _display(path) -> str:
    return str(path)


def _stem(path: Path) -> str:
    """File name without its extension (``scan.ome.tif`` -> ``scan``)."""
    name = path.name
    lower = name.lower()
    for ext in (".ome.tiff", ".ome.tif", *SUPPORTED_EXTENSIONS):
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return path.stem or name


def _finite_limits(data: np.ndarray) -> tuple[float, float]:
    finite = data[np.isfinite(data)]
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def _as_image(
    array,
    source,
    *,
    scale: Sequence[float] | None = None,
    axes: str | None = None,
    warn_nonfinite: bool = True,
    what: str = "",
) -> tuple[np.ndarray, tuple[float, ...], tuple[float, float] | None]:
    """Validate ``array`` as a grayscale 2-D/3-D image and convert it to float32.

    Parameters
    ----------
    array : array_like
        The raw data.
    source : str or Path
        The file it came from, named in every message.
    scale : sequence of float, optional
        One spacing per axis of ``array``; squeezed axes drop their entry.
    axes : str, optional
        tifffile axis codes (one letter per axis). ``S`` (samples) and ``C`` (channels)
        longer than 1 are colour/multi-channel data. When ``None``, a trailing axis of
        length 3 or 4 behind two longer axes is taken as colour (RGB/RGBA).
    warn_nonfinite : bool
        Warn with the count of NaN/Inf values.
    what : str
        Extra words naming the array inside the file (``" (array 'vol')"``).

    Returns
    -------
    data : ndarray of float32, (Y, X) or (Z, Y, X)
    scale : tuple of float, one per axis of ``data``
    contrast_limits : (float, float) or None
        The finite range when the data hold non-finite values (napari would otherwise
        compute an infinite range), else ``None``.

    Raises
    ------
    ValueError
        For empty, complex, non-numeric, colour, 1-D or more than 3-D data, or data
        without a single finite value.
    """
    where = f"{_display(source)}{what}"
    arr = np.asarray(array)
    dtype = arr.dtype
    if dtype.kind == "c":
        raise ValueError(
            f"{where} holds complex-valued data ({dtype}); DFCT images must be real. "
            "Save the magnitude or the real part instead."
        )
    if dtype.kind not in "biuf":
        raise ValueError(
            f"{where} holds non-numeric data (dtype {dtype}); expected a grayscale image "
            "of integers or floats."
        )
    if arr.size == 0:
        raise ValueError(f"{where} holds an empty array (shape {arr.shape}); nothing to show.")
    shape = arr.shape
    if scale is None:
        scale = (1.0,) * arr.ndim
    scale = tuple(float(s) for s in scale)
    if len(scale) != arr.ndim:  # pragma: no cover - internal consistency
        raise ValueError(f"{where}: scale {scale} does not match shape {shape}.")
    if axes is not None and len(axes) != arr.ndim:  # pragma: no cover
        axes = None

    # colour / channel axes (checked before squeezing, where the axis codes still apply)
    if axes is not None:
        for code, n in zip(axes, shape):
            if code == "S" and n > 1:
                raise ValueError(
                    f"{where} is a colour image ({n} samples per pixel, shape {shape}); "
                    "DFCT data must be grayscale. Convert it to a single channel first."
                )
            if code == "C" and n > 1:
                raise ValueError(
                    f"{where} holds {n} channels (shape {shape}, axes {axes}); "
                    "DFCT data must be a single grayscale channel. Save the channel you "
                    "want (e.g. the dark-field image) on its own."
                )

    keep = [i for i, n in enumerate(shape) if n != 1]
    squeezed_shape = tuple(shape[i] for i in keep)
    if axes is None and len(squeezed_shape) in (3, 4) and squeezed_shape[-1] in (3, 4):
        if min(squeezed_shape[-3:-1]) >= 8:
            raise ValueError(
                f"{where} looks like an RGB(A) colour image (shape {shape}, last axis of "
                f"length {squeezed_shape[-1]}); DFCT data must be grayscale (Y, X) or "
                "(Z, Y, X). Convert it to a single channel first."
            )
    if len(squeezed_shape) < 2:
        raise ValueError(
            f"{where} is not an image: its data are {len(squeezed_shape)}-D "
            f"(shape {shape}); expected a 2-D image (Y, X) or a 3-D stack (Z, Y, X)."
        )
    if len(squeezed_shape) > 3:
        raise ValueError(
            f"{where} has {len(squeezed_shape)} non-singleton axes (shape {shape}); "
            "expected a 2-D image (Y, X) or a 3-D stack (Z, Y, X). Save one volume per file."
        )
    arr = arr.reshape(squeezed_shape)
    scale = tuple(scale[i] for i in keep)

    with np.errstate(over="ignore", invalid="ignore"):
        data = np.asarray(arr, dtype=np.float32)
        if not (data.flags.writeable and data.flags.c_contiguous):
            data = np.array(data, dtype=np.float32, order="C")

    contrast_limits = None
    n_finite = int(np.count_nonzero(np.isfinite(data)))
    n_bad = data.size - n_finite
    if n_bad:
        if n_finite == 0:
            raise ValueError(
                f"{where} holds no finite values: all {data.size} values are NaN or Inf."
            )
        n_nan = int(np.count_nonzero(np.isnan(data)))
        if warn_nonfinite:
            overflow = ""
            if dtype.kind == "f" and dtype.itemsize > 4:
                n_over = n_bad - int(arr.size - np.count_nonzero(np.isfinite(arr)))
                if n_over:
                    overflow = f", {n_over} of them beyond the float32 range"
            warnings.warn(
                f"{where} holds {n_bad} non-finite value(s) out of {data.size} "
                f"({n_nan} NaN, {n_bad - n_nan} Inf{overflow}); they are kept as is.",
                UserWarning,
                stacklevel=3,
            )
        contrast_limits = _finite_limits(data)
    return data, scale, contrast_limits


def _check_file(path: Path) -> None:
    if not path.exists():
        raise ValueError(f"{_display(path)} does not exist.")
    if path.is_dir():
        raise ValueError(f"{_display(path)} is a folder, not a file.")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ValueError(f"Cannot read {_display(path)}: {exc}.") from exc
    if size == 0:
        raise ValueError(f"{_display(path)} is empty (0 bytes).")


# --------------------------------------------------------------------------------------
# TIFF
# --------------------------------------------------------------------------------------
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
        xres, yres, unit = _resolution(page)
        plain_default = unit == 1 and xres == 1 and yres == 1
        if xres and yres and xres > 0 and yres > 0 and not plain_default:
            factor = _RESUNIT_TO_MM.get(unit, 1.0)
            sizes = {"X": factor / xres, "Y": factor / yres}
            meta["unit"] = "mm" if unit in _RESUNIT_TO_MM else None
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


# --------------------------------------------------------------------------------------
# NumPy
# --------------------------------------------------------------------------------------
def _load_numpy_error(path: Path, exc: Exception, what: str = "") -> ValueError:
    if "pickle" in str(exc).lower():
        return ValueError(
            f"{_display(path)}{what} holds Python objects (pickled data), which are never "
            "loaded for safety; save a plain numeric array instead."
        )
    return ValueError(
        f"{_display(path)}{what} is not a readable NumPy file ({type(exc).__name__}: {exc})."
    )


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")


def _check_numpy_header(path: Path, kind: str) -> None:
    """Refuse files that are neither .npy nor zip before np.load tries to unpickle them."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    if head == _NPY_MAGIC or head[:4] in _ZIP_MAGICS:
        return
    expected = "a NumPy .npy file" if kind == "npy" else "a NumPy .npz archive"
    raise ValueError(f"{_display(path)} is not {expected} (unknown file header).")


def _read_npy(path: Path) -> list[_Image]:
    _check_file(path)
    _check_numpy_header(path, "npy")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _load_numpy_error(path, exc) from exc
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{_display(path)} is a .npz archive, not a .npy file; rename it.")
    data, scale, limits = _as_image(array, path)
    metadata = {"source": str(path), "format": "npy"}
    return [_Image(data, _stem(path), scale, metadata, limits)]


def _read_npz(path: Path, key: str | None = None) -> list[_Image]:
    _check_file(path)
    _check_numpy_header(path, "npz")
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(
            f"{_display(path)} is not a readable .npz archive ({type(exc).__name__}: {exc})."
        ) from exc
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{_display(path)} is a .npy file, not a .npz archive; rename it.")
    images: list[_Image] = []
    skipped: list[str] = []
    with npz:
        keys = list(npz.files)
        if not keys:
            raise ValueError(f"{_display(path)} is an empty .npz archive (no arrays).")
        if key is not None:
            if key not in keys:
                raise ValueError(f"{_display(path)} has no array named {key!r}; it holds {keys}.")
            keys = [key]
        strict = len(keys) == 1  # a single array's problem is the file's problem
        for k in keys:
            what = f" (array {k!r})"
            try:
                array = npz[k]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
                err = _load_numpy_error(path, exc, what)
                if strict:
                    raise err from exc
                skipped.append(str(err))
                continue
            try:
                data, scale, limits = _as_image(array, path, what=what)
            except ValueError as exc:
                if strict:
                    raise
                skipped.append(str(exc))
                continue
            metadata = {"source": str(path), "format": "npz", "key": k}
            images.append(_Image(data, f"{_stem(path)}:{k}", scale, metadata, limits))
    if not images:
        raise ValueError(f"{_display(path)} holds no usable image: " + "; ".join(skipped))
    if skipped:
        warnings.warn(
            f"Skipped {len(skipped)} array(s) of {_display(path)} that are not images: "
            + "; ".join(skipped),
            UserWarning,
            stacklevel=3,
        )
    return images


# --------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------
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


def _pixel_spacing(ds) -> tuple[float, float] | None:
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
    if len(members) > 1 and any(n is None for n in numbers):
        raise ValueError(
            f"{_display(source)}: the DICOM slices have neither ImagePositionPatient/"
            "ImageOrientationPatient nor InstanceNumber, so their order is unknown."
        )
    if len(members) > 1:
        order = sorted(range(len(members)), key=lambda i: numbers[i])
        members = [members[i] for i in order]
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


# --------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------
def _kind(path: Path) -> str | None:
    ext = path.suffix.lower()
    if ext in TIFF_EXTENSIONS:
        return "tiff"
    if ext == ".npy":
        return "npy"
    if ext == ".npz":
        return "npz"
    if ext in DICOM_EXTENSIONS:
        return "dicom"
    if path.is_dir():
        return "dicom-folder" if _folder_has_dicom(path) else None
    if path.is_file() and _has_dicom_magic(path):
        return "dicom"
    return None


def _unsupported(path: Path) -> ValueError:
    if path.is_dir():
        return ValueError(
            f"The folder {_display(path)} holds no DICOM files; napari-dfct opens folders "
            "of DICOM slices only (open TIFF/NumPy files one by one)."
        )
    if not path.exists():
        return ValueError(f"{_display(path)} does not exist.")
    return ValueError(
        f"{_display(path)} has an unsupported format; napari-dfct reads "
        f"{', '.join(SUPPORTED_EXTENSIONS)} files and folders of DICOM slices."
    )


def _read_path(path: Path, *, key: str | None = None, series: str | None = None) -> list[_Image]:
    kind = _kind(path)
    if kind == "tiff":
        return _read_tiff(path)
    if kind == "npy":
        return _read_npy(path)
    if kind == "npz":
        return _read_npz(path, key=key)
    if kind in ("dicom", "dicom-folder"):
        return [_read_dicom(path, series=series)]
    raise _unsupported(path)


def _as_paths(path) -> list[Path]:
    if isinstance(path, str | os.PathLike):
        return [Path(path)]
    return [Path(p) for p in path]


def _read_images(path) -> list[_Image]:
    paths = _as_paths(path)
    if not paths:
        raise ValueError("No file given.")
    if len(paths) == 1:
        return _read_path(paths[0])
    kinds = [_kind(p) for p in paths]
    if all(k == "dicom" for k in kinds):
        return [_read_dicom(paths)]
    for p, k in zip(paths, kinds):
        if k is None:
            raise _unsupported(p)
    images = [img for p in paths for img in _read_path(p)]
    shapes = {img.data.shape for img in images}
    if len(set(kinds)) > 1:  # different formats are never stacked together
        return images
    if len(shapes) == 1 and images[0].data.ndim == 2:
        # a list of equally sized 2-D images is a stack (napari's "stack" open)
        limits = None
        data = np.stack([img.data for img in images])
        if any(img.contrast_limits for img in images):
            limits = _finite_limits(data)
        first = images[0]
        metadata = dict(first.metadata)
        metadata["source"] = [str(p) for p in paths]
        scale = (1.0, *first.scale)
        return [_Image(data, first.name, scale, metadata, limits)]
    if len(shapes) > 1 and all(img.data.ndim == 2 for img in images):
        raise ValueError(
            f"Cannot stack {len(paths)} images of different shapes "
            f"({', '.join(str(s) for s in sorted(shapes))}); open them one by one."
        )
    return images


def read_layers(path) -> list[LayerData]:
    """Read ``path`` into napari layer data (the npe2 reader function).

    Parameters
    ----------
    path : str, Path or list of them
        A TIFF, NumPy or DICOM file, a folder of DICOM slices, or a list of files (DICOM
        files of one series, or equally sized 2-D images, which are stacked).

    Returns
    -------
    list of (data, kwargs, "image")
        ``kwargs`` holds ``name``, ``scale``, ``metadata`` (``"source"`` and
        format-specific entries), ``colormap="gray"`` and, when the data hold NaN/Inf or
        a DICOM display window, ``contrast_limits``.

    Raises
    ------
    ValueError
        With a message that names the file and the problem (napari shows it).
    """
    return [img.layer_data() for img in _read_images(path)]


def napari_get_reader(path):
    """npe2 reader getter: :func:`read_layers` when ``path`` is supported, else ``None``.

    Files are accepted by extension (``.tif .tiff .npy .npz .dcm .dicom .ima``, any case)
    or by the DICOM signature; folders only when they hold DICOM files; lists only when
    every entry is such a file. Problems inside an accepted file are reported when it is
    read, as a :class:`ValueError` that napari shows to the user.
    """
    paths = _as_paths(path) if isinstance(path, str | os.PathLike | list | tuple) else []
    if not paths:
        return None
    if len(paths) == 1:
        return read_layers if _kind(paths[0]) is not None else None
    if all(not p.is_dir() and _kind(p) is not None for p in paths):
        return read_layers
    return None


def read_volume(
    path, *, key: str | None = None, series: str | None = None
) -> tuple[np.ndarray, dict]:
    """Read one image or volume, for scripts and the CLI.

    Parameters
    ----------
    path : str or Path
        A TIFF, ``.npy``, ``.npz`` (one array, or pick it with ``key``) or DICOM file,
        or a folder of DICOM slices.
    key : str, optional
        The array to read from a ``.npz`` archive holding several.
    series : str, optional
        The ``SeriesInstanceUID`` to read from a folder holding several DICOM series.

    Returns
    -------
    data : ndarray of float32, (Y, X) or (Z, Y, X)
    info : dict
        ``{"scale": tuple, "name": str, "metadata": dict}``.

    Raises
    ------
    ValueError
        Unsupported or bad input, with a message naming the file and the problem.
    """
    p = Path(path)
    images = _read_path(p, key=key, series=series)
    if len(images) != 1:
        names = [img.metadata.get("key", img.name) for img in images]
        raise ValueError(
            f"{_display(p)} holds {len(images)} images ({', '.join(map(str, names))}); "
            "choose one with key=..."
        )
    img = images[0]
    info = {"scale": tuple(img.scale), "name": img.name, "metadata": img.metadata}
    if img.contrast_limits is not None:
        info["contrast_limits"] = img.contrast_limits
    return img.data, info


# --------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------
_PINT_TO_IMAGEJ = {
    "millimeter": "mm",
    "centimeter": "cm",
    "micrometer": "micron",
    "nanometer": "nm",
    "meter": "m",
    "inch": "inch",
}


@contextmanager
def _atomic_target(path: Path):
    """Yield an open binary file next to ``path``; on success it replaces ``path``."""
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(
            f"Cannot write {_display(path)}: the folder {_display(folder)} does not exist."
        )
    if path.is_dir():
        raise ValueError(f"Cannot write {_display(path)}: it is a folder.")
    tmp = folder / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        with open(tmp, "xb") as fh:  # honours the umask, like a plain open()
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise


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
    with _atomic_target(path) as fh:
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
            tifffile.imwrite(
                fh, data, imagej=True, resolution=(1.0 / sx, 1.0 / sy), metadata=md
            )
    return path


def _write_npy(path: Path, data: np.ndarray) -> Path:
    with _atomic_target(path) as fh:
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

