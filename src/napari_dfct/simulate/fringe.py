"""Fringe-level acquisition of the DFCT simulator (``Physics.model == "fringe"``).

The first-order model (:mod:`.acquisition`) adds a phenomenological error to the
dark-field sinogram. This model simulates what the detector records and runs the phase
retrieval that a reconstruction would run (docs/simulator.md states every assumption):

* **Intensities.** Rotation ``r``, view ``v``, detector bin ``u``::

      I = I0 T (1 + V0 V_obj exp(-nu) cos(phi_v + phi_obj + dphi))

  with ``T = exp(-p_mu)`` (attenuation), ``V_obj = exp(-p_eps)`` (the object's visibility
  reduction; ``p_eps`` is the dark-field line integral that FBP reconstructs), ``phi_obj``
  the object's differential phase (``refraction_mm`` times the detector derivative of
  ``p_mu`` in 1/mm: the refractive decrement of soft tissue follows its attenuation),
  ``phi_v = 2 pi (v mod K) / K`` the nominal phase step of view ``v`` (``K =
  phase_steps``), ``V0 = visibility`` and ``I0 = n0 / window`` photons per detector bin
  and view (``n0`` photons per retrieval, as in the first-order model).
* **Vibration** (times ``vibration``): per rotation a fringe-phase error ``dphi`` (rad) and
  a log-visibility error ``nu``, each a view series times a smooth detector profile, drawn
  exactly as the first-order model's error fields (same seeds, series, profiles, tiles and
  gantry-locked part; the jitter correlated over ``jitter_views`` views), so the two
  models' fields align one to one. ``nu`` grows behind tissue as in the first-order
  model, ``nu = dV (offset_coupling + attenuation_coupling p_mu)``; with ``tiles`` each
  tile adds its own visibility error.
* **Photon noise**: Gaussian with the Poisson variance ``noise**2 * I`` on every intensity
  (``I`` is 10**2 to 10**5 photons).
* **Reference scan**: the same acquisition without object, with its own vibration (its
  own draws, the same gantry-locked part) and its own noise.
* **Retrieval**: the three-parameter least-squares fit ``a + b cos phi + c sin phi`` over
  a sliding window of ``window`` consecutive views (centred, circular over the rotation)
  with their nominal phases, while the object rotates within the window; the visibility
  is ``sqrt(b**2 + c**2) / a`` and the dark-field line integral
  ``-ln(V_obj / V_ref)``. The input is one rotation normalised by one reference rotation;
  the target is **virtual phase stepping**: for every view one fit over the ``R * window``
  intensities of all rotations (normalised by the same fit over the reference's
  rotations), not a mean of single-rotation retrievals.

:func:`block_errors` returns the input's and the target's sinogram errors against the
clean ``p_eps`` for :mod:`.acquisition`, which reconstructs them by FBP as it does the
first-order ones. :func:`retrieve` is the retrieval on given sinograms;
:func:`lsq_variance` the analytic variance of the retrieved dark-field.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = [
    "FIRST_ORDER",
    "FRINGE",
    "FRINGE_DEFAULTS",
    "MODELS",
    "block_errors",
    "check_views",
    "lsq_variance",
    "nominal_phases",
    "retrieve",
    "validate",
    "vibration_fields",
]

FIRST_ORDER = "first-order"
FRINGE = "fringe"
#: The fringe model's own defaults, which :func:`~napari_dfct.simulate.simulate_dfct` (and
#: ``dfct simulate --physics fringe``) use where the caller gives none (``Physics()``'s
#: defaults are the first-order model's). ``attenuation_coupling`` 0.5 instead of 3: the
#: first-order coupling reaches +-1 in ``-ln V`` behind the spine, a factor e on the fringe
#: visibility, whose average over rotations is biased (the target came out less clean than
#: the input). ``phase_jitter`` 1.0 rad instead of 0.35: at the fringe level a fringe-phase
#: error becomes a dark-field error only through its change within the retrieval window;
#: 1.0 rad brings the vibration's lung-ROI error back to the first-order model's order while
#: the target stays clean (docs/simulator.md, "Calibration of the fringe model").
FRINGE_DEFAULTS: dict[str, float] = {"attenuation_coupling": 0.5, "phase_jitter": 1.0}

#: The acquisition models of :func:`~napari_dfct.simulate.simulate_dfct` (``Physics.model``).
MODELS = (FIRST_ORDER, FRINGE)

# Members of the packed vibration fields: object rotations 0..R-1, the gantry-locked part
# (shared by the object and the reference scan), reference rotations 0..R-1.
_OBJECT_KEY, _REFERENCE_KEY, _TILE_REFERENCE_KEY = 1, 7, 8
_MAX_BATCH = 1 << 22  # intensities per rotation batch (memory ~ 10 x 4 bytes each)


def validate(phys) -> None:
    """Raise ``ValueError`` for out-of-range fringe-model fields of ``phys``."""
    if phys.model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {phys.model!r}")
    for name in ("phase_steps", "jitter_views", "shots"):
        value = getattr(phys, name)
        minimum = {"phase_steps": 3, "jitter_views": 1, "shots": 0}[name]
        if int(value) != value or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    for name in ("vibration", "refraction_mm"):
        if not float(getattr(phys, name)) >= 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(phys, name)!r}")
    if phys.model == FRINGE and phys.window < 3:
        raise ValueError(
            f"window must be >= 3 views for the fringe model (three unknowns per fit), "
            f"got {phys.window}"
        )


def check_views(phys, n_views: int) -> None:
    """``ValueError`` unless a fringe-model window fits into ``n_views`` views."""
    if phys.model == FRINGE and phys.window > n_views:
        raise ValueError(f"window ({phys.window}) must be <= views ({n_views})")


def nominal_phases(n_views: int, steps: int, offset: int = 0) -> np.ndarray:
    """Nominal fringe phase of shot ``v + offset`` for every view ``v``, ``2 pi ((v +
    offset) mod K) / K`` (float64 ``(V,)``)."""
    return 2.0 * np.pi * ((np.arange(n_views) + int(offset)) % int(steps)) / int(steps)


# --------------------------------------------------------------------------------------
# Vibration fields (drawn by the first-order model's own functions)
# --------------------------------------------------------------------------------------


def vibration_fields(
    phys,
    seed: int,
    rotations: int,
    n_views: int,
    n_det: int,
    zeta: np.ndarray,
    rotation_errors: Callable,
    tile_profiles: Callable,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Packed per-rotation vibration of an acquisition, four arrays over slices ``Z``.

    ``rotation_errors(phys, seed, key, n_views, n_det, zeta)`` and ``tile_profiles(rng,
    n_det, tiles, amplitude)`` are the first-order model's draws
    (:mod:`.acquisition`): object rotation ``r`` and the gantry-locked part use its keys,
    so that they are its error fields, member by member. Members ``m``: object rotations
    ``0..R-1``, the locked part, reference rotations ``0..R-1``.

    Returns
    -------
    series : float32 ``(Z, 2R+1, 2, V)``
        Visibility and phase view series (the same in every slice).
    profiles : float32 ``(Z, 2R+1, 2, D)``
        Their detector profiles (drifting slowly along z).
    tile_offset, tile_drift : float32 ``(Z, 2R+1, D)``
        Tile visibility errors (zeros without tiles); the tile error of member ``m`` is
        ``offset(u) + s(v) drift(u)`` with ``s`` the unit-RMS ramp over the rotation.
    """
    import dataclasses

    jit = dataclasses.replace(phys, window=int(phys.jitter_views))
    keys = (
        [(_OBJECT_KEY, r) for r in range(rotations)]
        + [(3,)]
        + [(_REFERENCE_KEY, r) for r in range(rotations)]
    )
    members = [rotation_errors(jit, seed, key, n_views, n_det, zeta) for key in keys]
    nz, m = len(zeta), len(keys)
    series = np.stack([np.stack([dv, dp]) for dv, dp, _, _ in members]).astype(np.float32)
    profiles = np.stack([np.stack([pv, pp], 1) for _, _, pv, pp in members], 1)
    offset = np.zeros((m, n_det), np.float32)
    drift = np.zeros((m, n_det), np.float32)
    if phys.tiles > 0 and phys.tile_amplitude > 0:
        tile_keys = (
            [(5, r) for r in range(rotations)]
            + [(6,)]
            + [(_TILE_REFERENCE_KEY, r) for r in range(rotations)]
        )
        for i, key in enumerate(tile_keys):
            rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=key))
            offset[i], drift[i] = tile_profiles(rng, n_det, int(phys.tiles), phys.tile_amplitude)
    return (
        np.broadcast_to(series, (nz, *series.shape)).copy(),
        profiles.astype(np.float32),
        np.tile(offset, (nz, 1, 1)),
        np.tile(drift, (nz, 1, 1)),
    )


