"""Acquisition physics of the DFCT simulator and :func:`simulate_dfct`.

* Dark-field line integral ``p_eps = -ln(V/V_ref) = int eps ds``, attenuation line
  integral ``p_mu = int mu ds`` (:mod:`.projector`).
* Grating vibration, drawn afresh for every rotation ``r``: a fringe-phase error
  ``dphi_r(v)`` and a visibility error ``dV_r(v)`` per view ``v``, each a sum of
  ``n_modes`` sinusoids over the view index (random frequencies, amplitudes and phases)
  plus view-to-view jitter (Student t with ``jitter_dof`` degrees of freedom: occasional
  vibration bursts that give a few distinct strong streaks), smoothed by the sliding
  window of the phase retrieval (``window`` views). Each carries a smooth random profile
  across the detector (and a slow drift along z). All detector rows (slices) of one
  acquisition see the same vibration, as in a real cone-beam volume; with
  ``specimens=True`` every slice is its own acquisition of its own specimen (own
  vibration, noise and anatomy). A fraction ``correlated_fraction`` of the error variance
  is the same in every rotation (vibration locked to the gantry angle); it survives
  averaging and leaves the fine residual streaks seen in multi-rotation references.
* Error in the dark-field sinogram (first order in the small errors)::

      dp_r = dV_r(v) * prof_V(u, z) * (offset_coupling + attenuation_coupling * p_mu)
             + dphi_r(v) * prof_phi(u, z) * edge_coupling_mm * d p_mu / du

  The visibility error grows behind thick tissue (the spectrum that sets the effective
  visibility hardens with attenuation); the phase error leaks the intensity gradient at
  attenuation edges into the visibility estimate. Both are object-shaped per view, which
  FBP turns into streaks tangent to the body outline, ribs, spine and lung borders.
* Tiled gratings (``tiles > 0``): a visibility error per tile and rotation that hardly
  changes from view to view (an offset and a linear drift, plus extra errors at the tile
  seams), added to ``dV``; FBP turns view-constant detector-column errors into rings and
  ring bands.
* Photon noise: Gaussian with variance ``2 exp(p_mu) / (n0 * V**2)``, where
  ``V = visibility * exp(-p_eps)`` is the visibility behind the object and ``n0`` the
  photons per detector pixel and view without object. The target's noise is the mean of
  R such draws, one of which is the input's (the input is one of the R rotations);
  ``noise`` multiplies its standard deviation.
* Reconstruction: FBP (Hann-windowed ramp by default, :mod:`.projector`). FBP is linear,
  so the R-rotation mean is one FBP of the mean sinogram: a simulation costs two
  projections and three back-projections per slice, whatever ``rotations`` is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from .anatomy import ANATOMIES
from .budget import check_memory
from .fringe import (
    FIRST_ORDER,
    FRINGE,
    FRINGE_DEFAULTS,
    block_errors,
    check_views,
    vibration_fields,
)
from .fringe import validate as validate_fringe
from .phantom import LABELS, Phantom, thorax_phantom
from .projector import _Geometry, detector_bins, geometry_plan
from .realism import MASK_FILE, body_mask, specimen_seeds, variance_shares, views_for
from .rois import suggest_rois
from .tiles import _tile_fields, _tile_profiles

__all__ = ["Physics", "Simulation", "simulate_dfct"]

#: ``meta["generator"]`` of every simulated set (how a folder is known to be one).
GENERATOR = "napari_dfct.simulate.simulate_dfct"

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
    coarse_texture : float
        Relative RMS of the coarse (about 10 mm) modulation of the lung signal.
    vessel_fraction : float
        Approximate area fraction of vessels in the lung.
    noise : float
        Multiplier of the photon-noise standard deviation (1: ``n0`` photons; 2 is the
        noise of ``n0 / 4`` photons).
    tiles : int
        Grating tiles across the detector (0: one seamless grating). Each tile has its
        own visibility error per rotation, an offset plus a linear drift over the
        rotation (RMS ``tile_amplitude`` each), and the two detector bins at every seam
        between tiles an extra error (RMS ``3 * tile_amplitude``). These errors hardly
        change from view to view, so FBP turns them into rings and ring bands around the
        iso-centre, the ring artefacts of tiled-grating DFCT. They enter the sinogram like
        the visibility error of the vibration (``offset_coupling`` and
        ``attenuation_coupling``) and share its ``correlated_fraction``.
    tile_amplitude : float
        RMS of the relative visibility error of one tile (0.002: 0.2 per cent; rings
        about as visible as the vibration streaks of the input at 256 px).
    supersample : int
        Sub-pixel sampling of the phantom (partial-volume edges).
    anatomy : str
        ``"fixed"`` (default): the phantom as always (specimens differ by about 3 per
        cent); ``"varied"``: body, lungs, heart, position and rotation vary by 15 per cent
        and more (:mod:`.anatomy`). ``lesions`` : int, regions of altered lung signal
        per specimen (0: none).
    chunk : int
        Slices processed together (memory / progress granularity).
    model : str
        ``"first-order"`` (the error model above) or ``"fringe"``: fringe intensities,
        photon noise and a sliding-window least-squares phase retrieval with a reference
        scan (:mod:`.fringe`); ``window`` is then the retrieval window (>= 3 views).
    vibration : float
        Multiplier of every vibration and tile error (0: none).
    phase_steps : int
        Fringe model: nominal phase steps per fringe period (>= 3).
    jitter_views : int
        Fringe model: views over which the vibration jitter is correlated.
    shots : int
        Fringe model: shots per rotation of the modelled scanner (the paper's 2400; 0:
        the simulated views); a retrieval window spans ``window`` shots.
    refraction_mm : float
        Fringe model: differential phase (rad) per unit of ``d p_mu / du`` in 1/mm.
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
    coarse_texture: float = 0.08
    vessel_fraction: float = 0.05
    noise: float = 1.0
    tiles: int = 0
    tile_amplitude: float = 0.002
    supersample: int = 2
    anatomy: str = "fixed"
    lesions: int = 0
    chunk: int = 4
    model: str = FIRST_ORDER
    vibration: float = 1.0
    phase_steps: int = 3
    jitter_views: int = 3
    shots: int = 2400
    refraction_mm: float = 1.0

    def validate(self) -> None:
        """Raise ``ValueError`` for out-of-range values."""
        validate_fringe(self)
        if self.filter not in ("ramp", "hann"):
            raise ValueError(f"filter must be 'ramp' or 'hann', got {self.filter!r}")
        positive = ("fov_mm", "z_extent_mm", "n0", "visibility", "max_mode")
        for name in positive:
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.fov_mm < 380.0:
            raise ValueError(
                f"fov_mm must be >= 380 (the thorax is 344 mm wide), got {self.fov_mm!r}"
            )
        if not 0 < self.visibility <= 1:
            raise ValueError(f"visibility must be in (0, 1], got {self.visibility!r}")
        if not self.jitter_dof > 2:
            raise ValueError(f"jitter_dof must be > 2, got {self.jitter_dof!r}")
        if not 0 <= self.correlated_fraction <= 1:
            raise ValueError(
                f"correlated_fraction must be in [0, 1], got {self.correlated_fraction!r}"
            )
        if self.anatomy not in ANATOMIES:
            raise ValueError(f"anatomy must be one of {ANATOMIES}, got {self.anatomy!r}")
        for name in ("n_modes", "window", "supersample", "chunk", "tiles", "lesions"):
            value = getattr(self, name)
            minimum = 0 if name in ("n_modes", "tiles", "lesions") else 1
            if int(value) != value or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        for name in (
            "phase_amplitude",
            "phase_jitter",
            "visibility_amplitude",
            "visibility_jitter",
            "offset_coupling",
            "attenuation_coupling",
            "edge_coupling_mm",
            "profile_strength",
            "texture",
            "coarse_texture",
            "vessel_fraction",
            "noise",
            "tile_amplitude",
        ):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")


# --------------------------------------------------------------------------------------
# Vibration errors
# --------------------------------------------------------------------------------------


def _view_series(
    rng,
    n_views: int,
    n_modes: int,
    max_mode: float,
    amplitude: float,
    jitter: float,
    window: int,
    jitter_dof: float = np.inf,
) -> np.ndarray:
    """One error series over the views: sinusoids + smoothed jitter (float64)."""
    v = np.arange(n_views)
    out = np.zeros(n_views)
    if n_modes > 0 and amplitude > 0:
        f_hi = max(2.0, max_mode * n_views)
        freqs = np.exp(rng.uniform(math.log(1.0), math.log(f_hi), n_modes))
        amps = rng.rayleigh(1.0, n_modes)
        phases = rng.uniform(0, 2 * np.pi, n_modes)
        sines = (
            amps[:, None]
            * np.sin(2 * np.pi * freqs[:, None] * v[None] / n_views + phases[:, None])
        ).sum(0)
        out += amplitude * sines / math.sqrt(max(float((amps**2).sum()) / 2.0, 1e-12))
    else:
        rng.uniform(size=3 * max(n_modes, 0))  # keep the stream layout stable
    # heavy-tailed jitter (Student t, unit variance): a few views per rotation carry
    # bursts of vibration, which FBP turns into distinct strong streaks
    jit = (
        rng.standard_t(jitter_dof, n_views)
        if np.isfinite(jitter_dof)
        else rng.standard_normal(n_views)
    )
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


def _rotation_errors(
    phys: Physics,
    seed: int,
    rotation: int | tuple[int, ...] | None,
    n_views: int,
    n_det: int,
    zeta: np.ndarray,
):
    """(dV series, dphi series, dV profile, dphi profile) of one rotation, or the
    gantry-locked component (``rotation=None``), or of a spawn key (a tuple)."""
    key: tuple[int, ...]
    if rotation is None:
        key = (3,)
    elif isinstance(rotation, tuple):
        key = rotation
    else:
        key = (1, int(rotation))
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=key))
    dv = _view_series(
        rng,
        n_views,
        phys.n_modes,
        phys.max_mode,
        phys.visibility_amplitude,
        phys.visibility_jitter,
        phys.window,
        phys.jitter_dof,
    )
    dphi = _view_series(
        rng,
        n_views,
        phys.n_modes,
        phys.max_mode,
        phys.phase_amplitude,
        phys.phase_jitter,
        phys.window,
        phys.jitter_dof,
    )
    prof_v = _detector_profile(rng, n_det, zeta, phys.profile_strength)
    prof_p = _detector_profile(rng, n_det, zeta, phys.profile_strength)
    return dv, dphi, prof_v, prof_p


def _error_fields(
    phys: Physics, seed: int, rotations: int, n_views: int, n_det: int, zeta: np.ndarray
):
    """Per-view error fields ``(Z, V, D)`` for the first rotation and the R-mean.

    Rotation ``r`` carries ``sqrt(1 - rho) * e_r + sqrt(rho) * e_locked``, where ``e_r``
    (drawn afresh per rotation) and ``e_locked`` (the same in every rotation) are each a
    view series times a detector profile and ``rho = correlated_fraction``.

    Returns ``(eV_in, ePhi_in, eV_mean, ePhi_mean)`` (float32); the error in the sinogram
    is ``eV * (offset + kappa * p_mu) + ePhi * L * dp_mu/du``.
    """
    if phys.model == FRINGE:  # each rotation's own draws, packed (see fringe.py)
        args = (_rotation_errors, _tile_profiles)
        return vibration_fields(phys, seed, rotations, n_views, n_det, zeta, *args)
    if phys.vibration != 1.0:
        out = _error_fields(replace(phys, vibration=1.0), seed, rotations, n_views, n_det, zeta)
        return tuple(e * np.float32(phys.vibration) for e in out)
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
    e_v_in, e_v_mean = field(0, w_in, first), field(0, w_mean, members)
    tiles = _tile_fields(phys, seed, rotations, n_views, n_det)
    if tiles is not None:  # the same tiles in every detector row
        e_v_in += tiles[0][None]
        e_v_mean += tiles[1][None]
    return e_v_in, field(1, w_in, first), e_v_mean, field(1, w_mean, members)


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
        JSON-serialisable parameters and suggested ROIs: per slice in ``rois`` (one dict
        per slice: ``signal_center``, ``background_center``, ``line``, ``roi_size``), and
        those of slice ``slice`` at the top level as well (``signal_center``,
        ``background_center``, ``line``, ``roi_size``), for readers of one ROI set.
    phantom : Phantom or None
        The phantom maps (not saved by :func:`save_simulation`).
    mask : np.ndarray or None
        uint8 ``(Z, Y, X)`` body mask (1 inside the body), saved as ``body.tif``
        (:data:`~napari_dfct.simulate.realism.MASK_FILE`, named by ``meta["mask"]``).
    """

    input: np.ndarray = field(repr=False)
    target: np.ndarray = field(repr=False)
    truth: np.ndarray = field(repr=False)
    meta: dict = field(default_factory=dict)
    phantom: Phantom | None = field(default=None, repr=False)
    mask: np.ndarray | None = field(default=None, repr=False)


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
    n_views: int | None = None,
    rotations: int = 20,
    seed: int = 0,
    *,
    specimens: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **physics: Any,
) -> Simulation:
    """Simulate single-rotation, multi-rotation and clean DFCT reconstructions.

    Parameters
    ----------
    n_slices : int
        Axial slices (>= 1), or independent specimens with ``specimens=True``.
    size : int
        Image width and height (>= 32).
    n_views : int, optional
        Views over one 360-degree rotation (>= 8; multiples of 8 are fastest to
        project). Default: :func:`~napari_dfct.simulate.realism.views_for` (three per
        pixel of width, the paper's 2400 at 800 px).
    rotations : int
        Rotations averaged into the target (>= 1); the input is the first of them.
    seed : int
        Seed of the phantom texture, the vibration of every rotation and the noise.
    specimens : bool
        False (default): one acquisition of one specimen, whose slices share the
        vibration of each rotation, as the detector rows of a real cone-beam volume do
        (streaks of neighbouring slices are strongly correlated). True: each slice is
        the central slice of its own scan of its own specimen (anatomy, vibration and
        noise of its own; seeds from
        :func:`~napari_dfct.simulate.realism.specimen_seeds`), as the paper's training
        set of central slices of independent scans. Slice ``k`` is then exactly
        ``simulate_dfct(1, size, n_views, rotations, meta["specimen_seeds"][k])``.
    progress : callable, optional
        ``progress(done, total)`` after each block of slices.
    **physics
        Any field of :class:`Physics` (e.g. ``n0``, ``filter``, ``noise``, ``tiles``);
        :func:`~napari_dfct.simulate.realism.preset_physics` gives those of a preset.

    Returns
    -------
    Simulation
        ``input``, ``target``, ``truth`` float32 ``(n_slices, size, size)`` in 1/m, the
        body ``mask``, and ``meta`` (all parameters, per-slice ROIs, ``slice`` = central
        index, ``streak_share``: :func:`~napari_dfct.simulate.realism.variance_shares`).

    Raises
    ------
    ValueError
        Out-of-range values, or more memory than is available
        (:func:`~napari_dfct.simulate.budget.check_memory`).
    """
    n_slices = _check_int("n_slices", n_slices, 1)
    size = _check_int("size", size, 32)
    n_views = views_for(size) if n_views is None else _check_int("n_views", n_views, 8)
    rotations = _check_int("rotations", rotations, 1)
    seed = _check_int("seed", seed, 0)
    phys = _physics(physics)
    n_det = detector_bins(size)
    if phys.tiles > n_det // 4:
        raise ValueError(
            f"tiles must be <= {n_det // 4} for {size} px slices (at least 4 "
            f"detector bins per tile), got {phys.tiles}"
        )
    check_views(phys, n_views)
    check_memory(
        n_slices,
        size,
        n_views,
        specimens=bool(specimens),
        chunk=int(phys.chunk),
        supersample=int(phys.supersample),
    )
    run = _Run(phys, size, n_views, rotations, n_det)
    if specimens:
        ph, seeds, rec = _simulate_specimens(run, n_slices, seed, progress)
        rois = [suggest_rois(ph.labels[k]) for k in range(n_slices)]
    else:
        ph, rec = _simulate_shared(run, n_slices, seed, progress)
        seeds = None
        rois = [suggest_rois(ph.labels)] * n_slices
    shares = variance_shares(rec["input"], rec["truth"], rois, target=rec["target"])
    meta = _meta(
        phys,
        ph,
        rois,
        n_slices=n_slices,
        size=size,
        n_views=n_views,
        rotations=rotations,
        seed=seed,
        n_det=n_det,
        specimen_seeds=seeds,
        shares=shares,
    )
    from .realism import anatomy_spread

    mask = body_mask(ph.labels)
    meta["anatomy"] = {"kind": phys.anatomy, "lesions": phys.lesions, **(ph.anatomy or {})}
    meta["anatomy"]["spread"] = anatomy_spread(mask, rois, ph.pixel_size_mm)
    return Simulation(
        input=rec["input"],
        target=rec["target"],
        truth=rec["truth"],
        meta=meta,
        phantom=ph,
        mask=mask,
    )


