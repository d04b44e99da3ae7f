"""A grid's test set of volumes: every scan predicted from its own slices, chosen slices
measured.

A test set given as a **data set of scans** (a pairs CSV or a folder of scans,
:mod:`napari_dfct.io.dataset`; e.g. ``dfct simulate TEST --specimens N --slices Z``, one
volume per specimen) is a volume test set:

* **Prediction.** Each run predicts the measured slices of every scan from that scan's
  own volume (``predict(model, volume, slices=...)``, which gives what predicting the
  whole volume gives): a context model reads slices ``z - K .. z + K`` and a 3-D model
  the z-chunks that reach slice ``z``, always of that scan, never of another one, and
  reflected at the scan's ends as ``dfct predict`` does (docs/context.md). A 2-D model
  predicts each slice alone, as for any test set.
* **Measured slices.** ``test_slices`` (``dfct grid --test-slices``: ``2-3``, ``3,5``,
  ``all``, ``center``; :func:`napari_dfct.io.dataset.parse_slice_spec`) chooses the same
  slices of every scan; without it, each scan's own ``slices`` of the data set (``all``
  in a ``dfct simulate --specimens N --slices Z`` folder, ``center`` where a table says
  nothing). A choice that does not fit every scan is refused (one line).
* **Measurement.** The measured slices of all scans, scan after scan, form one stack
  that is measured as any grid test volume
  (:func:`napari_dfct.experiment.scoring.measure_slices`): each slice with its own ROIs
  (its scan's ``meta.json``, per-slice ``rois`` where it has them; explicit ROI options
  first), against its scan's truth (``truth.tif``) and inside its body mask (``body.tif``
  or the ``mask`` of ``meta.json``). Truth, masks and ``meta.json`` are looked for in a
  scan's folder when its input file is named ``input.*`` (the folder convention), and a
  truth or a mask is used when every scan has one. The slices must share one size.
* **Representative slice** (``OUT/test-slice/``, each run's ``prediction.tif`` and the
  report's panels): the middle scan's own slice (its ``meta.json`` ``slice``, else its
  central slice) when it is measured, else the first measured slice of that scan; an
  explicit ``slice`` (``--test-slice K``) is the K-th measured slice of the stack.

``grid.json`` keeps every scan's files and measured slices (``test``), their fingerprints
(``data.test_scans``) and the measured slices (``test_slices``, compared when a grid is
started again: other test slices are refused).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._files import fingerprint
from ._util import _find_file, _mask_name, read_json

__all__ = [
    "check_neighbours",
    "check_test_folder",
    "origin",
    "predict_measured",
    "read_measured",
    "resolve_volume_test",
    "volume_test_settings",
]

#: Images of a volume test set, read scan by scan (``mask`` is boolean).
_KEYS = ("input", "target", "truth", "mask")


# --------------------------------------------------------------------------- resolution
def _read(path: str | Path) -> np.ndarray:
    """A volume as float32 ``(Z, Y, X)`` (a 2-D image is one slice)."""
    from ..io import read_volume

    data = np.asarray(read_volume(path)[0], dtype=np.float32)
    return data[None] if data.ndim == 2 else data


def _scan_files(pair) -> tuple[dict | None, Path | None, Path | None]:
    """``meta.json``, truth and body mask of one scan: in its folder, where its input file
    is named ``input.*`` (a ``dfct simulate`` folder is checked to be one write)."""
    if pair.input.stem.lower() != "input":
        return None, None, None
    from ..simulate import check_dataset

    folder = pair.input.parent
    check_dataset(folder)
    meta_path = folder / "meta.json"
    meta = read_json(meta_path, expect=dict) if meta_path.is_file() else None
    mask = folder / _mask_name(meta)
    return meta, _find_file(folder, "truth", required=False), mask if mask.is_file() else None


def resolve_volume_test(path: str | Path, test_slices: str | None = None) -> dict:
    """The scans of a test data set with their files and the slices to measure.

    Returns ``{"pairs": path, "scans": [...]}``, one dict per scan with ``name``,
    ``input``, ``target``, ``truth``, ``mask`` (str or None), ``slices`` (the measured
    slices), ``n_slices`` and ``meta`` (its ``meta.json`` or None). ``ValueError`` (one
    line) for an unreadable data set and for slices that a scan does not have.
    """
    from ..io.dataset import parse_slice_spec, read_pairs

    scans = []
    for pair in read_pairs(path):
        meta, truth, mask = _scan_files(pair)
        n = _read(pair.input).shape[0]
        try:
            slices = parse_slice_spec(test_slices if test_slices is not None else pair.slices, n)
        except ValueError as exc:
            hint = "; choose test slices that every test scan has" if test_slices else ""
            raise ValueError(f"test scan {pair.name!r}: {exc}{hint}") from None
        scans.append(
            {
                "name": pair.name,
                "input": str(pair.input.resolve()),
                "target": str(pair.target.resolve()),
                "truth": str(truth.resolve()) if truth else None,
                "mask": str(mask.resolve()) if mask else None,
                "slices": [int(z) for z in slices],
                "n_slices": int(n),
                "meta": meta,
            }
        )
    for key in ("truth", "mask"):  # used where every scan has one
        if not all(s[key] for s in scans):
            for s in scans:
                s[key] = None
    return {"pairs": str(Path(path).resolve()), "scans": scans}


# --------------------------------------------------------------------------- reading
def _measured(volume: np.ndarray, slices: list[int], key: str, scan: dict, shape) -> np.ndarray:
    """The measured slices of one image of a scan (a 2-D mask serves every slice)."""
    if key == "mask" and volume.shape[0] == 1 and shape[0] != 1:
        volume = np.broadcast_to(volume, shape)
    if volume.shape != tuple(shape):
        raise ValueError(
            f"test scan {scan['name']!r}: its {key} has shape {volume.shape}, its input {shape}"
        )
    out = volume[slices]
    return out != 0 if key == "mask" else out


def read_measured(
    test: dict, predict_fn: Callable[[np.ndarray, list[int]], np.ndarray] | None = None
) -> dict[str, np.ndarray | None]:
    """The measured slices of every scan of ``test`` (:func:`resolve_volume_test`, or its
    ``grid.json`` form), stacked scan after scan: ``input``, ``target``, ``truth`` and
    ``mask`` (None where the scans have none); with ``predict_fn(volume, slices)``, also
    ``prediction``: each scan's measured slices predicted from its whole input volume.

    One scan is in memory at a time. ``ValueError`` (one line) for images of a scan of
    different shapes, or scans whose slices differ in size.
    """
    parts: dict[str, list[np.ndarray]] = {k: [] for k in (*_KEYS, "prediction")}
    for scan in test["scans"]:
        zs = [int(z) for z in scan["slices"]]
        volume = _read(scan["input"])
        for key in _KEYS:
            if scan.get(key):
                image = volume if key == "input" else _read(scan[key])
                parts[key].append(_measured(image, zs, key, scan, volume.shape))
        if predict_fn is not None:
            parts["prediction"].append(np.asarray(predict_fn(volume, zs), dtype=np.float32))
        del volume
    sizes = sorted({f"{a.shape[1]}x{a.shape[2]}" for a in parts["input"]})
    if len(sizes) > 1:
        raise ValueError(
            f"the test scans of {test.get('pairs')} differ in slice size ({', '.join(sizes)}); "
            "the grid measures their slices as one stack: choose test scans of one size"
        )
    n = len(test["scans"])
    return {k: np.concatenate(v) if v and len(v) == n else None for k, v in parts.items()}


def predict_measured(model: Any, test: dict, device: str) -> tuple[dict, float]:
    """:func:`read_measured` with every scan's measured slices predicted by ``model`` (a
    loaded model) from that scan's volume; returns the stacks and the prediction time in
    seconds."""
    from ..infer import predict

    spent = [0.0]

    def predict_fn(volume: np.ndarray, slices: list[int]) -> np.ndarray:
        t0 = time.perf_counter()
        out = predict(model, volume, slices=slices, device=device)
        spent[0] += time.perf_counter() - t0
        return out

    stacks = read_measured(test, predict_fn)
    return stacks, spent[0]


# --------------------------------------------------------------------------- settings
def _rois(test: dict, roi: dict | None) -> tuple[dict, list[dict]]:
    """The ROIs of every measured slice (``slice``: its place in the stack) and those of
    the representative slice."""
    from ..roi import ROISet

    options = {k: v for k, v in dict(roi or {}).items() if k != "slice"}
    rois: list[dict] = []
    for scan in test["scans"]:
        for z in scan["slices"]:
            try:
                entry = ROISet.from_meta(scan["meta"], scan["n_slices"], **options, slice=z)
            except ValueError as exc:
                raise ValueError(f"test scan {scan['name']!r}: {exc}") from None
            rois.append({**entry.to_dict(), "slice": len(rois)})
    chosen = (roi or {}).get("slice")
    n = len(rois)
    if chosen is not None:
        k = int(chosen)
        if not -n <= k < n:
            raise ValueError(f"test slice {k} is outside the {n} measured test slices")
        return rois[k % n], rois
    middle = len(test["scans"]) // 2
    scan = test["scans"][middle]
    own = ROISet.from_meta(scan["meta"], scan["n_slices"], **options).slice
    first = sum(len(s["slices"]) for s in test["scans"][:middle])
    k = first + (scan["slices"].index(own) if own in scan["slices"] else 0)
    return rois[k], rois


def volume_test_settings(test: dict, roi: dict | None) -> tuple:
    """Everything ``grid.json`` and ``reference.json`` need of a volume test set
    (:func:`resolve_volume_test`): the representative slice's ROIs, the ROIs of every
    measured slice, the measured stacks, the files (``test``), their fingerprints
    (``test_scans``) and the measured slices (``{"test_slices": [[scan, slices], ...]}``).
    """
    volumes = read_measured(test)
    rep, rois = _rois(test, roi)
    keys = ("name", "input", "target", "truth", "mask", "slices")
    files = {"pairs": test["pairs"], "scans": [{k: s[k] for k in keys} for s in test["scans"]]}
    data = {
        "test_scans": [
            [s["name"], *(fingerprint(s[k]) if s[k] else None for k in keys[1:5])]
            for s in test["scans"]
        ]
    }
    chosen = {"test_slices": [[s["name"], list(s["slices"])] for s in test["scans"]]}
    return rep, rois, volumes, files, data, chosen


def origin(test_slices: list, k: int) -> tuple[str, int] | None:
    """Scan and slice of measured slice ``k`` of a volume test set (``test_slices`` of its
    ``grid.json`` or ``reference.json``); None when ``k`` is not one of them."""
    for name, slices in test_slices or ():
        if 0 <= k < len(slices):
            return str(name), int(slices[k])
        k -= len(slices)
    return None


# --------------------------------------------------------------------------- neighbours
def _refuse_flat(record: Any, what: str, context: int, dims: int) -> None:
    from ..context import check_one_scan_record

    try:
        check_one_scan_record(record, context, what, dims)
    except ValueError as exc:
        raise ValueError(
            f"{exc}; give dfct grid such a data set of volumes as its test set (--test "
            "FOLDER, with --test-slices for the slices to measure)"
        ) from None


def check_test_folder(folder: str | Path | None, context: int, dims: int = 2) -> None:
    """Refuse (one ``ValueError`` line, saying what to use instead) a context or 3-D grid
    whose test folder holds independent specimens, one slice each (``meta.json``:
    ``"acquisition": "independent"``): they have no neighbouring slices to predict from."""
    if folder is None or not (int(context) or int(dims) == 3):
        return
    meta = Path(folder) / "meta.json"
    if Path(folder).is_dir() and meta.is_file():
        try:
            record = read_json(meta, expect=dict)
        except (OSError, ValueError):
            return  # not a simulated set's record (read again, with its error, later)
        _refuse_flat(record, f"the test set {folder}", context, dims)


def check_neighbours(train_data: dict, test: dict, context: int, dims: int = 2) -> None:
    """Refuse (one ``ValueError`` line) a context or 3-D grid on data without neighbouring
    slices: a training or validation folder of independent specimens, a test folder of
    independent specimens, and a test volume or scan of one slice."""
    from ..context import check_one_scan_folder

    if not (int(context) or int(dims) == 3):
        return
    for key in ("input", "val_input"):
        if key in train_data:
            check_one_scan_folder(Path(train_data[key]).parent, context, dims)
    kind = f"context {int(context)}" if int(context) else "a 3-D model"
    if "scans" in test:
        for scan in test["scans"]:
            if scan["n_slices"] < 2:
                raise ValueError(
                    f"test scan {scan['name']!r} has one slice: {kind} predicts from "
                    "neighbouring slices of one scan; test on volumes of several slices"
                )
        return
    _refuse_flat(test.get("meta"), f"the test set {Path(test['input']).parent}", context, dims)
    if _read(test["input"]).shape[0] < 2:
        raise ValueError(
            f"the test input {test['input']} is one slice: {kind} predicts from neighbouring "
            "slices of one scan; test on a data set of volumes (dfct simulate TEST "
            "--specimens N --slices Z)"
        )
