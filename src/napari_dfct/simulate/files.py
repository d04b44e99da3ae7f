"""Saving and loading simulated DFCT sets: three float32 volumes and ``meta.json``.

The volumes are written by :func:`napari_dfct.io.write_volume` (TIFF, replaced
atomically) and ``meta.json`` by :func:`napari_dfct._files.write_json` (strict JSON,
written atomically; non-finite floats become ``null``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .acquisition import Simulation

__all__ = ["load_simulation", "save_simulation"]

_FILES = ("input", "target", "truth")


def save_simulation(sim: Simulation, out_dir: str | Path) -> dict[str, Path]:
    """Write ``input.tif``, ``target.tif``, ``truth.tif`` (float32) and ``meta.json``.

    Returns
    -------
    dict
        ``{"input": path, "target": path, "truth": path, "meta": path}``.
    """
    from .._files import write_json
    from ..io import write_volume

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in _FILES:
        paths[name] = write_volume(out / f"{name}.tif", getattr(sim, name))
    paths["meta"] = write_json(out / "meta.json", sim.meta)
    return paths


def load_simulation(out_dir: str | Path) -> Simulation:
    """Read a folder written by :func:`save_simulation` (``ValueError`` if incomplete).

    The volumes are read by :func:`napari_dfct.io.read_volume`. A single-slice set comes
    back as ``(1, Y, X)``, as simulated (``meta["n_slices"] == 1``), although the writer
    stores it as one ``(Y, X)`` image.
    """
    from ..io import read_volume

    d = Path(out_dir)
    if not d.is_dir():
        raise ValueError(f"{d} is not a directory")
    paths = {name: d / f"{name}.tif" for name in _FILES}
    for p in paths.values():
        if not p.is_file():
            raise ValueError(f"{p} is missing")
    p = d / "meta.json"
    meta = json.loads(p.read_text()) if p.is_file() else {}
    arrays = {}
    for name, p in paths.items():
        data = np.asarray(read_volume(p)[0], dtype=np.float32)
        if data.ndim == 2 and isinstance(meta, dict) and meta.get("n_slices") == 1:
            data = data[None]
        arrays[name] = data
    return Simulation(**arrays, meta=meta)
