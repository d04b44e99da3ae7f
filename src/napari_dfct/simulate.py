"""Physics-based simulation of X-ray dark-field CT (DFCT) with vibration streaks.

The simulator builds a thorax phantom, projects it in a parallel-beam geometry over one
full gantry rotation, adds the errors of a rotating Talbot-Lau interferometer and
reconstructs by filtered back-projection (FBP). It returns three co-registered float32
volumes ``(Z, Y, X)`` in units of 1/m (linear diffusion coefficient):

``input``
    one rotation: strong view-dependent streaks plus photon noise;
``target``
    the mean of ``rotations`` rotations (20 as in the paper; the first of them is the
    input rotation): weaker streaks and less noise, but fine streaks remain because a small
    part of the vibration is locked to the gantry angle and repeats in every rotation;
``truth``
    the clean dark-field map through the very same projector and FBP (no errors, no noise).

Phantom
-------
:func:`thorax_phantom` draws a thorax in the spirit of the "Lungman" chest phantom with
ventilated ex vivo lungs, as used for human-scale DFCT: body outline (super-ellipse) with
a fat layer, chest wall and mediastinum (soft tissue), heart and aorta, spine, sternum and
ribs (cortical shell, cancellous core), two lungs whose parenchyma carries a seeded
random texture and vessels, main bronchi and an air gap in the right pleural cavity
(near the image centre: it holds the air ROI), and air outside. All shapes vary smoothly
along z over ``z_extent_mm``; the seed varies the specimen a little (size, body aspect,
air gap, heart, ribs) besides the lung texture. Each material has an attenuation ``mu``
and a dark-field coefficient ``eps`` (both in 1/m): lung scatters strongly, soft tissue
and bone little, air not at all.

Acquisition model
-----------------
* Geometry: parallel beam, ``n_views`` views equally spaced over **360 degrees** (one full
  revolution of the gantry), a detector of ``D = 2*ceil(c*sqrt(2)) + 3`` bins of one pixel
  (``c = (size - 1) / 2``), wide enough that every pixel of the square image is seen in
  every view, so the air around the body is reconstructed without truncation.
* Projection: Joseph's method (one linearly interpolated sample per image row or column
  along each ray), vectorised as a gather with fixed indices and weights
  (:func:`torch.nn.functional.embedding_bag`, batched over slices and maps). Opposite
  views of a parallel-beam rotation see mirrored line integrals, and the square pixel
  grid is symmetric under 90-degree turns and transposition, so for ``n_views % 8 == 0``
  only the views of the first octant are computed, the others being exact copies
  (mirrored detector) or the same views of the turned / transposed image.
* Dark-field line integral ``p_eps = -ln(V/V_ref) = int eps ds``, attenuation line
  integral ``p_mu = int mu ds``.
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
* Reconstruction: FBP with a Hann-windowed ramp filter (``filter="hann"``, the default)
  or a plain ramp (``filter="ramp"``), pixel-driven back-projection with linear
  interpolation, also a gather. FBP is linear, so the R-rotation mean is one FBP of the
  mean sinogram: a simulation costs two projections and three back-projections per
  slice, whatever ``rotations`` is. It matches ``skimage.transform.iradon`` of
  ``radon`` on the same phantom to within a fraction of a percent.

Nothing here imports Qt or napari.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "LABELS",
    "MATERIALS",
    "Phantom",
    "Physics",
    "Simulation",
    "back_project",
    "detector_bins",
    "fbp",
    "filter_sinogram",
    "forward_project",
    "load_simulation",
    "roi_size_for",
    "save_simulation",
    "simulate_dfct",
    "suggest_rois",
    "thorax_phantom",
    "view_angles",
]

# --------------------------------------------------------------------------------------
# Materials and labels
# --------------------------------------------------------------------------------------

#: Tissue classes of the label map returned by :func:`thorax_phantom`.
LABELS: dict[str, int] = {"air": 0, "soft_tissue": 1, "bone": 2, "lung": 3, "air_cavity": 4}

#: Materials: (label class, attenuation mu [1/m], dark-field eps [1/m]).
#: mu is an effective value near 60 keV; eps is the linear diffusion coefficient.
MATERIALS: dict[str, tuple[str, float, float]] = {
    "air": ("air", 0.0, 0.0),
    "fat": ("soft_tissue", 18.0, 0.05),
    "soft": ("soft_tissue", 20.0, 0.10),
    "blood": ("soft_tissue", 21.0, 0.05),
    "cortical": ("bone", 48.0, 0.30),
    "cancellous": ("bone", 28.0, 0.45),
    "lung": ("lung", 5.0, 2.20),
    "vessel": ("lung", 21.0, 0.15),
    "cavity": ("air_cavity", 0.0, 0.0),
}
_MAT_NAMES = list(MATERIALS)
_MAT = {name: i for i, name in enumerate(_MAT_NAMES)}


@dataclass
class Phantom:
    """Thorax phantom maps, float32 ``(Z, Y, X)`` (labels uint8).

    Attributes
    ----------
    mu, eps : np.ndarray
        Attenuation and dark-field coefficients in 1/m (partial-volume averaged).
    labels : np.ndarray
        Tissue class per pixel (majority), values of :data:`LABELS`.
    pixel_size_mm, slice_spacing_mm : float
        Voxel size.
    """

    mu: np.ndarray = field(repr=False)
    eps: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)
    pixel_size_mm: float = 1.0
    slice_spacing_mm: float = 1.0

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.mu.shape)  # type: ignore[return-value]


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
# Phantom
# --------------------------------------------------------------------------------------


class _Canvas:
    """Material index map on a regular grid, painted shape by shape (later wins).

    ``u1`` (columns) and ``v1`` (rows) are ascending 1-D coordinates; each shape only
    touches its bounding box.
    """

    def __init__(self, u1: np.ndarray, v1: np.ndarray):
        self.u1, self.v1 = u1, v1
        self.mat = np.full((len(v1), len(u1)), _MAT["air"], dtype=np.uint8)

    def shape(self, material, cu, cv, au, av, angle=0.0, power=2.0, only=None, where=None):
        """Paint a rotated super-ellipse; ``only``: materials it may replace; ``where``:
        extra condition ``f(uu, vv) -> bool array``."""
        r = math.hypot(au, av)
        c0, c1 = np.searchsorted(self.u1, [cu - r, cu + r])
        r0, r1 = np.searchsorted(self.v1, [cv - r, cv + r])
        if c1 <= c0 or r1 <= r0:
            return
        du = self.u1[None, c0:c1] - cu
        dv = self.v1[r0:r1, None] - cv
        ca, sa = math.cos(angle), math.sin(angle)
        pu = np.abs((du * ca + dv * sa) / au)
        pv = np.abs((-du * sa + dv * ca) / av)
        if power == 2.0:
            inside = pu * pu + pv * pv <= 1.0
        else:
            inside = pu**power + pv**power <= 1.0
        sub = self.mat[r0:r1, c0:c1]
        if only is not None:
            inside &= np.isin(sub, [_MAT[m] for m in only])
        if where is not None:
            inside &= where(self.u1[None, c0:c1], self.v1[r0:r1, None])
        sub[inside] = _MAT[material]


_ANATOMY_MM = 200.0  # length unit of the anatomy drawn by _paint_slice


#: Specimen-to-specimen variation of the anatomy (uniform ranges), drawn from the seed.
_SPECIMEN_RANGES = {
    "scale": (0.97, 1.03),      # overall size
    "aspect": (0.97, 1.03),     # body width / height
    "gap": (-0.015, 0.03),      # depth of the air gap in the right pleural cavity
    "heart": (0.92, 1.08),      # heart size
    "heart_shift": (-0.02, 0.02),
    "rib_phase": (-0.12, 0.12),  # where the ribs cut the slice
    "bronchi": (-0.015, 0.015),
}


def _specimen(rng) -> dict[str, float]:
    return {k: float(rng.uniform(*r)) for k, r in _SPECIMEN_RANGES.items()}


def _paint_slice(u1: np.ndarray, v1: np.ndarray, z: float,
                 specimen: dict[str, float] | None = None) -> np.ndarray:
    """Material index map of one axial slice (anterior up, patient right on the left).

    ``u1`` (columns) and ``v1`` (rows) are 1-D coordinates in units of ``_ANATOMY_MM``
    from the image centre (the body is 2 x 0.86 units wide), ``z`` in [-1, 1] across the
    stack; ``specimen`` holds the variations of :data:`_SPECIMEN_RANGES` (none if None).
    """
    sp = {"scale": 1.0, "aspect": 1.0, "gap": 0.0, "heart": 1.0, "heart_shift": 0.0,
          "rib_phase": 0.0, "bronchi": 0.0, **(specimen or {})}
    u1, v1 = u1 / sp["scale"], v1 / sp["scale"]
    cv = _Canvas(u1, v1)
    paint = cv.shape

    # Body outline with a subcutaneous fat layer.
    bu, bv, bc = (0.86 - 0.02 * z) * sp["aspect"], 0.60 + 0.01 * z, 0.02
    paint("fat", 0.0, bc, bu, bv, power=2.4)
    paint("soft", 0.0, bc, bu - 0.045, bv - 0.045, power=2.4)

    # Thoracic cavities, filled with lung; the air gap, mediastinum and heart follow.
    cav_r = (-0.39, 0.01, 0.335 + 0.015 * z, 0.45, -0.12, 2.2)
    cav_l = (0.39, 0.01, 0.325 + 0.015 * z, 0.44, 0.12, 2.2)
    paint("lung", *cav_r[:4], angle=cav_r[4], power=cav_r[5])
    paint("lung", *cav_l[:4], angle=cav_l[4], power=cav_l[5])
    # Air in the right pleural cavity, anterior to the lung, which has sunk dorsally:
    # the anterior lung surface is a gently curved, slightly wavy line.
    v_surf = sp["gap"] + 0.012 * z

    def above_right_lung(uu, vv):
        return vv < v_surf + 0.8 * (uu + 0.30) ** 2 + 0.012 * np.sin(9.0 * uu + 2.0 * z)

    paint("cavity", *cav_r[:4], angle=cav_r[4], power=cav_r[5], only=["lung"],
          where=above_right_lung)

    def above_left_lung(uu, vv):
        return vv < -0.34 + 0.02 * z + 0.5 * (uu - 0.40) ** 2

    paint("cavity", *cav_l[:4], angle=cav_l[4], power=cav_l[5], only=["lung"],
          where=above_left_lung)

    # Mediastinum, heart, aorta, oesophagus.
    paint("soft", 0.01, 0.02, 0.13, 0.46, power=2.6)
    hs = sp["heart"]
    paint("blood", 0.10 - 0.02 * z + sp["heart_shift"], -0.13, 0.23 * (1 - 0.15 * z * z) * hs,
          0.24 * hs, angle=0.55)
    paint("blood", 0.11, 0.25, 0.065, 0.065)
    paint("soft", -0.04, 0.25, 0.035, 0.03)

    # Main bronchi (air with soft-tissue walls), converging towards the trachea.
    sep = 0.12 - 0.04 * z + sp["bronchi"]
    for side in (-1, 1):
        paint("soft", side * sep, 0.05, 0.05, 0.05)
        paint("cavity", side * sep, 0.05, 0.033, 0.033)

    # Spine: vertebral body, spinal canal, laminae, spinous and transverse processes.
    paint("cortical", 0.0, 0.37, 0.12, 0.10)
    paint("cancellous", 0.0, 0.37, 0.095, 0.077)
    for side in (-1, 1):
        paint("cortical", side * 0.065, 0.50, 0.03, 0.055, angle=side * 0.5)
        paint("cortical", side * 0.15, 0.44, 0.06, 0.022, angle=side * 0.35)
    paint("soft", 0.0, 0.50, 0.042, 0.037)
    paint("cortical", 0.0, 0.565, 0.022, 0.035)

    # Sternum.
    paint("cortical", 0.0, -0.505, 0.07, 0.028)
    paint("cancellous", 0.0, -0.505, 0.05, 0.014)

    # Ribs: oblique cross-sections in the chest wall, sliding along it with z.
    ru, rv = bu - 0.075, bv - 0.075
    for side in (-1, 1):
        for k in range(7):
            a = 0.42 + 0.36 * k + 0.12 * z + 0.05 * (k % 2) + sp["rib_phase"]  # 0: anterior
            cu = side * ru * math.sin(a)
            cvv = bc - rv * math.cos(a)
            tang = math.atan2(rv * math.sin(a), side * ru * math.cos(a))
            paint("cortical", cu, cvv, 0.05, 0.02, angle=tang)
            paint("cancellous", cu, cvv, 0.03, 0.009, angle=tang)
    return cv.mat


def _smooth_field(rng, shape, sigma) -> np.ndarray:
    """Zero-mean, unit-RMS Gaussian random field (float32)."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    out = ndimage.gaussian_filter(noise, sigma=sigma, mode="wrap")
    out -= out.mean()
    out /= max(float(out.std()), 1e-12)
    return out