class _Perturbation:
    """Log-visibility and phase errors of every rotation of one slice's scans."""

    def __init__(self, phys, rotations: int, fields, n_views: int) -> None:
        series, profiles, offset, drift = fields  # one slice: (M, 2, V), (M, 2, D), (M, D)
        rho = float(phys.correlated_fraction)
        scale = float(phys.vibration)
        self.a_ind = np.float32(scale * math.sqrt(1.0 - rho))
        a_com = np.float32(scale * math.sqrt(rho))
        self.rotations = rotations
        self.series, self.profiles = series, profiles
        ramp = math.sqrt(12.0) * ((np.arange(n_views) + 0.5) / n_views - 0.5)
        self.ramp = ramp.astype(np.float32)
        self.offset, self.drift = offset, drift
        locked = rotations
        self.locked_v = a_com * self._field(locked, 0)
        self.locked_p = a_com * self._field(locked, 1)
        self.zero = scale == 0.0

    def _field(self, member: int, which: int) -> np.ndarray:
        out = self.series[member, which][:, None] * self.profiles[member, which][None, :]
        if which == 0:  # tiles: visibility errors
            out = out + self.offset[member][None, :] + self.ramp[:, None] * self.drift[member]
        return out

    def get(self, rotations: range, reference: bool):
        """``(nu, dphi)`` ``(B, V, D)`` before the attenuation coupling of ``nu``."""
        base = self.rotations + 1 if reference else 0
        idx = [base + r for r in rotations]
        nu = np.stack([self._field(i, 0) for i in idx]) * self.a_ind + self.locked_v
        dphi = np.stack([self._field(i, 1) for i in idx]) * self.a_ind + self.locked_p
        return nu, dphi


