"""A blinded pairwise reader study: making it (trials, randomisation, windows) and opening it.

A study folder is self-contained, so a collaborator opens it anywhere:

``study.json``
    format version, the candidates (name, file, SHA-256), the chosen slices with one
    intensity window each, the trials, the seed, the question, ``allow_back``, the
    creation time and, when a truth was given, the reference (file, SHA-256, ROIs, mask);
``images/c0.npy``, ``images/c1.npy``, ...
    the chosen slices of each candidate, float32 (S, H, W) in the order of ``slices``,
    under neutral names whose order is drawn from the seed (never the candidate's name);
``images/reference.npy``, ``images/body.npy``
    the truth's slices and the body mask's slices, when a truth was given (used by the
    report and the model observer; never shown to a reader);
``judgments.csv``
    the answers (:mod:`napari_dfct.reader_study.judgments`), appended while the study runs.

Rules (each written once, here):

* a trial shows one slice of two candidates side by side; without ``trials`` every
  unordered pair appears on every chosen slice; with ``trials=N`` each pair appears
  ``N // P`` or ``N // P + 1`` times (P pairs), on distinct slices spread over the chosen
  ones;
* sides are balanced: for every pair the two orientations differ by at most one, and an
  odd pair's extra orientation goes to the candidate with fewer left places so far;
* the order of the trials is shuffled; then ``round(repeats * N)`` trials, drawn at random,
  are repeated with the sides swapped at a random later place (at least
  :data:`REPEAT_GAP` trials later where the study is long enough), ``repeat_of`` naming
  the first;
* one window per slice for every candidate: the 1st and 99th percentiles
  (:data:`WINDOW_PERCENTILES`) of all candidates' finite pixels on that slice, or the
  ``window`` given; so the window cannot give a candidate away;
* everything random comes from one ``numpy.random.default_rng(seed)``: the same inputs and
  seed make the same study, byte for byte apart from the creation time.

This module imports neither Qt nor napari.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._files import _fsync_dir, fingerprint, write_json

__all__ = [
    "DEFAULT_QUESTION",
    "FORMAT",
    "FORMAT_VERSION",
    "REPEAT_GAP",
    "STUDY_FILE",
    "WINDOW_PERCENTILES",
    "Study",
    "Trial",
    "make_study",
    "reference_slices",
    "validate_name",
]

#: The question a reader answers on every trial.
DEFAULT_QUESTION = "Which image shows the anatomy better, with fewer streaks and less noise?"
#: The study description file in the study folder.
STUDY_FILE = "study.json"
#: The folder of the study's images.
IMAGES_DIR = "images"
#: ``format`` of study.json and its version.
FORMAT = "napari-dfct reader study"
FORMAT_VERSION = 1
#: Percentiles of all candidates' pixels of a slice that make its default window.
WINDOW_PERCENTILES = (1.0, 99.0)
#: A repeated trial comes at least this many trials after its first showing (when possible).
REPEAT_GAP = 5
#: The file names of the truth's and the body mask's slices.
REFERENCE_FILE = "reference.npy"
BODY_FILE = "body.npy"

_BAD_NAME = re.compile(r'[,"\r\n]')


def validate_name(name: Any, what: str = "candidate name") -> str:
    """``name`` stripped; ValueError when empty or holding a comma, quote or newline (the
    judgments file is plain CSV)."""
    text = str(name).strip() if name is not None else ""
    if not text:
        raise ValueError(f"empty {what}")
    if _BAD_NAME.search(text):
        raise ValueError(f"{what} {text!r} holds a comma, quote or line break")
    return text


@dataclass(frozen=True)
class Trial:
    """One trial: slice ``slice`` of candidates ``left`` and ``right``, side by side.

    ``repeat_of`` is the index of the trial this one repeats with the sides swapped, or
    None for a first showing.
    """

    index: int
    slice: int
    left: str
    right: str
    repeat_of: int | None


# --------------------------------------------------------------------------------------
# opening a study
# --------------------------------------------------------------------------------------
class Study:
    """An opened study folder (:meth:`open`); its images are read memory-mapped.

    Attributes
    ----------
    dir : Path
    candidates : list of str
        Candidate names, in the order given when the study was made.
    trials : list of Trial
        In the order they are shown.
    slices : list of int
        The chosen slices (indices into the original volumes).
    question : str
    seed : int
    allow_back : bool
        Whether a reader may go back and change an answer (default False).
    meta : dict
        The whole study.json.
    """

    def __init__(self, study_dir: Path, meta: dict) -> None:
        self.dir = Path(study_dir)
        self.meta = meta
        self.candidates = [c["name"] for c in meta["candidates"]]
        self._files = {c["name"]: self.dir / c["file"] for c in meta["candidates"]}
        self.slices = [int(s) for s in meta["slices"]]
        self._row = {s: i for i, s in enumerate(self.slices)}
        self._windows = {int(w["slice"]): tuple(map(float, w["window"])) for w in meta["windows"]}
        self.trials = [
            Trial(int(t["index"]), int(t["slice"]), t["left"], t["right"], t["repeat_of"])
            for t in meta["trials"]
        ]
        self.question = str(meta.get("question", DEFAULT_QUESTION))
        self.seed = meta.get("seed")
        self.allow_back = bool(meta.get("allow_back", False))
        self._arrays: dict[str, np.ndarray] = {}

    @classmethod
    def open(cls, study_dir: str | os.PathLike) -> Study:
        """Open ``study_dir``, checking study.json and every image's SHA-256.

        Raises
        ------
        ValueError
            No or unreadable study.json, another format, a missing image, or an image
            whose checksum differs from study.json (the message names the file).
        """
        study_dir = Path(study_dir)
        meta = _read_meta(study_dir)
        for entry in _file_entries(meta):
            path = study_dir / entry["file"]
            if not path.is_file():
                raise ValueError(f"{path}: the study's image is missing")
            if _sha256(path) != entry["sha256"]:
                raise ValueError(
                    f"{path}: the file differs from the one the study was made with "
                    "(checksum mismatch); it was changed or damaged"
                )
        return cls(study_dir, meta)

    def __repr__(self) -> str:
        n, t = len(self.candidates), len(self.trials)
        return f"Study({str(self.dir)!r}, {n} candidates, {t} trials)"

    # images ---------------------------------------------------------------------------
    def _array(self, key: str, path: Path) -> np.ndarray:
        if key not in self._arrays:
            self._arrays[key] = np.load(path, mmap_mode="r", allow_pickle=False)
        return self._arrays[key]

    def _slice_row(self, slice: int) -> int:  # noqa: A002
        try:
            return self._row[int(slice)]
        except KeyError:
            raise ValueError(f"slice {slice} is not in the study (slices {self.slices})") from None

    def image(self, name: str, slice: int) -> np.ndarray:  # noqa: A002
        """Slice ``slice`` (an index of the original volume) of candidate ``name``, 2-D."""
        if name not in self._files:
            raise ValueError(f"no candidate {name!r} in the study")
        return self._array(name, self._files[name])[self._slice_row(slice)]

    def pair(self, trial_index: int) -> tuple[np.ndarray, np.ndarray]:
        """The (left, right) 2-D float32 images of trial ``trial_index``."""
        t = self.trials[int(trial_index)]
        return self.image(t.left, t.slice), self.image(t.right, t.slice)

    def window(self, slice: int) -> tuple[float, float]:  # noqa: A002
        """The intensity window ``(low, high)`` of every image of slice ``slice``."""
        self._slice_row(slice)
        low, high = self._windows[int(slice)]
        return low, high

    # the truth (never shown to readers) -------------------------------------------------
    @property
    def has_reference(self) -> bool:
        """Whether a truth was stored when the study was made."""
        return self.meta.get("reference") is not None

    def reference(self, slice: int) -> np.ndarray | None:  # noqa: A002
        """The stored truth's slice, or None."""
        ref = self.meta.get("reference")
        if ref is None:
            return None
        return self._array("reference", self.dir / ref["file"])[self._slice_row(slice)]

    def body(self, slice: int) -> np.ndarray | None:  # noqa: A002
        """The stored body mask's slice (bool), or None."""
        ref = self.meta.get("reference") or {}
        mask = ref.get("mask")
        if mask is None:
            return None
        return self._array("body", self.dir / mask["file"])[self._slice_row(slice)] != 0

    def rois(self, slice: int) -> dict | None:  # noqa: A002
        """The stored ROIs of slice ``slice`` (:meth:`napari_dfct.roi.ROISet.to_dict`), or
        None."""
        ref = self.meta.get("reference") or {}
        rois = ref.get("rois")
        if not rois:
            return None
        return rois[self._slice_row(slice)]


