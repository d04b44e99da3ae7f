"""Reading NumPy files (``.npy`` and ``.npz``).

Reading rules
-------------
* NumPy: ``.npy`` gives one layer named after the file stem; ``.npz`` gives one layer per
  array, named ``<stem>:<key>`` (arrays that are not images are skipped with a warning).
  Files are always loaded with ``allow_pickle=False``.
* Before any data are read, the array header is checked (:func:`_check_npy_header`): a
  shape and dtype the rules refuse, data that would end beyond the end of the file (or of
  its ``.npz`` member) and data bigger than the available memory are refused with one line.

``.npy`` files are written by :mod:`napari_dfct.io.write`.
"""

from __future__ import annotations

import math
import warnings
import zipfile
from pathlib import Path

import numpy as np

from ._common import _as_image, _check_file, _check_fits, _check_form, _display, _Image, _stem


def _pickled_error(path: Path, what: str = "") -> ValueError:
    return ValueError(
        f"{_display(path)}{what} holds Python objects (pickled data), which are never "
        "loaded for safety; save a plain numeric array instead."
    )


def _load_numpy_error(path: Path, exc: Exception, what: str = "") -> ValueError:
    if "pickle" in str(exc).lower():
        return _pickled_error(path, what)
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


def _check_npy_header(
    fh, path: Path, size: int, what: str = "", *, load: bool = True
) -> tuple[tuple[int, ...], np.dtype]:
    """Read the ``.npy`` header of the open file ``fh`` (at its start) and check it before
    any data are read; returns the declared shape and dtype.

    ``size`` is the number of bytes of the file (or ``.npz`` member). Refuses an unreadable
    header, Python objects, a shape or dtype :func:`~._common._check_form` refuses, data
    ending beyond ``size`` and (``load``) data bigger than the available memory.
    """
    where = f"{_display(path)}{what}"
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read(fh)
        start = fh.tell()
    except (ValueError, OSError, EOFError, SyntaxError, zipfile.BadZipFile) as exc:
        raise _load_numpy_error(path, exc, what) from None
    if dtype.hasobject:
        raise _pickled_error(path, what)
    _check_form(where, shape, dtype)
    n_values = math.prod(shape)
    end = start + n_values * dtype.itemsize
    if end > size:
        raise ValueError(
            f"{where} is not a readable NumPy file: it ends at byte {size} but its header "
            f"declares a {tuple(shape)} {dtype} array that needs bytes up to {end} (the file "
            "is truncated or damaged)."
        )
    if load:
        _check_fits(where, n_values, dtype, copies=int(bool(fortran)))
    return tuple(shape), dtype


def _check_npy_file(path: Path, *, load: bool = True) -> tuple[tuple[int, ...], np.dtype]:
    """All checks of a ``.npy`` file before its data are read (:func:`_check_npy_header`,
    with ``load`` as there); returns the declared shape and dtype."""
    _check_file(path)
    _check_numpy_header(path, "npy")
    with open(path, "rb") as fh:
        if fh.read(4) in _ZIP_MAGICS:
            raise ValueError(f"{_display(path)} is a .npz archive, not a .npy file; rename it.")
        fh.seek(0)
        return _check_npy_header(fh, path, path.stat().st_size, load=load)


def _read_npy(path: Path) -> list[_Image]:
    _check_npy_file(path)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise _load_numpy_error(path, exc) from exc
    data, scale, limits = _as_image(array, path)
    metadata = {"source": str(path), "format": "npy"}
    return [_Image(data, _stem(path), scale, metadata, limits)]


def _check_npz_member(npz, key: str, path: Path, what: str) -> None:
    """:func:`_check_npy_header` for the array ``key`` of an open ``.npz`` archive."""
    names = npz.zip.namelist()
    member = key if key in names else f"{key}.npy"
    if member not in names:  # pragma: no cover - NpzFile lists only its members
        return
    with npz.zip.open(member) as fh:
        _check_npy_header(fh, path, npz.zip.getinfo(member).file_size, what)


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
        raise ValueError(f"{_display(path)} is a .npy file, not a .npz archive; rename it.")  # noqa: TRY004
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
                _check_npz_member(npz, k, path, what)
            except ValueError as exc:
                if strict:
                    raise
                skipped.append(str(exc))
                continue
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
