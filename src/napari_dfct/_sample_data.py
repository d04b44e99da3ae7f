"""The ``thorax`` sample of the napari manifest: a simulated DFCT set with ROIs.

:func:`make_sample_data` returns napari ``LayerData`` tuples (no napari import needed):
three image layers with shared contrast limits, bottom to top ``truth``,
``target (20 rotations)`` and ``input (1 rotation)`` (so the streaky input, the image to
improve, is what a user sees first), and the ``DFCT ROIs`` Shapes layer of the project's
ROI convention (signal square, background square, line; ``features["role"]``). Each image
layer carries the simulation record (with the ROIs) in ``metadata["dfct"]``, where the
Measure widget's *Reset ROIs* finds them again.

The arrays come from :func:`napari_dfct.simulate.simulate_dfct` (16 slices of 256 x 256,
360 views, 20 rotations) and are cached after the first call in
``$NAPARI_DFCT_CACHE_DIR``, else ``$XDG_CACHE_HOME/napari-dfct``, else
``~/.cache/napari-dfct``, as a float32 ``.npz`` plus a JSON file (never a pickle), keyed by
the parameters, the package version and the simulator's source (every ``*.py`` file of the
simulator). An unwritable or damaged cache is ignored.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._files import atomic_write, user_cache_dir
from .roi import LAYER_NAME, ROISet

__all__ = [
    "SAMPLE_PARAMS",
    "cache_dir",
    "contrast_limits",
    "load_sample",
    "make_sample_data",
    "roi_layer_data",
]

#: Parameters of the sample simulation.
SAMPLE_PARAMS: dict[str, Any] = {
    "n_slices": 16,
    "size": 256,
    "n_views": 360,
    "rotations": 20,
    "seed": 0,
}

_ARRAYS = ("input", "target", "truth")
#: Image layers of the sample, bottom to top: the streaky input is on top.
LAYER_ORDER = ("truth", "target", "input")

#: Edge colours of the ROI shapes, by role.
ROI_COLORS = {"signal": "orange", "background": "cyan", "line": "yellow"}


def cache_dir() -> Path:
    """Folder of the sample cache (see the module docstring): the package's cache folder
    (:func:`napari_dfct._files.user_cache_dir`)."""
    return user_cache_dir()


def _simulator_sources() -> list[tuple[str, Path]]:
    """The simulator's Python files as sorted ``(name, path)`` pairs: every ``*.py`` of the
    ``napari_dfct.simulate`` package folder (names relative to it), or the single module
    file."""
    from . import simulate

    path = Path(simulate.__file__)
    if path.name != "__init__.py":
        return [(path.name, path)]
    root = path.parent
    return sorted((p.relative_to(root).as_posix(), p) for p in root.rglob("*.py"))


def _key(params: dict) -> str:
    """Cache key: the parameters, the package version and the simulator's source (every
    file of it, so an edited simulator never serves stale arrays)."""
    digest = hashlib.sha256()
    try:
        for name, path in _simulator_sources():
            digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
        source = digest.hexdigest()
    except OSError:
        source = ""
    blob = json.dumps(
        {"params": params, "version": __version__, "simulator": source}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _read_cache(folder: Path, key: str, params: dict) -> tuple[dict, dict] | None:
    npz, js = folder / f"thorax-{key}.npz", folder / f"thorax-{key}.json"
    try:
        meta = json.loads(js.read_text())
        shape = (params["n_slices"], params["size"], params["size"])
        with np.load(npz, allow_pickle=False) as f:
            arrays = {k: np.asarray(f[k], dtype=np.float32) for k in _ARRAYS}
        if any(a.shape != shape for a in arrays.values()):
            return None
        return arrays, meta
    except (OSError, ValueError, KeyError, EOFError):
        return None


def _write_cache(folder: Path, key: str, arrays: dict, meta: dict) -> None:
    """Write atomically (:func:`napari_dfct._files.atomic_write`); ignore any failure."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(folder / f"thorax-{key}.npz") as fh:
            np.savez(fh, **arrays)
        with atomic_write(folder / f"thorax-{key}.json") as fh:
            fh.write(json.dumps(meta, indent=1).encode())
    except OSError:
        pass


def load_sample(**overrides: Any) -> tuple[dict[str, np.ndarray], dict]:
    """Arrays (``input``, ``target``, ``truth``) and meta of the sample, cached.

    Parameters
    ----------
    **overrides
        Replace entries of :data:`SAMPLE_PARAMS` (mainly for tests).
    """
    params = {**SAMPLE_PARAMS, **overrides}
    key = _key(params)
    folder = cache_dir()
    hit = _read_cache(folder, key, params)
    if hit is not None:
        return hit
    from .simulate import simulate_dfct

    sim = simulate_dfct(**params)
    arrays = {k: np.ascontiguousarray(getattr(sim, k), dtype=np.float32) for k in _ARRAYS}
    _write_cache(folder, key, arrays, sim.meta)
    return arrays, sim.meta


def roi_layer_data(meta: dict) -> tuple[list[np.ndarray], dict, str]:
    """The ``DFCT ROIs`` Shapes ``LayerData`` for a simulation's meta.

    Three 2-D shapes (they broadcast over z), :meth:`napari_dfct.roi.ROISet.shapes`: the
    signal (lung) square, the background (air) square, both ``roi_size`` wide with corners
    at ``centre -/+ roi_size / 2``, and the line (by default from the signal centre to the
    background centre).
    """
    rois = ROISet.from_meta(meta, image_size=meta.get("size"))
    data, shape_types, features = rois.shapes()
    kwargs = {
        "name": LAYER_NAME,
        "shape_type": shape_types,
        "features": features,
        "edge_color": [ROI_COLORS[r] for r in features["role"]],
        "face_color": "transparent",
        "edge_width": 2,
        "opacity": 1.0,
    }
    return data, kwargs, "shapes"


def contrast_limits(truth: np.ndarray) -> list[float]:
    """Display window shared by the image layers, from the truth's percentiles.

    Air (0) and the lung (its 99.5th percentile) sit inside the window with room below
    and above, so negative and positive streaks stay visible instead of clipping.
    """
    lo, hi = np.percentile(truth, [0.5, 99.5])
    span = float(hi - lo) or 1.0
    return [float(lo - 0.35 * span), float(hi + 0.25 * span)]


def make_sample_data(**overrides: Any) -> list[tuple]:
    """Simulated DFCT thorax: truth, target and input image layers (input on top) and
    the ROI layer.

    Returns
    -------
    list of LayerData
        ``(data, kwargs, layer_type)`` tuples, as napari sample-data providers return.
    """
    arrays, meta = load_sample(**overrides)
    limits = contrast_limits(arrays["truth"])
    rotations = int(meta.get("rotations", SAMPLE_PARAMS["rotations"]))
    names = {
        "input": "input (1 rotation)",
        "target": f"target ({rotations} rotations)",
        "truth": "truth",
    }
    layers: list[tuple] = []
    for key in LAYER_ORDER:
        kwargs = {
            "name": names[key],
            "colormap": "gray",
            "contrast_limits": limits,
            "metadata": {"dfct": meta, "role": key},
        }
        layers.append((arrays[key], kwargs, "image"))
    layers.append(roi_layer_data(meta))
    return layers