def _read_meta(study_dir: Path) -> dict:
    path = study_dir / STUDY_FILE
    if not path.is_file():
        raise ValueError(f"{study_dir} is not a reader study (no {STUDY_FILE})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a napari-dfct reader study")
    if int(meta.get("version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {meta.get('version')}; this napari-dfct reads "
            f"version {FORMAT_VERSION}: update napari-dfct"
        )
    return meta


def _file_entries(meta: dict) -> list[dict]:
    out = list(meta["candidates"])
    ref = meta.get("reference")
    if ref is not None:
        out.append(ref)
        if ref.get("mask") is not None:
            out.append(ref["mask"])
    return out


def _sha256(path: Path) -> str:
    return fingerprint(path)["sha256"]


# --------------------------------------------------------------------------------------
# making a study
# --------------------------------------------------------------------------------------
def make_study(
    study_dir: str | os.PathLike,
    images: Mapping[str, str | os.PathLike | np.ndarray],
    *,
    slices: str | int | Sequence[int] | None = None,
    trials: int | None = None,
    repeats: float = 0.1,
    seed: int = 0,
    window: tuple[float, float] | None = None,
    question: str = DEFAULT_QUESTION,
    reference: str | os.PathLike | np.ndarray | None = None,
    allow_back: bool = False,
) -> Study:
    """Make a blinded pairwise study in ``study_dir`` (the module's rules) and open it.

    Parameters
    ----------
    study_dir : path
        A new or empty folder; an existing study is returned unchanged when it is exactly
        the study these arguments make.
    images : mapping name -> path or array
        At least two candidates: volumes (Z, H, W) or slices (H, W) of one shape, files
        read with :func:`napari_dfct.io.read_volume` (TIFF, NumPy, DICOM).
    slices : str or int or sequence of int, optional
        ``center`` (default), ``all``, ``120-130``, ``3,5,7`` (as
        :func:`napari_dfct.io.dataset.parse_slice_spec`) or indices.
    trials : int, optional
        A balanced subset of this many first showings (default: every pair on every slice).
    repeats : float
        Fraction of the first showings repeated later with the sides swapped (0 to 1).
    seed : int
    window : (low, high), optional
        One window for every slice instead of the per-slice percentiles.
    question : str
    reference : path or array, optional
        The truth (same shape): stored for the report's metrics and the model observer,
        with the ROIs of a ``meta.json`` and the body mask next to a truth file.
    allow_back : bool
        Whether readers may go back and change answers.

    Raises
    ------
    ValueError
        Fewer than two candidates, a bad or duplicate name, shapes that differ, a bad slice
        spec, trial count, repeat fraction or window, or a non-empty folder holding
        something else.
    """
    names, arrays = _candidates(images)
    shape = arrays[0].shape
    chosen = _chosen_slices(slices, shape)
    stacks = [_stack(a, chosen) for a in arrays]
    rng = np.random.default_rng(int(seed))
    order = rng.permutation(len(names))  # neutral file names in an order drawn from the seed
    files = {names[int(k)]: f"{IMAGES_DIR}/c{i}.npy" for i, k in enumerate(order)}
    windows = _windows(stacks, chosen, window)
    trial_list = _make_trials(names, chosen, trials, repeats, rng)
    ref = reference_slices(reference, shape, chosen) if reference is not None else None
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "seed": int(seed),
        "question": str(question),
        "allow_back": bool(allow_back),
        "shape": list(shape),
        "slices": chosen,
        "repeats": float(repeats),
        "candidates": [],
        "windows": [{"slice": s, "window": list(w)} for s, w in zip(chosen, windows)],
        "trials": [
            {"index": t.index, "slice": t.slice, "left": t.left, "right": t.right,
             "repeat_of": t.repeat_of}
            for t in trial_list
        ],
        "reference": None,
    }  # fmt: skip
    return _write_study(Path(study_dir), meta, dict(zip(names, stacks)), files, ref)