def thorax_phantom(
    size: int = 256,
    n_slices: int = 16,
    *,
    seed: int = 0,
    fov_mm: float = 460.0,
    z_extent_mm: float = 80.0,
    texture: float = 0.15,
    vessel_fraction: float = 0.05,
    supersample: int = 2,
) -> Phantom:
    """Draw the thorax phantom.

    Parameters
    ----------
    size : int
        Image width and height in pixels (>= 16).
    n_slices : int
        Number of axial slices (>= 1); they span ``z_extent_mm``.
    seed : int
        Seed of the specimen: small variations of the anatomy (size, body aspect, air gap,
        heart, ribs, bronchi), the lung texture and the vessels.
    fov_mm : float
        Field of view (>= 380 mm); the pixel size is ``fov_mm / size``.
    z_extent_mm : float
        Axial extent of the stack.
    texture : float
        Relative RMS of the fine parenchyma texture of the lung dark-field signal.
    vessel_fraction : float
        Approximate area fraction of lung vessels (no dark-field, soft-tissue attenuation).
    supersample : int
        Sub-samples per pixel and axis for partial-volume edges.

    Returns
    -------
    Phantom
        ``mu`` and ``eps`` in 1/m, float32 ``(n_slices, size, size)``, and the labels.
    """
    size, n_slices, supersample = int(size), int(n_slices), int(supersample)
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    if n_slices < 1:
        raise ValueError(f"n_slices must be >= 1, got {n_slices}")
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    if fov_mm < 380.0:
        raise ValueError(f"fov_mm must be >= 380 (the thorax is 344 mm wide), got {fov_mm}")
    c = (size - 1) / 2.0
    pix_mm = fov_mm / size
    spacing_mm = z_extent_mm / n_slices
    zs = np.linspace(-1.0, 1.0, n_slices) if n_slices > 1 else np.zeros(1)
    zs = zs * (1.0 - 1.0 / max(n_slices, 1))  # slice centres inside the extent

    # Sub-pixel sample grid.
    ss = supersample
    offs = (np.arange(ss) + 0.5) / ss - 0.5
    # Anatomy is drawn in units of _ANATOMY_MM from the image centre.
    unit = pix_mm / _ANATOMY_MM
    coord_ss = ((np.arange(size)[:, None] + offs[None, :]).ravel() - c) * unit
    coord_1 = (np.arange(size) - c) * unit
    u_1, v_1 = coord_1[None, :], coord_1[:, None]

    n_mat = len(_MAT_NAMES)
    frac = np.zeros((n_mat, n_slices, size, size), dtype=np.float32)
    labels = np.zeros((n_slices, size, size), dtype=np.uint8)
    cls_of_mat = np.array([LABELS[MATERIALS[m][0]] for m in _MAT_NAMES], dtype=np.uint8)
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(0,)))
    specimen = _specimen(rng)
    pix = np.arange(size * size, dtype=np.intp)[:, None]
    for k, z in enumerate(zs):
        mat = _paint_slice(coord_ss, coord_ss, float(z), specimen)
        mat = mat.reshape(size, ss, size, ss)
        mat = mat.transpose(0, 2, 1, 3).reshape(size * size, ss * ss).astype(np.intp)
        counts = np.bincount((pix * n_mat + mat).ravel(), minlength=size * size * n_mat)
        frac[:, k] = (counts.reshape(size, size, n_mat) / (ss * ss)).transpose(2, 0, 1)
        labels[k] = cls_of_mat[np.argmax(frac[:, k], axis=0)]

    # Lung parenchyma: fine texture, a gentle gravity gradient, vessels.
    sz_fine = max(2.5 / spacing_mm, 0.3)
    fine = _smooth_field(rng, (n_slices, size, size), (sz_fine, 1.2 / pix_mm * 1.0,
                                                       1.2 / pix_mm * 1.0))
    coarse = _smooth_field(rng, (n_slices, size, size), (max(12 / spacing_mm, 0.5),
                                                         10 / pix_mm, 10 / pix_mm))
    vess = _smooth_field(rng, (n_slices, size, size), (max(10 / spacing_mm, 0.5),
                                                       2.2 / pix_mm, 2.2 / pix_mm))
    thr = float(np.quantile(vess, 1.0 - vessel_fraction)) if vessel_fraction > 0 else np.inf
    vessel = np.clip((vess - thr) / 0.3, 0.0, 1.0)  # soft vessel edges
    gravity = 1.0 - 0.12 * v_1[None]  # posterior (dependent) lung is denser: less scatter
    lung_eps_mod = np.clip(gravity * (1.0 + texture * fine + 0.08 * coarse), 0.2, None)
    lung_mu_mod = np.clip(1.0 - 0.5 * texture * fine + 0.1 * (1 - gravity), 0.3, None)

    mu = np.zeros((n_slices, size, size), dtype=np.float32)
    eps = np.zeros((n_slices, size, size), dtype=np.float32)
    for name, (_, m_mu, m_eps) in MATERIALS.items():
        f = frac[_MAT[name]]
        if name == "lung":
            fl = f * (1.0 - vessel)
            fv = f * vessel
            _, v_mu, v_eps = MATERIALS["vessel"]
            mu += fl * m_mu * lung_mu_mod + fv * v_mu
            eps += fl * m_eps * lung_eps_mod + fv * v_eps
        else:
            mu += f * m_mu
            eps += f * m_eps

    # Nothing outside the inscribed circle (complete projections).
    rr = np.hypot(u_1, v_1) / unit
    outside = rr > c - 1.0
    mu[:, outside] = 0.0
    eps[:, outside] = 0.0
    labels[:, outside] = LABELS["air"]
    return Phantom(mu=mu.astype(np.float32), eps=eps.astype(np.float32), labels=labels,
                   pixel_size_mm=float(pix_mm), slice_spacing_mm=float(spacing_mm))


