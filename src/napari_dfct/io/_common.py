"""What every reader and writer of :mod:`napari_dfct.io` shares.

The file extensions, the :class:`MissingDependencyError`, the image record the readers
return and the checks that turn raw arrays into DFCT images.

Reading rules
-------------
* Every image is returned as ``float32`` with shape ``(Y, X)`` or ``(Z, Y, X)``. Singleton
  axes are squeezed; 1-D, more than 3-D, colour (RGB/RGBA, multi-channel), complex,
  non-numeric and empty data raise :class:`ValueError` with a message that names the file
  and the problem. Non-finite values (NaN/Inf) are kept, with a :class:`UserWarning` giving
  their count.
* These rules are checked on the shape and dtype a file declares (:func:`_check_form`)
  before its data are read, and so is its size against the available memory
  (:func:`_check_fits`): nothing is allocated for a file that would be refused.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._memory import format_bytes, host_available_memory

TIFF_EXTENSIONS = (".tif", ".tiff")
NUMPY_EXTENSIONS = (".npy", ".npz")
DICOM_EXTENSIONS = (".dcm", ".dicom", ".ima")
SUPPORTED_EXTENSIONS = TIFF_EXTENSIONS + NUMPY_EXTENSIONS + DICOM_EXTENSIONS

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


def _check_axes(
    where: str,
    shape: tuple[int, ...],
    squeezed_shape: tuple[int, ...],
    axes: str | None,
    dtype: np.dtype | None = None,
) -> None:
    """Refuse colour, multi-channel, 1-D and more than 3-D data (see :func:`_as_image`).

    ``shape`` is the raw shape, ``squeezed_shape`` the shape without singleton axes and
    ``axes`` the tifffile axis codes of ``shape`` (or ``None``).
    """
    # colour / channel axes (checked before squeezing, where the axis codes still apply)
    if axes is not None:
        for i, (code, n) in enumerate(zip(axes, shape)):
            if code == "S" and n > 1:
                of = f" of {dtype}" if dtype is not None else ""
                planes = "Y" in axes and i < axes.index("Y")
                hint = (
                    f" If its {n} planes are slices of a stack, save them as a grayscale "
                    "stack (e.g. tifffile.imwrite(..., photometric='minisblack'))."
                    if planes
                    else ""
                )
                raise ValueError(
                    f"{where} is a colour image ({n} samples{of} per pixel, shape {shape}); "
                    "DFCT data must be grayscale. Convert it to a single channel first." + hint
                )
            if code == "C" and n > 1:
                raise ValueError(
                    f"{where} holds {n} channels (shape {shape}, axes {axes}); "
                    "DFCT data must be a single grayscale channel. Save the channel you "
                    "want (e.g. the dark-field image) on its own."
                )

    if (
        axes is None
        and len(squeezed_shape) in (3, 4)
        and squeezed_shape[-1] in (3, 4)
        and min(squeezed_shape[-3:-1]) >= 8
    ):
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


def _check_form(where: str, shape: tuple[int, ...], dtype, axes: str | None = None) -> list[int]:
    """The one check of an array's form, before its data are read: refuse complex,
    non-numeric and empty data and the axes :func:`_check_axes` refuses.

    Every reader applies it (:func:`_as_image`, and the data-set loader to the header
    of a memory-mapped or paged volume). Returns the indices of the non-singleton axes.
    """
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
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
    if math.prod(shape) == 0:
        raise ValueError(f"{where} holds an empty array (shape {shape}); nothing to show.")
    keep = [i for i, n in enumerate(shape) if n != 1]
    _check_axes(where, shape, tuple(shape[i] for i in keep), axes, dtype)
    return keep


def _check_fits(where: str, n_values: int, dtype, *, copies: int = 0) -> None:
    """Refuse to load ``n_values`` of ``dtype`` (plus their float32 conversion and
    ``copies`` more raw copies) when that exceeds the host's available memory.

    Called with the sizes a file declares, before anything is allocated.
    """
    dtype = np.dtype(dtype)
    need = int(n_values) * (dtype.itemsize * (1 + copies) + (0 if dtype == np.float32 else 4))
    have = host_available_memory()
    if have is not None and need > have:
        raise ValueError(
            f"{where} is too big to load: its {int(n_values)} values of {dtype} need about "
            f"{format_bytes(need)} of memory, more than the {format_bytes(have)} available."
        )


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
    shape = arr.shape
    if scale is None:
        scale = (1.0,) * arr.ndim
    scale = tuple(float(s) for s in scale)
    if len(scale) != arr.ndim:  # pragma: no cover - internal consistency
        raise ValueError(f"{where}: scale {scale} does not match shape {shape}.")
    if axes is not None and len(axes) != arr.ndim:  # pragma: no cover
        axes = None
    dtype = arr.dtype
    keep = _check_form(where, shape, dtype, axes)
    squeezed_shape = tuple(shape[i] for i in keep)
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