def _candidates(images: Mapping[str, Any]) -> tuple[list[str], list[np.ndarray]]:
    if not isinstance(images, Mapping):
        raise ValueError("images must map candidate names to files or arrays")
    names: list[str] = []
    for raw in images:
        name = validate_name(raw)
        if name in names:
            raise ValueError(f"duplicate candidate name {name!r}")
        names.append(name)
    if len(names) < 2:
        raise ValueError(f"a study needs at least 2 candidates, got {len(names)}")
    arrays = [_volume(v, f"candidate {n!r}") for n, v in zip(names, images.values())]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        listing = ", ".join(f"{n} {a.shape}" for n, a in zip(names, arrays))
        raise ValueError(f"the candidates' shapes differ: {listing}")
    return names, arrays


def _volume(value: Any, what: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        arr = value
    else:
        from ..io import read_volume

        arr, _ = read_volume(value)
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3):
        raise ValueError(f"{what} must be a volume (Z, H, W) or a slice (H, W), got {arr.shape}")
    return arr


def _chosen_slices(slices: Any, shape: tuple[int, ...]) -> list[int]:
    n = shape[0] if len(shape) == 3 else 1
    if len(shape) == 2:
        if slices not in (None, 0, "0", "center", "all", [0], (0,)):
            raise ValueError(f"a 2-D image has one slice (0), got slices={slices!r}")
        return [0]
    if slices is None or isinstance(slices, str):
        from ..io.dataset import parse_slice_spec

        return parse_slice_spec(slices, n)
    items = [slices] if isinstance(slices, int | np.integer) else list(slices)
    out = []
    for s in items:
        i = int(s)
        if not 0 <= i < n:
            raise ValueError(f"slice {s} is out of range: the volumes have {n} slices (0-{n - 1})")
        out.append(i)
    if not out:
        raise ValueError("no slices chosen")
    return list(dict.fromkeys(out))