# --------------------------------------------------------------------------------------
# Geometry, projector, FBP
# --------------------------------------------------------------------------------------


def view_angles(n_views: int) -> np.ndarray:
    """Projection angles (radians, float64): ``n_views`` equally spaced over 360 degrees."""
    return 2.0 * np.pi * np.arange(int(n_views)) / int(n_views)


def detector_bins(size: int) -> int:
    """Detector bins for a ``size``-wide image: covers the image diagonal (odd count)."""
    c = (int(size) - 1) / 2.0
    return 2 * int(math.ceil(c * math.sqrt(2.0))) + 3


def _as_stack(a: np.ndarray, ndim: int) -> tuple[np.ndarray, bool]:
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == ndim - 1:
        return a[None], True
    if a.ndim != ndim:
        raise ValueError(f"expected a {ndim - 1}-D or {ndim}-D array, got shape {a.shape}")
    return a, False


class _Geometry:
    """Parallel-beam projector and back-projector for one (size, n_views), 360 degrees.

    Both operators are gathers with fixed indices and weights, evaluated by
    :func:`torch.nn.functional.embedding_bag` on channels-last tables, so any number of
    images (slices, maps) share one pass. Symmetries of the square pixel grid cut the
    index work (they are exact permutations of pixels, so results are unchanged):
    opposite views see mirrored rays (even ``n_views``); a view at ``theta + 90 deg`` sees
    the image turned by 90 degrees (``n_views % 4 == 0``); a view at ``90 deg - theta``
    sees the transposed image (``n_views % 8 == 0``). Such views become extra channels
    of the first octant (``n_views / 8 + 1`` views for 360). Indices are kept between
    calls while they fit ``cache_bytes``.
    """

    def __init__(self, size: int, n_views: int, symmetry: bool = True,
                 cache_bytes: int = 320 * 2**20):
        self.size = n = int(size)
        self.n_views = v = int(n_views)
        self.n_det = detector_bins(n)
        if symmetry and v % 8 == 0:
            self.fold, n_base = 8, v // 8 + 1
        elif symmetry and v % 4 == 0:
            self.fold, n_base = 4, v // 4
        elif v % 2 == 0:
            self.fold, n_base = 2, v // 2
        else:
            self.fold, n_base = 1, v
        self.theta = view_angles(v)[:n_base]
        self.cache_bytes = int(cache_bytes)
        self._fp: list | None = None
        self._bp: list | None = None

    def index_bytes(self) -> tuple[int, int]:
        """Bytes of the (projection, back-projection) indices and weights."""
        n, nb = self.size, len(self.theta)
        rays = min(self.n_det, 2 * (int(math.ceil((n - 1) / 2.0)) + 1) + 1)
        return nb * rays * 2 * n * 8, nb * n * n * 2 * 8

    # -- forward projection (Joseph's method) -----------------------------------------
    def _fp_chunks(self):
        """Yield (view slice, bin slice, idx, weights) for the base views."""
        n = self.size
        c = (n - 1) / 2.0
        c_det = (self.n_det - 1) / 2.0
        half = int(math.ceil(c)) + 1  # rays with |t| > c miss the inscribed circle
        j0 = max(0, int(c_det) - half)
        j1 = min(self.n_det, int(c_det) + half + 1)
        t = np.arange(j0, j1) - c_det
        m = n + 3  # padded width: one zero column before, two after
        s = np.arange(n)
        per = max(1, 4_000_000 // ((j1 - j0) * 2 * n))
        for i in range(0, len(self.theta), per):
            th = self.theta[i : i + per]
            cos, sin = np.cos(th), np.sin(th)
            rows = np.abs(cos) >= np.abs(sin)  # ray mostly along y: one sample per row
            a = np.where(rows, cos, sin)
            b = np.where(rows, sin, cos)
            # sample position (padded coordinates) across the stepping axis
            pa = torch.from_numpy((t[None, :] / a[:, None] + c + 1.0).astype(np.float32))
            pb = torch.from_numpy((-(s[None, :] - c) * b[:, None] / a[:, None]).astype(
                np.float32))
            pos = pa[:, :, None] + pb[:, None, :]  # (v, J, n)
            pos.clamp_(0.0, n + 1.0)
            p0 = torch.floor(pos)
            nv, nj = len(th), j1 - j0
            idx = torch.empty((nv, nj, 2, n), dtype=torch.int32)
            w = torch.empty((nv, nj, 2, n), dtype=torch.float32)
            scale = torch.from_numpy((1.0 / np.abs(a)).astype(np.float32))[:, None, None]
            torch.mul(pos.sub_(p0), scale, out=w[:, :, 1])
            torch.sub(scale, w[:, :, 1], out=w[:, :, 0])
            s_stride = torch.from_numpy(np.where(rows, m, 1).astype(np.int32))[:, None, None]
            p_stride = torch.from_numpy(np.where(rows, 1, m).astype(np.int32))[:, None, None]
            step = (torch.arange(n, dtype=torch.int32) + 1)[None, None, :] * s_stride
            torch.addcmul(step, p0.to(torch.int32), p_stride, out=idx[:, :, 0])
            torch.add(idx[:, :, 0], p_stride, out=idx[:, :, 1])
            idx = idx.reshape(nv * nj, 2 * n)
            w = w.reshape(nv * nj, 2 * n)
            yield slice(i, i + len(th)), slice(j0, j1), idx, w

    def _project_table(self, table: torch.Tensor) -> torch.Tensor:
        """Padded channels-last table ``((n+3)**2, C)`` -> ``(C, n_base, D)``."""
        n_ch = table.shape[1]
        out = torch.zeros((len(self.theta), self.n_det, n_ch), dtype=torch.float32)
        chunks = self._fp if self._fp is not None else self._fp_chunks()
        keep, nbytes = [], 0
        for vs, js, idx, w in chunks:
            vals = torch.nn.functional.embedding_bag(idx, table, per_sample_weights=w,
                                                     mode="sum")
            out[vs, js] = vals.reshape(vs.stop - vs.start, js.stop - js.start, n_ch)
            if self._fp is None:
                nbytes += idx.numel() * 4 + w.numel() * 4
                keep.append((vs, js, idx, w))
        if self._fp is None and nbytes <= self.cache_bytes:
            self._fp = keep
        return out.permute(2, 0, 1)

    def project(self, images: np.ndarray) -> np.ndarray:
        """``(Z, n, n)`` images -> ``(Z, n_views, D)`` line integrals (value x pixel)."""
        z, n, v = images.shape[0], self.size, self.n_views
        turned = np.rot90(images, 1, axes=(1, 2))  # theta + 90 deg sees it turned by +90
        if self.fold == 8:  # 90 deg - theta sees the transposed image
            chans = [images, images.transpose(0, 2, 1), turned, turned.transpose(0, 2, 1)]
        elif self.fold == 4:
            chans = [images, turned]
        else:
            chans = [images]
        stack = np.concatenate(chans, axis=0)
        padded = np.zeros((stack.shape[0], n + 3, n + 3), dtype=np.float32)
        padded[:, 1 : n + 1, 1 : n + 1] = stack
        table = torch.from_numpy(np.ascontiguousarray(padded.reshape(len(stack), -1).T))
        base = self._project_table(table).reshape(len(chans), z, -1, self.n_det)
        if self.fold == 8:
            h = v // 8

            def quarter(direct, transposed):  # views 0..h direct, h+1..2h-1 transposed
                return torch.cat([direct[:, : h + 1], transposed[:, 1:h].flip(1)], dim=1)

            half = torch.cat([quarter(base[0], base[1]), quarter(base[2], base[3])], dim=1)
        elif self.fold == 4:
            half = torch.cat([base[0], base[1]], dim=1)
        else:
            half = base[0]
        if self.fold >= 2:  # theta + 180 deg: mirrored detector
            half = torch.cat([half, half.flip(-1)], dim=1)
        return half.numpy()

    # -- back-projection (pixel driven, linear interpolation) --------------------------
    def _bp_chunks(self):
        n = self.size
        c = (n - 1) / 2.0
        nb, n_det = len(self.theta), self.n_det
        c_det = (n_det - 1) / 2.0
        cos = torch.from_numpy(np.cos(self.theta).astype(np.float32))
        sin = torch.from_numpy(np.sin(self.theta).astype(np.float32))
        coord = torch.arange(n, dtype=torch.float32) - c
        xc = coord[None, :, None] * cos[None, None, :]  # (1, n, nb)
        base = (torch.arange(nb, dtype=torch.int32) * n_det)[None, None, :]
        rows_per = max(1, 2_000_000 // (n * nb))
        for r0 in range(0, n, rows_per):
            r1 = min(n, r0 + rows_per)
            t = xc + (coord[r0:r1, None, None] * sin[None, None, :] + c_det)  # (r, n, nb)
            i0 = torch.floor(t)
            idx = torch.empty((r1 - r0, n, 2, nb), dtype=torch.int32)
            w = torch.empty((r1 - r0, n, 2, nb), dtype=torch.float32)
            torch.sub(t, i0, out=w[:, :, 1])
            torch.sub(1.0, w[:, :, 1], out=w[:, :, 0])
            torch.add(i0.to(torch.int32).clamp_(0, n_det - 2), base, out=idx[:, :, 0])
            torch.add(idx[:, :, 0], 1, out=idx[:, :, 1])
            idx = idx.reshape(-1, 2 * nb)
            w = w.reshape(-1, 2 * nb)
            yield slice(r0 * n, r1 * n), idx, w

    def _backproject_table(self, q: torch.Tensor) -> torch.Tensor:
        """Channels-last ``(n_base * D, C)`` -> ``(C, n, n)``, plain sum over views."""
        n = self.size
        out = torch.empty((n * n, q.shape[1]), dtype=torch.float32)
        chunks = self._bp if self._bp is not None else self._bp_chunks()
        keep, nbytes = [], 0
        for ps, idx, w in chunks:
            out[ps] = torch.nn.functional.embedding_bag(idx, q, per_sample_weights=w,
                                                        mode="sum")
            if self._bp is None:
                nbytes += idx.numel() * 4 + w.numel() * 4
                keep.append((ps, idx, w))
        if self._bp is None and nbytes <= self.cache_bytes:
            self._bp = keep
        return out.T.reshape(q.shape[1], n, n)

    def back_project(self, filtered: np.ndarray, filter: str | None = None) -> np.ndarray:
        """``(Z, n_views, D)`` filtered sinograms -> ``(Z, n, n)`` with the FBP weight.

        With ``filter`` ("ramp" or "hann") the input is a raw sinogram, filtered after
        folding opposite views (the filter is even, so it commutes with the mirror)."""
        z, v, n_det = filtered.shape
        if v != self.n_views or n_det != self.n_det:
            raise ValueError(
                f"sinogram shape {filtered.shape[1:]} does not match the geometry "
                f"({self.n_views}, {self.n_det})"
            )
        q = filtered
        if self.fold >= 2:  # fold opposite views onto the first half rotation
            h = v // 2
            q = q[:, :h] + q[:, h:, ::-1]
        if filter is not None:
            q = filter_sinogram(q, filter)
        quarters = [q[:, : v // 4], q[:, v // 4 :]] if self.fold >= 4 else [q]
        if self.fold == 8:  # views h+1..2h-1 of a quarter: transposed octant views 1..h-1
            h = v // 8
            chans = []
            for qq in quarters:
                mirrored = np.zeros_like(qq[:, : h + 1])
                mirrored[:, 1:h] = qq[:, h + 1 :][:, ::-1]
                chans += [qq[:, : h + 1], mirrored]
        else:
            chans = quarters
        q = np.concatenate(chans, axis=0)
        table = torch.from_numpy(
            np.ascontiguousarray(q.reshape(q.shape[0], -1).T, dtype=np.float32)
        )
        img = self._backproject_table(table).numpy().reshape(len(chans), z, self.size, -1)
        if self.fold == 8:
            parts = [img[0] + img[1].transpose(0, 2, 1), img[2] + img[3].transpose(0, 2, 1)]
        else:
            parts = list(img)
        out = parts[0]
        if self.fold >= 4:  # undo the turn of the second quarter
            out = out + np.rot90(parts[1], -1, axes=(1, 2))
        return (out * np.float32(math.pi / (2.0 * v))).astype(np.float32, copy=False)


def forward_project(images: np.ndarray, n_views: int) -> np.ndarray:
    """Parallel-beam line integrals over one full rotation (Joseph's method).

    Parameters
    ----------
    images : np.ndarray
        ``(Y, X)`` or ``(Z, Y, X)`` square images, values per pixel, zero outside the
        inscribed circle (the mirror symmetry of opposite views assumes it).
    n_views : int
        Views over 360 degrees (:func:`view_angles`).

    Returns
    -------
    np.ndarray
        float32 sinogram ``(V, D)`` or ``(Z, V, D)`` with ``D = detector_bins(size)``, in
        units of value x pixel; the detector centre is bin ``(D - 1) / 2``.
    """
    stack, squeeze = _as_stack(images, 3)
    if stack.shape[1] != stack.shape[2]:
        raise ValueError(f"images must be square, got {stack.shape[1]}x{stack.shape[2]}")
    n_views = int(n_views)
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    out = _Geometry(stack.shape[-1], n_views, cache_bytes=0).project(stack)
    return out[0] if squeeze else out


def _ramp_response(n_det: int, filter: str = "ramp") -> tuple[np.ndarray, int]:
    """Frequency response of the discrete ramp filter (rfft layout) and the padded length."""
    pad = max(64, int(2 ** math.ceil(math.log2(2 * n_det))))
    n = np.concatenate([np.arange(1, pad // 2 + 1, 2), np.arange(pad // 2 - 1, 0, -2)])
    h = np.zeros(pad)
    h[0] = 0.25
    h[1::2] = -1.0 / (np.pi * n) ** 2
    resp = 2.0 * np.real(np.fft.rfft(h))
    if filter == "hann":
        freq = np.fft.rfftfreq(pad)  # 0 .. 0.5 cycles/sample
        resp *= 0.5 * (1.0 + np.cos(2.0 * np.pi * freq))
    elif filter != "ramp":
        raise ValueError(f"filter must be 'ramp' or 'hann', got {filter!r}")
    return resp.astype(np.float32), pad


def filter_sinogram(sino: np.ndarray, filter: str = "ramp") -> np.ndarray:
    """Apply the FBP filter along the detector axis (last axis), float32."""
    sino = np.asarray(sino, dtype=np.float32)
    n_det = sino.shape[-1]
    resp, pad = _ramp_response(n_det, filter)
    t = torch.from_numpy(np.ascontiguousarray(sino))
    spec = torch.fft.rfft(t, n=pad, dim=-1) * torch.from_numpy(resp)
    return torch.fft.irfft(spec, n=pad, dim=-1)[..., :n_det].contiguous().numpy()


def back_project(filtered: np.ndarray, size: int) -> np.ndarray:
    """FBP back-projection over 360 degrees of an already filtered sinogram.

    Parameters
    ----------
    filtered : np.ndarray
        ``(V, D)`` or ``(Z, V, D)`` filtered sinogram (:func:`filter_sinogram`) with
        ``D = detector_bins(size)``.
    size : int
        Output image width.

    Returns
    -------
    np.ndarray
        float32 ``(Y, X)`` or ``(Z, Y, X)``, with the FBP angular weight ``pi / (2 V)``.
    """
    stack, squeeze = _as_stack(filtered, 3)
    out = _Geometry(int(size), stack.shape[1], cache_bytes=0).back_project(stack)
    return out[0] if squeeze else out


def fbp(sinogram: np.ndarray, size: int, filter: str = "ramp") -> np.ndarray:
    """Filtered back-projection of a 360-degree parallel-beam sinogram.

    Parameters
    ----------
    sinogram : np.ndarray
        ``(V, D)`` or ``(Z, V, D)`` line integrals (:func:`forward_project` layout).
    size : int
        Output image width.
    filter : {"ramp", "hann"}
        Ramp filter, or ramp with a Hann window.

    Returns
    -------
    np.ndarray
        float32 ``(Y, X)`` or ``(Z, Y, X)`` in units of sinogram value per pixel.
    """
    stack, squeeze = _as_stack(sinogram, 3)
    out = _Geometry(int(size), stack.shape[1], cache_bytes=0).back_project(stack, filter)
    return out[0] if squeeze else out


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
# ROIs
# --------------------------------------------------------------------------------------


def roi_size_for(size: int) -> int:
    """Default ROI side: 30 px (the paper's) for ``size >= 256``, proportionally smaller
    below (at least 4), so that a lung square and an air square fit the phantom."""
    size = int(size)
    return 30 if size >= 256 else max(4, int(round(30 * size / 256)))


def _feasible(mask2d: np.ndarray, roi_size: int, margin: int) -> np.ndarray:
    """Centres whose (roi_size + 2*margin) square lies fully inside ``mask2d``."""
    half = roi_size // 2 + margin
    fp = 2 * half + 1
    ok = ndimage.minimum_filter(mask2d.astype(np.uint8), size=fp, mode="constant", cval=0)
    return ok.astype(bool)


def _nearest(ok: np.ndarray, point: Sequence[float]) -> tuple[int, int] | None:
    rows, cols = np.nonzero(ok)
    if rows.size == 0:
        return None
    d = (rows - point[0]) ** 2 + (cols - point[1]) ** 2
    i = int(np.argmin(d))
    return int(rows[i]), int(cols[i])


def suggest_rois(labels: np.ndarray, roi_size: int | None = None,
                 margin: int | None = None) -> dict:
    """Lung (signal) and air (background) ROI centres valid in every slice.

    The air ROI is the air square closest to the image centre, in an air cavity inside
    the body when one fits, else in the air outside the body; the lung ROI is the lung
    square closest to the air ROI (so the line between them crosses a lung-air edge).
    Squares of ``roi_size + 2 * margin`` must lie fully in the tissue in all slices; the
    ROI shrinks (by 2 px steps) when none fits.

    Parameters
    ----------
    labels : np.ndarray
        ``(Z, Y, X)`` or ``(Y, X)`` label map of :func:`thorax_phantom`.
    roi_size : int, optional
        ROI side; :func:`roi_size_for` by default.
    margin : int, optional
        Extra pixels of tissue required around each square (2, or 1 below 128 px).

    Returns
    -------
    dict
        ``signal_center``, ``background_center`` ([row, col] ints), ``line``
        ([[r0, c0], [r1, c1]]), ``roi_size`` and ``background_region`` (``"air_cavity"``
        or ``"air"``).
    """
    lab = np.asarray(labels)
    if lab.ndim == 2:
        lab = lab[None]
    size = lab.shape[-1]
    roi = roi_size_for(size) if roi_size is None else int(roi_size)
    if margin is None:
        margin = 2 if size >= 128 else 1
    lung = np.all(lab == LABELS["lung"], axis=0)
    cavity = np.all(lab == LABELS["air_cavity"], axis=0)
    outside = np.all(lab == LABELS["air"], axis=0)
    centre = ((lab.shape[-2] - 1) / 2.0, (lab.shape[-1] - 1) / 2.0)
    while roi >= 2:
        bg, region = _nearest(_feasible(cavity, roi, margin), centre), "air_cavity"
        if bg is None:
            bg, region = _nearest(_feasible(outside, roi, margin), centre), "air"
        sig = _nearest(_feasible(lung, roi, margin), bg) if bg is not None else None
        if bg is not None and sig is not None:
            return {
                "signal_center": [sig[0], sig[1]],
                "background_center": [bg[0], bg[1]],
                "line": [[sig[0], sig[1]], [bg[0], bg[1]]],
                "roi_size": int(roi),
                "background_region": region,
            }
        roi -= 2
    raise ValueError("no lung and air squares fit in this phantom; use a larger size")


# --------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------


@dataclass
class Simulation:
    """A simulated DFCT set (see the module docstring).

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
    valid = {f.name for f in fields(Physics)}
    unknown = sorted(set(physics) - valid)
    if unknown:
        raise ValueError(
            f"unknown physics parameter(s) {unknown}; valid: {sorted(valid)}"
        )
    phys = Physics(**physics)
    phys.validate()

    ph = thorax_phantom(size, n_slices, seed=seed, fov_mm=phys.fov_mm,
                        z_extent_mm=phys.z_extent_mm, texture=phys.texture,
                        vessel_fraction=phys.vessel_fraction, supersample=phys.supersample)
    pix_m = ph.pixel_size_mm * 1e-3
    n_det = detector_bins(size)
    zeta = np.linspace(-1.0, 1.0, n_slices) if n_slices > 1 else np.zeros(1)
    e_v_in, e_p_in, e_v_tg, e_p_tg = _error_fields(phys, seed, rotations, n_views, n_det,
                                                   zeta)
    kappa, off = phys.attenuation_coupling, phys.offset_coupling
    edge = phys.edge_coupling_mm / ph.pixel_size_mm  # per-pixel gradient -> per mm x L
    v0sq = phys.visibility**2

    out = {k: np.empty((n_slices, size, size), dtype=np.float32)
           for k in ("input", "target", "truth")}
    geom = _Geometry(size, n_views)
    chunk = int(phys.chunk)
    if max(geom.index_bytes()) > geom.cache_bytes:  # indices rebuilt per block: fewer blocks
        chunk = max(chunk, 16)
    for z0 in range(0, n_slices, chunk):
        z1 = min(n_slices, z0 + chunk)
        nz = z1 - z0
        maps = np.concatenate([ph.mu[z0:z1], ph.eps[z0:z1]], axis=0) * np.float32(pix_m)
        sino = geom.project(maps)  # (2nz, V, D), dimensionless
        p_mu, p_eps = sino[:nz], sino[nz:]
        grad = np.gradient(p_mu, axis=-1).astype(np.float32) * np.float32(edge)
        att = off + kappa * p_mu
        sigma = np.sqrt(2.0 * np.exp(p_mu + 2.0 * p_eps) / (phys.n0 * v0sq)).astype(
            np.float32
        )
        n1 = np.empty_like(p_eps)
        n2 = np.empty_like(p_eps)
        for k in range(nz):
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, z0 + k)))
            n1[k] = rng.standard_normal(p_eps.shape[1:], dtype=np.float32)
            n2[k] = rng.standard_normal(p_eps.shape[1:], dtype=np.float32)
        err_in = e_v_in[z0:z1] * att + e_p_in[z0:z1] * grad + sigma * n1
        # mean noise of R rotations whose first is the input rotation
        noise_tg = sigma * (n1 + math.sqrt(rotations - 1) * n2) / rotations
        err_tg = e_v_tg[z0:z1] * att + e_p_tg[z0:z1] * grad + noise_tg
        stack = np.concatenate([p_eps + err_in, p_eps + err_tg, p_eps], axis=0)
        rec = geom.back_project(stack, filter=phys.filter) / np.float32(pix_m)
        out["input"][z0:z1] = rec[:nz]
        out["target"][z0:z1] = rec[nz : 2 * nz]
        out["truth"][z0:z1] = rec[2 * nz :]
        if progress is not None:
            progress(z1, n_slices)

    rois = suggest_rois(ph.labels)
    from . import __version__

    meta = {
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
    return Simulation(input=out["input"], target=out["target"], truth=out["truth"],
                      meta=meta, phantom=ph)


# --------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------

_FILES = ("input", "target", "truth")


def save_simulation(sim: Simulation, out_dir: str | Path) -> dict[str, Path]:
    """Write ``input.tif``, ``target.tif``, ``truth.tif`` (float32) and ``meta.json``.

    Returns
    -------
    dict
        ``{"input": path, "target": path, "truth": path, "meta": path}``.
    """
    import tifffile

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name in _FILES:
        arr = np.ascontiguousarray(getattr(sim, name), dtype=np.float32)
        p = out / f"{name}.tif"
        tifffile.imwrite(p, arr, photometric="minisblack",
                         metadata={"axes": "ZYX" if arr.ndim == 3 else "YX"})
        paths[name] = p
    p = out / "meta.json"
    p.write_text(json.dumps(sim.meta, indent=2, default=_json_default) + "\n")
    paths["meta"] = p
    return paths


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def load_simulation(out_dir: str | Path) -> Simulation:
    """Read a folder written by :func:`save_simulation` (``ValueError`` if incomplete)."""
    import tifffile

    d = Path(out_dir)
    if not d.is_dir():
        raise ValueError(f"{d} is not a directory")
    arrays = {}
    for name in _FILES:
        p = d / f"{name}.tif"
        if not p.is_file():
            raise ValueError(f"{p} is missing")
        arrays[name] = np.asarray(tifffile.imread(p), dtype=np.float32)
    p = d / "meta.json"
    meta = json.loads(p.read_text()) if p.is_file() else {}
    return Simulation(**arrays, meta=meta)