@dataclass
class _Run:
    """What every block of one simulation shares: physics, sizes and the projector."""

    phys: Physics
    size: int
    n_views: int
    rotations: int
    n_det: int
    geom: _Geometry = field(init=False, repr=False)
    chunk: int = field(init=False)

    def __post_init__(self) -> None:
        self.geom = _Geometry(self.size, self.n_views)
        self.chunk = geometry_plan(self.size, self.n_views, self.phys.chunk)[2]

    def phantom(self, n_slices: int, seed: int) -> Phantom:
        p = self.phys
        return thorax_phantom(
            self.size,
            n_slices,
            seed=seed,
            fov_mm=p.fov_mm,
            z_extent_mm=p.z_extent_mm,
            texture=p.texture,
            vessel_fraction=p.vessel_fraction,
            supersample=p.supersample,
            coarse_texture=p.coarse_texture,
            anatomy=p.anatomy,
            lesions=p.lesions,
        )

    def outputs(self, n_slices: int) -> dict[str, np.ndarray]:
        return {
            k: np.empty((n_slices, self.size, self.size), dtype=np.float32)
            for k in ("input", "target", "truth")
        }


def _store(out: dict[str, np.ndarray], rec: np.ndarray, z0: int, z1: int) -> None:
    nz = z1 - z0
    out["input"][z0:z1] = rec[:nz]
    out["target"][z0:z1] = rec[nz : 2 * nz]
    out["truth"][z0:z1] = rec[2 * nz :]


