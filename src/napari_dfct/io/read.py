"""Choosing the reader for a path: the napari reader and :func:`read_volume`.

``napari_get_reader(path)``
    the npe2 reader getter: returns :func:`read_layers` for supported paths, else ``None``;
:func:`read_volume`
    one image or volume for scripts and the CLI.

Files are recognised by extension (TIFF, NumPy, DICOM) or by the DICOM signature, folders
when they hold DICOM files. The formats themselves are read by :mod:`~napari_dfct.io.tiff`,
:mod:`~napari_dfct.io.numpy` and :mod:`~napari_dfct.io.dicom`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._common import (
    DICOM_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    TIFF_EXTENSIONS,
    LayerData,
    _display,
    _finite_limits,
    _Image,
)
from .dicom import _folder_has_dicom, _has_dicom_magic, _read_dicom
from .numpy import _read_npy, _read_npz
from .tiff import _read_tiff


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
