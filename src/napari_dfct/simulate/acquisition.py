"""Acquisition physics of the DFCT simulator and :func:`simulate_dfct`.

* Dark-field line integral ``p_eps = -ln(V/V_ref) = int eps ds``, attenuation line
  integral ``p_mu = int mu ds`` (:mod:`.projector`).
* Grating vibration, drawn afresh for every rotation ``r``: a fringe-phase error
  ``dphi_r(v)`` and a visibility error ``dV_r(v)`` per view ``v``, each a sum of
  ``n_modes`` sinusoids over the view index (random frequencies, amplitudes and phases)
  plus view-to-view jitter (Student t with ``jitter_dof`` degrees of freedom: occasional
  vibration bursts that give a few distinct strong streaks), smoothed by the sliding
  window of the phase retrieval (``window`` views). Each carries a smooth random profile
  across the detector (and a slow drift along z). All detector rows (slices) see the same
  vibration. A fraction ``correlated_fraction`` of the error variance is the same in
  every rotation (vibration locked to the gantry angle); it survives averaging and leaves
  the fine residual streaks seen in multi-rotation references.
* Error in the dark-field sinogram (first order in the small errors)::

      dp_r = dV_r(v) * prof_V(u, z) * (offset_coupling + attenuation_coupling * p_mu)
             + dphi_r(v) * prof_phi(u, z) * edge_coupling_mm * d p_mu / du

  The visibility error grows behind thick tissue (the spectrum that sets the effective
  visibility hardens with attenuation); the phase error leaks the intensity gradient at
  attenuation edges into the visibility estimate. Both are object-shaped per view, which
  FBP turns into streaks tangent to the body outline, ribs, spine and lung borders.
* Photon noise: Gaussian with variance ``2 exp(p_mu) / (n0 * V**2)``, where
  ``V = visibility * exp(-p_eps)`` is the visibility behind the object and ``n0`` the
  photons per detector pixel and view without object. The target's noise is the mean of
  R such draws, one of which is the input's (the input is one of the R rotations).
* Reconstruction: FBP (Hann-windowed ramp by default, :mod:`.projector`). FBP is linear,
  so the R-rotation mean is one FBP of the mean sinogram: a simulation costs two
  projections and three back-projections per slice, whatever ``rotations`` is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from .phantom import LABELS, Phantom, thorax_phantom
from .projector import _Geometry, detector_bins
from .rois import suggest_rois

__all__ = ["Physics", "Simulation", "simulate_dfct"]

# --------------------------------------------------------------------------------------
# Physics parameters
# --------------------------------------------------------------------------------------


@dataclass
class Physics:
    """Physical and acquisition parameters of :func:`simulate_dfct` (all keyword-settable).

    Attributes
    ----------
    fov_mm : float
        Width of the square field of view (>= 380; the thorax is 344 mm wide); sets the
        pixel size ``fov_mm / size``.
    z_extent_mm : float
        Axial extent covered by the stack (slice spacing ``z_extent_mm / n_slices``).
    n0 : float
        Photons per detector pixel and view without object (after phase retrieval).
    visibility : float
        Reference visibility ``V_ref`` of the interferometer.
    filter : str
        FBP filter: ``"ramp"`` or ``"hann"`` (Hann-windowed ramp).
    n_modes : int
        Sinusoidal vibration modes per error channel.
    max_mode : float
        Highest vibration frequency, as a fraction of ``n_views`` (cycles per rotation).
    phase_amplitude, phase_jitter : float
        RMS of the sinusoidal part and of the view-to-view jitter of the fringe-phase error
        (rad).
    visibility_amplitude, visibility_jitter : float
        Same for the relative visibility error.
    jitter_dof : float
        Degrees of freedom of the Student-t jitter (> 2; ``inf`` for Gaussian): small
        values give occasional vibration bursts, i.e. a few distinct strong streaks.
    window : int
        Length of the sliding phase-retrieval window (views); smooths the jitter.
    correlated_fraction : float
        Fraction of the error variance that repeats identically in every rotation.
    offset_coupling, attenuation_coupling : float
        Visibility error in the sinogram: ``dV * (offset + attenuation_coupling * p_mu)``.
    edge_coupling_mm : float
        Phase error times attenuation gradient: ``dphi * edge_coupling_mm * dp_mu/du``.
    profile_strength : float
        Relative amplitude of the smooth error profile across the detector.
    texture : float
        Relative RMS of the fine lung parenchyma texture.
    vessel_fraction : float
        Approximate area fraction of vessels in the lung.
    supersample : int
        Sub-pixel sampling of the phantom (partial-volume edges).
    chunk : int
        Slices processed together (memory / progress granularity).
    """

    fov_mm: float = 460.0
    z_extent_mm: float = 80.0
    n0: float = 7.0e5
    visibility: float = 0.25
    filter: str = "hann"
    n_modes: int = 6
    max_mode: float = 0.25
    phase_amplitude: float = 0.18
    phase_jitter: float = 0.35
    visibility_amplitude: float = 0.022
    visibility_jitter: float = 0.06
    jitter_dof: float = 3.0
    window: int = 3
    correlated_fraction: float = 0.05
    offset_coupling: float = 0.1
    attenuation_coupling: float = 3.0
    edge_coupling_mm: float = 1.0
    profile_strength: float = 0.3
    texture: float = 0.15
    vessel_fraction: float = 0.05
    supersample: int = 2
    chunk: int = 4

    def validate(self) -> None:
        """Raise ``ValueError`` for out-of-range values."""
        if self.filter not in ("ramp", "hann"):
            raise ValueError(f"filter must be 'ramp' or 'hann', got {self.filter!r}")
        positive = ("fov_mm", "z_extent_mm", "n0", "visibility", "max_mode")
        for name in positive:
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.fov_mm < 380.0:
            raise ValueError(f"fov_mm must be >= 380 (the thorax is 344 mm wide), "
                             f"got {self.fov_mm!r}")
        if not 0 < self.visibility <= 1:
            raise ValueError(f"visibility must be in (0, 1], got {self.visibility!r}")
        if not self.jitter_dof > 2:
            raise ValueError(f"jitter_dof must be > 2, got {self.jitter_dof!r}")
        if not 0 <= self.correlated_fraction <= 1:
            raise ValueError(
                f"correlated_fraction must be in [0, 1], got {self.correlated_fraction!r}"
            )
        for name in ("n_modes", "window", "supersample", "chunk"):
            value = getattr(self, name)
            minimum = 0 if name == "n_modes" else 1
            if int(value) != value or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        for name in (
            "phase_amplitude", "phase_jitter", "visibility_amplitude", "visibility_jitter",
            "offset_coupling", "attenuation_coupling", "edge_coupling_mm",
            "profile_strength", "texture", "vessel_fraction",
        ):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")


# --------------------------------------------------------------------------------------
# Vibration errors
# --------------------------------------------------------------------------------------


def _view_series(rng, n_views: int, n_modes: int, max_mode: float, amplitude: float,
                 jitter: float, window: int, jitter_dof: float = np.inf) -> np.ndarray:
    """One error series over the views: sinusoids + smoothed jitter (float64)."""
    v = np.arange(n_views)
    out = np.zeros(n_views)
    if n_modes > 0 and amplitude > 0:
        f_hi = max(2.0, max_mode * n_views)
        freqs = np.exp(rng.uniform(math.log(1.0), math.log(f_hi), n_modes))
        amps = rng.rayleigh(1.0, n_modes)
        phases = rng.uniform(0, 2 * np.pi, n_modes)
        sines = (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * v[None] / n_views
                                         + phases[:, None])).sum(0)
        out += amplitude * sines / math.sqrt(max(float((amps**2).sum()) / 2.0, 1e-12))
    else:
        rng.uniform(size=3 * max(n_modes, 0))  # keep the stream layout stable
    # heavy-tailed jitter (Student t, unit variance): a few views per rotation carry
    # bursts of vibration, which FBP turns into distinct strong streaks
    jit = rng.standard_t(jitter_dof, n_views) if np.isfinite(jitter_dof) else \
        rng.standard_normal(n_views)
    if np.isfinite(jitter_dof):
        jit *= math.sqrt((jitter_dof - 2.0) / jitter_dof)
    if window > 1:
        kernel = np.ones(window) / window
        jit = np.real(np.fft.ifft(np.fft.fft(jit) * np.fft.fft(kernel, n_views)))
        jit *= math.sqrt(window)  # keep the jitter RMS independent of the window
    out += jitter * jit
    return out


def _detector_profile(rng, n_det: int, zeta: np.ndarray, strength: float) -> np.ndarray:
    """Smooth random profile across the detector with a slow drift along z: (Z, D)."""
    u = np.linspace(-1.0, 1.0, n_det)
    coef = rng.standard_normal(3) / math.sqrt(3)
    ph = rng.uniform(0, 2 * np.pi, 3)
    drift = rng.standard_normal()
    shape = sum(coef[j] * np.cos(np.pi * (j + 1) * u / 2 + ph[j]) for j in range(3))
    return 1.0 + strength * (shape[None, :] + 0.3 * drift * zeta[:, None])


def _rotation_errors(phys: Physics, seed: int, rotation: int | None, n_views: int,
                     n_det: int, zeta: np.ndarray):
    """(dV series, dphi series, dV profile, dphi profile) of one rotation, or the
    gantry-locked component (``rotation=None``)."""
    key = (3,) if rotation is None else (1, int(rotation))
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=key))
    dv = _view_series(rng, n_views, phys.n_modes, phys.max_mode, phys.visibility_amplitude,
                      phys.visibility_jitter, phys.window, phys.jitter_dof)
    dphi = _view_series(rng, n_views, phys.n_modes, phys.max_mode, phys.phase_amplitude,
                        phys.phase_jitter, phys.window, phys.jitter_dof)
    prof_v = _detector_profile(rng, n_det, zeta, phys.profile_strength)
    prof_p = _detector_profile(rng, n_det, zeta, phys.profile_strength)
    return dv, dphi, prof_v, prof_p


def _error_fields(phys: Physics, seed: int, rotations: int, n_views: int, n_det: int,
                  zeta: np.ndarray):
    """Per-view error fields ``(Z, V, D)`` for the first rotation and the R-mean.

    Rotation ``r`` carries ``sqrt(1 - rho) * e_r + sqrt(rho) * e_locked``, where ``e_r``
    (drawn afresh per rotation) and ``e_locked`` (the same in every rotation) are each a
    view series times a detector profile and ``rho = correlated_fraction``.

    Returns ``(eV_in, ePhi_in, eV_mean, ePhi_mean)`` (float32); the error in the sinogram
    is ``eV * (offset + kappa * p_mu) + ePhi * L * dp_mu/du``.
    """
    rho = phys.correlated_fraction
    a_ind, a_com = math.sqrt(1.0 - rho), math.sqrt(rho)
    com = _rotation_errors(phys, seed, None, n_views, n_det, zeta)
    rots = [_rotation_errors(phys, seed, r, n_views, n_det, zeta) for r in range(rotations)]
    nz = len(zeta)

    def field(which: int, weights, members) -> np.ndarray:
        # sum_k weights[k] * series_k[v] * profile_k[z, d]  ->  (Z, V, D), one BLAS call
        series = np.stack([w * m[which] for w, m in zip(weights, members)])  # (K, V)
        prof = np.stack([m[which + 2] for m in members]).reshape(len(members), -1)
        out = series.T @ prof  # (V, Z*D)
        return out.reshape(n_views, nz, n_det).transpose(1, 0, 2).astype(np.float32)

    w_in = (a_ind, a_com)
    first = (rots[0], com)
    w_mean = [a_ind / rotations] * rotations + [a_com]
    members = rots + [com]
    return (field(0, w_in, first), field(1, w_in, first),
            field(0, w_mean, members), field(1, w_mean, members))


# --------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------


@dataclass
class Simulation:
    """A simulated DFCT set (see :mod:`napari_dfct.simulate`).

    Attributes
    ----------
    input, target, truth : np.ndarray
        float32 ``(Z, Y, X)`` reconstructions in 1/m.
    meta : dict
        JSON-serialisable parameters and suggested ROIs (``signal_center``,
        ``background_center``, ``line``, ``roi_size``, ``slice``).
    phantom : Phantom or None
        The phantom maps (not saved by :func:`save_simulation`).
    """

    input: np.ndarray = field(repr=False)
    target: np.ndarray = field(repr=False)
    truth: np.ndarray = field(repr=False)
    meta: dict = field(default_factory=dict)
    phantom: Phantom | None = field(default=None, repr=False)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def simulate_dfct(
    n_slices: int = 16,
    size: int = 256,
    n_views: int = 360,
    rotations: int = 20,
    seed: int = 0,
    *,
    progress: Callable[[int, int], None] | None = None,
    **physics: Any,
) -> Simulation:
    """Simulate single-rotation, multi-rotation and clean DFCT reconstructions.

    Parameters
    ----------
    n_slices : int
        Axial slices (>= 1).
    size : int
        Image width and height (>= 32).
    n_views : int
        Views over one 360-degree rotation (>= 8; even counts are twice as fast to
        project).
    rotations : int
        Rotations averaged into the target (>= 1); the input is the first of them.
    seed : int
        Seed of the phantom texture, the vibration of every rotation and the noise.
    progress : callable, optional
        ``progress(done, total)`` after each block of slices.
    **physics
        Any field of :class:`Physics` (e.g. ``n0``, ``filter``, ``correlated_fraction``).

    Returns
    -------
    Simulation
        ``input``, ``target``, ``truth`` float32 ``(n_slices, size, size)`` in 1/m, and
        ``meta`` (all parameters, ROIs, ``slice`` = central index).
    """
    n_slices = _check_int("n_slices", n_slices, 1)
    size = _check_int("size", size, 32)
    n_views = _check_int("n_views", n_views, 8)
    rotations = _check_int("rotations", rotations, 1)
    seed = _check_int("seed", seed, 0)
    phys = _physics(physics)

    ph = thorax_phantom(size, n_slices, seed=seed, fov_mm=phys.fov_mm,
                        z_extent_mm=phys.z_extent_mm, texture=phys.texture,
                        vessel_fraction=phys.vessel_fraction, supersample=phys.supersample)
    n_det = detector_bins(size)
    zeta = np.linspace(-1.0, 1.0, n_slices) if n_slices > 1 else np.zeros(1)
    errors = _error_fields(phys, seed, rotations, n_views, n_det, zeta)

    out = {k: np.empty((n_slices, size, size), dtype=np.float32)
           for k in ("input", "target", "truth")}
    geom = _Geometry(size, n_views)
    chunk = int(phys.chunk)
    if max(geom.index_bytes()) > geom.cache_bytes:  # indices rebuilt per block: fewer blocks
        chunk = max(chunk, 16)
    for z0 in range(0, n_slices, chunk):
        z1 = min(n_slices, z0 + chunk)
        nz = z1 - z0
        rec = _simulate_block(geom, ph, phys, errors, z0, z1, seed, rotations)
        out["input"][z0:z1] = rec[:nz]
        out["target"][z0:z1] = rec[nz : 2 * nz]
        out["truth"][z0:z1] = rec[2 * nz :]
        if progress is not None:
            progress(z1, n_slices)

    rois = suggest_rois(ph.labels)
    meta = _meta(phys, ph, rois, n_slices=n_slices, size=size, n_views=n_views,
                 rotations=rotations, seed=seed, n_det=n_det)
    return Simulation(input=out["input"], target=out["target"], truth=out["truth"],
                      meta=meta, phantom=ph)


def _physics(physics: dict[str, Any]) -> Physics:
    """Validated :class:`Physics` from keyword arguments (``ValueError`` for unknown
    names or out-of-range values)."""
    valid = {f.name for f in fields(Physics)}
    unknown = sorted(set(physics) - valid)
    if unknown:
        raise ValueError(
            f"unknown physics parameter(s) {unknown}; valid: {sorted(valid)}"
        )
    phys = Physics(**physics)
    phys.validate()
    return phys


def _block_noise(p_eps: np.ndarray, seed: int, z0: int) -> tuple[np.ndarray, np.ndarray]:
    """Two unit Gaussian draws shaped like ``p_eps`` ``(nz, V, D)``, seeded per slice
    (``z0`` is the index of the block's first slice in the stack)."""
    n1 = np.empty_like(p_eps)
    n2 = np.empty_like(p_eps)
    for k in range(p_eps.shape[0]):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, z0 + k)))
        n1[k] = rng.standard_normal(p_eps.shape[1:], dtype=np.float32)
        n2[k] = rng.standard_normal(p_eps.shape[1:], dtype=np.float32)
    return n1, n2


