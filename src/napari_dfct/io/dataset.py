"""Data sets of many scans: a pairs table or a folder of scans, read slice by slice.

A data set is one row per scan: a single-rotation ``input`` and a multi-rotation ``target``
volume (any format :func:`~napari_dfct.io.read_volume` reads) and the slices to take:

* a CSV file with the columns ``input,target`` and optionally ``slices`` (and ``name``);
  paths are relative to the CSV file; ``slices`` is ``center`` (the default, as in the
  paper: the central slice), ``all``, or a list such as ``120-130`` or ``3,5,7``
  (0-based, ranges inclusive);
* a folder ``DATASET/<scan>/input.*`` + ``target.*``, one sub-folder per scan (the
  central slice of each; a ``pairs.csv`` in the folder is read instead when present).

Every file passes the single-file reader's checks (damaged, complex, colour or wrongly
shaped data are refused with its message); one file listed in two scans, or two scans
holding the same data, are refused (a scan counted twice would also land in training and
validation alike).

Only the chosen slices are held in memory: TIFF pages and ``.npy`` files (memory-mapped)
are read slice by slice; other formats (``.npz``, DICOM) are read whole, one scan at a
time, and only the chosen slices are kept. For a 2.5-D context model (``context=K``)
every chosen slice also keeps the ``2K + 1`` input slices ``z - K .. z + K`` of its own
scan, reflected at the scan's ends (:mod:`napari_dfct.context`); a scan of fewer than
``2K + 1`` slices is refused. :func:`load_scans` returns a
:class:`napari_dfct.scans.ScanSlices`, which :func:`napari_dfct.train.fit` takes directly.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..context import check_context_slices, context_indices

__all__ = [
    "PAIRS_FILE",
    "ScanPair",
    "check_distinct_files",
    "describe_scans",
    "load_scans",
    "parse_slice_spec",
    "read_pairs",
]

#: The pairs table a data-set folder may hold (read instead of its sub-folders).
PAIRS_FILE = "pairs.csv"
_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")
_VOLUME_SUFFIXES = (".tif", ".tiff", ".npy", ".npz", ".dcm")


@dataclass(frozen=True)
class ScanPair:
    """One scan of a data set: its name, input and target files and slice choice."""

    name: str
    input: Path
    target: Path
    slices: str = "center"


def parse_slice_spec(text: str | None, n: int) -> list[int]:
    """The slice indices of ``text`` (``center``, ``all``, ``120-130``, ``3,5,7``) in a
    volume of ``n`` slices; :class:`ValueError` for a bad value."""
    spec = str(text if text is not None else "").strip().lower() or "center"
    if spec == "center":
        return [n // 2]
    if spec == "all":
        return list(range(n))
    out: list[int] = []
    for part in spec.replace(";", ",").split(","):
        m = _RANGE.match(part)
        if not m:
            raise ValueError(
                f"bad slices value {text!r}: use center, all, or e.g. 120-130 or 3,5,7"
            )
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if b < a:
            raise ValueError(f"bad slices range {part.strip()!r} in {text!r}")
        if b >= n:
            raise ValueError(
                f"slices {part.strip()} out of range: the volume has {n} "
                f"slice{'s' if n != 1 else ''} (0-{n - 1})"
            )
        out.extend(range(a, b + 1))
    return list(dict.fromkeys(out))


def _find(folder: Path, stem: str) -> Path | None:
    found = [
        p
        for p in sorted(folder.iterdir())
        if p.stem.lower() == stem and (p.suffix.lower() in _VOLUME_SUFFIXES or p.is_dir())
    ]
    return found[0] if found else None


def _read_csv(path: Path) -> list[ScanPair]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = [str(h).strip().lower() for h in (reader.fieldnames or [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"cannot read the pairs table {path}: {exc}") from None
    missing = [c for c in ("input", "target") if c not in header]
    if missing:
        raise ValueError(
            f"the pairs table {path} needs the columns input,target (missing: "
            f"{', '.join(missing)})"
        )
    pairs: list[ScanPair] = []
    for line, row in enumerate(rows, start=2):
        row = {str(k).strip().lower(): (v or "").strip() for k, v in row.items() if k}
        if not row.get("input") or not row.get("target"):
            raise ValueError(f"{path}, line {line}: input and target must both be given")
        inp, tgt = (path.parent / row["input"]), (path.parent / row["target"])
        name = row.get("name") or Path(row["input"]).parent.name or Path(row["input"]).stem
        if any(p.name == name for p in pairs):
            name = f"{name}-{line}"
        pairs.append(ScanPair(name, inp, tgt, row.get("slices") or "center"))
    if not pairs:
        raise ValueError(f"the pairs table {path} lists no scans")
    return pairs


def read_pairs(path: str | Path) -> list[ScanPair]:
    """The scans of a data set: a pairs CSV file, or a folder (its ``pairs.csv``, else one
    sub-folder per scan holding ``input.*`` and ``target.*``).

    Raises
    ------
    ValueError
        A missing table, folder or file, a table without ``input,target`` columns, a
        folder without scans, one file listed in two scans (one line each).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(f"data set not found: {path}")
    if path.is_dir() and (path / PAIRS_FILE).is_file():
        path = path / PAIRS_FILE
    if path.is_file():
        pairs = _read_csv(path)
    else:
        pairs = []
        for sub in sorted(p for p in path.iterdir() if p.is_dir()):
            inp, tgt = _find(sub, "input"), _find(sub, "target")
            if inp is None and tgt is None:
                continue
            if inp is None or tgt is None:
                only = inp or tgt
                assert only is not None  # the folder has one of the two
                raise ValueError(
                    f"scan folder {sub} needs both input.* and target.* (it has only {only.name})"
                )
            pairs.append(ScanPair(sub.name, inp, tgt))
        if not pairs:
            raise ValueError(
                f"{path} holds no scans: give a pairs CSV (input,target"
                "[,slices]) or sub-folders <scan>/input.* and <scan>/target.*"
            )
    for p in pairs:
        for what, f in (("input", p.input), ("target", p.target)):
            if not f.exists():
                raise ValueError(f"scan {p.name!r}: {what} file not found: {f}")
    check_distinct_files(pairs)
    return pairs


