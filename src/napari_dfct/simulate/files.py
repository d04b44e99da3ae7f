"""Saving and loading simulated DFCT sets: three float32 volumes, the body mask and
``meta.json``.

The volumes are written by :func:`napari_dfct.io.write_volume` (TIFF, replaced
atomically), the body mask (uint8 0/1, :data:`~.realism.MASK_FILE`) through
:func:`napari_dfct._files.atomic_write` and ``meta.json`` by
:func:`napari_dfct._files.write_json` (strict JSON, written atomically; non-finite floats
become ``null``). Every file is complete or absent at any instant. ``meta.json`` is
removed first and written last, so a folder whose ``meta.json`` exists holds one complete
set even when a write was interrupted while replacing an older one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .acquisition import Simulation
from .realism import MASK_FILE

__all__ = ["dataset_files", "load_simulation", "save_simulation"]

_FILES = ("input", "target", "truth")
_META = "meta.json"


def dataset_files(out_dir: str | Path) -> list[Path]:
    """Files of a simulated set already in ``out_dir`` (volumes, mask, ``meta.json``);
    empty when there are none (or no such folder)."""
    d = Path(out_dir)
    names = [f"{n}.tif" for n in _FILES] + [MASK_FILE, _META]
    return [d / n for n in names if (d / n).exists()]


def save_simulation(
    sim: Simulation, out_dir: str | Path, *, overwrite: bool = True
) -> dict[str, Path]:
    """Write ``input.tif``, ``target.tif``, ``truth.tif`` (float32), ``body.tif`` (the
    body mask, uint8, when ``sim.mask`` is set) and ``meta.json``.

    Parameters
    ----------
    sim : Simulation
        What to write.
    out_dir : str or Path
        Folder (created).
    overwrite : bool
        False: ``FileExistsError`` when the folder already holds a set
        (:func:`dataset_files`), before anything is written.

    Returns
    -------
    dict
        ``{"input": path, "target": path, "truth": path, ["mask": path,] "meta": path}``.
    """
    from .._files import write_json
    from ..io import write_volume

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    if not overwrite:
        existing = dataset_files(out)
        if existing:
            raise FileExistsError(
                f"{out} already holds a simulated set ({', '.join(p.name for p in existing)})"
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / _META).unlink(missing_ok=True)  # written last: marks a complete set
    paths: dict[str, Path] = {}
    for name in _FILES:
        paths[name] = write_volume(out / f"{name}.tif", getattr(sim, name))
    meta = dict(sim.meta)
    if sim.mask is not None:
        paths["mask"] = _write_mask(out / MASK_FILE, sim.mask)
        meta["mask"] = MASK_FILE
    else:
        meta.pop("mask", None)
    paths["meta"] = write_json(out / _META, meta)
    return paths


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
    """Read a folder written by :func:`save_simulation` (``ValueError`` if incomplete).

    The volumes are read by :func:`napari_dfct.io.read_volume`. A single-slice set comes
    back as ``(1, Y, X)``, as simulated (``meta["n_slices"] == 1``), although the writer
    stores it as one ``(Y, X)`` image. The body mask (the file ``meta["mask"]`` names, else
    ``body.tif``) is read when present (uint8, the volumes' shape); else ``mask`` is None.
    """
    from ..io import read_volume

    d = Path(out_dir)
    if not d.is_dir():
        raise ValueError(f"{d} is not a directory")
    paths = {name: d / f"{name}.tif" for name in _FILES}
    for p in paths.values():
        if not p.is_file():
            raise ValueError(f"{p} is missing")
    p = d / _META
    meta = json.loads(p.read_text()) if p.is_file() else {}
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