def _simulate_shared(run: _Run, n_slices: int, seed: int, progress):
    """One specimen, one acquisition: every slice sees the same vibration."""
    ph = run.phantom(n_slices, seed)
    zeta = np.linspace(-1.0, 1.0, n_slices) if n_slices > 1 else np.zeros(1)
    errors = _error_fields(run.phys, seed, run.rotations, run.n_views, run.n_det, zeta)
    out = run.outputs(n_slices)
    for z0 in range(0, n_slices, run.chunk):
        z1 = min(n_slices, z0 + run.chunk)
        rec = _simulate_block(
            run,
            ph.mu[z0:z1],
            ph.eps[z0:z1],
            ph.pixel_size_mm,
            tuple(e[z0:z1] for e in errors),
            [(seed, z) for z in range(z0, z1)],
        )
        _store(out, rec, z0, z1)
        if progress is not None:
            progress(z1, n_slices)
    return ph, out


def _simulate_specimens(run: _Run, n: int, seed: int, progress):
    """``n`` specimens, each the central slice of its own acquisition."""
    seeds = specimen_seeds(seed, n)
    out = run.outputs(n)
    maps = {
        k: np.empty((n, run.size, run.size), dtype=dt)
        for k, dt in (("mu", np.float32), ("eps", np.float32), ("labels", np.uint8))
    }
    pixel_mm = spacing_mm = 1.0
    drawn: list[dict | None] = []
    for z0 in range(0, n, run.chunk):
        z1 = min(n, z0 + run.chunk)
        errors = []
        for k in range(z0, z1):
            ph = run.phantom(1, seeds[k])
            for name, volume in maps.items():
                volume[k] = getattr(ph, name)[0]
            pixel_mm, spacing_mm = ph.pixel_size_mm, ph.slice_spacing_mm
            drawn.append(ph.anatomy)
            errors.append(
                _error_fields(
                    run.phys, seeds[k], run.rotations, run.n_views, run.n_det, np.zeros(1)
                )
            )
        block_errors = tuple(np.concatenate([e[i] for e in errors]) for i in range(4))
        rec = _simulate_block(
            run,
            maps["mu"][z0:z1],
            maps["eps"][z0:z1],
            pixel_mm,
            block_errors,
            [(seeds[k], 0) for k in range(z0, z1)],
        )
        _store(out, rec, z0, z1)
        if progress is not None:
            progress(z1, n)
    ph = Phantom(
        mu=maps["mu"],
        eps=maps["eps"],
        labels=maps["labels"],
        pixel_size_mm=pixel_mm,
        slice_spacing_mm=spacing_mm,
        anatomy={"specimens": drawn},
    )
    return ph, seeds, out


