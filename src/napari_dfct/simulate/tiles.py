"""Tiled-grating errors of the DFCT simulator (``Physics.tiles > 0``): a visibility error
per tile and rotation that hardly changes from view to view (an offset and a linear drift,
plus extra errors at the tile seams); FBP turns such view-constant detector-column errors
into rings and ring bands (:mod:`.acquisition`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _tile_profiles(rng, n_det: int, tiles: int, amplitude: float):
    """(offset, drift) visibility-error profiles of one rotation across the detector:
    one value per tile, plus an extra error on the two bins at each seam. The tiling is
    shifted by a third of a tile, so that no seam meets the iso-centre."""
    tile_of = ((np.arange(n_det) + n_det / (3.0 * tiles)) * tiles // n_det).astype(int)
    tile_of = np.minimum(tile_of, tiles - 1)
    offset = (amplitude * rng.standard_normal(tiles))[tile_of]
    drift = (amplitude * rng.standard_normal(tiles))[tile_of]
    seams = np.nonzero(np.diff(tile_of))[0]
    extra = 3.0 * amplitude * rng.standard_normal(len(seams))
    offset[seams] += extra
    offset[seams + 1] += extra
    return offset, drift


def _tile_fields(phys: Any, seed: int, rotations: int, n_views: int, n_det: int):
    """Tile visibility errors ``(V, D)`` of the input rotation and of the R-mean, or None
    without tiles (``phys``: a :class:`~.acquisition.Physics`). Rotation ``r`` carries
    ``sqrt(1 - rho) * t_r + sqrt(rho) * t_locked`` as the vibration does; each is
    ``offset(u) + drift(u) * s(v)``, with ``s`` rising linearly over the rotation with
    unit RMS."""
    if phys.tiles == 0 or phys.tile_amplitude == 0:
        return None
    rho = phys.correlated_fraction
    a_ind, a_com = math.sqrt(1.0 - rho), math.sqrt(rho)

    def draw(key):
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=key))
        return _tile_profiles(rng, n_det, int(phys.tiles), phys.tile_amplitude)

    com = draw((6,))
    rots = [draw((5, r)) for r in range(rotations)]
    ramp = math.sqrt(12.0) * ((np.arange(n_views) + 0.5) / n_views - 0.5)

    def field(weighted) -> np.ndarray:
        off = sum(w * m[0] for w, m in weighted)
        drift = sum(w * m[1] for w, m in weighted)
        return (off[None, :] + ramp[:, None] * drift[None, :]).astype(np.float32)

    first = field([(a_ind, rots[0]), (a_com, com)])
    mean = field([(a_ind / rotations, m) for m in rots] + [(a_com, com)])
    return first, mean