class _Volume:
    """A volume read slice by slice where the format allows it.

    Every file passes the single-file reader's checks first (a damaged TIFF or ``.npy``, a
    complex, colour or wrongly shaped array: the same one-line message as
    :func:`~napari_dfct.io.read_volume`), before any slice is read.
    """

    def __init__(self, path: Path) -> None:
        from ._common import _check_form, _display

        self.path, self._tif, self._arr = path, None, None
        suffix = path.suffix.lower()
        try:
            if suffix in (".tif", ".tiff") and self._open_tiff(path):
                return
            if suffix == ".npy":
                from .numpy import _check_npy_file

                _check_npy_file(path, load=False)  # memory-mapped: no memory check
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
                keep = _check_form(_display(path), arr.shape, arr.dtype)
                self._arr = arr.reshape(tuple(arr.shape[i] for i in keep))
            else:
                from .read import read_volume

                self._arr, _ = read_volume(path)
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
        if self._arr.ndim == 2:
            self._arr = self._arr[None]
        self.shape = tuple(self._arr.shape)

    def _open_tiff(self, path: Path) -> bool:
        """Keep a checked TIFF open when its pages are its slices; False otherwise."""
        from ._common import _check_file, _check_form, _display
        from .tiff import _image_axes, open_tiff

        _check_file(path)
        tif = open_tiff(path)
        try:
            series = tif.series[0]
            shape = tuple(series.shape)
            if len(shape) == 3 and len(series.pages) == shape[0]:
                _check_form(_display(path), shape, series.dtype, _image_axes(series))
                self._tif, self.shape = tif, shape
                return True
        except ValueError:
            tif.close()
            raise
        except Exception:  # noqa: BLE001 - tifffile's own errors: the full reader reports them
            pass
        tif.close()
        return False

    def slice(self, z: int) -> np.ndarray:
        try:
            if self._tif is not None:
                page = self._tif.series[0].pages[z]
                assert page is not None  # z < the series' length
                a = page.asarray()
            elif self._arr is not None:
                a = self._arr[z]
            else:
                raise ValueError(f"{self.path} is closed")
            return np.array(a, dtype=np.float32)  # a copy: nothing stays mapped
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - a page that does not decode (zlib.error, ...)
            raise ValueError(
                f"cannot read slice {z} of {self.path} ({type(exc).__name__}: {exc})"
            ) from None

    def close(self) -> None:
        if self._tif is not None:
            self._tif.close()
        self._tif = self._arr = None


