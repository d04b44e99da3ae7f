"""Volumes of many specimens: a data set ``OUT/<specimen>/`` + ``OUT/pairs.csv``.

:func:`simulate_volumes` simulates ``n_specimens`` independent specimens, each a volume of
``n_slices`` contiguous slices of one acquisition (:func:`~.acquisition.simulate_dfct`
with the specimen's seed: the anatomy is continuous along z, and the slices share the
vibration of every rotation, so their streaks are correlated as in a cone-beam volume).
The specimens' seeds are those of ``--specimens N`` (:func:`~.realism.specimen_seeds`).
:func:`save_volumes` writes them as a data set (:func:`~.files.save_dataset`): one whole
set per specimen (``input.tif``, ``target.tif``, ``truth.tif``, ``body.tif``,
``meta.json`` with the ROIs of every slice), ``pairs.csv`` (every slice of every
specimen) and ``meta.json`` (the parameters, the specimens' seeds and the spread of their
anatomy, :func:`~.realism.anatomy_spread`), which ``dfct train --pairs OUT`` and
``dfct grid --train OUT`` read as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .acquisition import GENERATOR, Simulation, simulate_dfct
from .files import save_dataset, specimen_folder
from .realism import anatomy_spread, specimen_seeds

__all__ = ["save_volumes", "simulate_volumes"]


def simulate_volumes(
    n_specimens: int,
    n_slices: int,
    size: int = 256,
    n_views: int | None = None,
    rotations: int = 20,
    seed: int = 0,
    *,
    progress: Callable[[int, int], None] | None = None,
    **physics: Any,
) -> Iterator[tuple[str, Simulation]]:
    """Yield ``(folder name, Simulation)`` for each of ``n_specimens`` specimens, each an
    ``n_slices`` volume of its own acquisition; ``meta["specimen"]`` names the specimen
    (``name``, ``index``, ``seed``). ``progress(done, total)`` counts slices."""
    n = int(n_specimens)
    if n < 1:
        raise ValueError(f"n_specimens must be >= 1, got {n_specimens}")
    total = n * int(n_slices)
    for k, s in enumerate(specimen_seeds(seed, n)):

        def step(done: int, _total: int, k: int = k) -> None:
            if progress is not None:
                progress(k * int(n_slices) + done, total)

        sim = simulate_dfct(n_slices, size, n_views, rotations, s, progress=step, **physics)
        name = specimen_folder(k, n)
        sim.meta["specimen"] = {"name": name, "index": k, "seed": s, "set_seed": int(seed)}
        yield name, sim


def save_volumes(
    out_dir: str | Path,
    n_specimens: int,
    n_slices: int,
    size: int = 256,
    n_views: int | None = None,
    rotations: int = 20,
    seed: int = 0,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **physics: Any,
) -> dict[str, Any]:
    """Simulate (:func:`simulate_volumes`) and write a data set of specimen volumes, one
    specimen in memory at a time; return the data set's ``meta`` (also in
    ``OUT/meta.json``) with ``paths`` (the files written) added.

    ``meta`` holds the parameters, ``specimens`` (their folders and seeds), ``spread``
    (:func:`~.realism.anatomy_spread` over the specimens' central slices) and, per
    specimen, the median streak share of the input's lung-ROI variance.
    """
    central: dict[str, list] = {"mask": [], "rois": [], "share": [], "seeds": []}
    first: dict[str, Any] = {}

    def collect() -> Iterator[tuple[str, Simulation]]:
        for name, sim in simulate_volumes(
            n_specimens, n_slices, size, n_views, rotations, seed, progress=progress, **physics
        ):
            m = sim.meta
            first.setdefault("meta", m)
            central["mask"].append(np.asarray(sim.mask)[m["slice"]])
            central["rois"].append(m["rois"][m["slice"]])
            central["share"].append(round(float(m["streak_share"]["input"]), 4))
            central["seeds"].append(m["specimen"]["seed"])
            yield name, sim

    def meta() -> dict[str, Any]:
        m = first["meta"]
        keep = ("size", "n_views", "rotations", "pixel_size_mm", "slice_spacing_mm", "units")
        return {
            "generator": GENERATOR,
            "version": m["version"],
            "kind": "specimen volumes",
            "seed": int(seed),
            "n_specimens": len(central["seeds"]),
            "n_slices": int(n_slices),
            **{k: m[k] for k in keep},
            "physics": m["physics"],
            "specimen_seeds": central["seeds"],
            "spread": anatomy_spread(
                np.stack(central["mask"]), central["rois"], m["pixel_size_mm"]
            ),
            "streak_share_input": central["share"],
        }

    paths = save_dataset(collect(), out_dir, overwrite=overwrite, meta=meta)
    out = meta()
    out["paths"] = paths
    return out
