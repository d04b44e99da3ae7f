"""Readers and writers for DFCT volumes: TIFF, NumPy and DICOM.

Everything here is plain Python + NumPy: the package imports neither napari nor Qt. The
napari plugin contributions (see ``napari.yaml``) are

``napari_get_reader(path)``
    the npe2 reader getter: returns :func:`read_layers` for supported paths, else ``None``;
``write_tiff(path, data, attributes)`` and ``write_npy(path, data, attributes)``
    npe2 single-layer image writers.

The CLI uses :func:`read_volume` and :func:`write_volume`, which share the same code.

The package is split by concern; everything public is importable from here:

:mod:`~napari_dfct.io.read`
    which reader a path needs: :func:`napari_get_reader`, :func:`read_layers`,
    :func:`read_volume`;
:mod:`~napari_dfct.io.tiff`, :mod:`~napari_dfct.io.numpy`, :mod:`~napari_dfct.io.dicom`
    the formats, each with its reading rules (:func:`read_dicom`, :func:`is_dicom_file`);
:mod:`~napari_dfct.io.write`
    :func:`write_volume`, :func:`write_tiff`, :func:`write_npy` and the writing rules;
:mod:`~napari_dfct.io._common`
    the extensions, the checks every reader applies (the general reading rules) and
    :class:`MissingDependencyError`;
:mod:`~napari_dfct.io._tiff_check`
    the structural checks of a TIFF file before its data are read (truncated or damaged
    files).

``BIGTIFF_THRESHOLD`` (the size above which TIFF files are written as BigTIFF) lives in
:mod:`~napari_dfct.io.write`; ``napari_dfct.io.BIGTIFF_THRESHOLD`` reads and sets that same
value.
"""

from __future__ import annotations

import sys
import types

import numpy as np  # noqa: F401  (kept as ``napari_dfct.io.np``)

from . import write as _write
from ._common import (
    DICOM_EXTENSIONS,
    NUMPY_EXTENSIONS,
    SUPPORTED_EXTENSIONS,
    TIFF_EXTENSIONS,
    LayerData,  # noqa: F401
    MissingDependencyError,
)
from .dicom import is_dicom_file, read_dicom
from .read import napari_get_reader, read_layers, read_volume
from .write import write_npy, write_tiff, write_volume

__all__ = [
    "DICOM_EXTENSIONS",
    "NUMPY_EXTENSIONS",
    "SUPPORTED_EXTENSIONS",
    "TIFF_EXTENSIONS",
    "MissingDependencyError",
    "is_dicom_file",
    "napari_get_reader",
    "read_dicom",
    "read_layers",
    "read_volume",
    "write_npy",
    "write_tiff",
    "write_volume",
]


class _IOPackage(types.ModuleType):
    """The package module, with ``BIGTIFF_THRESHOLD`` forwarded to :mod:`.write`.

    Setting ``napari_dfct.io.BIGTIFF_THRESHOLD`` (tests lower it to exercise the BigTIFF
    path) therefore changes what the writer uses.
    """

    @property
    def BIGTIFF_THRESHOLD(self) -> int:
        return _write.BIGTIFF_THRESHOLD

    @BIGTIFF_THRESHOLD.setter
    def BIGTIFF_THRESHOLD(self, value: int) -> None:
        _write.BIGTIFF_THRESHOLD = value


def __dir__() -> list[str]:
    """The package's names, ``BIGTIFF_THRESHOLD`` included."""
    return sorted([*globals(), "BIGTIFF_THRESHOLD"])


sys.modules[__name__].__class__ = _IOPackage