# --------------------------------------------------------------------------------------
# Intensities and retrieval
# --------------------------------------------------------------------------------------


def _offsets(window: int) -> np.ndarray:
    """Shot offsets ``j`` of a centred window of ``window`` shots."""
    return np.arange(window) - window // 2


def _fit(y: np.ndarray, steps: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares ``a + b cos phi + c sin phi`` per view and bin over the samples
    ``y`` ``(W, V, D)`` (sums over ``count`` rotations) at the nominal phases of shots
    ``v + j``; returns the offset ``a`` and the amplitude ``sqrt(b**2 + c**2)``."""
    window, n_views = y.shape[:2]
    phases = np.stack([nominal_phases(n_views, steps, j) for j in _offsets(window)])  # (W, V)
    f = np.stack([np.ones_like(phases), np.cos(phases), np.sin(phases)])  # (3, W, V)
    inv = np.linalg.inv(count * np.einsum("pjv,qjv->vpq", f, f))  # (V, 3, 3)
    rhs = np.einsum("pjv,jvd->pvd", f, y)
    a, b, c = (np.einsum("vq,qvd->vd", inv[:, i, :], rhs) for i in range(3))
    return a, np.hypot(b, c)


def _at_shots(x, window: int, spacing: float) -> np.ndarray:
    """``x`` ``(V, D)`` at the shots ``j`` of every view's window, ``(W, V, D)``: linear
    in the angle, ``x[v] + j spacing dx/dv`` (central difference, circular)."""
    x = np.asarray(x, np.float32)
    if x.ndim == 0:
        return x
    slope = (np.roll(x, -1, axis=0) - np.roll(x, 1, axis=0)) * np.float32(spacing / 2.0)
    return np.stack([x + np.float32(j) * slope for j in _offsets(window)])


def retrieve(
    p_mu: np.ndarray,
    p_eps: np.ndarray,
    phi_obj: np.ndarray | float,
    *,
    rotations: int,
    window: int,
    steps: int,
    photons: float,
    visibility: float,
    spacing: float = 1.0,
    noise: float = 1.0,
    rng: np.random.Generator | None = None,
    perturbation: _Perturbation | None = None,
    coupling: tuple[float, float] = (0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate the intensities of one slice's object and reference scans and retrieve
    the dark-field sinograms of rotation 0 (input) and of all rotations (target).

    Parameters
    ----------
    p_mu, p_eps : numpy.ndarray
        ``(V, D)`` attenuation and dark-field line integrals (dimensionless).
    phi_obj : numpy.ndarray or float
        The object's differential phase (rad), ``(V, D)`` or a constant.
    rotations, window, steps : int
        Rotations ``R``, shots per retrieval window, phase steps per fringe period.
    photons : float
        Photons per detector bin and shot without object (``I0``).
    visibility : float
        Visibility of the interferometer ``V0``.
    spacing : float
        Angle between two shots, in views (``n_views / shots``): the object rotates by
        ``j spacing`` views at shot ``j`` of a window.
    noise : float
        Multiplier of the photon-noise standard deviation (0: none; needs ``rng``).
    perturbation : optional
        Vibration of every rotation (:func:`block_errors`); None: none.
    coupling : (float, float)
        ``(offset_coupling, attenuation_coupling)`` of the log-visibility error.

    Returns
    -------
    d_in, d_tg : numpy.ndarray
        float64 ``(V, D)``: ``-ln(V_obj / V_ref)`` of one rotation and of virtual phase
        stepping over all ``R`` rotations.
    """
    p_mu = np.asarray(p_mu, np.float32)
    n_views, n_det = p_mu.shape
    phases = np.stack([nominal_phases(n_views, steps, j) for j in _offsets(window)])
    mu_j = _at_shots(p_mu, window, spacing)
    obj = dict(
        scale=np.float32(photons) * np.exp(-mu_j),
        vis=np.float32(visibility) * np.exp(-_at_shots(p_eps, window, spacing)),
        phase=_at_shots(phi_obj, window, spacing) + phases[:, :, None].astype(np.float32),
        att=np.float32(coupling[0]) + np.float32(coupling[1]) * mu_j,
    )
    ref = dict(
        scale=np.float32(photons),
        vis=np.float32(visibility),
        phase=phases[:, :, None].astype(np.float32),
        att=np.float32(coupling[0]),
    )
    out = []
    for scan, reference in ((obj, False), (ref, True)):
        first, total = _scan_samples(
            scan, rotations, (window, n_views, n_det), noise, rng, perturbation, reference
        )
        out.append(_fit(first, steps, 1) + _fit(total, steps, rotations))
    (a_in, b_in, a_tg, b_tg), (ra_in, rb_in, ra_tg, rb_tg) = out
    return _dark_field(a_in, b_in, ra_in, rb_in), _dark_field(a_tg, b_tg, ra_tg, rb_tg)


def _dark_field(a, b, ra, rb) -> np.ndarray:
    """``-ln(V_obj / V_ref)`` from fitted offsets and amplitudes; a fit that lost its
    fringe (amplitude or offset <= 0 under extreme noise) is clipped at ``e**-12``."""
    tiny = 1e-300
    v_obj = np.maximum(b, tiny) / np.maximum(a, tiny)
    v_ref = np.maximum(rb, tiny) / np.maximum(ra, tiny)
    return np.clip(np.log(v_ref) - np.log(v_obj), -12.0, 12.0)


def _scan_samples(scan, rotations, shape, noise, rng, perturbation, reference):
    """Samples ``(W, V, D)`` of every window: of rotation 0, and summed over rotations."""
    window, n_views, n_det = shape
    total = np.zeros(shape)
    first = None
    batch = max(1, min(rotations, _MAX_BATCH // max(1, window * n_views * n_det)))
    for r0 in range(0, rotations, batch):
        rots = range(r0, min(rotations, r0 + batch))
        vis, phase = scan["vis"], scan["phase"]
        if perturbation is not None and not perturbation.zero:
            nu, dphi = perturbation.get(rots, reference)  # (B, V, D) at shot v
            nu = np.stack([np.roll(nu, -j, axis=1) for j in _offsets(window)], 1)
            dphi = np.stack([np.roll(dphi, -j, axis=1) for j in _offsets(window)], 1)
            vis = np.minimum(vis * np.exp(-nu * scan["att"]), np.float32(1.0))
            phase = phase + dphi
        y = scan["scale"] * (1.0 + vis * np.cos(phase))
        y = np.broadcast_to(y, (len(rots), *shape))
        if noise > 0:
            z = rng.standard_normal(y.shape, dtype=np.float32)
            y = y + np.float32(noise) * np.sqrt(y) * z
        if r0 == 0:
            first = y[0].astype(np.float64)
        total += y.sum(0, dtype=np.float64)
    return first, total


def block_errors(
    phys, rotations: int, p_mu, p_eps, pixel_size_mm: float, fields, noise_keys
) -> tuple[np.ndarray, np.ndarray]:
    """Errors of the retrieved input and target sinograms against ``p_eps`` for a block
    of slices (``(nz, V, D)`` float32 each); ``fields`` are the block's packed vibration
    (:func:`vibration_fields`), ``noise_keys[k] = (seed, index)`` seeds slice ``k``'s
    photon noise."""
    nz, n_views, _ = p_mu.shape
    err_in = np.empty(p_mu.shape, np.float32)
    err_tg = np.empty(p_mu.shape, np.float32)
    for k in range(nz):
        seed, index = noise_keys[k]
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(10, index)))
        pert = _Perturbation(phys, rotations, [f[k] for f in fields], n_views)
        phi_obj = np.gradient(p_mu[k], axis=-1) * np.float32(phys.refraction_mm / pixel_size_mm)
        d_in, d_tg = retrieve(
            p_mu[k],
            p_eps[k],
            phi_obj,
            rotations=rotations,
            window=int(phys.window),
            steps=int(phys.phase_steps),
            photons=phys.n0 / phys.window,
            visibility=phys.visibility,
            spacing=n_views / phys.shots if phys.shots > 0 else 1.0,
            noise=float(phys.noise),
            rng=rng,
            perturbation=pert,
            coupling=(phys.offset_coupling, phys.attenuation_coupling),
        )
        err_in[k] = d_in - p_eps[k]
        err_tg[k] = d_tg - p_eps[k]
    return err_in, err_tg


def lsq_variance(
    visibility: float,
    photons: float,
    phases: np.ndarray,
    *,
    phase: float = 0.0,
    noise: float = 1.0,
) -> float:
    """Analytic variance of ``-ln V`` from one least-squares phase-stepping fit.

    First-order error propagation through the fit ``a + b cos + c sin`` over samples at
    the nominal ``phases`` with means ``photons (1 + visibility cos(phases + phase))`` and
    (Poisson) variances ``noise**2`` times the mean. For ``N`` samples evenly spread over
    whole fringe periods with ``K >= 4`` steps this is ``noise**2 (2 - V**2) / (N I0
    V**2)`` (independent of ``phase``); ``K = 3`` adds a term in ``cos(3 phase)``.
    """
    phases = np.asarray(phases, dtype=np.float64)
    g = np.stack([np.ones_like(phases), np.cos(phases), np.sin(phases)], 1)  # (N, 3)
    pinv = np.linalg.solve(g.T @ g, g.T)  # rows: da/dy, db/dy, dc/dy
    mean = photons * (1.0 + visibility * np.cos(phases + phase))
    a = photons
    b = photons * visibility * math.cos(phase)
    c = -photons * visibility * math.sin(phase)
    amp2 = b * b + c * c
    grad = pinv[0] / a - (b * pinv[1] + c * pinv[2]) / amp2  # d(-ln(B/a))/dy
    return float(noise**2 * np.sum(grad**2 * mean))