def _stack(arr: np.ndarray, chosen: list[int]) -> np.ndarray:
    arr = arr[None] if arr.ndim == 2 else arr[chosen]
    return np.ascontiguousarray(arr, dtype=np.float32)


def _windows(stacks: list[np.ndarray], chosen: list[int], window: Any) -> list[tuple]:
    if window is not None:
        lo, hi = (float(v) for v in window)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"window must be two finite numbers LOW < HIGH, got {window!r}")
        return [(lo, hi)] * len(chosen)
    out = []
    for k in range(len(chosen)):
        values = np.concatenate([s[k].ravel() for s in stacks])
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise ValueError(f"slice {chosen[k]} has no finite pixel in any candidate")
        lo, hi = (float(v) for v in np.percentile(values, WINDOW_PERCENTILES))
        if not hi > lo:
            hi = lo + 1.0
        out.append((lo, hi))
    return out


def _make_trials(
    names: list[str], chosen: list[int], trials: int | None, repeats: float, rng
) -> list[Trial]:
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
    total = len(pairs) * len(chosen)
    if trials is None:
        counts = [len(chosen)] * len(pairs)
    else:
        if isinstance(trials, bool) or int(trials) != trials or not 1 <= int(trials) <= total:
            raise ValueError(
                f"trials must be a whole number from 1 to {total} (every pair on every slice), "
                f"got {trials!r}"
            )
        base, extra = divmod(int(trials), len(pairs))
        counts = [base] * len(pairs)
        for p in rng.permutation(len(pairs))[:extra]:
            counts[int(p)] += 1
    repeats = float(repeats)
    if not 0.0 <= repeats <= 1.0:
        raise ValueError(f"repeats must be a fraction from 0 to 1, got {repeats!r}")
    shown: list[tuple[int, str, str]] = []  # (slice, a, b) in pair order
    for (a, b), c in zip(pairs, counts):
        perm = rng.permutation(len(chosen))
        shown.extend((chosen[int(k)], a, b) for k in perm[:c])
    sides = _balanced_sides(shown, names, rng)
    first = [(s, a, b) if keep else (s, b, a) for (s, a, b), keep in zip(shown, sides)]
    first = [first[int(k)] for k in rng.permutation(len(first))]
    return _with_repeats(first, repeats, rng)


def _balanced_sides(shown: list[tuple[int, str, str]], names: list[str], rng) -> list[bool]:
    """For each (slice, a, b): True shows ``a`` on the left. Each pair's orientations differ
    by at most one; an odd pair's extra orientation goes to the candidate with fewer left
    places so far."""
    by_pair: dict[tuple[str, str], list[int]] = {}
    for i, (_s, a, b) in enumerate(shown):
        by_pair.setdefault((a, b), []).append(i)
    out = [True] * len(shown)
    lefts = dict.fromkeys(names, 0)
    odd = []
    for (a, b), idx in by_pair.items():
        idx = [idx[int(k)] for k in rng.permutation(len(idx))]
        half = len(idx) // 2
        for i in idx[:half]:
            out[i] = False
        lefts[a] += len(idx) - half - (len(idx) % 2)
        lefts[b] += half
        if len(idx) % 2:
            odd.append(((a, b), idx[-1]))
    for k in rng.permutation(len(odd)):
        (a, b), i = odd[int(k)]
        if lefts[b] < lefts[a] or (lefts[a] == lefts[b] and rng.random() < 0.5):
            out[i] = False
            lefts[b] += 1
        else:
            out[i] = True
            lefts[a] += 1
    return out