def _physics(physics: dict[str, Any]) -> Physics:
    """Validated :class:`Physics` from keyword arguments (``ValueError`` for unknown
    names or out-of-range values)."""
    valid = {f.name for f in fields(Physics)}
    unknown = sorted(set(physics) - valid)
    if unknown:
        raise ValueError(f"unknown physics parameter(s) {unknown}; valid: {sorted(valid)}")
    if physics.get("model") == FRINGE:
        physics = {**FRINGE_DEFAULTS, **physics}
    phys = Physics(**physics)
    phys.validate()
    return phys


def _block_noise(p_eps: np.ndarray, keys) -> tuple[np.ndarray, np.ndarray]:
    """Two unit Gaussian draws shaped like ``p_eps`` ``(nz, V, D)``; slice ``k`` is
    seeded by ``keys[k] = (seed, index)`` (the simulation's seed and the slice's index in
    the stack, or a specimen's seed and 0)."""
    n1 = np.empty_like(p_eps)
    n2 = np.empty_like(p_eps)
    for k, (seed, index) in enumerate(keys):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, index)))
        n1[k] = rng.standard_normal(p_eps.shape[1:], dtype=np.float32)
        n2[k] = rng.standard_normal(p_eps.shape[1:], dtype=np.float32)
    return n1, n2


