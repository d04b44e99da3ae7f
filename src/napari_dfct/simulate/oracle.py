"""The simulator's truth about its streaks: the error energy of every view.

``input - target`` of a simulated slice is exactly the FBP of the difference of the two
sinogram errors (FBP is linear and both see the same clean sinogram). FBP first folds
opposite views onto one half rotation (``q[v] = d[v] + mirror(d[v + V/2])``), filters
``q`` along the detector and back-projects each view ``theta_v`` as a function of
``col cos(theta_v) + row sin(theta_v)``; by the Fourier slice theorem that view fills the
central line at ``phi = theta_v`` (mod 180 degrees) of the slice's spectrum
(:mod:`napari_dfct.directional`). The energy of the filtered folded error of view ``v``,
``sum_u q_filtered[v, u]^2``, is therefore the energy that view puts on that spectral
line: :func:`view_error_energy` recomputes it from a :class:`Simulation` (nothing of it
is saved with the simulation; the phantom is rebuilt from the seeds when it is absent).
"""

from __future__ import annotations

import numpy as np

from .acquisition import (
    GENERATOR,
    Physics,
    Simulation,
    _error_fields,
    _Run,
    _sinogram_errors,
)
from .projector import filter_sinogram, view_angles
from .realism import specimen_seeds

__all__ = ["view_error_energy", "slice_angular", "folder_angular", "oracle_folder"]


def _slice_sources(phantom, run: _Run, meta: dict):
    """Per slice: (mu, eps, the four error fields (1, V, D), noise key); the phantom is
    rebuilt from the seeds when ``phantom`` is None."""
    n, seed = int(meta["n_slices"]), int(meta["seed"])
    ph = phantom
    if meta.get("acquisition") == "independent":
        seeds = meta.get("specimen_seeds") or specimen_seeds(seed, n)
        for k in range(n):
            p = ph if ph is not None else None
            if p is None:
                one = run.phantom(1, seeds[k])
                mu, eps = one.mu[0], one.eps[0]
            else:
                mu, eps = p.mu[k], p.eps[k]
            err = _error_fields(
                run.phys, seeds[k], run.rotations, run.n_views, run.n_det, np.zeros(1)
            )
            yield mu, eps, err, (seeds[k], 0)
        return
    if ph is None:
        ph = run.phantom(n, seed)
    zeta = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
    errors = _error_fields(run.phys, seed, run.rotations, run.n_views, run.n_det, zeta)
    for z in range(n):
        yield ph.mu[z], ph.eps[z], tuple(e[z : z + 1] for e in errors), (seed, z)


def view_error_energy(sim: Simulation) -> tuple[np.ndarray, np.ndarray]:
    """Energy of the error of ``input - target`` in every view, as FBP sees it.

    Parameters
    ----------
    sim : Simulation
        A :func:`~napari_dfct.simulate.simulate_dfct` result (or one read back with its
        ``meta``).

    Returns
    -------
    angles : numpy.ndarray
        ``(V',)`` view angles in radians, ``[0, pi)`` (``V' = V / 2`` for an even number
        of views, whose opposite views FBP folds together; all ``V`` views, taken mod pi,
        otherwise). The spectral angle of view ``theta`` is ``theta``
        (:func:`napari_dfct.directional.oracle_angular`).
    energy : numpy.ndarray
        float64 ``(Z, V')``: per slice, the sum over detector bins of the squared
        FBP-filtered (folded) sinogram error difference, input minus target (vibration,
        tiles and photon noise together).
    """
    return _view_error_energy(sim.meta, sim.phantom)


def _view_error_energy(meta: dict, phantom=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`view_error_energy` from a simulation's ``meta`` alone (and its phantom when
    at hand): nothing of the simulated volumes is needed."""
    phys = Physics(**meta["physics"])
    run = _Run(
        phys,
        int(meta["size"]),
        int(meta["n_views"]),
        int(meta["rotations"]),
        int(meta["detector_bins"]),
    )
    v = run.n_views
    pixel_mm = float(meta["pixel_size_mm"])
    rows = []
    for mu, eps, err, key in _slice_sources(phantom, run, meta):
        _, e_in, e_tg = _sinogram_errors(run, mu[None], eps[None], pixel_mm, err, [key])
        d = (e_in - e_tg).astype(np.float32)
        if v % 2 == 0:
            d = d[:, : v // 2] + d[:, v // 2 :, ::-1]
        q = filter_sinogram(d, phys.filter).astype(np.float64)
        rows.append((q[0] ** 2).sum(-1))
    theta = view_angles(v)
    angles = theta[: v // 2] if v % 2 == 0 else np.mod(theta, np.pi)
    return angles, np.stack(rows)


def slice_angular(sim: Simulation) -> np.ndarray:
    """The true angular part ``G`` of every slice's streaks, float32 ``(Z, n_bins)``.

    :func:`view_error_energy` through :func:`napari_dfct.directional.oracle_angular`: the
    angular part an ``oracle`` directional loss trains with
    (:class:`napari_dfct.losses.LossConfig`).
    """
    return _slice_angular(sim.meta, sim.phantom)


def _slice_angular(meta: dict, phantom=None) -> np.ndarray:
    from ..directional import oracle_angular

    angles, energy = _view_error_energy(meta, phantom)
    return np.asarray(oracle_angular(angles, energy), dtype=np.float32)


def _simulator_meta(path):
    """The folder that holds ``path`` and its simulator ``meta.json`` (ValueError when it
    has none)."""
    from pathlib import Path

    from .._files import read_json
    from .files import _META

    p = Path(path)
    folder = p if p.is_dir() else p.parent
    meta = None
    try:
        meta = read_json(folder / _META)
    except (OSError, ValueError):
        pass
    if not isinstance(meta, dict) or meta.get("generator") != GENERATOR:
        raise ValueError(
            f"an oracle directional loss needs the simulator's truth (the error energy of "
            f"every view), which only a folder written by `dfct simulate` holds; {folder} "
            "has no simulator meta.json"
        )
    return folder, meta


def oracle_folder(path):
    """The simulated set's folder that holds ``path`` (the folder, or a volume file in
    it such as ``input.tif``), checked to carry the simulator's ``meta.json``.

    Raises
    ------
    ValueError
        ``path`` is not in a folder written by ``dfct simulate``: the truth an oracle
        loss needs exists only for simulated data.
    """
    return _simulator_meta(path)[0]


def folder_angular(path) -> np.ndarray:
    """:func:`slice_angular` of the simulated set that holds ``path``
    (:func:`oracle_folder`; ``ValueError`` for data that are not simulated), from its
    ``meta.json`` alone: the volumes are not read."""
    return _slice_angular(_simulator_meta(path)[1])