def _file_key(path: Path) -> tuple:
    """What identifies a file on disk (device and inode; the resolved path where the file
    system has no inodes), so that links and other spellings of one file compare equal."""
    try:
        st = path.stat()
    except OSError:
        return ("path", str(path.resolve()))
    return ("inode", st.st_dev, st.st_ino) if st.st_ino else ("path", str(path.resolve()))


def check_distinct_files(pairs: list[ScanPair]) -> None:
    """Refuse a data set that lists one file in two scans (the same scan listed twice would
    count twice and could land in training and validation alike); one line naming both."""
    seen: dict[tuple, tuple[ScanPair, str]] = {}
    for p in pairs:
        for what, f in (("input", p.input), ("target", p.target)):
            key = _file_key(f)
            first = seen.get(key)
            if first is not None and first[0] is not p:
                raise ValueError(
                    f"scans {first[0].name!r} and {p.name!r} use the same file ({first[1]} "
                    f"of {first[0].name!r}, {what} of {p.name!r}: {f}); each scan must be "
                    "listed once"
                )
            seen.setdefault(key, (p, what))


def load_scans(pairs: list[ScanPair] | str | Path, patch: int | None = None, context: int = 0):
    """Read the chosen slices of every scan into a :class:`~napari_dfct.scans.ScanSlices`;
    with ``context`` K > 0 also each slice's ``2K + 1`` neighbouring input slices of its
    scan (:attr:`~napari_dfct.scans.ScanSlices.contexts`).

    Raises
    ------
    ValueError
        Unreadable, damaged, complex, colour or wrongly shaped files (the single-file
        reader's message), one file in two scans, two scans holding the same data, input
        and target of different shapes, a bad ``slices`` value, a slice smaller than
        ``patch`` or with non-finite values, a scan of fewer than ``2K + 1`` slices with
        ``context`` K (one line, naming the scan).
    """
    from ..scans import ScanSlices

    if not isinstance(pairs, list):
        pairs = read_pairs(pairs)
    check_distinct_files(pairs)
    k = int(context)
    inputs, targets, scans, origins, contexts = [], [], [], [], []
    for s, p in enumerate(pairs):
        vi, vt = _Volume(p.input), _Volume(p.target)
        try:
            if vi.shape != vt.shape:
                raise ValueError(
                    f"scan {p.name!r}: input {vi.shape} and target {vt.shape} differ in shape"
                )
            try:
                chosen = parse_slice_spec(p.slices, vi.shape[0])
            except ValueError as exc:
                raise ValueError(f"scan {p.name!r}: {exc}") from None
            if k:
                check_context_slices(vi.shape[0], k, f"scan {p.name!r}")
                contexts.extend(_neighbours(vi, chosen, k))
            for z in chosen:
                inputs.append(vi.slice(z))
                targets.append(vt.slice(z))
                scans.append(s)
                origins.append((p.name, z))
        finally:
            vi.close()
            vt.close()
    data = ScanSlices(
        inputs,
        targets,
        np.asarray(scans, dtype=np.int64),
        [p.name for p in pairs],
        origins,
        context=k,
        contexts=contexts if k else None,
    )
    data.validate(patch=patch)
    return data


def _neighbours(volume: _Volume, chosen: list[int], k: int) -> list[np.ndarray]:
    """The ``(2k + 1, Y, X)`` input slices around each chosen slice of one scan, every
    slice read once (:func:`napari_dfct.context.context_indices`)."""
    rows = context_indices(chosen, volume.shape[0], k)
    read = {int(z): volume.slice(int(z)) for z in np.unique(rows)}
    return [np.stack([read[int(z)] for z in row]) for row in rows]


def describe_scans(data) -> str:
    """One line: scans, slices and the slice sizes of a :class:`ScanSlices`."""
    sizes = sorted(
        {f"{h}x{w}" for h, w in data.shapes}, key=lambda s: [int(v) for v in s.split("x")]
    )
    n_scans = len({int(s) for s in data.scans})
    return (
        f"{n_scans} scans, {len(data)} slices, "
        f"size{'s' if len(sizes) != 1 else ''} {', '.join(sizes)}"
    )