def _simulate_block(
    run: _Run, mu: np.ndarray, eps: np.ndarray, pixel_size_mm: float, errors, noise_keys
) -> np.ndarray:
    """Input, target and truth reconstructions of a block of ``nz`` slices, stacked
    ``(3 nz, n, n)``.

    ``mu``, ``eps`` are the block's phantom maps, ``errors`` the four error fields of
    :func:`_error_fields` for its slices ``(nz, V, D)``, ``noise_keys`` the noise seeds
    of its slices (:func:`_block_noise`).
    """
    p_eps, err_in, err_tg = _sinogram_errors(run, mu, eps, pixel_size_mm, errors, noise_keys)
    stack = np.concatenate([p_eps + err_in, p_eps + err_tg, p_eps], axis=0)
    pix_m = pixel_size_mm * 1e-3
    return run.geom.back_project(stack, filter_name=run.phys.filter) / np.float32(pix_m)


def _sinogram_errors(
    run: _Run, mu: np.ndarray, eps: np.ndarray, pixel_size_mm: float, errors, noise_keys
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The clean dark-field sinogram ``p_eps`` of a block and the errors of its input and
    target sinograms (all ``(nz, V, D)``, dimensionless); arguments as
    :func:`_simulate_block`."""
    phys, rotations = run.phys, run.rotations
    nz = mu.shape[0]
    e_v_in, e_p_in, e_v_tg, e_p_tg = errors
    pix_m = pixel_size_mm * 1e-3
    kappa, off = phys.attenuation_coupling, phys.offset_coupling
    edge = phys.edge_coupling_mm / pixel_size_mm  # per-pixel gradient -> per mm x L
    v0sq = phys.visibility**2
    maps = np.concatenate([mu, eps], axis=0) * np.float32(pix_m)
    sino = run.geom.project(maps)  # (2nz, V, D), dimensionless
    p_mu, p_eps = sino[:nz], sino[nz:]
    if phys.model == FRINGE:
        args = (pixel_size_mm, errors, noise_keys)
        return p_eps, *block_errors(phys, rotations, p_mu, p_eps, *args)
    grad = np.gradient(p_mu, axis=-1).astype(np.float32) * np.float32(edge)
    att = off + kappa * p_mu
    sigma = np.sqrt(2.0 * np.exp(p_mu + 2.0 * p_eps) / (phys.n0 * v0sq)).astype(np.float32)
    if phys.noise != 1.0:
        sigma *= np.float32(phys.noise)
    n1, n2 = _block_noise(p_eps, noise_keys)
    err_in = e_v_in * att + e_p_in * grad + sigma * n1
    # mean noise of R rotations whose first is the input rotation
    noise_tg = sigma * (n1 + math.sqrt(rotations - 1) * n2) / rotations
    err_tg = e_v_tg * att + e_p_tg * grad + noise_tg
    return p_eps, err_in, err_tg


def _meta(
    phys: Physics,
    ph: Phantom,
    rois: list[dict],
    *,
    n_slices: int,
    size: int,
    n_views: int,
    rotations: int,
    seed: int,
    n_det: int,
    specimen_seeds: list[int] | None,
    shares: dict,
) -> dict:
    """The JSON-serialisable ``meta`` of a :class:`Simulation`."""
    from .. import __version__

    central = n_slices // 2
    independent = specimen_seeds is not None
    meta = {
        "generator": GENERATOR,
        "version": __version__,
        "n_slices": n_slices,
        "size": size,
        "n_views": n_views,
        "rotations": rotations,
        "seed": seed,
        "acquisition": "independent" if independent else "shared",
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
        "mask": MASK_FILE,
        "slice": central,
        **rois[central],
        "rois": [
            {
                k: r[k]
                for k in (
                    "signal_center",
                    "background_center",
                    "line",
                    "roi_size",
                    "background_region",
                )
            }
            for r in rois
        ],
        "streak_share": shares,
    }
    if specimen_seeds is not None:  # independent specimens
        meta["specimen_seeds"] = list(specimen_seeds)
    return meta