def _simulate_block(geom: _Geometry, ph: Phantom, phys: Physics, errors, z0: int, z1: int,
                    seed: int, rotations: int) -> np.ndarray:
    """Input, target and truth reconstructions of slices ``z0:z1``, stacked ``(3 nz, n, n)``.

    ``errors`` are the error fields of :func:`_error_fields` for the whole stack.
    """
    nz = z1 - z0
    e_v_in, e_p_in, e_v_tg, e_p_tg = errors
    pix_m = ph.pixel_size_mm * 1e-3
    kappa, off = phys.attenuation_coupling, phys.offset_coupling
    edge = phys.edge_coupling_mm / ph.pixel_size_mm  # per-pixel gradient -> per mm x L
    v0sq = phys.visibility**2
    maps = np.concatenate([ph.mu[z0:z1], ph.eps[z0:z1]], axis=0) * np.float32(pix_m)
    sino = geom.project(maps)  # (2nz, V, D), dimensionless
    p_mu, p_eps = sino[:nz], sino[nz:]
    grad = np.gradient(p_mu, axis=-1).astype(np.float32) * np.float32(edge)
    att = off + kappa * p_mu
    sigma = np.sqrt(2.0 * np.exp(p_mu + 2.0 * p_eps) / (phys.n0 * v0sq)).astype(
        np.float32
    )
    n1, n2 = _block_noise(p_eps, seed, z0)
    err_in = e_v_in[z0:z1] * att + e_p_in[z0:z1] * grad + sigma * n1
    # mean noise of R rotations whose first is the input rotation
    noise_tg = sigma * (n1 + math.sqrt(rotations - 1) * n2) / rotations
    err_tg = e_v_tg[z0:z1] * att + e_p_tg[z0:z1] * grad + noise_tg
    stack = np.concatenate([p_eps + err_in, p_eps + err_tg, p_eps], axis=0)
    return geom.back_project(stack, filter=phys.filter) / np.float32(pix_m)


def _meta(phys: Physics, ph: Phantom, rois: dict, *, n_slices: int, size: int,
          n_views: int, rotations: int, seed: int, n_det: int) -> dict:
    """The JSON-serialisable ``meta`` of a :class:`Simulation`."""
    from .. import __version__

    return {
        "generator": "napari_dfct.simulate.simulate_dfct",
        "version": __version__,
        "n_slices": n_slices,
        "size": size,
        "n_views": n_views,
        "rotations": rotations,
        "seed": seed,
        "geometry": "parallel",
        "arc_degrees": 360.0,
        "detector_bins": n_det,
        "units": "1/m",
        "quantity": "linear diffusion coefficient (dark-field)",
        "pixel_size_mm": ph.pixel_size_mm,
        "slice_spacing_mm": ph.slice_spacing_mm,
        "input_rotation": 0,
        "physics": asdict(phys),
        "labels": dict(LABELS),
        "slice": n_slices // 2,
        **rois,
    }
