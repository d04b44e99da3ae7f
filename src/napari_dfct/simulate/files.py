"""Saving and loading simulated DFCT sets: three float32 volumes, the body mask and
``meta.json``.

The volumes are written by :func:`napari_dfct.io.write_volume` (TIFF), the body mask
(uint8 0/1, :data:`~.realism.MASK_FILE`) through :func:`napari_dfct._files.atomic_write`
and ``meta.json`` by :func:`napari_dfct._files.write_json` (strict JSON; non-finite floats
become ``null``).

A set is replaced as a whole. :func:`save_simulation` writes the new set into a hidden
sibling folder (``.OUT.new-<host>-<pid>-*``), ``meta.json`` last, and swaps it in with two
renames (``OUT`` to ``.OUT.old-<host>-<pid>-*``, the new folder to ``OUT``); files of the
old folder that are not part of a set (notes, a request stamp) are moved into the new one,
then the old folder is removed. A kill at any instant leaves the old set whole in ``OUT``,
the new set whole in ``OUT``, or ``OUT`` missing between the two renames; the hidden
folders of a dead process are cleaned (and a missing ``OUT`` restored from them: the
complete new set, else the old one) by the next write or read (:func:`recover_dataset`).

``meta.json`` records the set's generation (:data:`GENERATION_KEY`): a random id and the
size and SHA-256 of every file written with it. :func:`check_dataset` refuses a folder
whose files do not match it (files of different runs, a file replaced or cut short);
folders written before generation ids existed are accepted as they are.

A data set of many specimens (:func:`save_dataset`) is one folder ``OUT/<specimen>/`` per
specimen, each a whole set as above, plus ``OUT/pairs.csv`` (the pairs table of
:mod:`napari_dfct.io.dataset`) and ``OUT/meta.json``, whose generation lists
``pairs.csv`` and the generation id of every specimen's set. It is written and swapped in
as a whole in the same way, and :func:`check_dataset` checks every specimen's set too.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import secrets
import shutil
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .acquisition import Simulation
from .realism import MASK_FILE

__all__ = [
    "GENERATION_KEY",
    "check_dataset",
    "dataset_files",
    "load_simulation",
    "recover_dataset",
    "save_dataset",
    "save_simulation",
    "specimen_folder",
]

_FILES = ("input", "target", "truth")
_META = "meta.json"
_SET_NAMES = (*(f"{n}.tif" for n in _FILES), MASK_FILE, _META)
#: The key of ``meta.json`` that holds the set's generation: ``{"id": hex, "files":
#: {name: {"bytes": size, "sha256": hex}}}``.
GENERATION_KEY = "generation"
_WORK_KINDS = ("new", "old")
#: Specimen folders of a data set (:func:`save_dataset`) and its pairs table.
_SPECIMEN_DIR = re.compile(r"specimen-\d+")
_PAIRS = "pairs.csv"  # napari_dfct.io.dataset.PAIRS_FILE (a test checks they agree)


def specimen_folder(k: int, n: int) -> str:
    """Folder name of specimen ``k`` of ``n`` in a data set: ``specimen-000``, ..."""
    return f"specimen-{int(k):0{max(3, len(str(max(int(n) - 1, 0))))}d}"


def dataset_files(out_dir: str | Path) -> list[Path]:
    """Files of a simulated set already in ``out_dir`` (volumes, mask, ``meta.json``);
    empty when there are none (or no such folder)."""
    d = Path(out_dir)
    names = [f"{n}.tif" for n in _FILES] + [MASK_FILE, _PAIRS, _META]
    return [d / n for n in names if (d / n).exists()]


def save_simulation(
    sim: Simulation, out_dir: str | Path, *, overwrite: bool = True
) -> dict[str, Path]:
    """Write ``input.tif``, ``target.tif``, ``truth.tif`` (float32), ``body.tif`` (the
    body mask, uint8, when ``sim.mask`` is set) and ``meta.json`` (with the set's
    generation, :data:`GENERATION_KEY`).

    The whole set is written into a hidden sibling folder and swapped in by renames: a set
    already in ``out_dir`` stays whole until the new one is complete, and other files in
    ``out_dir`` are kept (see the module's notes). Leftovers of a killed earlier write
    are cleaned first (:func:`recover_dataset`).

    Parameters
    ----------
    sim : Simulation
        What to write.
    out_dir : str or Path
        Folder (created; its parent must be writable).
    overwrite : bool
        False: ``FileExistsError`` when the folder already holds a set
        (:func:`dataset_files`), before anything is written.

    Returns
    -------
    dict
        ``{"input": path, "target": path, "truth": path, ["mask": path,] "meta": path}``.
    """
    out, new = _prepare(out_dir, overwrite)
    try:
        names = _write_set(new, sim)
        _swap_in(new, out)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    return {key: out / name for key, name in names.items()}


def _prepare(out_dir: str | Path, overwrite: bool) -> tuple[Path, Path]:
    """``(out, new)``: the real output folder (leftovers of a killed write cleaned, an
    existing set refused unless ``overwrite``) and a new, empty hidden work folder."""
    out = _real(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    recover_dataset(out)
    if not overwrite:
        existing = dataset_files(out)
        if existing:
            raise FileExistsError(
                f"{out} already holds a simulated set ({', '.join(p.name for p in existing)})"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    new = _work_folder(out, "new")
    new.mkdir()
    return out, new


def save_dataset(
    specimens: Iterable[tuple[str, Simulation]],
    out_dir: str | Path,
    *,
    overwrite: bool = True,
    meta: Callable[[], dict] | dict | None = None,
) -> dict[str, Path]:
    """Write a data set of many specimens: ``OUT/<name>/`` per specimen (a whole set, as
    :func:`save_simulation` writes it), ``OUT/pairs.csv`` (every slice of every specimen:
    ``slices`` = ``all``) and ``OUT/meta.json`` (``meta``, or what ``meta()`` returns once
    every specimen is written, plus the generation).

    ``specimens`` is consumed one at a time (a generator holds one specimen in memory).
    The set is written into a hidden folder and swapped in as a whole, as by
    :func:`save_simulation`.

    Returns
    -------
    dict
        ``{"pairs": path, "meta": path, name: folder, ...}``.
    """
    from .._files import fingerprint, write_json

    out, new = _prepare(out_dir, overwrite)
    try:
        ids: dict[str, str] = {}
        for name, sim in specimens:
            if not _SPECIMEN_DIR.fullmatch(name) or name in ids:
                raise ValueError(f"bad or repeated specimen folder name {name!r}")
            (new / name).mkdir()
            _write_set(new / name, sim)
            ids[name] = _read_generation(new / name)
        rows = [f"{n},{n}/input.tif,{n}/target.tif,all" for n in ids]
        (new / _PAIRS).write_text("\n".join(["name,input,target,slices", *rows]) + "\n")
        top = dict((meta() if callable(meta) else meta) or {})
        top["specimens"] = ids
        top[GENERATION_KEY] = {
            "id": uuid.uuid4().hex,
            "files": {_PAIRS: fingerprint(new / _PAIRS)},
        }
        write_json(new / _META, top)
        _swap_in(new, out)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    return {"pairs": out / _PAIRS, "meta": out / _META, **{n: out / n for n in ids}}


def _read_generation(folder: Path) -> str:
    from .._files import read_json

    try:
        return str(read_json(folder / _META)[GENERATION_KEY]["id"])
    except (OSError, ValueError, KeyError, TypeError):  # unreadable, or no generation
        return ""


def _real(out_dir: str | os.PathLike) -> Path:
    """``out_dir``, or the folder a symbolic link there points to (the set goes there)."""
    out = Path(out_dir)
    return out.resolve() if out.is_symlink() else out


def _work_folder(out: Path, kind: str) -> Path:
    from .._procs import owner_tag

    return out.with_name(f".{out.name}.{kind}-{owner_tag()}-{secrets.token_hex(4)}")


def _write_set(folder: Path, sim: Simulation) -> dict[str, str]:
    """Write a whole set into the empty ``folder``, ``meta.json`` (with the generation:
    an id and every file's size and SHA-256) last; return ``{key: file name}``."""
    from .._files import fingerprint, write_json
    from ..io import write_volume

    names: dict[str, str] = {}
    for name in _FILES:
        names[name] = write_volume(folder / f"{name}.tif", getattr(sim, name)).name
    meta = {k: v for k, v in dict(sim.meta).items() if k != GENERATION_KEY}
    if sim.mask is not None:
        names["mask"] = _write_mask(folder / MASK_FILE, sim.mask).name
        meta["mask"] = MASK_FILE
    else:
        meta.pop("mask", None)
    meta[GENERATION_KEY] = {
        "id": uuid.uuid4().hex,
        "files": {n: fingerprint(folder / n) for n in names.values()},
    }
    names["meta"] = write_json(folder / _META, meta).name
    return names


def _swap_in(new: Path, out: Path) -> None:
    """Put the complete set ``new`` at ``out`` in renames (the old folder stays whole
    until the new one is in place), carry the old folder's other files over, remove it."""
    from .._files import _fsync_dir

    if not out.exists():
        os.rename(new, out)
        _fsync_dir(out.parent)
        return
    import stat

    os.chmod(new, stat.S_IMODE(out.stat().st_mode))  # a shared folder stays shared
    old = _work_folder(out, "old")
    os.rename(out, old)
    try:
        os.rename(new, out)
    except BaseException:
        os.rename(old, out)
        raise
    _fsync_dir(out.parent)
    _carry_over(old, out)
    _discard(old)


def _is_set_file(name: str) -> bool:
    """A file of a set, or a temporary file of an interrupted atomic write of one; or a
    specimen folder or the pairs table of a data set of many specimens."""
    return (
        name in _SET_NAMES
        or name == _PAIRS
        or bool(_SPECIMEN_DIR.fullmatch(name))
        or any(name.startswith(f".{n}.") and name.endswith(".tmp") for n in _SET_NAMES)
    )


def _carry_over(old: Path, out: Path) -> None:
    """Move what ``old`` holds besides a set into ``out`` (never over a file there)."""
    try:
        entries = list(old.iterdir())
    except OSError:
        return
    for entry in entries:
        if not _is_set_file(entry.name) and not os.path.lexists(out / entry.name):
            try:
                os.rename(entry, out / entry.name)
            except OSError:  # pragma: no cover - left in the old folder, removed with it
                pass


def _discard(old: Path) -> None:
    """Remove an old folder's set files, then the folder if nothing else is left in it (a
    file that could not be carried over is never deleted: the folder stays, hidden)."""
    try:
        entries = list(old.iterdir())
    except OSError:
        return
    for entry in entries:
        if _is_set_file(entry.name) and not entry.is_dir():
            with contextlib.suppress(OSError):
                entry.unlink()
        elif entry.is_dir() and not entry.is_symlink() and _SPECIMEN_DIR.fullmatch(entry.name):
            _discard(entry)  # a specimen's set: its files, then the folder if empty
    with contextlib.suppress(OSError):
        old.rmdir()


def recover_dataset(out_dir: str | os.PathLike) -> list[Path]:
    """Clean what a killed :func:`save_simulation` left beside ``out_dir``; return the
    hidden folders it found.

    Only hidden ``.OUT.new-*`` and ``.OUT.old-*`` folders of processes that are gone
    (:func:`napari_dfct._procs.left_by_dead_process`) are touched. When ``out_dir`` is
    missing (a kill between the two renames of a swap), the newest complete new set (its
    ``meta.json`` exists), else the newest old folder, is renamed back to ``out_dir``.
    Files of an old folder that are not part of a set are moved into ``out_dir``; then the
    hidden folders are removed (an old one only when nothing but set files was left in
    it). Errors (a read-only parent) leave things as they are.
    """
    from .._procs import left_by_dead_process

    out = _real(out_dir)
    try:
        siblings = list(out.parent.glob(f".{glob.escape(out.name)}.*-*"))
    except OSError:
        return []
    stale: dict[str, list[Path]] = {k: [] for k in _WORK_KINDS}
    for path in siblings:
        kind, _, rest = path.name[len(out.name) + 2 :].partition("-")
        tag = rest.rpartition("-")[0]
        if kind in stale and path.is_dir() and left_by_dead_process(tag, path):
            stale[kind].append(path)
    found = stale["new"] + stale["old"]
    try:
        if found and not os.path.lexists(out):
            complete = [p for p in stale["new"] if (p / _META).is_file()]
            pick = max(complete or stale["old"], key=_mtime, default=None)
            if pick is not None:
                os.rename(pick, out)
        for path in found:
            if path in stale["new"]:  # only files this module wrote
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                if out.is_dir():
                    _carry_over(path, out)
                _discard(path)
    except OSError:
        pass
    return found


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def check_dataset(folder: str | os.PathLike) -> None:
    """Refuse (``ValueError``, one line) a simulated set whose files were not written
    together.

    ``folder`` is first recovered (:func:`recover_dataset`). A folder without
    ``meta.json``, or whose ``meta.json`` has no generation (a set written before
    generation ids, or not by ``dfct simulate``), passes as it is. Otherwise every file the
    generation lists must be there with its recorded size and SHA-256, and no other file of
    a set (``input.tif``, ``target.tif``, ``truth.tif``, the body mask) may be there.
    """
    from .._files import fingerprint, read_json

    d = Path(folder)
    recover_dataset(d)
    meta_path = d / _META
    if not meta_path.is_file():
        return
    try:
        meta = read_json(meta_path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {meta_path}: {exc}") from None
    gen = meta.get(GENERATION_KEY) if isinstance(meta, dict) else None
    if gen is None:
        return
    files = gen.get("files") if isinstance(gen, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(v, dict) and k == Path(k).name and k not in ("", ".", "..")
        for k, v in files.items()
    ):
        raise ValueError(f"{meta_path}: its {GENERATION_KEY!r} record is damaged")
    again = "simulate the set again (dfct simulate ... --overwrite)"
    for name, want in files.items():
        path = d / name
        if not path.is_file():
            raise ValueError(f"{d} is not a whole set: {name} is missing; {again}")
        got = fingerprint(path) if path.stat().st_size == want.get("bytes") else None
        if got is None or got.get("sha256") != want.get("sha256"):
            raise ValueError(
                f"{d} mixes files of different writes: {name} is not the file written "
                f"with its meta.json (generation {str(gen.get('id'))[:8]}); {again}"
            )
    extra = [n for n in _SET_NAMES if n != _META and n not in files and (d / n).exists()]
    if extra:
        raise ValueError(
            f"{d} mixes files of different writes: {extra[0]} is not part of the set its "
            f"meta.json lists; {again}"
        )
    specimens = meta.get("specimens")
    for name, gen_id in specimens.items() if isinstance(specimens, dict) else ():
        if not isinstance(name, str) or not _SPECIMEN_DIR.fullmatch(name):
            raise ValueError(f"{meta_path}: its 'specimens' record is damaged")
        check_dataset(d / name)
        if not (d / name / _META).is_file() or _read_generation(d / name) != gen_id:
            raise ValueError(
                f"{d} mixes files of different writes: {name} is not the specimen written "
                f"with its meta.json; {again}"
            )


def _write_mask(path: Path, mask: np.ndarray) -> Path:
    import tifffile

    from .._files import atomic_write

    data = np.ascontiguousarray(mask, dtype=np.uint8)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]  # stored like the volumes of a single-slice set
    with atomic_write(path) as fh:
        tifffile.imwrite(
            fh, data, imagej=True, metadata={"axes": "ZYX" if data.ndim == 3 else "YX"}
        )
    return path


def load_simulation(out_dir: str | Path) -> Simulation:
    """Read a folder written by :func:`save_simulation` (``ValueError`` if incomplete or
    if its files were not written together, :func:`check_dataset`).

    The volumes are read by :func:`napari_dfct.io.read_volume`. A single-slice set comes
    back as ``(1, Y, X)``, as simulated (``meta["n_slices"] == 1``), although the writer
    stores it as one ``(Y, X)`` image. The body mask (the file ``meta["mask"]`` names, else
    ``body.tif``) is read when present (uint8, the volumes' shape); else ``mask`` is None.
    ``meta`` comes back without the generation record (it describes the files, not the
    simulation).
    """
    from ..io import read_volume

    d = Path(out_dir)
    check_dataset(d)
    if not d.is_dir():
        raise ValueError(f"{d} is not a directory")
    paths = {name: d / f"{name}.tif" for name in _FILES}
    for p in paths.values():
        if not p.is_file():
            raise ValueError(f"{p} is missing")
    p = d / _META
    meta = json.loads(p.read_text()) if p.is_file() else {}
    if isinstance(meta, dict):  # describes the files on disk, not the simulation
        meta.pop(GENERATION_KEY, None)
    single = isinstance(meta, dict) and meta.get("n_slices") == 1
    arrays = {}
    for name, p in paths.items():
        data = np.asarray(read_volume(p)[0], dtype=np.float32)
        arrays[name] = data[None] if data.ndim == 2 and single else data
    return Simulation(
        input=arrays["input"],
        target=arrays["target"],
        truth=arrays["truth"],
        meta=meta,
        mask=_read_mask(d, meta, arrays["input"].shape),
    )


def _read_mask(d: Path, meta, shape: tuple[int, ...]) -> np.ndarray | None:
    import tifffile

    name = meta.get("mask") if isinstance(meta, dict) else None
    path = d / (name if isinstance(name, str) and name else MASK_FILE)
    if not path.is_file():
        return None
    try:
        mask = np.asarray(tifffile.imread(path))
    except Exception as exc:  # noqa: BLE001 - any unreadable file: one message
        raise ValueError(f"cannot read the body mask {path}: {exc}") from None
    if mask.ndim == 2 and len(shape) == 3 and shape[0] == 1:
        mask = mask[None]
    if mask.shape != tuple(shape):
        raise ValueError(
            f"the body mask {path} has shape {mask.shape}, the volumes {tuple(shape)}"
        )
    return (mask != 0).astype(np.uint8)
