"""Benchmark settings of the simulator: views per size, independent specimens, the body
mask and the share of ROI variance that streaks make up.

Views
    :func:`views_for` is the default number of views of :func:`simulate_dfct`: three per
    pixel of the slice width, rounded up to a multiple of 8 (the projector's fastest
    case), so 384 at 128 px, 768 at 256 px and the paper's **2400 shots per rotation at
    800 x 800**.
Independent specimens
    :func:`specimen_seeds`: the seeds of the specimens of a ``specimens=True`` simulation,
    derived from its seed (each specimen is the central slice of its own scan: its own
    anatomy, vibration and noise).
Body mask
    :func:`body_mask`: 1 inside the body outline (tissue, lung and the air cavities inside
    the body), 0 in the air around it; saved as :data:`MASK_FILE`.
Streaks against texture
    :func:`variance_shares`: in the signal (lung) ROI of each slice, the variance of the
    streaks (``input - truth``) against the truth's own (texture) variance.
Spread of the anatomy
    :func:`anatomy_spread`: how much body areas and ROI positions vary between the slices
    (specimens) of a set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "MASK_FILE",
    "anatomy_spread",
    "body_mask",
    "specimen_seeds",
    "variance_shares",
    "views_for",
]

#: File name of the body mask in a simulation folder (recorded as ``meta["mask"]``).
MASK_FILE = "body.tif"

#: Views per pixel of slice width in :func:`views_for`.
VIEWS_PER_PIXEL = 3


def views_for(size: int) -> int:
    """Default views per 360-degree rotation for ``size``-wide slices:
    ``VIEWS_PER_PIXEL * size`` rounded up to a multiple of 8 (2400 at 800 px)."""
    size = int(size)
    return 8 * -(-VIEWS_PER_PIXEL * size // 8)


def specimen_seeds(seed: int, n: int) -> list[int]:
    """Seeds of the ``n`` independent specimens of a simulation with seed ``seed``.

    Each is drawn from ``SeedSequence(seed, spawn_key=(7, k))``, so the specimens of two
    simulation seeds do not overlap (unlike ``seed + k``)."""
    return [
        int(np.random.SeedSequence(int(seed), spawn_key=(7, k)).generate_state(1)[0])
        for k in range(int(n))
    ]


def body_mask(labels: np.ndarray) -> np.ndarray:
    """uint8 mask, 1 inside the body (every label but the outside air, holes filled)."""
    from scipy import ndimage  # on use: the dfct command's help does not load scipy

    from .phantom import LABELS

    lab = np.asarray(labels)
    inside = lab != LABELS["air"]
    out = np.empty(lab.shape, dtype=np.uint8)
    if lab.ndim == 2:
        out[:] = ndimage.binary_fill_holes(inside)
        return out
    for k in range(lab.shape[0]):
        out[k] = ndimage.binary_fill_holes(inside[k])
    return out


def anatomy_spread(mask: np.ndarray, rois: Sequence[dict], pixel_size_mm: float) -> dict[str, Any]:
    """Spread of the anatomy over the slices of ``mask`` (one per specimen in a set of
    independent specimens): body area and ROI positions.

    Parameters
    ----------
    mask : np.ndarray
        ``(Z, Y, X)`` body mask (:func:`body_mask`).
    rois : sequence of dict
        One ROI set per slice (``signal_center``, ``background_center``,
        ``background_region``).
    pixel_size_mm : float
        Pixel size.

    Returns
    -------
    dict
        ``body_area_mm2``: ``mean``, ``sd``, ``cv`` (sd / mean), ``min``, ``max`` over
        the slices; ``signal_center`` and ``background_center``: the ``sd`` of rows and
        columns (px) and the number of ``distinct`` positions; ``roi_size``: ``min`` and
        ``max``; ``background_in_cavity``:
        the share of slices whose air ROI lies in an air cavity inside the body.
    """
    m = np.asarray(mask)
    m = m[None] if m.ndim == 2 else m
    area = m.reshape(m.shape[0], -1).sum(axis=1) * float(pixel_size_mm) ** 2
    mean = float(area.mean())
    out: dict[str, Any] = {
        "slices": int(m.shape[0]),
        "body_area_mm2": {
            "mean": round(mean, 1),
            "sd": round(float(area.std()), 1),
            "cv": round(float(area.std()) / mean, 4) if mean > 0 else 0.0,
            "min": round(float(area.min()), 1),
            "max": round(float(area.max()), 1),
        },
    }
    for key in ("signal_center", "background_center"):
        c = np.array([r[key] for r in rois], dtype=float).reshape(-1, 2)
        out[key] = {
            "row_sd": round(float(c[:, 0].std()), 2),
            "col_sd": round(float(c[:, 1].std()), 2),
            "distinct": len({tuple(p) for p in c.tolist()}),
        }
    sizes = [int(r["roi_size"]) for r in rois if "roi_size" in r]
    if sizes:  # the ROI shrinks where a full square does not fit (small specimens)
        out["roi_size"] = {"min": min(sizes), "max": max(sizes)}
    cavity = [r.get("background_region") == "air_cavity" for r in rois]
    out["background_in_cavity"] = round(float(np.mean(cavity)), 4) if cavity else 0.0
    return out


def _roi_block(image2d: np.ndarray, center: Sequence[float], size: int) -> np.ndarray:
    from ..metrics import roi_bounds

    r0, r1, c0, c1 = roi_bounds(center, size)
    return np.asarray(image2d[r0:r1, c0:c1], dtype=np.float64)


def variance_shares(
    input: np.ndarray,
    truth: np.ndarray,
    rois: dict | Sequence[dict],
    target: np.ndarray | None = None,
) -> dict[str, Any]:
    """Share of the lung-ROI variance of the input (and target) that streaks make up.

    In the signal (lung) ROI of each slice, the *streak variance* is the variance of
    ``input - truth`` (vibration streaks, tile rings and photon noise) and the *texture
    variance* that of ``truth`` (the lung's own texture and vessels after the same FBP);
    the streak share is ``streak / (streak + texture)``. Above 0.5 streaks, not texture,
    dominate the ROI noise; a CNR measured there then mostly reflects streaks.

    Parameters
    ----------
    input, truth : np.ndarray
        ``(Z, Y, X)`` (or ``(Y, X)``) reconstructions.
    rois : dict or sequence of dict
        One ROI dict for every slice (``signal_center``, ``roi_size``), or a sequence with
        one per slice (``meta["rois"]``).
    target : np.ndarray, optional
        Also report the target's share.

    Returns
    -------
    dict
        ``input`` (median share over slices), ``streak_variance`` and ``texture_variance``
        (medians, (1/m)^2), ``per_slice_input`` (shares); with a target also ``target``,
        ``target_streak_variance`` and ``per_slice_target``.
    """
    inp, tru = np.asarray(input), np.asarray(truth)
    if inp.ndim == 2:
        inp, tru = inp[None], tru[None]
        target = None if target is None else np.asarray(target)[None]
    if inp.shape != tru.shape:
        raise ValueError(f"input {inp.shape} and truth {tru.shape} differ in shape")
    per = [rois] * inp.shape[0] if isinstance(rois, dict) else list(rois)
    if len(per) != inp.shape[0]:
        raise ValueError(f"{len(per)} ROI sets for {inp.shape[0]} slices")
    rows: dict[str, list[float]] = {
        "streak": [],
        "texture": [],
        "input": [],
        "target_streak": [],
        "target": [],
    }
    for k, r in enumerate(per):
        centre, size = r["signal_center"], int(r["roi_size"])
        t = _roi_block(tru[k], centre, size)
        texture = float(t.var())
        streak = float((_roi_block(inp[k], centre, size) - t).var())
        rows["streak"].append(streak)
        rows["texture"].append(texture)
        rows["input"].append(streak / (streak + texture) if streak + texture > 0 else 0.0)
        if target is not None:
            ts = float((_roi_block(target[k], centre, size) - t).var())
            rows["target_streak"].append(ts)
            rows["target"].append(ts / (ts + texture) if ts + texture > 0 else 0.0)
    out: dict[str, Any] = {
        "roi": "signal",
        "input": float(np.median(rows["input"])),
        "streak_variance": float(np.median(rows["streak"])),
        "texture_variance": float(np.median(rows["texture"])),
        "per_slice_input": [round(v, 4) for v in rows["input"]],
    }
    if target is not None:
        out["target"] = float(np.median(rows["target"]))
        out["target_streak_variance"] = float(np.median(rows["target_streak"]))
        out["per_slice_target"] = [round(v, 4) for v in rows["target"]]
    return out