def _with_repeats(first: list[tuple[int, str, str]], repeats: float, rng) -> list[Trial]:
    n_rep = int(round(repeats * len(first)))
    items: list[list] = [[s, left, right, None] for s, left, right in first]
    originals = list(items)
    for k in rng.choice(len(first), size=n_rep, replace=False):
        orig = originals[int(k)]
        pos = next(i for i, it in enumerate(items) if it is orig)
        at = int(rng.integers(min(pos + 1 + REPEAT_GAP, len(items)), len(items) + 1))
        items.insert(at, [orig[0], orig[2], orig[1], orig])
    index = {id(it): i for i, it in enumerate(items)}
    return [
        Trial(i, int(s), left, right, None if of is None else index[id(of)])
        for i, (s, left, right, of) in enumerate(items)
    ]


def reference_slices(reference: Any, shape: tuple[int, ...], chosen: list[int]) -> dict:
    """The truth's slices, and, next to a truth file, the ROIs of its meta.json and the body
    mask's slices."""
    from ..roi import ROISet, read_meta

    arr = _volume(reference, "reference")
    if arr.shape != shape:
        raise ValueError(f"the reference's shape {arr.shape} differs from the candidates' {shape}")
    out: dict[str, Any] = {"stack": _stack(arr, chosen), "rois": None, "body": None}
    if isinstance(reference, np.ndarray):
        return out
    meta, meta_path = read_meta(reference)
    if meta is not None:
        n = shape[0] if len(shape) == 3 else None
        try:
            out["rois"] = [
                ROISet.from_meta(meta, n, image_size=shape[-1], slice=s if n else None).to_dict()
                for s in chosen
            ]
        except ValueError as exc:
            raise ValueError(f"{meta_path}: {exc}") from None
    mask_path = _mask_path(Path(reference), meta)
    if mask_path is not None:
        mask = _volume(str(mask_path), "body mask")
        if mask.shape == shape[-2:] and len(shape) == 3:
            mask = np.broadcast_to(mask, shape)
        if mask.shape != shape:
            raise ValueError(f"{mask_path}: mask shape {mask.shape} differs from {shape}")
        out["body"] = _stack(np.asarray(mask != 0, dtype=np.float32), chosen)
    return out


def _mask_path(reference: Path, meta: dict | None) -> Path | None:
    from ..roi import default_mask_path

    return default_mask_path(reference, meta)


def _write_study(
    study_dir: Path, meta: dict, stacks: dict, files: dict, ref: dict | None
) -> Study:
    """Write the study into a temporary folder next to ``study_dir`` and move it into place
    in one rename: a crash never leaves half a study."""
    parent = study_dir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{study_dir.name}.", suffix=".tmp", dir=parent))
    try:
        (tmp / IMAGES_DIR).mkdir()
        for name in stacks:
            np.save(tmp / files[name], stacks[name], allow_pickle=False)
            meta["candidates"].append(
                {"name": name, "file": files[name], "sha256": _sha256(tmp / files[name])}
            )
        if ref is not None:
            meta["reference"] = _write_reference(tmp, ref)
        same = _existing(study_dir, meta)
        if same is not None:
            return same
        meta["created"] = (
            _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")
        )
        write_json(tmp / STUDY_FILE, meta)
        if study_dir.exists():
            study_dir.rmdir()  # empty (checked by _existing); rename cannot replace a folder
        os.rename(tmp, study_dir)
        _fsync_dir(parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return Study.open(study_dir)


def _write_reference(tmp: Path, ref: dict) -> dict:
    out: dict[str, Any] = {"file": f"{IMAGES_DIR}/{REFERENCE_FILE}"}
    np.save(tmp / out["file"], ref["stack"], allow_pickle=False)
    out["sha256"] = _sha256(tmp / out["file"])
    out["rois"] = ref["rois"]
    out["mask"] = None
    if ref["body"] is not None:
        mask = {"file": f"{IMAGES_DIR}/{BODY_FILE}"}
        np.save(tmp / mask["file"], ref["body"], allow_pickle=False)
        mask["sha256"] = _sha256(tmp / mask["file"])
        out["mask"] = mask
    return out


def _existing(study_dir: Path, meta: dict) -> Study | None:
    """None when ``study_dir`` is missing or empty; the opened study when it is exactly this
    one; else ValueError."""
    if not study_dir.exists():
        return None
    if not study_dir.is_dir():
        raise ValueError(f"{study_dir} exists and is not a folder")
    if not any(study_dir.iterdir()):
        return None
    try:
        old = _read_meta(study_dir)
    except ValueError:
        old = None
    if old is not None:
        strip = {"created"}
        if {k: v for k, v in old.items() if k not in strip} == json.loads(
            json.dumps({k: v for k, v in meta.items() if k not in strip})
        ):
            return Study.open(study_dir)
    raise ValueError(f"{study_dir} is not empty and does not hold this study; choose a new folder")
