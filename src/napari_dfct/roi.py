"""The project's ROI convention: a lung (signal) ROI, an air (background) ROI and a line.

The paper measures two numbers on one axial slice: the CNR between a lung-tissue square
(signal) and an air square (background), and the FWHM of the line spread function along
a line across the lung-air edge. :class:`ROISet` holds the three (centres as (row, col)
pixels, the side of the squares, and optionally the slice) and is the one home of the
rules that resolve them:

* explicit values (options) override those of a ``meta.json`` (as written by
  ``dfct simulate``);
* a ``meta.json`` may hold the ROIs of every slice (``"rois"``: a list with one dict per
  slice, as ``dfct simulate`` writes, whose independent specimens each have their own
  anatomy); for a volume of that many slices, slice ``k`` then has the ROIs of entry
  ``k``, else the top-level ``signal_center``, ``background_center``, ``line`` and
  ``roi_size`` apply (those of ``meta.json``'s own ``slice``);
* an explicit ROI centre moves the default line with it: ``meta.json``'s line is used only
  when neither centre is given explicitly;
* the default line runs from the signal centre to the background centre;
* the default ROI side is :data:`DEFAULT_ROI_SIZE` (the paper's 30 px), or the simulator's
  rule for smaller images (:func:`default_roi_size`) where the image size is given;
* the default slice is the central one.

In napari the ROIs are the Shapes layer :data:`LAYER_NAME` with three shapes, the signal
rectangle, the background rectangle and the line, labelled by the ``role`` feature
(:data:`ROLES`); :meth:`ROISet.shapes` builds them and :func:`shape_indices` finds them
again in a layer the user may have edited.

This module imports neither Qt nor napari.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_ROI_SIZE",
    "LAYER_NAME",
    "META_NAME",
    "ROLES",
    "SHAPE_TYPES",
    "ROISet",
    "default_mask_path",
    "default_roi_size",
    "parse_line",
    "parse_point",
    "read_meta",
    "roi_size_for",
    "shape_indices",
    "square",
]

#: Name of the napari Shapes layer that holds the ROIs.
LAYER_NAME = "DFCT ROIs"
#: Roles of the three shapes of that layer, in order (the ``role`` feature).
ROLES = ("signal", "background", "line")
#: napari shape types of the three shapes, in the order of :data:`ROLES`.
SHAPE_TYPES = ("rectangle", "rectangle", "line")
#: Default side of the two square ROIs in pixels (the paper's 30 x 30 squares).
DEFAULT_ROI_SIZE = 30
#: File next to an image (or in its folder) with the ROIs of a simulation.
META_NAME = "meta.json"

_FIELDS = ("signal_center", "background_center", "line", "roi_size", "slice")
_BOX_TYPES = ("rectangle", "polygon", "ellipse")
_LINE_TYPES = ("line", "path")
_MISSING = (
    "no ROIs: give the signal and background ROI centres (--signal R,C "
    "--background R,C) or use a folder with a meta.json that has them"
)


# --------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------
def parse_point(value: str | Iterable[float]) -> list[float]:
    """``"R,C"`` (or a pair of numbers) as ``[row, col]`` floats; ``ValueError`` otherwise."""
    try:
        parts = (
            [p for p in re.split(r"[,\s]+", value.strip()) if p]
            if isinstance(value, str)
            else list(value)
        )
        values = [float(p) for p in parts]
    except (TypeError, ValueError):
        raise ValueError(f"bad point {value!r}: use ROW,COL") from None
    if len(values) != 2:
        raise ValueError(f"bad point {value!r}: use ROW,COL")
    return values


def parse_line(value: str | Iterable[Any]) -> list[list[float]]:
    """``"R0,C0,R1,C1"`` (or ``[[r0, c0], [r1, c1]]``) as two ``[row, col]`` points."""
    if isinstance(value, str):
        parts = [p for p in re.split(r"[,\s;:]+", value.strip()) if p]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"bad line {value!r}: use R0,C0,R1,C1") from None
        if len(values) != 4:
            raise ValueError(f"bad line {value!r}: use R0,C0,R1,C1")
        return [values[:2], values[2:]]
    try:
        items = list(value)
    except TypeError:
        raise ValueError(f"bad line {value!r}: give two points") from None
    pts = [parse_point(p) for p in items]
    if len(pts) != 2:
        raise ValueError(f"bad line {value!r}: give two points")
    return pts


def _integer(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an integer, got {value!r}") from None


def roi_size_for(size: int) -> int:
    """Default ROI side for ``size``-wide images, the simulator's rule: 30 px (the paper's,
    :data:`DEFAULT_ROI_SIZE`) for ``size >= 256``, proportionally smaller below (at least
    4), so that a lung square and an air square fit the phantom."""
    size = int(size)
    if size >= 256:
        return DEFAULT_ROI_SIZE
    return max(4, int(round(DEFAULT_ROI_SIZE * size / 256)))


def default_roi_size(image_size: int | None = None) -> int:
    """Default ROI side: :data:`DEFAULT_ROI_SIZE`, or for an image of ``image_size``
    pixels the simulator's rule (:func:`roi_size_for`: 30 px from 256 px on,
    proportionally smaller below)."""
    if image_size is None:
        return DEFAULT_ROI_SIZE
    return roi_size_for(int(image_size))


def read_meta(path: str | Path) -> tuple[dict | None, Path]:
    """The ``meta.json`` in the folder ``path`` or next to the file ``path``.

    Returns ``(meta, meta_path)``, with ``meta`` None when there is no such file;
    ``ValueError`` when it cannot be read or does not hold a JSON object.
    """
    path = Path(path)
    meta_path = (path if path.is_dir() else path.parent) / META_NAME
    if not meta_path.is_file():
        return None, meta_path
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {meta_path}: {exc}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path} does not hold a JSON object")  # noqa: TRY004
    return meta, meta_path


def default_mask_path(image: str | Path, meta: dict | None = None) -> Path | None:
    """The body mask of a simulation folder: the file ``meta.json`` names (``"mask"``),
    else ``body.tif`` next to ``image``; None when there is none. ``meta`` is read from
    next to ``image`` when not given (an unreadable one counts as none)."""
    folder = Path(image) if Path(image).is_dir() else Path(image).parent
    if meta is None:
        try:
            meta, _ = read_meta(image)
        except ValueError:
            meta = None
    name = meta.get("mask") if isinstance(meta, dict) else None
    candidate = folder / (name if isinstance(name, str) and name else "body.tif")
    return candidate if candidate.is_file() else None


def square(center: Sequence[float], size: float) -> np.ndarray:
    """Corners (4, 2) of a ``size``-wide square centred on ``center`` (row, col):
    ``centre -/+ size / 2``, as a napari rectangle."""
    r, c = float(center[0]), float(center[1])
    h = size / 2.0
    return np.array([[r - h, c - h], [r - h, c + h], [r + h, c + h], [r + h, c - h]], dtype=float)


# --------------------------------------------------------------------------------------
# the ROIs
# --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ROISet:
    """The signal (lung) ROI, the background (air) ROI and the FWHM line of one slice.

    Attributes
    ----------
    signal_center, background_center : tuple of float
        ROI centres, (row, col) pixels.
    line : tuple of two (row, col) tuples
        The FWHM line; when not given, from the signal centre to the background centre.
    roi_size : int
        Side of both squares in pixels (at least 2).
    slice : int or None
        Slice index in a volume, None when unknown or for a 2-D image.
    """

    signal_center: tuple[float, float]
    background_center: tuple[float, float]
    line: tuple[tuple[float, float], tuple[float, float]] | None = None
    roi_size: int = DEFAULT_ROI_SIZE
    slice: int | None = None

    def __post_init__(self) -> None:
        sig = tuple(parse_point(self.signal_center))
        bg = tuple(parse_point(self.background_center))
        line = (sig, bg) if self.line is None else tuple(tuple(p) for p in parse_line(self.line))
        size = _integer(self.roi_size, "ROI size")
        if size < 2:
            raise ValueError(f"ROI size must be at least 2 pixels, got {size}")
        z = None if self.slice is None else _integer(self.slice, "slice")
        for name, value in (
            ("signal_center", sig),
            ("background_center", bg),
            ("line", line),
            ("roi_size", size),
            ("slice", z),
        ):
            object.__setattr__(self, name, value)

    @classmethod
    def from_meta(
        cls,
        meta: dict | None,
        n_slices: int | None = None,
        *,
        image_size: int | None = None,
        **overrides: Any,
    ) -> ROISet:
        """The ROIs of ``meta`` (a ``meta.json`` dict, or None) with explicit values first.

        Parameters
        ----------
        meta : dict or None
            May hold ``signal_center``, ``background_center``, ``line``, ``roi_size`` and
            ``slice``, and ``rois``: one dict per slice with the first four.
        n_slices : int, optional
            Slices of the volume: the slice then defaults to meta's ``slice``, else
            ``n_slices // 2``, and is checked (negative indices count from the end) and
            returned in ``[0, n_slices)``; with per-slice ``rois`` (there must then be
            ``n_slices`` of them) the slice's own entry gives the defaults. Without it
            the slice is that given, or None, and the top-level values apply.
        image_size : int, optional
            Image side in pixels: without an ROI size, the simulator's rule for it
            (:func:`default_roi_size`) instead of :data:`DEFAULT_ROI_SIZE`.
        **overrides
            ``signal_center``, ``background_center`` (``"R,C"`` or a pair), ``line``
            (``"R0,C0,R1,C1"`` or two pairs), ``roi_size``, ``slice``; None means "not
            given". An explicit centre discards ``meta``'s line (the default line follows
            the ROIs).

        Raises
        ------
        ValueError
            No signal or background centre anywhere, a malformed point or line, an ROI
            size below 2, a slice that is not an integer or lies outside the volume,
            per-slice ``rois`` that are not a list of dicts or not one per slice.
        TypeError
            An unknown keyword.
        """
        unknown = sorted(set(overrides) - set(_FIELDS))
        if unknown:
            raise TypeError(f"unknown ROI field(s): {', '.join(unknown)}")
        meta = dict(meta or {})
        given = {k: v for k, v in overrides.items() if v is not None}
        if n_slices is not None and meta.get("rois") is not None:
            meta = _slice_entry(meta, int(n_slices), given.get("slice", meta.get("slice")))
        signal = given.get("signal_center", meta.get("signal_center"))
        background = given.get("background_center", meta.get("background_center"))
        if signal is None or background is None:
            raise ValueError(_MISSING)
        line = given.get("line")
        if line is None and "signal_center" not in given and "background_center" not in given:
            line = meta.get("line")
        size = given.get("roi_size", meta.get("roi_size"))
        # points, line and ROI size are checked (in that order) before the slice
        rois = cls(
            signal, background, line, default_roi_size(image_size) if size is None else size
        )
        z = given.get("slice", meta.get("slice"))
        if n_slices is not None:
            n_slices = int(n_slices)
            z = n_slices // 2 if z is None else _integer(z, "slice")
            if not -n_slices <= z < n_slices:
                raise ValueError(f"slice {z} is outside the volume ({n_slices} slices)")
            z = z % n_slices
        return dataclasses.replace(rois, slice=z)

    def to_dict(self) -> dict[str, Any]:
        """``signal_center``, ``background_center`` (``[row, col]``), ``line``
        (``[[r0, c0], [r1, c1]]``), ``roi_size`` and ``slice``: plain JSON values."""
        assert self.line is not None  # set by __post_init__
        return {
            "signal_center": list(self.signal_center),
            "background_center": list(self.background_center),
            "line": [list(p) for p in self.line],
            "roi_size": self.roi_size,
            "slice": self.slice,
        }

    def shapes(self) -> tuple[list[np.ndarray], list[str], dict[str, list[str]]]:
        """The napari shapes ``(data, shape_types, features)``: the signal square, the
        background square (``roi_size`` wide, corners at ``centre -/+ roi_size / 2``)
        and the line, in the order of :data:`ROLES`, with their roles as the ``role``
        feature."""
        data = [
            square(self.signal_center, self.roi_size),
            square(self.background_center, self.roi_size),
            np.asarray(self.line, dtype=float),
        ]
        return data, list(SHAPE_TYPES), {"role": list(ROLES)}


def _slice_entry(meta: dict, n_slices: int, z: Any) -> dict:
    """``meta`` with the top-level ROI values replaced by those of the slice's entry in
    ``meta["rois"]``; unchanged when the slice is not (yet) a valid index, so that the
    caller's checks report it."""
    per = meta["rois"]
    if not isinstance(per, list) or not all(isinstance(e, dict) for e in per):
        raise ValueError("'rois' must be a list with one dict of ROIs per slice")
    if len(per) != n_slices:
        raise ValueError(
            f"'rois' holds the ROIs of {len(per)} slice(s), but the volume has {n_slices}"
        )
    if z is None:
        z = n_slices // 2
    try:
        z = int(z)
    except (TypeError, ValueError):
        return meta
    if not -n_slices <= z < n_slices:
        return meta
    own = {k: v for k, v in per[z % n_slices].items() if k in _FIELDS and k != "slice"}
    return {
        **{
            k: v
            for k, v in meta.items()
            if k not in ("signal_center", "background_center", "line")
        },
        **own,
    }


def shape_indices(
    shape_types: Sequence[str], roles: Sequence[Any] | None = None
) -> dict[str, int]:
    """Which shape of a Shapes layer plays which role: ``{"signal": i, "background": j,
    "line": k}``, with the roles that could not be found left out.

    ``roles`` (the layer's ``role`` feature) decides when it labels every shape. Else, and
    for roles it does not name, the first two boxes (rectangle, polygon or ellipse) are
    the signal and background ROIs and the first line (or path) is the line.
    """
    types = list(shape_types)
    idx: dict[str, int] = {}
    if roles is not None:
        roles = [str(r) for r in roles]
        if len(roles) == len(types):
            for role in ROLES:
                if role in roles:
                    idx[role] = roles.index(role)
    if "signal" not in idx or "background" not in idx:
        boxes = [i for i, t in enumerate(types) if t in _BOX_TYPES]
        if len(boxes) >= 2:
            idx.setdefault("signal", boxes[0])
            idx.setdefault("background", boxes[1] if boxes[1] != idx["signal"] else boxes[0])
    if "line" not in idx:
        lines = [i for i, t in enumerate(types) if t in _LINE_TYPES]
        if lines:
            idx["line"] = lines[0]
    return idx
